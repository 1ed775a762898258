//! Screen-pop benchmark (issue target: p99 ≤ 5 ms with 1,000,000 customers and 10,000,000
//! contacts on SQLite).
//!
//! ```text
//! cargo bench --bench screen_pop                       # full size (first run builds the DB)
//! BENCH_CUSTOMERS=10000 BENCH_CONTACTS=100000 \
//!   BENCH_DB=target/bench-data/screenpop-small.db cargo bench --bench screen_pop   # quick
//! ```
//!
//! Environment: `BENCH_DB` (default `target/bench-data/screenpop.db`), `BENCH_CUSTOMERS`
//! (1,000,000), `BENCH_CONTACTS` (10,000,000), `BENCH_QUERIES` (20,000), `BENCH_SEARCHES` (200),
//! `BENCH_SEED` (42). The database is built once and reused while its counts match.
//!
//! The data is generated with direct multi-row SQL (same schema, via `Store::migrate`) because
//! going through `create_contact` for 10M contacts would take hours; the query under test is the
//! library's own `Store::screen_pop` on a pool opened by `Store::connect`, exactly as the server
//! opens it.

mod support;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use support::env_u64;

use chrono::NaiveDate;
use contact_hub::config::ArchiveConfig;
use contact_hub::identity::search_key;
use contact_hub::store::{CustomerSearch, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;
type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

struct Settings {
    db: PathBuf,
    customers: i64,
    contacts: i64,
    queries: usize,
    searches: usize,
    seed: u64,
}

/// 2026-11-23 00:00 UTC: "today" of the data set (document expiries are relative to it).
const TODAY_MS: i64 = 1_795_392_000_000;
const DAY_MS: i64 = 86_400_000;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Realistic-looking data
// ---------------------------------------------------------------------------------------------

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "陳", "張",
    "歐陽", "司馬",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "霞", "平", "刚", "桂英", "小明", "大文", "建华", "志强", "美玲", "淑芬", "家豪",
    "雅婷", "子涵", "浩然", "欣怡", "俊杰", "文", "华", "红", "玉兰", "国强", "晓东",
];
const FIRST: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Alice",
    "Bob",
    "Emma",
    "Oliver",
    "Sophie",
    "Liam",
    "Chloe",
    "Noah",
];
const LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "Anderson", "Taylor", "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris",
    "Clark", "Lewis", "Walker", "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker",
];
const CITIES: &[&str] = &[
    "北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "苏州", "台北", "香港",
];
const TRADES: &[&str] = &[
    "科技",
    "贸易",
    "物流",
    "电子",
    "医药",
    "建材",
    "餐饮",
    "文化传媒",
    "汽车配件",
    "服装",
];
const EN_COMPANY: &[&str] = &[
    "Trading Ltd",
    "Logistics Co.",
    "Electronics Inc.",
    "Holdings Ltd",
    "Foods Ltd",
    "Imports LLC",
];
const TAGS: &[&str] = &[
    "",
    "",
    "",
    "wholesale",
    "retail",
    "reseller",
    "大客户",
    "投诉过",
    "vip-line",
];
const LANGS: &[Option<&str>] = &[
    None,
    None,
    Some("zh-CN"),
    Some("zh-CN"),
    Some("zh-TW"),
    Some("en"),
];
const MOBILE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
    "158", "159", "166", "177", "180", "186", "187", "188", "189", "198", "199",
];
const QUEUES: &[&str] = &["sales", "support", "billing", "vip", "complaints"];
const SUBJECTS: &[&str] = &[
    "订单查询",
    "退货申请",
    "发票问题",
    "物流进度",
    "账户密码重置",
    "产品咨询",
    "投诉：送货延误",
    "Invoice copy request",
    "Where is my order?",
    "Change of address",
    "Refund status",
    "Contract renewal",
    "合同续签",
    "报价单",
    "維修進度查詢",
];
const CASE_SUBJECTS: &[&str] = &[
    "退款未到账",
    "设备故障报修",
    "发票抬头错误",
    "Damaged goods on delivery",
    "Billing dispute",
    "合同条款变更",
    "服務投訴",
];

/// A bijection of `0..m` (for `m` a power of ten): `a` is odd and not a multiple of 5.
fn scramble(i: i64, a: i64, b: i64, m: i64) -> i64 {
    (i.wrapping_mul(a).wrapping_add(b)).rem_euclid(m)
}

fn pick<'a, T: ?Sized>(rng: &mut StdRng, list: &'a [&'a T]) -> &'a T {
    list[rng.random_range(0..list.len())]
}

struct GenCustomer {
    name: String,
    english: bool,
    company: bool,
}

fn gen_customer(rng: &mut StdRng) -> GenCustomer {
    let roll: f64 = rng.random();
    if roll < 0.04 {
        let name = format!(
            "{}{}{}有限公司",
            pick(rng, CITIES),
            pick(rng, GIVEN),
            pick(rng, TRADES)
        );
        GenCustomer {
            name,
            english: false,
            company: true,
        }
    } else if roll < 0.06 {
        let name = format!("{} {}", pick(rng, LAST), pick(rng, EN_COMPANY));
        GenCustomer {
            name,
            english: true,
            company: true,
        }
    } else if roll < 0.30 {
        let name = format!("{} {}", pick(rng, FIRST), pick(rng, LAST));
        GenCustomer {
            name,
            english: true,
            company: false,
        }
    } else {
        let mut name = pick(rng, SURNAMES).to_string();
        name.push_str(pick(rng, GIVEN));
        if rng.random_bool(0.3) {
            name.push_str(pick(rng, GIVEN));
        }
        GenCustomer {
            name,
            english: false,
            company: false,
        }
    }
}

/// The mobile number of customer `id` (unique: the suffix is a bijection of the id).
fn mobile_of(id: i64) -> String {
    let p = MOBILE_PREFIXES[(id as usize) % MOBILE_PREFIXES.len()];
    format!("+86{p}{:08}", scramble(id, 37_571, 12_345, 100_000_000))
}

/// "+8613800138000" → "138 0013 8000" (how an agent types it).
fn local_format(e164: &str) -> String {
    let n = e164.trim_start_matches("+86");
    format!("{} {} {}", &n[..3], &n[3..7], &n[7..])
}

fn date_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Bulk writer: multi-row INSERTs, one prepared statement per shape, a commit every batch.
// ---------------------------------------------------------------------------------------------

fn values_sql(table_cols: &str, table: &str, rows: usize, cols: usize) -> Arc<str> {
    let mut s = format!("INSERT INTO {table} ({table_cols}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            // `?`, not `$n`: sqlx-sqlite resolves every `$n` with
            // sqlite3_bind_parameter_name, a linear scan, so `$n` binding is quadratic in the
            // number of parameters of a statement; anonymous `?` parameters are bound in order.
            s.push('?');
        }
        s.push(')');
    }
    Arc::from(s)
}

struct Bulk {
    table: &'static str,
    cols_sql: &'static str,
    cols: usize,
    rows_per_stmt: usize,
    full_sql: Arc<str>,
}

impl Bulk {
    fn new(table: &'static str, cols_sql: &'static str, rows_per_stmt: usize) -> Bulk {
        let cols = cols_sql.split(',').count();
        Bulk {
            table,
            cols_sql,
            cols,
            rows_per_stmt,
            full_sql: values_sql(cols_sql, table, rows_per_stmt, cols),
        }
    }

    fn sql_for(&self, rows: usize) -> Arc<str> {
        if rows == self.rows_per_stmt {
            self.full_sql.clone()
        } else {
            values_sql(self.cols_sql, self.table, rows, self.cols)
        }
    }
}

/// One value of a generated row.
enum V {
    I(i64),
    OI(Option<i64>),
    S(String),
    OS(Option<String>),
    St(&'static str),
}

fn bind_all<'q>(mut q: AnyQuery<'q>, vals: Vec<V>) -> AnyQuery<'q> {
    for v in vals {
        q = match v {
            V::I(i) => q.bind(i),
            V::OI(i) => q.bind(i),
            V::S(s) => q.bind(s),
            V::OS(s) => q.bind(s),
            V::St(s) => q.bind(s),
        };
    }
    q
}

async fn flush(conn: &mut PoolConnection<Any>, bulk: &Bulk, pending: &mut Vec<V>) -> BoxResult<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let rows = pending.len() / bulk.cols;
    let sql = bulk.sql_for(rows);
    let q = bind_all(sqlx::query(AssertSqlSafe(sql)), std::mem::take(pending));
    q.execute(&mut **conn).await?;
    Ok(())
}

/// Pushes a row; runs the statement when it is full.
async fn push_row(
    conn: &mut PoolConnection<Any>,
    bulk: &Bulk,
    pending: &mut Vec<V>,
    row: Vec<V>,
) -> BoxResult<()> {
    debug_assert_eq!(row.len(), bulk.cols);
    pending.extend(row);
    if pending.len() >= bulk.cols * bulk.rows_per_stmt {
        flush(conn, bulk, pending).await?;
    }
    Ok(())
}

async fn exec(conn: &mut PoolConnection<Any>, sql: &'static str) -> BoxResult<()> {
    conn.execute(sql).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Database generation
// ---------------------------------------------------------------------------------------------

fn url_of(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

fn file_sizes(path: &Path) -> (u64, u64) {
    let main = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut wal_path = path.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal = std::fs::metadata(PathBuf::from(wal_path))
        .map(|m| m.len())
        .unwrap_or(0);
    (main, wal)
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

async fn count(store: &Store, sql: &'static str) -> BoxResult<i64> {
    Ok(sqlx::query(sql).fetch_one(store.pool()).await?.try_get(0)?)
}

/// Opens the database, reusing it when its counts match; otherwise builds it.
async fn ensure_db(s: &Settings) -> BoxResult<()> {
    if s.db.exists() {
        let store = Store::connect(&url_of(&s.db)).await?;
        // Bring an older benchmark database up to the current schema, as the server does.
        store.migrate().await?;
        let customers = count(&store, "SELECT COUNT(*) FROM customers").await;
        let contacts = count(&store, "SELECT COUNT(*) FROM contacts").await;
        store.close().await;
        match (customers, contacts) {
            (Ok(c), Ok(k)) if c == s.customers && k == s.contacts => {
                let (main, wal) = file_sizes(&s.db);
                println!(
                    "reusing existing database {} ({c} customers, {k} contacts, {:.1} MiB + WAL {:.1} MiB)",
                    s.db.display(),
                    main as f64 / 1048576.0,
                    wal as f64 / 1048576.0
                );
                return Ok(());
            }
            (c, k) => {
                println!(
                    "existing database {} has {:?} customers / {:?} contacts, want {} / {}: rebuilding",
                    s.db.display(),
                    c.ok(),
                    k.ok(),
                    s.customers,
                    s.contacts
                );
                remove_db(&s.db);
            }
        }
    }
    generate(s).await
}

async fn generate(s: &Settings) -> BoxResult<()> {
    let started = Instant::now();
    println!(
        "generating {} customers and {} contacts into {} ...",
        s.customers,
        s.contacts,
        s.db.display()
    );
    let store = Store::connect(&url_of(&s.db)).await?;
    store.migrate().await?;
    let mut conn = store.pool().acquire().await?;
    // Bulk-load settings for this one connection only (the measured pool uses the defaults).
    exec(&mut conn, "PRAGMA synchronous = OFF").await?;
    exec(&mut conn, "PRAGMA cache_size = -1048576").await?; // 1 GiB page cache
    exec(&mut conn, "PRAGMA temp_store = MEMORY").await?;
    exec(&mut conn, "PRAGMA foreign_keys = OFF").await?;

    let mut rng = StdRng::seed_from_u64(s.seed);
    let n = s.customers;
    let now = TODAY_MS;
    let two_years = 730 * DAY_MS;

    // --- customers, identities, archive records, cases --------------------------------------
    let customers = Bulk::new(
        "customers",
        "id, external_ref, kind, name, name_search, tier, tags, preferred_channel, language, \
         do_not_call, do_not_email, notes, created_at, updated_at",
        500,
    );
    let identities = Bulk::new("customer_identities", "id, customer_id, kind, value", 2000);
    let records = Bulk::new(
        "archive_records",
        "customer_id, category, reference, description, amount_minor, currency, status, \
         occurred_on, expires_on, created_at, updated_at",
        500,
    );
    let cases = Bulk::new(
        "cases",
        "customer_id, subject, status, created_at, updated_at",
        1000,
    );
    let (mut pc, mut pi, mut pr, mut pk) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut n_ident, mut n_rec, mut n_case) = (0u64, 0u64, 0u64);
    let batch = 50_000;
    let phase = Instant::now();
    let mut id = 1;
    while id <= n {
        exec(&mut conn, "BEGIN").await?;
        let end = (id + batch - 1).min(n);
        while id <= end {
            let c = gen_customer(&mut rng);
            let created = now - rng.random_range(0..5 * 365 * DAY_MS);
            let tier = match rng.random_range(0..100) {
                0..5 => "vip",
                5..25 => "important",
                _ => "ordinary",
            };
            let tag = pick(&mut rng, TAGS);
            let lang =
                LANGS[rng.random_range(0..LANGS.len())].map(|l| if c.english { "en" } else { l });
            let channel =
                [None, None, Some("voice"), Some("email"), Some("chat")][rng.random_range(0..5)];
            let notes = if rng.random_bool(0.2) {
                if c.english {
                    "Prefers calls after 18:00. Ask for the account manager.".to_string()
                } else {
                    "客户要求工作日下午联系；上次投诉已处理。".to_string()
                }
            } else {
                String::new()
            };
            push_row(
                &mut conn,
                &customers,
                &mut pc,
                vec![
                    V::I(id),
                    V::S(format!("C{id:08}")),
                    V::St(if c.company { "company" } else { "person" }),
                    V::S(search_key(&c.name)),
                    V::S(c.name),
                    V::St(tier),
                    V::St(tag),
                    V::OS(channel.map(String::from)),
                    V::OS(lang.map(String::from)),
                    V::I(rng.random_bool(0.02) as i64),
                    V::I(rng.random_bool(0.05) as i64),
                    V::S(notes),
                    V::I(created),
                    V::I(created),
                ],
            )
            .await?;
            // Identities: a mobile, for 40% a second number (Beijing landline or Hong Kong), an
            // email for 90%.
            let mut idents: Vec<(&'static str, String)> = vec![("phone", mobile_of(id))];
            if rng.random_bool(0.4) {
                if c.english && rng.random_bool(0.5) {
                    idents.push((
                        "phone",
                        format!("+8529{:07}", scramble(id, 7_919, 77, 10_000_000)),
                    ));
                } else {
                    idents.push((
                        "phone",
                        format!("+86106{:07}", scramble(id, 104_729, 11, 10_000_000)),
                    ));
                }
            }
            if rng.random_bool(0.9) {
                let local = if c.english {
                    c_local_en(&mut rng)
                } else {
                    "kh".to_string()
                };
                idents.push(("email", format!("{local}{id}@example.com.cn")));
            }
            // The id is the identity's position within its customer (SQLite migration 0009).
            for (position, (k, v)) in (1..).zip(idents) {
                n_ident += 1;
                push_row(
                    &mut conn,
                    &identities,
                    &mut pi,
                    vec![V::I(position), V::I(id), V::St(k), V::S(v)],
                )
                .await?;
            }
            // Archive records (~5): orders, payments, transactions, a return for some, a document.
            let mut recs: Vec<Vec<V>> = Vec::new();
            let rec = |cat: &'static str,
                       reference: String,
                       desc: &'static str,
                       amount: Option<i64>,
                       status: &'static str,
                       occurred: i64,
                       expires: Option<String>| {
                vec![
                    V::I(id),
                    V::St(cat),
                    V::S(reference),
                    V::St(desc),
                    V::OI(amount),
                    V::OS(amount.map(|_| "CNY".to_string())),
                    V::St(status),
                    V::OS(Some(date_of(occurred))),
                    V::OS(expires),
                    V::I(occurred),
                    V::I(occurred),
                ]
            };
            let orders = rng.random_range(1..=2);
            for k in 0..orders {
                let when = now - rng.random_range(0..two_years);
                let amt = rng.random_range(1_000..5_000_000);
                recs.push(rec(
                    "order",
                    format!("SO-{id}-{k}"),
                    "销售订单 / sales order",
                    Some(amt),
                    "delivered",
                    when,
                    None,
                ));
            }
            for k in 0..rng.random_range(1..=2) {
                let when = now - rng.random_range(0..two_years);
                let amt = rng.random_range(-500_000..2_000_000);
                let status = if rng.random_bool(0.03) {
                    "overdue"
                } else {
                    "paid"
                };
                recs.push(rec(
                    "payment",
                    format!("AR-{id}-{k}"),
                    "应收账款",
                    Some(amt),
                    status,
                    when,
                    None,
                ));
            }
            if rng.random_bool(0.5) {
                let when = now - rng.random_range(0..two_years);
                recs.push(rec(
                    "transaction",
                    format!("TX-{id}"),
                    "bank transfer 银行转账",
                    Some(rng.random_range(100..1_000_000)),
                    "settled",
                    when,
                    None,
                ));
            }
            if rng.random_bool(0.25) {
                let when = now - rng.random_range(0..two_years);
                recs.push(rec(
                    "return",
                    format!("RMA-{id}"),
                    "退货 / return",
                    Some(-rng.random_range(100..100_000)),
                    "refunded",
                    when,
                    None,
                ));
            }
            {
                let when = now - rng.random_range(0..3 * 365 * DAY_MS);
                let expires = match rng.random_range(0..1000) {
                    0..5 => "9999-12-31".to_string(), // suspicious
                    5..80 => date_of(now - rng.random_range(1..400) * DAY_MS), // expired
                    80..130 => date_of(now + rng.random_range(0..30) * DAY_MS), // expiring
                    _ => date_of(now + rng.random_range(31..5 * 365) * DAY_MS),
                };
                recs.push(rec(
                    "document",
                    format!("LIC-{id}"),
                    "营业执照 / business licence",
                    None,
                    "valid",
                    when,
                    Some(expires),
                ));
            }
            for r in recs {
                n_rec += 1;
                push_row(&mut conn, &records, &mut pr, r).await?;
            }
            // Cases: 5% of customers have 1-3.
            if rng.random_bool(0.05) {
                for _ in 0..rng.random_range(1..=3) {
                    let when = now - rng.random_range(0..180 * DAY_MS);
                    let status = ["open", "pending", "closed", "closed"][rng.random_range(0..4)];
                    n_case += 1;
                    push_row(
                        &mut conn,
                        &cases,
                        &mut pk,
                        vec![
                            V::I(id),
                            V::St(pick(&mut rng, CASE_SUBJECTS)),
                            V::St(status),
                            V::I(when),
                            V::I(when),
                        ],
                    )
                    .await?;
                }
            }
            id += 1;
        }
        flush(&mut conn, &customers, &mut pc).await?;
        flush(&mut conn, &identities, &mut pi).await?;
        flush(&mut conn, &records, &mut pr).await?;
        flush(&mut conn, &cases, &mut pk).await?;
        exec(&mut conn, "COMMIT").await?;
        if (id - 1) % 200_000 == 0 || id > n {
            eprintln!(
                "  customers: {}/{} ({:.0} s)",
                id - 1,
                n,
                phase.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "  {} customers, {} identities, {} archive records, {} cases in {:.1} s",
        n,
        n_ident,
        n_rec,
        n_case,
        phase.elapsed().as_secs_f64()
    );

    // --- contacts: time-ordered, skewed over customers -----------------------------------------
    // whales (10 customers): 0.2% of contacts; heavy (0.1% of customers): 5%; medium (2% of
    // customers): 15%; the rest uniformly over everyone.
    let heavy: Vec<i64> = if n >= 1000 {
        (0..n / 1000)
            .map(|k| k * 1000 + 500)
            .filter(|&i| i <= n)
            .collect()
    } else {
        vec![(n / 2).max(1)]
    };
    let whales: Vec<i64> = heavy.iter().copied().take(10).collect();
    let medium: Vec<i64> = (0..(n / 50).max(1))
        .map(|k| k * 50 + 7)
        .filter(|&i| i <= n)
        .collect();
    let contacts = Bulk::new(
        "contacts",
        "channel, direction, customer_id, queue, state, priority, subject, created_at, \
         connected_at, ended_at, updated_at",
        1000,
    );
    let mut pcon = Vec::new();
    let m = s.contacts;
    let phase = Instant::now();
    let t0 = now - two_years;
    let step = two_years as f64 / m.max(1) as f64;
    let mut i: i64 = 0;
    let batch = 200_000;
    while i < m {
        exec(&mut conn, "BEGIN").await?;
        let end = (i + batch).min(m);
        while i < end {
            let roll: f64 = rng.random();
            let customer = if roll < 0.002 && !whales.is_empty() {
                whales[rng.random_range(0..whales.len())]
            } else if roll < 0.052 {
                heavy[rng.random_range(0..heavy.len())]
            } else if roll < 0.202 {
                medium[rng.random_range(0..medium.len())]
            } else {
                rng.random_range(1..=n)
            };
            let created = t0 + (i as f64 * step) as i64 + rng.random_range(0..1000);
            let (channel, direction) = match rng.random_range(0..100) {
                0..55 => ("voice", "inbound"),
                55..75 => ("email", "inbound"),
                75..90 => ("chat", "inbound"),
                90..92 => ("fax", "inbound"),
                92..95 => ("callback", "outbound"),
                _ => ("outbound", "outbound"),
            };
            // The newest few are still live; the rest are finished.
            let live = i >= m - (m / 10_000).max(1);
            let state = if live {
                ["queued", "offered", "connected", "wrap_up"][rng.random_range(0..4)]
            } else {
                match rng.random_range(0..100) {
                    0..76 => "closed",
                    76..96 => "abandoned",
                    _ => "failed",
                }
            };
            let connected = matches!(state, "closed" | "connected" | "wrap_up")
                .then(|| created + rng.random_range(2_000..120_000));
            let ended = matches!(state, "closed" | "abandoned" | "failed")
                .then(|| created + rng.random_range(30_000..900_000));
            let subject = if channel == "voice" && rng.random_bool(0.6) {
                None
            } else {
                Some(pick(&mut rng, SUBJECTS))
            };
            let priority = if rng.random_bool(0.05) { 10 } else { 0 };
            push_row(
                &mut conn,
                &contacts,
                &mut pcon,
                vec![
                    V::St(channel),
                    V::St(direction),
                    V::I(customer),
                    V::St(pick(&mut rng, QUEUES)),
                    V::St(state),
                    V::I(priority),
                    V::OS(subject.map(String::from)),
                    V::I(created),
                    V::OI(connected),
                    V::OI(ended),
                    V::I(ended.unwrap_or(created)),
                ],
            )
            .await?;
            i += 1;
        }
        flush(&mut conn, &contacts, &mut pcon).await?;
        exec(&mut conn, "COMMIT").await?;
        if i % 1_000_000 == 0 || i == m {
            eprintln!(
                "  contacts: {}/{} ({:.0} s)",
                i,
                m,
                phase.elapsed().as_secs_f64()
            );
        }
    }
    println!("  {} contacts in {:.1} s", m, phase.elapsed().as_secs_f64());
    exec(&mut conn, "PRAGMA wal_checkpoint(TRUNCATE)").await?;
    drop(conn);
    store.close().await;
    let (main, wal) = file_sizes(&s.db);
    println!(
        "generation: {:.1} s, database file {:.1} MiB (WAL {:.1} MiB)",
        started.elapsed().as_secs_f64(),
        main as f64 / 1048576.0,
        wal as f64 / 1048576.0
    );
    Ok(())
}

fn c_local_en(rng: &mut StdRng) -> String {
    format!(
        "{}.{}",
        pick(rng, FIRST).to_lowercase(),
        pick(rng, LAST).to_lowercase()
    )
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

struct Stats {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = ms.len();
    let at = |q: f64| ms[(((n as f64) * q).ceil() as usize).clamp(1, n) - 1];
    Stats {
        n,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: ms[n - 1],
    }
}

/// The 1/5/15-minute load average: this machine is shared, so say how busy it was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The 1-minute load average.
fn loadavg1() -> String {
    loadavg()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// User + system CPU seconds of this process so far (all threads), from /proc/self/stat.
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// Reads the database file once so it is resident in the OS page cache.
fn prewarm(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total)
}

fn print_stats_header() {
    println!(
        "  {:<42} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "", "n", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "q/s"
    );
}

fn print_stats(label: &str, st: &Stats, qps: f64) {
    let qps = if qps > 0.0 {
        format!("{qps:.0}")
    } else {
        "-".into()
    };
    println!(
        "  {:<42} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9}",
        label, st.n, st.p50, st.p90, st.p99, st.p999, st.max, qps
    );
}

async fn one_pop(store: &Store, id: i64, cfg: &ArchiveConfig) -> BoxResult<f64> {
    let t = Instant::now();
    let pop = store.screen_pop(id, today(), cfg).await?;
    let el = t.elapsed();
    std::hint::black_box(&pop);
    Ok(el.as_secs_f64() * 1000.0)
}

async fn run_sequential(
    store: &Store,
    ids: &[i64],
    cfg: &ArchiveConfig,
) -> BoxResult<(Stats, f64)> {
    let mut lat = Vec::with_capacity(ids.len());
    let t = Instant::now();
    for &id in ids {
        lat.push(one_pop(store, id, cfg).await?);
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((stats(lat), ids.len() as f64 / secs))
}

async fn run_concurrent(
    store: &Store,
    clients: usize,
    total: usize,
    max_id: i64,
    seed: u64,
) -> BoxResult<(Stats, f64)> {
    let t = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let store = store.clone();
        let per = total / clients;
        handles.push(tokio::spawn(async move {
            let cfg = ArchiveConfig::default();
            let mut rng = StdRng::seed_from_u64(seed + 1000 + c as u64);
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let id = rng.random_range(1..=max_id);
                lat.push(one_pop(&store, id, &cfg).await?);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let secs = t.elapsed().as_secs_f64();
    let n = all.len();
    Ok((stats(all), n as f64 / secs))
}

async fn explain(store: &Store, label: &str, sql: &str, binds: &[i64]) -> BoxResult<()> {
    let mut q = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
    for b in binds {
        q = q.bind(*b);
    }
    let rows = q.fetch_all(store.pool()).await?;
    let details: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>("detail").unwrap_or_default())
        .collect();
    println!("  {label:<22} {}", details.join(" | "));
    Ok(())
}

async fn explain_str(store: &Store, label: &str, sql: &str, binds: &[&str]) -> BoxResult<()> {
    let mut q = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
    for b in binds {
        q = q.bind(b.to_string());
    }
    let rows = q.fetch_all(store.pool()).await?;
    let details: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>("detail").unwrap_or_default())
        .collect();
    println!("  {label:<22} {}", details.join(" | "));
    Ok(())
}

#[tokio::main]
async fn main() -> BoxResult<()> {
    let s = Settings {
        db: PathBuf::from(
            std::env::var("BENCH_DB").unwrap_or_else(|_| "target/bench-data/screenpop.db".into()),
        ),
        customers: env_u64("BENCH_CUSTOMERS", 1_000_000) as i64,
        contacts: env_u64("BENCH_CONTACTS", 10_000_000) as i64,
        queries: env_u64("BENCH_QUERIES", 20_000) as usize,
        searches: env_u64("BENCH_SEARCHES", 200) as usize,
        seed: env_u64("BENCH_SEED", 42),
    };
    // `cargo bench` passes `--bench`; nothing to parse.
    println!("== screen-pop benchmark (SQLite) ==");
    println!(
        "target: p99 <= 5 ms with 1,000,000 customers and 10,000,000 contacts; this run: {} customers, {} contacts",
        s.customers, s.contacts
    );
    if s.customers < 1 {
        return Err("BENCH_CUSTOMERS must be at least 1".into());
    }
    ensure_db(&s).await?;

    // The pool exactly as the server opens it (4 connections, WAL, default page cache).
    let store = Store::connect(&url_of(&s.db)).await?;
    let cfg = ArchiveConfig::default();
    let max_id: i64 = sqlx::query("SELECT MAX(id) FROM customers")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;

    println!("\nquery plans (SQLite, no ANALYZE statistics, as in production):");
    let probe = [max_id / 2];
    explain(
        &store,
        "customer",
        "SELECT * FROM customers WHERE id IN ($1)",
        &probe,
    )
    .await?;
    explain(&store, "identities", "SELECT customer_id, kind, value FROM customer_identities WHERE customer_id IN ($1) ORDER BY id", &probe).await?;
    explain(&store, "archive records", "SELECT * FROM archive_records WHERE customer_id = $1 ORDER BY occurred_on DESC, id DESC LIMIT 500", &probe).await?;
    explain(
        &store,
        "recent contacts",
        "SELECT * FROM contacts WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20",
        &probe,
    )
    .await?;
    explain(&store, "open cases", "SELECT * FROM cases WHERE customer_id = $1 AND status <> 'closed' ORDER BY created_at DESC LIMIT 50", &probe).await?;
    explain_str(
        &store,
        "search: exact phone",
        "SELECT customer_id FROM customer_identities WHERE kind IN ('phone', 'fax') AND value = $1",
        &["+8613800138000"],
    )
    .await?;
    explain_str(&store, "search: partial phone", "SELECT customer_id FROM customer_identities WHERE kind IN ('phone', 'fax') AND value LIKE $1 ESCAPE '\\' LIMIT 20", &["%13800138000%"]).await?;
    explain_str(
        &store,
        "search: name",
        "SELECT id FROM customers WHERE name_search LIKE $1 ESCAPE '\\' ORDER BY name LIMIT 20",
        &["%小明%"],
    )
    .await?;

    let mut rng = StdRng::seed_from_u64(s.seed);
    let cold: Vec<i64> = (0..1000.min(s.queries.max(1)))
        .map(|_| rng.random_range(1..=max_id))
        .collect();
    let warm: Vec<i64> = (0..2000).map(|_| rng.random_range(1..=max_id)).collect();
    let ids: Vec<i64> = (0..s.queries)
        .map(|_| rng.random_range(1..=max_id))
        .collect();

    println!(
        "\nload average before measuring: {} ({} CPUs)",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("\nscreen_pop(customer) = customer + identities, archive records, last 20 contacts, open cases, alerts");
    print_stats_header();
    let (st, qps) = run_sequential(&store, &cold, &cfg).await?;
    print_stats("first 1000, fresh pool, OS cache as found", &st, qps);
    // Then the file is made resident in the OS page cache (a server with more RAM than the
    // database ends up there); SQLite's own cache stays at its default (2 MB per connection).
    let t = Instant::now();
    let bytes = prewarm(&s.db)?;
    eprintln!(
        "  (read {:.0} MiB of database file into the OS page cache in {:.1} s)",
        bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    run_sequential(&store, &warm, &cfg).await?; // warm-up
                                                // Sequential, in 5 rounds: the machine is shared, so each round's p99 and load are shown.
    let rounds = 5;
    let per_round = (ids.len() / rounds).max(1);
    let mut all = Vec::with_capacity(ids.len());
    let cpu0 = process_cpu_secs();
    let t = Instant::now();
    for (r, chunk) in ids.chunks(per_round).enumerate() {
        let t = Instant::now();
        let mut lat = Vec::with_capacity(chunk.len());
        for &id in chunk {
            lat.push(one_pop(&store, id, &cfg).await?);
        }
        let qps = chunk.len() as f64 / t.elapsed().as_secs_f64();
        all.extend_from_slice(&lat);
        print_stats(
            &format!("1 client, round {} (load {})", r + 1, loadavg1()),
            &stats(lat),
            qps,
        );
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = process_cpu_secs() - cpu0;
    let st = stats(all);
    print_stats(
        "1 client, random customers, all",
        &st,
        ids.len() as f64 / secs,
    );
    println!(
        "  CPU time of this process per screen-pop (all threads): {:.3} ms ({:.1} s CPU / {:.1} s wall)",
        cpu * 1000.0 / ids.len() as f64,
        cpu,
        secs
    );
    let seq_p99 = st.p99;
    let mut conc = Vec::new();
    for clients in [2usize, 4] {
        let cpu0 = process_cpu_secs();
        let (st, qps) =
            run_concurrent(&store, clients, s.queries, max_id, s.seed + clients as u64).await?;
        let cpu = process_cpu_secs() - cpu0;
        print_stats(
            &format!("{clients} clients, random customers (load {})", loadavg1()),
            &st,
            qps,
        );
        println!(
            "  CPU time per screen-pop with {clients} clients: {:.3} ms",
            cpu * 1000.0 / st.n as f64
        );
        conc.push((clients, st.p99));
    }

    // Worst case: the customers with the most contacts.
    let t = Instant::now();
    let top: Vec<(i64, i64)> = sqlx::query(
        "SELECT customer_id, COUNT(*) AS n FROM contacts WHERE customer_id IS NOT NULL \
         GROUP BY customer_id ORDER BY n DESC LIMIT 20",
    )
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let (fewest_top, most) = (
        top.last().map(|t| t.1).unwrap_or(0),
        top.first().map(|t| t.1).unwrap_or(0),
    );
    let mut worst_ids = Vec::new();
    for _ in 0..(s.queries / 10).max(200) / top.len().max(1) {
        worst_ids.extend(top.iter().map(|t| t.0));
    }
    let (st, qps) = run_sequential(&store, &worst_ids, &cfg).await?;
    print_stats(
        &format!("1 client, top-20 ({fewest_top}..{most} contacts)"),
        &st,
        qps,
    );
    eprintln!(
        "  (finding the top-20 customers took {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    // Where the time goes, per part of the screen-pop (sequential, random customers).
    println!(
        "\nbreakdown per part (1 client, {} random customers):",
        (s.queries / 4).max(100)
    );
    print_stats_header();
    let parts = (s.queries / 4).max(100);
    let mut lat: [Vec<f64>; 4] = Default::default();
    for _ in 0..parts {
        let id = rng.random_range(1..=max_id);
        let t = Instant::now();
        std::hint::black_box(store.get_customer(id).await?);
        lat[0].push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        std::hint::black_box(store.records(id).await?);
        lat[1].push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        std::hint::black_box(store.recent_contacts(id, 20).await?);
        lat[2].push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        std::hint::black_box(store.open_cases(id).await?);
        lat[3].push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for (label, l) in [
        "get_customer (2 queries)",
        "records",
        "recent_contacts(20)",
        "open_cases",
    ]
    .iter()
    .zip(lat)
    {
        print_stats(label, &stats(l), 0.0);
    }

    // search_customers (informational).
    println!("\nsearch_customers (informational, limit 20, region CN):");
    print_stats_header();
    let mut phone_lat = Vec::new();
    let mut phone_hits = 0;
    let mut name_zh = Vec::new();
    let mut name_en = Vec::new();
    let n_search = s.searches.max(1);
    for k in 0..n_search {
        let id = rng.random_range(1..=max_id);
        let number = local_format(&mobile_of(id));
        let q = CustomerSearch {
            q: number,
            limit: 20,
            default_region: "CN".into(),
        };
        let t = Instant::now();
        let found = store.search_customers(&q).await?;
        phone_lat.push(t.elapsed().as_secs_f64() * 1000.0);
        if found.first().map(|c| c.id) == Some(id) {
            phone_hits += 1;
        }
        let (zh, en) = (GIVEN[k % GIVEN.len()], LAST[k % LAST.len()].to_lowercase());
        for (term, out) in [(zh.to_string(), &mut name_zh), (en, &mut name_en)] {
            let q = CustomerSearch {
                q: term,
                limit: 20,
                default_region: "CN".into(),
            };
            let t = Instant::now();
            std::hint::black_box(store.search_customers(&q).await?);
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let sp = stats(phone_lat);
    print_stats("phone \"138 0013 8000\" style", &sp, 0.0);
    print_stats("name substring, Chinese (\"小明\")", &stats(name_zh), 0.0);
    print_stats("name substring, English (\"smith\")", &stats(name_en), 0.0);
    println!("  phone search found the owner first in {phone_hits}/{n_search} searches");

    println!("\nload average after measuring: {}", loadavg());
    println!(
        "\nresult: screen-pop p99 {:.3} ms (1 client), {} vs target <= 5 ms: {}",
        seq_p99,
        conc.iter()
            .map(|(c, p)| format!("{c} clients {p:.3} ms"))
            .collect::<Vec<_>>()
            .join(", "),
        if seq_p99 <= 5.0 { "MET" } else { "MISSED" }
    );
    store.close().await;
    Ok(())
}
