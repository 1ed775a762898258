//! CSV customer import benchmark (issue target: ≥ 50,000 rows/s).
//!
//! ```text
//! cargo bench --bench csv_import                                  # 200,000 rows, SQLite
//! BENCH_ROWS=1000000 cargo bench --bench csv_import               # bigger file
//! BENCH_DATABASE_URL=postgres://user@127.0.0.1:5432/db cargo bench --bench csv_import
//! ```
//!
//! Writes a CSV (`external_ref,name,kind,tier,tags,phone,email,region,notes`; Chinese and
//! English names; phones in varied local formats) to a temp directory, imports it into a fresh
//! SQLite database with `contact_hub::import::import_file`, then imports the same file again,
//! which must only update (the customer and identity counts must not change: exit code 1 if they
//! do). With `BENCH_DATABASE_URL=postgres://…` the same runs on PostgreSQL, in a throwaway
//! database `bench_import_<pid>` created beside the one in the URL and dropped afterwards.
//!
//! Then (unless `BENCH_BREAKDOWN=0`) a breakdown of where the time goes: reading/decoding, CSV
//! parsing alone, parsing plus validation/phone normalization on one thread (`import::parse`)
//! and on the parallel parser (`import::parse_parallel`), `normalize_phone` alone, and the SQL
//! alone (`CustomerImporter::import` on pre-parsed batches of `import::BATCH_ROWS`), with the
//! SQLite plans of the import's lookups.

mod support;
use std::path::Path;
use std::time::Instant;
use support::env_u64;

use contact_hub::config::ArchiveConfig;
use contact_hub::identity::normalize_phone;
use contact_hub::import::{self, Encoding, ImportReport};
use contact_hub::store::{ImportRow, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{AssertSqlSafe, Row};

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TARGET_ROWS_PER_SEC: f64 = 50_000.0;

/// The 1/5/15-minute load average: this machine is shared, so say how busy it was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU seconds this process has used (all threads, user + system): on a shared machine the
/// wall time says how long it took, this says how much work it was.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0 // utime, stime in USER_HZ (100 on Linux)
}

// ---------------------------------------------------------------------------------------------
// The CSV
// ---------------------------------------------------------------------------------------------

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "林", "郑", "陳", "張", "黃", "歐陽",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "杰", "明", "小明", "大文",
    "建华", "志强", "美玲", "淑芬", "家豪", "雅婷", "子涵", "浩然", "欣怡", "俊傑",
];
const FIRST: &[&str] = &[
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David",
    "Alice", "Bob", "Emma", "Oliver", "Sophie",
];
const LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "O'Brien", "Taylor", "Lee", "Wong", "Chan",
];
const COMPANIES: &[&str] = &[
    "北京宏达科技有限公司",
    "上海浦东物流有限公司",
    "深圳华强电子有限公司",
    "廣州嘉禾貿易有限公司",
    "Acme Trading Ltd",
    "Pacific Logistics Co., Ltd.",
];
const MOBILE_PREFIXES: &[&str] = &[
    "130", "131", "135", "136", "137", "138", "139", "150", "151", "158", "159", "177", "186",
    "188", "189", "199",
];

/// A bijection of `0..m` (`m` a power of ten; `a` odd, not a multiple of 5).
fn scramble(i: u64, a: u64, b: u64, m: u64) -> u64 {
    (i.wrapping_mul(a).wrapping_add(b)) % m
}

/// A CN mobile written the way people write it.
fn cn_mobile(i: u64, style: u32) -> String {
    let p = MOBILE_PREFIXES[(i as usize) % MOBILE_PREFIXES.len()];
    let s = format!("{:08}", scramble(i, 37_571, 12_345, 100_000_000));
    let (a, b) = (&s[..4], &s[4..]);
    match style % 6 {
        0 => format!("{p} {a} {b}"),
        1 => format!("{p}-{a}-{b}"),
        2 => format!("{p}{a}{b}"),
        3 => format!("+86 {p}-{a}-{b}"),
        4 => format!("+86 {p} {a} {b}"),
        _ => format!("0086{p}{a}{b}"),
    }
}

/// A Beijing landline, e.g. `010-6123 4567` or `(010) 61234567`.
fn cn_landline(i: u64, style: u32) -> String {
    let s = format!("6{:07}", scramble(i, 104_729, 11, 10_000_000));
    match style % 3 {
        0 => format!("010-{} {}", &s[..4], &s[4..]),
        1 => format!("(010) {s}"),
        _ => format!("+86 10 {} {}", &s[..4], &s[4..]),
    }
}

fn write_csv(path: &Path, rows: u64, seed: u64) -> BoxResult<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = csv::Writer::from_path(path)?;
    w.write_record([
        "external_ref",
        "name",
        "kind",
        "tier",
        "tags",
        "phone",
        "email",
        "region",
        "notes",
    ])?;
    for i in 0..rows {
        let roll: f64 = rng.random();
        let (name, kind, english) = if roll < 0.05 {
            let c = COMPANIES[rng.random_range(0..COMPANIES.len())];
            (format!("{c} {}", i % 1000), "company", c.is_ascii())
        } else if roll < 0.30 {
            let n = format!(
                "{} {}",
                FIRST[rng.random_range(0..FIRST.len())],
                LAST[rng.random_range(0..LAST.len())]
            );
            (n, "person", true)
        } else {
            let mut n = SURNAMES[rng.random_range(0..SURNAMES.len())].to_string();
            n.push_str(GIVEN[rng.random_range(0..GIVEN.len())]);
            (n, if rng.random_bool(0.5) { "person" } else { "" }, false)
        };
        let tier = ["", "", "ordinary", "important", "vip", "VIP"][rng.random_range(0..6)];
        let tags =
            ["", "", "wholesale", "retail;大客户", "reseller|vip-line"][rng.random_range(0..5)];
        // Phones: 15% Taiwan (region TW, local 09xx format), else CN mobile + 30% a landline.
        let style = rng.random_range(0..6);
        let (phone, region) = if rng.random_bool(0.15) {
            let s = format!("{:08}", scramble(i, 7_919, 77, 100_000_000));
            (format!("09{} {} {}", &s[..2], &s[2..5], &s[5..]), "TW")
        } else {
            let mut p = cn_mobile(i, style);
            if rng.random_bool(0.3) {
                p.push_str("; ");
                p.push_str(&cn_landline(i, style));
            }
            (p, if rng.random_bool(0.1) { "CN" } else { "" })
        };
        let email = if rng.random_bool(0.8) {
            if english {
                format!(
                    "{}.{}{i}@Example.com",
                    FIRST[(i % 14) as usize],
                    LAST[(i % 13) as usize].replace('\'', "")
                )
            } else {
                format!("kh{i}@example.com.cn")
            }
        } else {
            String::new()
        };
        let notes = match rng.random_range(0..10) {
            0 => "客户要求工作日下午联系，周末勿扰。".to_string(),
            1 => "Prefers email, \"no calls before 10:00\", key account".to_string(),
            2 => format!("合同号 HT-{i}; 账期 30 天"),
            _ => String::new(),
        };
        w.write_record([
            format!("C{i:08}").as_str(),
            &name,
            kind,
            tier,
            tags,
            &phone,
            &email,
            region,
            &notes,
        ])?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

struct RunResult {
    first: ImportReport,
    second: ImportReport,
    ok: bool,
}

async fn counts(store: &Store) -> BoxResult<(i64, i64)> {
    let c: i64 = sqlx::query("SELECT COUNT(*) FROM customers")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;
    let i: i64 = sqlx::query("SELECT COUNT(*) FROM customer_identities")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;
    Ok((c, i))
}

fn print_report(label: &str, r: &ImportReport, cpu: f64) {
    let rows = r.rows();
    println!(
        "  {label:<28} {rows:>9} rows {:>8.2} s {:>10.0} rows/s  (CPU {cpu:.2} s)   created {:>8}  updated {:>8}  rejected {:>5}",
        r.seconds,
        rows as f64 / r.seconds,
        r.created,
        r.updated,
        r.rejected.len()
    );
    for (line, reason) in r.rejected.iter().take(3) {
        println!("      rejected line {line}: {reason}");
    }
}

async fn run_import(store: &Store, csv: &Path, rows: u64) -> BoxResult<RunResult> {
    let cfg = ArchiveConfig::default();
    store.migrate().await?;
    let (c0, _) = counts(store).await?;
    if c0 != 0 {
        return Err(format!("the database is not empty ({c0} customers)").into());
    }
    let cpu = cpu_seconds();
    let first = import::import_file(store, &cfg, csv, Encoding::Auto, |_, _| {}).await?;
    print_report("first import (all new)", &first, cpu_seconds() - cpu);
    let (c1, i1) = counts(store).await?;
    let cpu = cpu_seconds();
    let second = import::import_file(store, &cfg, csv, Encoding::Auto, |_, _| {}).await?;
    print_report("re-import (same file)", &second, cpu_seconds() - cpu);
    let (c2, i2) = counts(store).await?;
    println!("  customers after 1st/2nd import: {c1} / {c2}; identities: {i1} / {i2}");
    let mut ok = true;
    if c1 != c2 || i1 != i2 {
        println!("  FAIL: the re-import changed the customer or identity count (duplicates)");
        ok = false;
    }
    if second.created != 0 || second.updated != first.created {
        println!(
            "  FAIL: the re-import should update {} and create 0, it updated {} and created {}",
            first.created, second.updated, second.created
        );
        ok = false;
    }
    if first.created + first.updated + first.rejected.len() as u64 != rows {
        println!(
            "  FAIL: {} rows in the file, {} accounted for",
            rows,
            first.rows()
        );
        ok = false;
    }
    Ok(RunResult { first, second, ok })
}

/// Where the time goes: each stage alone.
async fn breakdown(csv: &Path, dir: &Path, rows: u64) -> BoxResult<()> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("breakdown.db").display());
    let cfg = ArchiveConfig::default();
    println!("\nbreakdown (each stage alone; import_file overlaps parsing with SQL):");
    let t = Instant::now();
    let bytes = std::fs::read(csv)?;
    let text = import::decode(&bytes, Encoding::Auto)?;
    let read_s = t.elapsed().as_secs_f64();
    drop(bytes);

    let t = Instant::now();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rec = csv::StringRecord::new();
    let mut phones: Vec<(String, String)> = Vec::new();
    while reader.read_record(&mut rec)? {
        let region = rec.get(7).unwrap_or("").trim();
        for p in rec.get(5).unwrap_or("").split([';', '|']) {
            if !p.trim().is_empty() {
                phones.push((
                    p.trim().to_string(),
                    if region.is_empty() {
                        "CN".into()
                    } else {
                        region.into()
                    },
                ));
            }
        }
    }
    let csv_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut parsed: Vec<ImportRow> = Vec::with_capacity(rows as usize);
    let mut bad = 0u64;
    import::parse(&text, &cfg, |r, _| match r {
        Ok(row) => parsed.push(row),
        Err(_) => bad += 1,
    })?;
    let parse_s = t.elapsed().as_secs_f64();

    // The parallel parser as import_file runs it, with 1 and 2 validation threads; it must
    // hand over the same rows in the same order.
    let mut parallel_s = Vec::new();
    for workers in [1, 2] {
        let t = Instant::now();
        let mut n = 0usize;
        let mut in_order = true;
        import::parse_parallel(&text, &cfg, workers, |r, _| {
            if let Ok(row) = r {
                in_order &= parsed.get(n).map(|p| p.line) == Some(row.line);
                n += 1;
            }
        })?;
        parallel_s.push(t.elapsed().as_secs_f64());
        if !in_order || n != parsed.len() {
            return Err(format!("parse_parallel({workers}) gave other rows than parse").into());
        }
    }

    let t = Instant::now();
    let mut ok = 0;
    for (p, region) in &phones {
        if normalize_phone(p, region).is_ok() {
            ok += 1;
        }
    }
    let phone_s = t.elapsed().as_secs_f64();

    // SQL alone, in import_file's batch size, on a fresh database, through the importer
    // import_file uses.
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    let now = contact_hub::domain::now_ms();
    let mut importer = store.customer_importer().await?;
    // The importer takes its batches; copied before the clock starts.
    let batches = || -> Vec<Vec<ImportRow>> {
        parsed
            .chunks(import::BATCH_ROWS)
            .map(<[ImportRow]>::to_vec)
            .collect()
    };
    let mut insert_batches = Vec::new();
    let copies = batches();
    let cpu = cpu_seconds();
    let t = Instant::now();
    for batch in copies {
        let tb = Instant::now();
        importer.import(batch, now).await?;
        insert_batches.push(tb.elapsed().as_secs_f64() * 1000.0);
    }
    let insert_s = t.elapsed().as_secs_f64();
    let insert_cpu = cpu_seconds() - cpu;
    let mut update_batches = Vec::new();
    let copies = batches();
    let cpu = cpu_seconds();
    let t = Instant::now();
    for batch in copies {
        let tb = Instant::now();
        importer.import(batch, now).await?;
        update_batches.push(tb.elapsed().as_secs_f64() * 1000.0);
    }
    let update_s = t.elapsed().as_secs_f64();
    let update_cpu = cpu_seconds() - cpu;
    importer.close().await?;

    // How SQLite plans the import's lookups and deletes on a table of this size.
    println!(
        "  SQLite plans of the import's statements ({} customers in the table):",
        parsed.len()
    );
    let in_list = vec!["?"; 1000].join(", ");
    let probes = [
        (
            "customers by external_ref",
            format!("SELECT id, external_ref FROM customers WHERE external_ref IN ({in_list})"),
        ),
        (
            "identities by value",
            format!(
                "SELECT customer_id, kind, value FROM customer_identities WHERE value IN ({in_list})"
            ),
        ),
        (
            "identities of customers",
            format!(
                "SELECT customer_id, kind, value FROM customer_identities \
                 WHERE customer_id IN ({in_list}) ORDER BY customer_id, id"
            ),
        ),
        (
            "delete identities of a kind",
            format!(
                "DELETE FROM customer_identities WHERE kind || '' = 'phone' AND customer_id IN ({in_list})"
            ),
        ),
    ];
    for (label, sql) in &probes {
        let mut q = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for i in 0..1000 {
            q = q.bind(format!("C{i:08}"));
        }
        let plan: Vec<String> = q
            .fetch_all(store.pool())
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap_or_default())
            .collect();
        println!("    {label:<30} {}", plan.join(" | "));
    }
    store.close().await;
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (k, n) = (5.min(insert_batches.len()), insert_batches.len());
    println!(
        "  ms per {}-row batch, first {k} / last {k} of {n}: new rows {:.1} / {:.1}, updates {:.1} / {:.1}",
        import::BATCH_ROWS,
        avg(&insert_batches[..k]),
        avg(&insert_batches[n - k..]),
        avg(&update_batches[..k]),
        avg(&update_batches[n - k..]),
    );

    let line = |label: &str, s: f64, items: u64, unit: &str| {
        println!(
            "  {label:<56} {s:>7.2} s  {:>10.0} {unit}/s  {:>7.2} µs/row",
            items as f64 / s,
            s * 1e6 / rows as f64
        );
    };
    line("read file + decode (UTF-8 check)", read_s, rows, "rows");
    line(
        "CSV parse alone (csv crate, all records)",
        csv_s,
        rows,
        "rows",
    );
    line(
        &format!("import::parse = CSV + validation + normalization ({bad} bad)"),
        parse_s,
        rows,
        "rows",
    );
    line(
        &format!(
            "  of which normalize_phone alone ({} numbers, {ok} ok)",
            phones.len()
        ),
        phone_s,
        phones.len() as u64,
        "numbers",
    );
    line(
        "import::parse_parallel, 1 validation thread",
        parallel_s[0],
        rows,
        "rows",
    );
    line(
        "import::parse_parallel, 2 validation threads",
        parallel_s[1],
        rows,
        "rows",
    );
    line(
        &format!("SQL: CustomerImporter::import, new rows (CPU {insert_cpu:.2} s)"),
        insert_s,
        rows,
        "rows",
    );
    line(
        &format!("SQL: same rows again, updates (CPU {update_cpu:.2} s)"),
        update_s,
        rows,
        "rows",
    );
    Ok(())
}

/// `postgres://u:p@h:port/db?x` → (`…/postgres?x` admin URL, `…/newdb?x`).
fn pg_urls(url: &str, newdb: &str) -> (String, String) {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let prefix = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    (
        format!("{prefix}/postgres{query}"),
        format!("{prefix}/{newdb}{query}"),
    )
}

#[tokio::main]
async fn main() -> BoxResult<()> {
    let rows = env_u64("BENCH_ROWS", 200_000);
    let seed = env_u64("BENCH_SEED", 42);
    println!("== CSV import benchmark ==");
    println!("target: >= {TARGET_ROWS_PER_SEC:.0} rows/s; this run: {rows} rows");
    let dir = tempfile::tempdir()?;
    let csv_path = dir.path().join("customers.csv");
    let t = Instant::now();
    let size = write_csv(&csv_path, rows, seed)?;
    println!(
        "wrote {} ({:.1} MiB) in {:.1} s; first rows:",
        csv_path.display(),
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    for l in std::fs::read_to_string(&csv_path)?.lines().take(4) {
        println!("    {l}");
    }

    println!("load average before importing: {}", loadavg());
    let mut all_ok = true;
    let mut summary: Vec<(String, f64, f64)> = Vec::new();

    println!("\nSQLite (fresh file database, pool as the server opens it):");
    let db = dir.path().join("import.db");
    let sqlite_url = format!("sqlite://{}?mode=rwc", db.display());
    let store = Store::connect(&sqlite_url).await?;
    let r = run_import(&store, &csv_path, rows).await?;
    store.close().await;
    all_ok &= r.ok;
    summary.push((
        "sqlite".into(),
        r.first.rows() as f64 / r.first.seconds,
        r.second.rows() as f64 / r.second.seconds,
    ));

    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let dbname = format!("bench_import_{}", std::process::id());
            let (admin_url, bench_url) = pg_urls(&url, &dbname);
            println!("\nPostgreSQL (throwaway database {dbname}):");
            let admin = Store::connect(&admin_url).await?;
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {dbname}")))
                .execute(admin.pool())
                .await?;
            let result = async {
                let store = Store::connect(&bench_url).await?;
                let r = run_import(&store, &csv_path, rows).await;
                store.close().await;
                r
            }
            .await;
            sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {dbname}")))
                .execute(admin.pool())
                .await?;
            admin.close().await;
            let r = result?;
            all_ok &= r.ok;
            summary.push((
                "postgres".into(),
                r.first.rows() as f64 / r.first.seconds,
                r.second.rows() as f64 / r.second.seconds,
            ));
        } else {
            println!("\nBENCH_DATABASE_URL is not a postgres:// URL; PostgreSQL skipped");
        }
    }

    if env_u64("BENCH_BREAKDOWN", 1) != 0 {
        breakdown(&csv_path, dir.path(), rows).await?;
    }

    println!("\nload average after: {}", loadavg());
    println!("\nresult (target >= {TARGET_ROWS_PER_SEC:.0} rows/s):");
    for (backend, first, second) in &summary {
        println!(
            "  {backend:<9} first import {first:>9.0} rows/s ({}), re-import {second:>9.0} rows/s ({})",
            if *first >= TARGET_ROWS_PER_SEC { "MET" } else { "MISSED" },
            if *second >= TARGET_ROWS_PER_SEC { "MET" } else { "MISSED" },
        );
    }
    if !all_ok {
        println!("re-import check FAILED");
        std::process::exit(1);
    }
    println!("re-import check passed: no duplicates");
    Ok(())
}
