//! Email ingest through the hub (issue 5 target: ≥ 1,000 messages/s for 5 KB on one core):
//! parse + customer match + threading + store + ACD routing (+ the auto-acknowledgement of new
//! conversations), for 5 KB and 200 KB messages, on SQLite and PostgreSQL.
//!
//! ```text
//! cargo bench --bench email_ingest
//! BENCH_DATABASE_URL=$(scripts/pg-test-server start /tmp/bench-pg 25433) BENCH_PG_DATA=/tmp/bench-pg \
//!   cargo bench --bench email_ingest
//! ```
//!
//! A real hub is started in-process (`server::start`: store, hub loop, routing rules, the SMTP
//! listener on 127.0.0.1:0; no voice) and mail goes in through `EmailService::deliver` — the
//! function the SMTP listener calls after DATA — from `BENCH_CONCURRENCY` tasks (default 4, like
//! an MTA's parallel connections), and then again over real SMTP to the hub's listener (the
//! client runs in this process, so its CPU is counted too). The whole process is pinned to one
//! core (`BENCH_CORE`, default 0) before the runtime starts; PostgreSQL runs as its own process
//! (its CPU is reported separately with `BENCH_PG_DATA=<its data dir>`).
//!
//! Traffic: `BENCH_SENDERS` (500) customers first write once (untimed; it creates them and their
//! conversations), then each timed message is one of: a reply with In-Reply-To/References
//! (50 %), a "Re:" of a recent subject with no headers (10 %, joins by subject window), a new
//! matter from a known customer (20 %), a first mail from an unknown sender (20 %, a new
//! customer). Subjects alternate GB2312 and UTF-8 encoded words; bodies are text + HTML in
//! Chinese; 200 KB messages carry a PDF attachment and an inline image. Counts:
//! `BENCH_5K` (5,000), `BENCH_200K` (300), `BENCH_SMTP_5K` (3,000).
//!
//! Stages: parse alone (the same `channel_email::parse` with the hub's options, one thread), the
//! whole path with acknowledgements off, and with them on (the default). CPU is this process's
//! user + system time (`/proc/self/stat`).

mod support;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::env_usize;

use channel_email::parse::{parse, ParseOptions};
use channel_email::{Envelope, InboundMail, Recipient, Source};
use contact_hub::config::Config;
use contact_hub::email::{EmailService, MailboxConfig};
use contact_hub::store::Store;
use sqlx::{AssertSqlSafe, Row};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TARGET: f64 = 1000.0;
const DOMAIN: &str = "bluebird.example";
const MAILBOXES: [&str; 3] = [
    "service@bluebird.example",
    "sales@bluebird.example",
    "billing@bluebird.example",
];

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// utime + stime of a process, in seconds (USER_HZ = 100).
fn cpu_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let f = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    (f(11).unwrap_or(0.0) + f(12).unwrap_or(0.0)) / 100.0
}

fn cpu_seconds() -> f64 {
    cpu_of("self")
}

/// Set while the hub under test runs on PostgreSQL.
static ON_POSTGRES: AtomicBool = AtomicBool::new(false);

/// CPU of the PostgreSQL server (postmaster and its children), when its data dir is known.
fn pg_cpu_seconds() -> Option<f64> {
    if !ON_POSTGRES.load(Ordering::Relaxed) {
        return None;
    }
    let dir = std::env::var("BENCH_PG_DATA").ok()?;
    let pid = std::fs::read_to_string(format!("{dir}/postmaster.pid")).ok()?;
    let pid = pid.lines().next()?.trim().to_string();
    let mut total = cpu_of(&pid);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string));
        if ppid.as_deref() == Some(pid.as_str()) {
            total += cpu_of(&name);
        }
    }
    Some(total)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 38);
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            out.push(if k <= chunk.len() {
                T[(n >> (18 - 6 * k) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// One subject as an encoded word: GB2312 for even `n`, UTF-8 for odd.
fn encoded_subject(text: &str, n: usize) -> String {
    if n % 2 == 0 {
        let (bytes, _, _) = encoding_rs::GB18030.encode(text);
        format!("=?gb2312?B?{}?=", b64(&bytes).replace("\r\n", ""))
    } else {
        format!("=?utf-8?B?{}?=", b64(text.as_bytes()).replace("\r\n", ""))
    }
}

const TOPICS: &[&str] = &[
    "关于订单的问题",
    "发票抬头需要修改",
    "打印机墨盒漏墨，申请退换",
    "询价：A4 复印纸 200 箱",
    "付款后仍显示未付款",
    "物流三天没有更新",
];
const NAMES: &[&str] = &["张伟", "王芳", "李娜", "刘洋", "陈静", "Li Ming", "黄磊"];

fn sender(s: usize) -> String {
    format!("customer{s}@mail{}.example.cn", s % 7)
}

fn topic(s: usize, k: usize) -> String {
    format!(
        "{}（订单 20261201-{s:04}{k:02}）",
        TOPICS[(s + k) % TOPICS.len()]
    )
}

/// What one message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A customer's first mail (untimed seeding).
    Seed,
    /// A reply carrying In-Reply-To / References to the customer's earlier mail.
    Reply,
    /// "Re: <earlier subject>" without thread headers: joins by the subject window.
    SubjectReply,
    /// A new matter from a known customer.
    NewMatter,
    /// A first mail from a sender the hub has never seen.
    Stranger,
}

struct Msg {
    from: String,
    to: &'static str,
    raw: Vec<u8>,
}

/// A customer email of about `target` bytes: text + HTML alternative in Chinese; big ones get
/// an inline image and a PDF attachment.
fn build(n: usize, kind: Kind, s: usize, target: usize, tag: &str) -> Msg {
    let from = match kind {
        Kind::Stranger => format!("new{n}-{tag}@mail.example.cn"),
        _ => sender(s),
    };
    let to = MAILBOXES[s % MAILBOXES.len()];
    let (subject, thread_headers) = match kind {
        Kind::Seed | Kind::Stranger => (topic(s, 0), String::new()),
        Kind::NewMatter => (topic(s, 1 + n % 50), String::new()),
        Kind::SubjectReply => (format!("回复：{}", topic(s, 0)), String::new()),
        Kind::Reply => (
            format!("Re: {}", topic(s, 0)),
            format!(
                "In-Reply-To: <seed-{s}@mail.example.cn>\r\n\
                 References: <seed-{s}@mail.example.cn>\r\n"
            ),
        ),
    };
    let para = "您好，我在贵公司网站上订购的商品至今还没有收到，物流信息显示已经三天没有更新了。\
                请帮我查询一下，如果无法送达请安排退款，谢谢！\r\n";
    let quote = "> 尊敬的客户，您好！我们已经收到您的来信，客服代表会尽快回复。\r\n";
    let mut text = String::new();
    let mut html =
        String::from("<html><head><style>p{color:#333}</style></head><body><div class=\"mail\">");
    let body_budget = (target * 9 / 10)
        .min(target.saturating_sub(1200))
        .min(40_000);
    while text.len() + html.len() < body_budget {
        text.push_str(para);
        if kind == Kind::Reply {
            text.push_str(quote);
        }
        html.push_str(&format!(
            "<p style=\"font-size:14px\" onclick=\"track()\">{para}</p>\
             <blockquote>{quote}</blockquote>"
        ));
    }
    if target > 50_000 {
        html.push_str("<img src=\"cid:photo1@mail.example.cn\"><img src=\"https://cdn.shop.example/banner.png\">");
    }
    html.push_str("</div></body></html>");
    let name = NAMES[s % NAMES.len()];
    let message_id = match kind {
        Kind::Seed => format!("seed-{s}@mail.example.cn"),
        _ => format!("{tag}-{n}@mail.example.cn"),
    };
    let mut raw = format!(
        "Return-Path: <{from}>\r\n\
         Received: from mx{}.example.cn (mx.example.cn [203.0.113.7]) by mx.{DOMAIN}; Tue, 1 Dec 2026 10:00:00 +0800\r\n\
         From: {} <{from}>\r\nTo: {to}\r\nSubject: {}\r\nMessage-ID: <{message_id}>\r\n{thread_headers}\
         Date: Tue, 1 Dec 2026 10:00:00 +0800\r\nMIME-Version: 1.0\r\nX-Mailer: Foxmail 7.2\r\n\
         Content-Type: multipart/mixed; boundary=\"MIX\"\r\n\r\n\
         --MIX\r\nContent-Type: multipart/related; boundary=\"REL\"\r\n\r\n\
         --REL\r\nContent-Type: multipart/alternative; boundary=\"ALT\"\r\n\r\n\
         --ALT\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {text}\r\n--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--ALT--\r\n",
        n % 5,
        encoded_subject(name, n + 1),
        encoded_subject(&subject, n),
    )
    .into_bytes();
    if target > 50_000 {
        let img: Vec<u8> = (0..12_000).map(|i| (i * 7 + n) as u8).collect();
        raw.extend_from_slice(
            format!(
                "--REL\r\nContent-Type: image/jpeg\r\nContent-ID: <photo1@mail.example.cn>\r\n\
                 Content-Disposition: inline; filename=\"photo.jpg\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64(&img)
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(b"--REL--\r\n");
    let room = target.saturating_sub(raw.len() + 400);
    if room > 0 && target > 50_000 {
        let data: Vec<u8> = (0..room * 3 / 4).map(|i| (i * 31 + n) as u8).collect();
        raw.extend_from_slice(
            format!(
                "--MIX\r\nContent-Type: application/pdf; name=\"=?utf-8?B?5Y+R56Wo?=.pdf\"\r\n\
                 Content-Disposition: attachment; filename=\"=?utf-8?B?5Y+R56Wo?=.pdf\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64(&data)
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(b"--MIX--\r\n");
    Msg { from, to, raw }
}

/// `count` timed messages in the mix described at the top.
fn traffic(count: usize, senders: usize, target: usize, tag: &str) -> Vec<Msg> {
    (0..count)
        .map(|n| {
            let s = (n * 7919) % senders;
            let kind = match n % 10 {
                0..=4 => Kind::Reply,
                5 => Kind::SubjectReply,
                6 | 7 => Kind::NewMatter,
                _ => Kind::Stranger,
            };
            build(n, kind, s, target, tag)
        })
        .collect()
}

fn inbound(m: &Msg) -> InboundMail {
    InboundMail {
        envelope: Envelope {
            mail_from: m.from.clone(),
            recipients: vec![Recipient {
                address: m.to.to_string(),
                key: m.to.to_string(),
            }],
            helo: "mx.example.cn".into(),
            source: Source::Smtp {
                peer: None,
                tls: false,
            },
        },
        raw: m.raw.clone(),
        received_at: chrono::Utc::now(),
    }
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

struct Figures {
    label: String,
    n: usize,
    avg_kb: f64,
    secs: f64,
    cpu: f64,
    pg_cpu: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs
    }
    fn print(&self) {
        let pg = self
            .pg_cpu
            .map(|c| format!(", PostgreSQL server {:.0} µs", c / self.n as f64 * 1e6))
            .unwrap_or_default();
        println!(
            "  {:<34} {:>5} msgs of {:>6.1} KB in {:>6.2} s = {:>6.0} msgs/s; CPU {:>5.0} µs/msg \
             ({:.0} msgs per CPU-second){pg}; latency p50 {:.2} ms, p99 {:.2} ms; failed {}",
            self.label,
            self.n,
            self.avg_kb,
            self.secs,
            self.rate(),
            self.cpu / self.n as f64 * 1e6,
            self.n as f64 / self.cpu.max(1e-9),
            self.p50_ms,
            self.p99_ms,
            self.failed
        );
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// Parse alone, as `EmailService::deliver` does it (same options), on this thread.
fn parse_only(label: &str, msgs: &[Msg]) -> Figures {
    let opts = ParseOptions {
        max_attachment_size: 15 * 1024 * 1024,
        max_total_attachment_size: 25 * 1024 * 1024,
        ..ParseOptions::default()
    };
    let mut per = Vec::with_capacity(msgs.len());
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for m in msgs {
        let t = Instant::now();
        let p = parse(&m.raw, &opts);
        per.push(t.elapsed());
        assert!(
            !p.subject.is_empty() && p.from.is_some(),
            "parse lost the headers"
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    per.sort_unstable();
    Figures {
        label: label.into(),
        n: msgs.len(),
        avg_kb: avg_kb(msgs),
        secs,
        cpu: cpu_seconds() - cpu0,
        pg_cpu: None,
        p50_ms: pct(&per, 0.5),
        p99_ms: pct(&per, 0.99),
        failed: 0,
    }
}

fn avg_kb(msgs: &[Msg]) -> f64 {
    msgs.iter().map(|m| m.raw.len()).sum::<usize>() as f64 / msgs.len().max(1) as f64 / 1024.0
}

/// Every message through `EmailService::deliver`, from `concurrency` tasks.
async fn in_process(
    label: &str,
    email: &Arc<EmailService>,
    msgs: Arc<Vec<Msg>>,
    concurrency: usize,
) -> Figures {
    let next = Arc::new(AtomicUsize::new(0));
    let pg0 = pg_cpu_seconds();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (email, msgs, next) = (email.clone(), msgs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut per = Vec::new();
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = msgs.get(i) else { break };
                let mail = inbound(m);
                let t = Instant::now();
                if email.deliver(mail).await.is_err() {
                    failed += 1;
                }
                per.push(t.elapsed());
            }
            (per, failed)
        }));
    }
    let mut per = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (p, f) = t.await.expect("delivery task");
        per.extend(p);
        failed += f;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    per.sort_unstable();
    Figures {
        label: label.into(),
        n: msgs.len(),
        avg_kb: avg_kb(&msgs),
        secs,
        cpu,
        pg_cpu: pg0.and_then(|a| pg_cpu_seconds().map(|b| b - a)),
        p50_ms: pct(&per, 0.5),
        p99_ms: pct(&per, 0.99),
        failed,
    }
}

/// Reads one SMTP reply (possibly multi-line); returns its code.
async fn reply<R: AsyncBufReadExt + Unpin>(r: &mut R, line: &mut String) -> std::io::Result<u16> {
    loop {
        line.clear();
        if r.read_line(line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
        }
    }
}

/// The message as DATA content: dot-stuffed, ended by CRLF . CRLF.
fn data_of(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Every message over SMTP to the hub's listener, `concurrency` connections, 50 messages each
/// before reconnecting (the server asks for that after 100).
async fn over_smtp(
    label: &str,
    addr: std::net::SocketAddr,
    msgs: Arc<Vec<Msg>>,
    concurrency: usize,
) -> Figures {
    let data: Arc<Vec<Vec<u8>>> = Arc::new(msgs.iter().map(|m| data_of(&m.raw)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let pg0 = pg_cpu_seconds();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (msgs, data, next) = (msgs.clone(), data.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut per = Vec::new();
            let mut failed = 0usize;
            let mut line = String::new();
            'conn: loop {
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    failed += 1;
                    break;
                };
                let _ = stream.set_nodelay(true);
                let (rd, mut wr) = stream.into_split();
                let mut rd = BufReader::new(rd);
                if reply(&mut rd, &mut line).await.ok() != Some(220) {
                    failed += 1;
                    break;
                }
                let _ = wr.write_all(b"EHLO mx.example.cn\r\n").await;
                if reply(&mut rd, &mut line).await.ok() != Some(250) {
                    failed += 1;
                    break;
                }
                for _ in 0..50 {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(m) = msgs.get(i) else {
                        let _ = wr.write_all(b"QUIT\r\n").await;
                        break 'conn;
                    };
                    let t = Instant::now();
                    let cmds = format!("MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n", m.from, m.to);
                    let mut ok = true;
                    for (j, cmd) in cmds.split_inclusive("\r\n").enumerate() {
                        let _ = wr.write_all(cmd.as_bytes()).await;
                        let want = if j == 2 { 354 } else { 250 };
                        ok &= reply(&mut rd, &mut line).await.ok() == Some(want);
                    }
                    if ok {
                        let _ = wr.write_all(&data[i]).await;
                        ok = reply(&mut rd, &mut line).await.ok() == Some(250);
                    }
                    per.push(t.elapsed());
                    if !ok {
                        failed += 1;
                        continue 'conn;
                    }
                }
                let _ = wr.write_all(b"QUIT\r\n").await;
                let _ = reply(&mut rd, &mut line).await;
            }
            (per, failed)
        }));
    }
    let mut per = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (p, f) = t.await.expect("smtp task");
        per.extend(p);
        failed += f;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    per.sort_unstable();
    Figures {
        label: label.into(),
        n: msgs.len(),
        avg_kb: avg_kb(&msgs),
        secs,
        cpu,
        pg_cpu: pg0.and_then(|a| pg_cpu_seconds().map(|b| b - a)),
        p50_ms: pct(&per, 0.5),
        p99_ms: pct(&per, 0.99),
        failed,
    }
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query(AssertSqlSafe(sql.to_string()))
        .fetch_one(store.pool())
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .unwrap_or(-1)
}

struct Plan {
    senders: usize,
    n5k: usize,
    n200k: usize,
    smtp5k: usize,
    concurrency: usize,
}

/// One hub on a fresh database: seed, then the timed runs. `ack` = auto-acknowledgements on.
async fn hub_run(
    backend: &str,
    database_url: &str,
    ack: bool,
    plan: &Plan,
    full: bool,
) -> BoxResult<Vec<Figures>> {
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        database_url: database_url.to_string(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".into();
    config.smtp.listen = "127.0.0.1:0".into();
    config.sip.listen = String::new();
    config.email.domain = DOMAIN.into();
    config.email.acknowledge = ack;
    config.email.addresses = MAILBOXES
        .iter()
        .map(|a| MailboxConfig {
            address: a.to_string(),
            name: "蓝鸟办公 客服".into(),
        })
        .collect();
    ON_POSTGRES.store(backend == "postgres", Ordering::Relaxed);
    let running = contact_hub::server::start(config).await?;
    let email = running.state.email.clone();
    let store = running.state.store.clone();
    let smtp = running.smtp_addr.expect("SMTP listener");
    let tag = format!("{backend}-{}", if ack { "ack" } else { "noack" });

    let seed: Vec<Msg> = (0..plan.senders)
        .map(|s| build(s, Kind::Seed, s, 5 * 1024, &tag))
        .collect();
    let t = Instant::now();
    let seeded = in_process("seed", &email, Arc::new(seed), plan.concurrency).await;
    println!(
        "  ({backend}, acknowledgements {}: seeded {} customers' first mails in {:.1} s, {} failed)",
        if ack { "on" } else { "off" },
        plan.senders,
        t.elapsed().as_secs_f64(),
        seeded.failed
    );

    let mut out = Vec::new();
    let ackl = if ack { "ack on" } else { "ack off" };
    let m5 = Arc::new(traffic(
        plan.n5k,
        plan.senders,
        5 * 1024,
        &format!("{tag}-5k"),
    ));
    out.push(
        in_process(
            &format!("{backend} 5 KB in-process, {ackl}"),
            &email,
            m5,
            plan.concurrency,
        )
        .await,
    );
    out.last().unwrap().print();
    if full {
        let m200 = Arc::new(traffic(
            plan.n200k,
            plan.senders,
            200 * 1024,
            &format!("{tag}-200k"),
        ));
        out.push(
            in_process(
                &format!("{backend} 200 KB in-process, {ackl}"),
                &email,
                m200,
                plan.concurrency,
            )
            .await,
        );
        out.last().unwrap().print();
        let s5 = Arc::new(traffic(
            plan.smtp5k,
            plan.senders,
            5 * 1024,
            &format!("{tag}-smtp5k"),
        ));
        out.push(
            over_smtp(
                &format!("{backend} 5 KB over SMTP, {ackl}"),
                smtp,
                s5,
                plan.concurrency,
            )
            .await,
        );
        out.last().unwrap().print();
        let s200 = Arc::new(traffic(
            plan.n200k / 2,
            plan.senders,
            200 * 1024,
            &format!("{tag}-smtp200k"),
        ));
        out.push(
            over_smtp(
                &format!("{backend} 200 KB over SMTP, {ackl}"),
                smtp,
                s200,
                plan.concurrency,
            )
            .await,
        );
        out.last().unwrap().print();
    }

    // What the hub holds afterwards: every message stored once, every new conversation a
    // routed contact.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let inbound = count(
        &store,
        "SELECT COUNT(*) FROM email_messages WHERE direction = 'inbound'",
    )
    .await;
    let convs = count(
        &store,
        "SELECT COUNT(*) FROM conversations WHERE channel = 'email'",
    )
    .await;
    let contacts = count(
        &store,
        "SELECT COUNT(*) FROM contacts WHERE channel = 'email'",
    )
    .await;
    let outbound = count(
        &store,
        "SELECT COUNT(*) FROM email_messages WHERE direction = 'outbound'",
    )
    .await;
    let customers = count(&store, "SELECT COUNT(*) FROM customers").await;
    let sent: usize = plan.senders + out.iter().map(|f| f.n).sum::<usize>();
    let failed: usize = seeded.failed + out.iter().map(|f| f.failed).sum::<usize>();
    println!(
        "  stored: {inbound} inbound of {sent} sent ({failed} failed), {convs} conversations, \
         {contacts} email contacts routed, {customers} customers, {outbound} acknowledgements; \
         hub RSS {:.0} MiB{}",
        rss_mib(),
        if inbound == (sent - failed) as i64 {
            ""
        } else {
            "  <-- MISMATCH"
        }
    );
    running.stop().await;
    Ok(out)
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

async fn backend_runs(
    backend: &str,
    url_for: &dyn Fn(usize) -> String,
    plan: &Plan,
) -> BoxResult<Vec<Figures>> {
    let mut all = hub_run(backend, &url_for(0), true, plan, true).await?;
    all.extend(hub_run(backend, &url_for(1), false, plan, false).await?);
    Ok(all)
}

fn main() -> BoxResult<()> {
    let core = env_usize("BENCH_CORE", 0);
    let pid = std::process::id().to_string();
    let pinned = std::process::Command::new("taskset")
        .args(["-cp", &core.to_string(), &pid])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let plan = Plan {
        senders: env_usize("BENCH_SENDERS", 500).max(1),
        n5k: env_usize("BENCH_5K", 5000),
        n200k: env_usize("BENCH_200K", 300),
        smtp5k: env_usize("BENCH_SMTP_5K", 3000),
        concurrency: env_usize("BENCH_CONCURRENCY", 4).max(1),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("== Email ingest through the hub (issue 5) ==");
    println!(
        "pinned to core {core}: {pinned}; tokio workers: {}; {} concurrent deliveries; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        plan.concurrency,
        loadavg()
    );

    // Parse alone: the floor under everything else.
    println!("\nparse only (channel_email::parse, hub options, one thread):");
    let p5 = parse_only(
        "parse 5 KB",
        &traffic(plan.n5k, plan.senders, 5 * 1024, "p5"),
    );
    p5.print();
    let p200 = parse_only(
        "parse 200 KB",
        &traffic(plan.n200k, plan.senders, 200 * 1024, "p200"),
    );
    p200.print();
    let mut summary = vec![p5, p200];

    rt.block_on(async {
        println!("\nSQLite (fresh file database under a temp dir, pool as the server opens it):");
        let base = tempfile::tempdir()?;
        let root = base.path().to_path_buf();
        let url_for = move |i: usize| {
            format!(
                "sqlite://{}?mode=rwc",
                root.join(format!("hub{i}.db")).display()
            )
        };
        summary.extend(backend_runs("sqlite", &url_for, &plan).await?);

        if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
            if url.starts_with("postgres:") || url.starts_with("postgresql:") {
                let names: Vec<String> = (0..2)
                    .map(|i| format!("bench_email_{}_{i}", std::process::id()))
                    .collect();
                let (admin_url, _) = pg_urls(&url, "x");
                let admin = Store::connect(&admin_url).await?;
                for n in &names {
                    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {n}")))
                        .execute(admin.pool())
                        .await?;
                }
                println!("\nPostgreSQL (throwaway databases {}):", names.join(", "));
                let names2 = names.clone();
                let url2 = url.clone();
                let url_for = move |i: usize| pg_urls(&url2, &names2[i]).1;
                let r = backend_runs("postgres", &url_for, &plan).await;
                for n in &names {
                    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {n}")))
                        .execute(admin.pool())
                        .await;
                }
                admin.close().await;
                summary.extend(r?);
            } else {
                println!("\nBENCH_DATABASE_URL is not a postgres:// URL; PostgreSQL skipped");
            }
        } else {
            println!("\nBENCH_DATABASE_URL not set; PostgreSQL skipped");
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;

    println!("\nload average after: {}", loadavg());
    println!("\nsummary (target >= {TARGET:.0} msgs/s for 5 KB on one core):");
    for f in &summary {
        let verdict = if f.label.contains("5 KB") && !f.label.starts_with("parse") {
            if f.rate() >= TARGET {
                "  MET"
            } else {
                "  MISSED"
            }
        } else {
            ""
        };
        println!(
            "  {:<34} {:>6.0} msgs/s, {:>6.0} msgs per CPU-second{verdict}",
            f.label,
            f.rate(),
            f.n as f64 / f.cpu.max(1e-9)
        );
    }
    Ok(())
}
