//! Web chat load benchmark (issue 4, "Web chat channel"): 5,000 concurrent chat sessions and
//! 200 agents against the real hub — customer → agent delivery p99 ≤ 50 ms at 2,000 messages/s,
//! and the hub's memory per idle session.
//!
//! ```text
//! cargo build --release --bin contact-hub && cargo bench --bench chat_load
//! BENCH_SESSIONS=500 BENCH_AGENTS=20 BENCH_RATE=200 BENCH_SECONDS=10 cargo bench --bench chat_load  # quick
//! ```
//!
//! Environment: `BENCH_SESSIONS` (5,000), `BENCH_AGENTS` (200), `BENCH_RATE` (customer messages
//! per second, 2,000), `BENCH_SECONDS` (30), `BENCH_CAPACITY` (chats per agent, 25),
//! `BENCH_START_RATE` (chat starts per second at most, 250), `BENCH_START_INFLIGHT` (started but
//! not yet joined by an agent at most, 200), `BENCH_RAMP_SECS` (limit for connecting everyone,
//! 300), `BENCH_DRAIN_SECS` (wait for the last deliveries, 10), `BENCH_PIN` (1: the hub on CPU 0,
//! this program on CPU 1, with `taskset`), `BENCH_HUB` (the hub binary, default
//! `target/release/contact-hub`), `BENCH_CLIENT_READ_BUFFER` (the customer sockets' WebSocket
//! read buffer in bytes; 0 = tungstenite's default of 128 KiB, which it zero-fills on every read,
//! so each socket keeps 128 KiB resident — the hub's sockets use the same default), `BENCH_PERF`
//! (a file: `perf record -g` of the hub during the load, read with `perf report -i FILE`).
//!
//! What runs: this program prepares a SQLite database in a temp dir (the agents, one argon2
//! hash reused for all, chat capacity `BENCH_CAPACITY`, skill `support:3`), routing rules with
//! one queue open around the clock (`support`, needs `support:2`, offers time out after 600 s),
//! and starts `contact-hub serve` as a separate process (so its RSS is its own) with
//! `RUST_LOG=warn`. The agents log in over REST, open their sockets with the bearer token, go
//! available and accept every offer. Customers open `/chat/ws` — each from its own loopback
//! address (127.1.x.y), because the hub limits starts and messages per address — and `start` a
//! chat; the ramp is paced and bounded. Once every customer has seen `agent_joined`, the hub's
//! VmRSS gives the memory per idle session. Then a pacer sends `BENCH_RATE` messages per second
//! round-robin over the sessions (each session every sessions/rate seconds, below the hub's
//! 30-per-minute session limit), each text carrying a unique id and its send time (µs on this
//! process's `Instant` clock). Latency: the agent socket's receive time of the `chat_message` −
//! that send time; ack latency: the customer's receive time of `ack` − the send time. Lost: sent
//! and acknowledged but never delivered to an agent by the end of the drain.
//!
//! Every loop is bounded by a deadline; the hub is killed when the program ends (also on panic).

mod support;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use support::env_u64;

use contact_hub::acd::types::Capacity;
use contact_hub::domain::{now_ms, Role};
use contact_hub::store::{AgentProfile, Store};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
type Ws = WebSocketStream<TcpStream>;

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Settings {
    sessions: usize,
    agents: usize,
    rate: u64,
    seconds: u64,
    capacity: u8,
    start_rate: u64,
    start_inflight: usize,
    ramp_secs: u64,
    drain_secs: u64,
    pin: bool,
    hub_bin: PathBuf,
    client_read_buffer: usize,
    perf: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Settings {
            sessions: env_u64("BENCH_SESSIONS", 5_000) as usize,
            agents: env_u64("BENCH_AGENTS", 200) as usize,
            rate: env_u64("BENCH_RATE", 2_000).max(1),
            seconds: env_u64("BENCH_SECONDS", 30).max(1),
            capacity: env_u64("BENCH_CAPACITY", 25).clamp(1, 50) as u8,
            start_rate: env_u64("BENCH_START_RATE", 250).max(1),
            start_inflight: env_u64("BENCH_START_INFLIGHT", 200).max(1) as usize,
            ramp_secs: env_u64("BENCH_RAMP_SECS", 300).max(1),
            drain_secs: env_u64("BENCH_DRAIN_SECS", 10),
            pin: env_u64("BENCH_PIN", 1) != 0,
            client_read_buffer: env_u64("BENCH_CLIENT_READ_BUFFER", 0) as usize,
            perf: std::env::var("BENCH_PERF").ok().map(PathBuf::from),
            hub_bin: std::env::var("BENCH_HUB")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target/release/contact-hub")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process facts from /proc (no libc in this crate's dependencies)
// ---------------------------------------------------------------------------------------------

/// The number of a field of `/proc/<pid>/status` (`VmRSS:  1234 kB` → 1234).
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    proc_status(pid, field).map(|kb| kb * 1024)
}

/// User + system CPU seconds of a process (all its threads).
fn cpu_secs(pid: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time and time spent waiting for a CPU (run queue), in ns, summed over a process's
/// threads (`/proc/<pid>/task/*/schedstat`).
fn sched_ns(pid: &str) -> (u64, u64) {
    let (mut run, mut wait) = (0, 0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    for t in tasks.flatten() {
        let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        run += f.next().unwrap_or(0);
        wait += f.next().unwrap_or(0);
    }
    (run, wait)
}

/// The soft limit on open files of this process.
fn open_files_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Database file + WAL (what a message costs on disk before a checkpoint folds it in).
fn db_bytes(dir: &Path) -> u64 {
    file_size(&dir.join("contact-hub.db")) + file_size(&dir.join("contact-hub.db-wal"))
}

/// Newest modification time of the files under `dir` (recursively).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if let Ok(t) = m.modified() {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}

// ---------------------------------------------------------------------------------------------
// The hub under test
// ---------------------------------------------------------------------------------------------

/// A free loopback port for both TCP and UDP (the SIP listener may use either).
fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(a) = l.local_addr() else { continue };
        if std::net::UdpSocket::bind(a).is_ok() {
            return a.port();
        }
    }
    panic!("no free loopback port");
}

/// The hub process; killed when dropped (also when the benchmark panics).
struct Hub {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Hub {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS").unwrap_or(0)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM (a clean shutdown), then SIGKILL if it has not exited within 5 s.
    fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_rules(dir: &Path) -> BoxResult<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("queues.toml"),
        "# One queue open around the clock; offers wait long (the agents accept at once, but\n\
         # thousands of chats start within seconds).\n\
         [[queue]]\nname = \"support\"\nskills = [\"support:2\"]\noffer_timeout_secs = 600\nwrap_up_secs = 30\n",
    )?;
    std::fs::write(
        dir.join("routing.toml"),
        "[[rule]]\nname = \"default\"\nqueue = \"support\"\n",
    )?;
    Ok(())
}

/// Users and agent profiles, written with the library's own store (the schema via `migrate`).
async fn prepare_database(data_dir: &Path, s: &Settings, password: &str) -> BoxResult<f64> {
    let t = Instant::now();
    let url = format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("contact-hub.db").display()
    );
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    // One argon2 hash for every agent: hashing is ~deliberately slow.
    let hash = contact_hub::auth::hash_password(password)?;
    let now = now_ms();
    let profile = AgentProfile {
        skills: HashMap::from([("support".to_string(), 3u8)]),
        capacity: Capacity {
            voice: 0,
            chat: s.capacity,
            email: 0,
            fax: 0,
            voice_interrupts_digital: false,
        },
    };
    for i in 0..s.agents {
        let name = agent_name(i);
        let user = store
            .create_user(&name, &format!("坐席 {i:03}"), Role::Agent, &hash, now)
            .await?;
        store.set_agent_profile(user.id, &profile, now).await?;
    }
    store.close().await;
    Ok(t.elapsed().as_secs_f64())
}

fn agent_name(i: usize) -> String {
    format!("agent{i:04}")
}

fn spawn_hub(s: &Settings, data_dir: &Path, rules_dir: &Path, log: PathBuf) -> BoxResult<Hub> {
    let http = free_port();
    let sip = free_port();
    let smtp = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse()?;
    let mut cmd = if s.pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&s.hub_bin);
        c
    } else {
        Command::new(&s.hub_bin)
    };
    cmd.arg("serve")
        .env("HUB_DATA_DIR", data_dir)
        .env("HUB_HTTP_LISTEN", addr.to_string())
        .env("HUB_SIP_LISTEN", format!("127.0.0.1:{sip}"))
        .env("HUB_SMTP_LISTEN", format!("127.0.0.1:{smtp}"))
        .env("HUB_ROUTING_RULES_DIR", rules_dir)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log)?,
        ));
    let child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {} ({e}); build it with `cargo build --release --bin contact-hub`",
            s.hub_bin.display()
        )
    })?;
    Ok(Hub { child, addr, log })
}

async fn wait_ready(hub: &mut Hub, http: &reqwest::Client) -> BoxResult<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{}/healthz", hub.addr);
    while Instant::now() < deadline {
        if !hub.alive() {
            return Err(format!("the hub exited at start:\n{}", hub.log_tail(30)).into());
        }
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the hub did not answer /healthz within 60 s:\n{}",
        hub.log_tail(30)
    )
    .into())
}

// ---------------------------------------------------------------------------------------------
// Shared counters and per-message times
// ---------------------------------------------------------------------------------------------

/// Per message id: times in µs since `t0`, plus one (0 = not yet).
struct Times {
    sent: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
    delivered: Vec<AtomicU64>,
}

impl Times {
    fn new(n: usize) -> Times {
        let v = || (0..n).map(|_| AtomicU64::new(0)).collect();
        Times {
            sent: v(),
            acked: v(),
            delivered: v(),
        }
    }
}

#[derive(Default)]
struct Counters {
    customers_connected: AtomicU64,
    customers_failed: AtomicU64,
    started: AtomicU64,
    joined: AtomicU64,
    customers_closed: AtomicU64,
    ended: AtomicU64,
    agents_connected: AtomicU64,
    agents_available: AtomicU64,
    agents_closed: AtomicU64,
    offers: AtomicU64,
    accepted: AtomicU64,
    duplicate_deliveries: AtomicU64,
    unknown_deliveries: AtomicU64,
    refused: AtomicU64,
    pacer_full: AtomicU64,
}

struct Shared {
    t0: Instant,
    /// The customer sockets' read buffer (0 = tungstenite's default, 128 KiB).
    read_buffer: usize,
    times: Times,
    c: Counters,
    /// Error frames by side and code.
    errors: Mutex<HashMap<String, u64>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn error(&self, side: &str, frame: &Value) {
        let code = frame["code"].as_str().unwrap_or("?");
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(format!("{side}: {code}")).or_default() += 1;
        }
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

fn text_of(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------

async fn login(
    http: &reqwest::Client,
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> BoxResult<String> {
    let r = http
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    body["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("login of {user}: {status} {body}").into())
}

async fn connect_agent(addr: SocketAddr, token: &str) -> BoxResult<Ws> {
    let mut req = format!("ws://{addr}/api/v1/agent/ws").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await?;
    Ok(ws)
}

/// One agent: goes available, accepts every offer, timestamps customers' messages.
async fn agent(mut ws: Ws, shared: Arc<Shared>) {
    inc(&shared.c.agents_connected);
    let mut available = false;
    while let Some(msg) = ws.next().await {
        let Ok(msg) = msg else { break };
        let Some(text) = text_of(&msg) else { continue };
        // Timestamp before parsing: parsing is this program's cost, not the hub's.
        let now = shared.now_us();
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        match v["type"].as_str().unwrap_or("") {
            "chat_message" => {
                let m = &v["message"];
                if m["from"] != "customer" {
                    continue;
                }
                let Some(id) = m["text"].as_str().and_then(parse_load_text) else {
                    inc(&shared.c.unknown_deliveries);
                    continue;
                };
                match shared.times.delivered.get(id.0) {
                    Some(slot) => {
                        if slot.swap(now + 1, Relaxed) != 0 {
                            inc(&shared.c.duplicate_deliveries);
                        }
                    }
                    None => inc(&shared.c.unknown_deliveries),
                }
            }
            "hello" => {
                let _ = ws
                    .send(Message::text(r#"{"type":"set_state","state":"available"}"#))
                    .await;
            }
            "agent_state" if !available && v["state"]["state"] == "available" => {
                available = true;
                inc(&shared.c.agents_available);
            }
            "offer" => {
                inc(&shared.c.offers);
                if let Some(id) = v["contact"]["id"].as_i64() {
                    let _ = ws
                        .send(Message::text(format!(
                            r#"{{"type":"accept","contact_id":{id}}}"#
                        )))
                        .await;
                }
            }
            "contact_state" if v["state"] == "connected" => inc(&shared.c.accepted),
            "error" => shared.error("agent", &v),
            _ => {}
        }
    }
    inc(&shared.c.agents_closed);
}

// ---------------------------------------------------------------------------------------------
// Customers
// ---------------------------------------------------------------------------------------------

/// Customer `i`'s own loopback address: the hub limits starts and messages per address.
fn customer_ip(i: usize) -> Ipv4Addr {
    let a = i / 254;
    Ipv4Addr::new(
        127,
        1 + (a / 256) as u8,
        (a % 256) as u8,
        (i % 254 + 1) as u8,
    )
}

fn load_text(id: usize, sent_us: u64) -> String {
    format!("load test message {id} sent_us={sent_us}")
}

/// `(id, sent_us)` from a load message's text.
fn parse_load_text(t: &str) -> Option<(usize, u64)> {
    let rest = t.strip_prefix("load test message ")?;
    let (id, sent) = rest.split_once(" sent_us=")?;
    Some((id.parse().ok()?, sent.parse().ok()?))
}

async fn connect_customer(addr: SocketAddr, i: usize, read_buffer: usize) -> BoxResult<Ws> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(customer_ip(i)), 0))?;
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    let config =
        (read_buffer > 0).then(|| WebSocketConfig::default().read_buffer_size(read_buffer));
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(format!("ws://{addr}/chat/ws"), stream, config)
            .await?;
    Ok(ws)
}

/// One customer: starts a chat, then sends the message ids the pacer hands it.
async fn customer(
    addr: SocketAddr,
    i: usize,
    shared: Arc<Shared>,
    mut sends: mpsc::Receiver<usize>,
) {
    let mut ws = match connect_customer(addr, i, shared.read_buffer).await {
        Ok(ws) => ws,
        Err(e) => {
            if get(&shared.c.customers_failed) < 3 {
                eprintln!("customer {i}: cannot connect: {e}");
            }
            inc(&shared.c.customers_failed);
            return;
        }
    };
    inc(&shared.c.customers_connected);
    let start = format!(
        r#"{{"type":"start","name":"访客 {i}","topic":"support","language":"zh-CN","page":"https://shop.example.cn/bench"}}"#
    );
    if ws.send(Message::text(start)).await.is_err() {
        inc(&shared.c.customers_closed);
        return;
    }
    let mut joined = false;
    loop {
        tokio::select! {
            id = sends.recv() => {
                let Some(id) = id else { break };
                let sent = shared.now_us();
                shared.times.sent[id].store(sent + 1, Relaxed);
                let frame = format!(
                    r#"{{"type":"message","client_id":"b{id}","text":"{}"}}"#,
                    load_text(id, sent)
                );
                if ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Some(text) = text_of(&msg) else { continue };
                let now = shared.now_us();
                let Ok(v) = serde_json::from_str::<Value>(text) else { continue };
                match v["type"].as_str().unwrap_or("") {
                    "ack" => {
                        let id = v["client_id"].as_str().and_then(|c| c.strip_prefix('b')).and_then(|n| n.parse::<usize>().ok());
                        if let Some(slot) = id.and_then(|id| shared.times.acked.get(id)) {
                            slot.store(now + 1, Relaxed);
                        }
                    }
                    "started" => inc(&shared.c.started),
                    "message" if !joined && v["event"] == "agent_joined" => {
                        joined = true;
                        inc(&shared.c.joined);
                    }
                    "error" => {
                        if v.get("client_id").is_some() {
                            inc(&shared.c.refused);
                        }
                        shared.error("customer", &v);
                    }
                    "ended" => inc(&shared.c.ended),
                    _ => {}
                }
            }
        }
    }
    inc(&shared.c.customers_closed);
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

struct Pct {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

/// Percentiles in ms of latencies in µs (sorted here).
fn pct(mut us: Vec<u64>) -> Option<Pct> {
    if us.is_empty() {
        return None;
    }
    us.sort_unstable();
    let at = |p: f64| us[((p / 100.0) * (us.len() - 1) as f64).round() as usize] as f64 / 1000.0;
    Some(Pct {
        n: us.len(),
        p50: at(50.0),
        p90: at(90.0),
        p99: at(99.0),
        p999: at(99.9),
        max: *us.last().unwrap_or(&0) as f64 / 1000.0,
        mean: us.iter().sum::<u64>() as f64 / us.len() as f64 / 1000.0,
    })
}

fn print_row(label: &str, p: &Option<Pct>) {
    match p {
        Some(p) => println!(
            "| {label} | {} | {:.2} | {:.2} | {:.2} | **{:.2}** | {:.2} | {:.1} |",
            p.n, p.mean, p.p50, p.p90, p.p99, p.p999, p.max
        ),
        None => println!("| {label} | 0 | | | | | | |"),
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// Waits (bounded) until `done()`; prints progress every 5 s. `false` on timeout.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> (bool, String)) -> bool {
    let t = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let (ok, progress) = done();
        if ok {
            return true;
        }
        if t.elapsed() > limit {
            eprintln!(
                "  {what}: gave up after {:.0} s ({progress})",
                limit.as_secs_f64()
            );
            return false;
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!("  {what}: {progress}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pin_self() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cpus < 2 {
        return "not pinned (fewer than 2 CPUs)".into();
    }
    let pid = std::process::id().to_string();
    match Command::new("taskset")
        .args(["-p", "-c", "1", &pid])
        .output()
    {
        Ok(o) if o.status.success() => "hub on CPU 0, load generator on CPU 1 (taskset)".into(),
        Ok(o) => format!(
            "not pinned: taskset said {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("not pinned: taskset: {e}"),
    }
}

fn main() -> BoxResult<()> {
    let s = Settings::from_env();
    // Pin before the runtime exists, so every thread of this program inherits CPU 1.
    let pinning = if s.pin {
        pin_self()
    } else {
        "not pinned (BENCH_PIN=0)".into()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(run(s, pinning));
    // Sockets still open are dropped with the runtime; the hub is already stopped.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn run(s: Settings, pinning: String) -> BoxResult<()> {
    println!("Web chat load benchmark (issue 4)");
    let needed = (s.sessions + s.agents + 200) as u64;
    match open_files_limit() {
        Some(l) if l < needed => {
            return Err(format!(
                "open-files limit {l} is below the {needed} sockets needed on each side: run `ulimit -n 65536` first"
            )
            .into())
        }
        Some(l) => println!("  open-files limit {l} (need {needed} on each side)"),
        None => println!("  open-files limit unknown"),
    }
    if s.sessions > s.agents * s.capacity as usize {
        return Err(format!(
            "{} sessions do not fit {} agents × {} chats",
            s.sessions, s.agents, s.capacity
        )
        .into());
    }
    if !s.hub_bin.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release --bin contact-hub` first",
            s.hub_bin.display()
        )
        .into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_time = std::fs::metadata(&s.hub_bin)
        .and_then(|m| m.modified())
        .ok();
    let src_time = [root.join("src"), root.join("channels/chat/src")]
        .iter()
        .filter_map(|d| newest_mtime(d))
        .max();
    if let (Some(b), Some(src)) = (bin_time, src_time) {
        if src > b {
            println!(
                "  WARNING: {} is older than the sources; rebuild with `cargo build --release --bin contact-hub`",
                s.hub_bin.display()
            );
        }
    }
    println!(
        "  {} sessions, {} agents (chat capacity {}), {} messages/s for {} s; {pinning}",
        s.sessions, s.agents, s.capacity, s.rate, s.seconds
    );
    println!("  load average at start: {}", loadavg());

    let tmp = tempfile::Builder::new().prefix("chat-load-").tempdir()?;
    let data_dir = tmp.path().join("data");
    let rules_dir = tmp.path().join("rules");
    std::fs::create_dir_all(&data_dir)?;
    write_rules(&rules_dir)?;
    let password = "bench-password-1";
    let prep_s = prepare_database(&data_dir, &s, password).await?;
    println!("  database prepared in {prep_s:.1} s ({} agents)", s.agents);

    let mut hub = spawn_hub(&s, &data_dir, &rules_dir, tmp.path().join("hub.log"))?;
    let http = reqwest::Client::new();
    wait_ready(&mut hub, &http).await?;
    let hub_pid = hub.pid();
    let rss_start = hub.rss();
    println!(
        "  hub pid {hub_pid} on {}, RSS {:.1} MiB",
        hub.addr,
        mib(rss_start)
    );

    let cap = (s.rate * s.seconds + s.rate) as usize;
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        read_buffer: s.client_read_buffer,
        times: Times::new(cap),
        c: Counters::default(),
        errors: Mutex::new(HashMap::new()),
    });
    let c = &shared.c;

    // --- Agents: log in (argon2 on the hub), open sockets, go available ---------------------
    let t = Instant::now();
    let mut tokens = Vec::with_capacity(s.agents);
    let mut logins = tokio::task::JoinSet::new();
    for chunk_start in (0..s.agents).step_by(8) {
        for i in chunk_start..(chunk_start + 8).min(s.agents) {
            let http = http.clone();
            let addr = hub.addr;
            logins.spawn(async move { login(&http, addr, &agent_name(i), password).await });
        }
        while let Some(r) = logins.join_next().await {
            tokens.push(r??);
        }
    }
    let login_s = t.elapsed().as_secs_f64();
    let rss_logins = hub.rss();
    let mut tasks = tokio::task::JoinSet::new();
    for token in &tokens {
        let ws = connect_agent(hub.addr, token).await?;
        tasks.spawn(agent(ws, shared.clone()));
    }
    let all_agents = s.agents as u64;
    if !wait_until("agents available", Duration::from_secs(60), || {
        let n = get(&c.agents_available);
        (n >= all_agents, format!("{n}/{all_agents} available"))
    })
    .await
    {
        return Err("not every agent became available".into());
    }
    let agents_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_agents = hub.rss();
    println!(
        "  {} agents logged in in {login_s:.1} s (hub RSS {:.1} MiB), available after {agents_s:.1} s (hub RSS {:.1} MiB)",
        s.agents,
        mib(rss_logins),
        mib(rss_agents)
    );

    // --- Customers: paced, bounded ramp ------------------------------------------------------
    let own_pid = std::process::id();
    let own_rss_before = proc_status_kb(own_pid, "VmRSS").unwrap_or(0);
    let t = Instant::now();
    let ramp_deadline = Duration::from_secs(s.ramp_secs);
    let mut senders: Vec<mpsc::Sender<usize>> = Vec::with_capacity(s.sessions);
    let mut ramp_ok = true;
    // RSS when half the sessions have joined: the growth from there to all of them is free of
    // what the agents' logins left in the allocator (argon2 takes 19 MiB per verification).
    let mut rss_half: Option<(u64, u64)> = None;
    for i in 0..s.sessions {
        // At most `start_inflight` chats started and not yet joined by an agent…
        while (i as u64).saturating_sub(get(&c.joined) + get(&c.customers_failed))
            >= s.start_inflight as u64
        {
            if t.elapsed() > ramp_deadline || !hub.alive() {
                ramp_ok = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if !ramp_ok {
            eprintln!(
                "  ramp stopped at {i} customers after {:.0} s",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        if rss_half.is_none() && get(&c.joined) >= s.sessions as u64 / 2 {
            rss_half = Some((get(&c.joined), hub.rss()));
        }
        // …and at most `start_rate` starts per second.
        let due = Duration::from_secs_f64(i as f64 / s.start_rate as f64);
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let (tx, rx) = mpsc::channel(16);
        senders.push(tx);
        tasks.spawn(customer(hub.addr, i, shared.clone(), rx));
    }
    let launched = senders.len() as u64;
    let remaining = ramp_deadline
        .saturating_sub(t.elapsed())
        .max(Duration::from_secs(5));
    let all_joined = wait_until("customers joined", remaining, || {
        let j = get(&c.joined);
        if rss_half.is_none() && j >= launched / 2 {
            rss_half = Some((j, hub.rss()));
        }
        (
            j + get(&c.customers_failed) >= launched,
            format!(
                "{j}/{launched} joined, {} started, {} offers, {} accepted, {} failed to connect",
                get(&c.started),
                get(&c.offers),
                get(&c.accepted),
                get(&c.customers_failed)
            ),
        )
    })
    .await;
    let ramp_s = t.elapsed().as_secs_f64();
    let joined = get(&c.joined);
    println!(
        "  {joined} of {} customers connected to an agent in {ramp_s:.1} s ({:.0} chats/s){}",
        s.sessions,
        joined as f64 / ramp_s,
        if all_joined && joined == s.sessions as u64 {
            ""
        } else {
            " — NOT ALL"
        }
    );
    // Idle sessions: let the hub settle (queue-position ticks, offers done), then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_idle = hub.rss();
    let per_session = rss_idle.saturating_sub(rss_agents) as f64 / joined.max(1) as f64;
    println!(
        "  hub RSS with {joined} idle sessions: {:.1} MiB (+{:.1} MiB, {:.1} KiB per session)",
        mib(rss_idle),
        mib(rss_idle.saturating_sub(rss_agents)),
        per_session / 1024.0
    );
    let own_rss_idle = proc_status_kb(own_pid, "VmRSS").unwrap_or(0);
    println!(
        "  load generator RSS {:.1} MiB → {:.1} MiB: {:.1} KiB per customer socket (read buffer {})",
        mib(own_rss_before),
        mib(own_rss_idle),
        own_rss_idle.saturating_sub(own_rss_before) as f64 / 1024.0 / joined.max(1) as f64,
        if s.client_read_buffer == 0 {
            "tungstenite default, 128 KiB".to_string()
        } else {
            format!("{} bytes", s.client_read_buffer)
        }
    );
    // From half to all sessions (the half was read while the ramp went on).
    let slope = rss_half.and_then(|(n_half, rss)| {
        (joined > n_half).then(|| {
            (
                n_half,
                rss_idle.saturating_sub(rss) as f64 / (joined - n_half) as f64,
            )
        })
    });

    // --- Load: `rate` messages per second, round-robin over the sessions ----------------------
    // Sessions in an order that spreads consecutive messages over different agents.
    let n = senders.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let db_before = db_bytes(&data_dir);
    let load_before = loadavg();
    let hub_cpu0 = cpu_secs(&hub_pid.to_string());
    let own_cpu0 = cpu_secs("self");
    let t = Instant::now();
    let load_start_us = shared.now_us();
    let duration = Duration::from_secs(s.seconds);
    let mut next_id = 0usize;
    let mut rr = 0usize;
    let mut max_behind = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Each second: (hub run, hub run-queue wait, own run, own wait) in ns.
    let hub_pid_s = hub_pid.to_string();
    let sample = || {
        let (hr, hw) = sched_ns(&hub_pid_s);
        let (or, ow) = sched_ns("self");
        (hr, hw, or, ow)
    };
    // Optional profile of the hub during the load.
    let mut perf = s.perf.as_ref().and_then(|out| {
        Command::new("perf")
            .args(["record", "-F", "499", "-g", "-o"])
            .arg(out)
            .args(["-p", &hub_pid_s, "--", "sleep", &s.seconds.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("  perf: {e}"))
            .ok()
    });
    let mut timeline = vec![sample()];
    if n > 0 {
        while t.elapsed() < duration && next_id < cap {
            tick.tick().await;
            if t.elapsed() >= Duration::from_secs(timeline.len() as u64) {
                timeline.push(sample());
            }
            let due = ((t.elapsed().as_secs_f64() * s.rate as f64) as usize).min(cap);
            max_behind = max_behind.max(due.saturating_sub(next_id) as u64);
            while next_id < due {
                let session = order[rr % n];
                rr += 1;
                match senders[session].try_send(next_id) {
                    Ok(()) => next_id += 1,
                    Err(_) => {
                        // That session's socket is backed up (or gone): try the next one.
                        inc(&c.pacer_full);
                        if get(&c.pacer_full) > (s.rate * s.seconds) {
                            break;
                        }
                    }
                }
            }
        }
    }
    let send_s = t.elapsed().as_secs_f64();
    let sent_n = next_id;
    timeline.push(sample());
    if let Some(p) = perf.as_mut() {
        let _ = p.wait();
    }
    // Drain: until every acknowledged message has been delivered, or the limit.
    let drain_t = Instant::now();
    let times = &shared.times;
    wait_until("drain", Duration::from_secs(s.drain_secs), || {
        let pending = (0..sent_n)
            .filter(|&i| get(&times.delivered[i]) == 0 && get(&times.acked[i]) != 0)
            .count();
        let unacked = (0..sent_n).filter(|&i| get(&times.acked[i]) == 0).count();
        (
            pending == 0 && unacked as u64 <= get(&c.refused),
            format!("{pending} acked not delivered, {unacked} not acked"),
        )
    })
    .await;
    let drain_s = drain_t.elapsed().as_secs_f64();
    let hub_cpu = cpu_secs(&hub_pid.to_string()) - hub_cpu0;
    let own_cpu = cpu_secs("self") - own_cpu0;
    let load_after = loadavg();
    let db_after = db_bytes(&data_dir);
    let rss_after = hub.rss();
    let hwm = proc_status_kb(hub_pid, "VmHWM").unwrap_or(0);
    let hub_alive = hub.alive();
    let threads = proc_status(hub_pid, "Threads").unwrap_or(0);

    // --- Results -----------------------------------------------------------------------------
    let mut delivery = Vec::with_capacity(sent_n);
    let mut ack = Vec::with_capacity(sent_n);
    let (mut acked_n, mut delivered_n, mut lost, mut unacked, mut delivered_unacked) =
        (0, 0, 0, 0, 0);
    // Per second of send time: delivery latencies.
    let mut windows: Vec<Vec<u64>> = vec![Vec::new(); timeline.len()];
    for i in 0..sent_n {
        let sent = get(&times.sent[i]);
        if sent == 0 {
            continue;
        }
        let a = get(&times.acked[i]);
        let d = get(&times.delivered[i]);
        if a != 0 {
            acked_n += 1;
            ack.push(a - sent);
        } else {
            unacked += 1;
        }
        if d != 0 {
            delivered_n += 1;
            delivery.push(d.saturating_sub(sent));
            if a == 0 {
                delivered_unacked += 1;
            }
            let w = ((sent - 1).saturating_sub(load_start_us) / 1_000_000) as usize;
            if let Some(v) = windows.get_mut(w) {
                v.push(d.saturating_sub(sent));
            }
        } else if a != 0 {
            lost += 1;
        }
    }
    let delivery_p = pct(delivery.clone());
    let ack_p = pct(ack);
    println!();
    println!(
        "Load: {sent_n} messages sent in {send_s:.1} s = {:.0} /s (target {}), pacer at most {max_behind} behind; drain {drain_s:.1} s",
        sent_n as f64 / send_s,
        s.rate
    );
    println!();
    println!("| latency (ms) | n | mean | p50 | p90 | p99 | p99.9 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    print_row("customer → agent delivery", &delivery_p);
    print_row("customer → ack", &ack_p);
    println!();
    // Whether a slow second is the hub's work or the machine: the hub's threads' CPU time and
    // the time they were runnable but waited for a CPU (other processes on CPU 0).
    println!("| second | delivered | p50 ms | p99 ms | max ms | hub CPU % | hub waited for a CPU, ms | generator CPU % | generator waited, ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (w, v) in windows.into_iter().enumerate() {
        let (Some(a), Some(b)) = (timeline.get(w), timeline.get(w + 1)) else {
            continue;
        };
        let Some(p) = pct(v) else { continue };
        println!(
            "| {w} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            p.n,
            p.p50,
            p.p99,
            p.max,
            (b.0 - a.0) as f64 / 1e7,
            (b.1 - a.1) as f64 / 1e6,
            (b.2 - a.2) as f64 / 1e7,
            (b.3 - a.3) as f64 / 1e6
        );
    }
    let (first, last) = (timeline[0], timeline[timeline.len() - 1]);
    println!(
        "Over the load: the hub's threads ran {:.1} s and waited {:.1} s for a CPU; the generator ran {:.1} s and waited {:.1} s",
        (last.0 - first.0) as f64 / 1e9,
        (last.1 - first.1) as f64 / 1e9,
        (last.2 - first.2) as f64 / 1e9,
        (last.3 - first.3) as f64 / 1e9
    );
    println!();
    println!("| messages | count |");
    println!("|---|---:|");
    println!("| sent | {sent_n} |");
    println!("| acknowledged | {acked_n} |");
    println!("| delivered to an agent | {delivered_n} |");
    println!("| **lost** (acked, never delivered) | {lost} |");
    println!(
        "| not acknowledged | {unacked} (refused with an error frame: {}) |",
        get(&c.refused)
    );
    println!("| delivered but not acknowledged | {delivered_unacked} |");
    println!("| delivered twice | {} |", get(&c.duplicate_deliveries));
    println!(
        "| pacer skipped a backed-up session | {} |",
        get(&c.pacer_full)
    );
    let over_50 = delivery.iter().filter(|&&us| us > 50_000).count();
    println!(
        "| deliveries over 50 ms | {over_50} ({:.2} %) |",
        100.0 * over_50 as f64 / delivery.len().max(1) as f64
    );
    println!();
    println!("| hub memory | MiB | |");
    println!("|---|---:|---|");
    println!("| RSS after start | {:.1} | |", mib(rss_start));
    println!(
        "| RSS after {} logins (argon2 verifications) | {:.1} | |",
        s.agents,
        mib(rss_logins)
    );
    println!(
        "| RSS with {} agents available | {:.1} | |",
        s.agents,
        mib(rss_agents)
    );
    println!(
        "| RSS with {joined} idle sessions | {:.1} | **{:.1} KiB per session** |",
        mib(rss_idle),
        per_session / 1024.0
    );
    if let Some((n_half, per)) = slope {
        println!(
            "| growth from {n_half} to {joined} sessions | | {:.1} KiB per session |",
            per / 1024.0
        );
    }
    println!("| RSS after the load | {:.1} | |", mib(rss_after));
    println!("| peak RSS (VmHWM) | {:.1} | |", mib(hwm));
    println!();
    println!(
        "Database: {:.1} MiB before the load, {:.1} MiB after (db + WAL), {:.0} bytes per message",
        mib(db_before),
        mib(db_after),
        db_after.saturating_sub(db_before) as f64 / sent_n.max(1) as f64
    );
    println!(
        "CPU during load + drain ({:.1} s): hub {:.1} s ({:.0} % of one core, {threads} threads), load generator {:.1} s ({:.0} %)",
        send_s + drain_s,
        hub_cpu,
        100.0 * hub_cpu / (send_s + drain_s),
        own_cpu,
        100.0 * own_cpu / (send_s + drain_s)
    );
    println!("Load average: {load_before} before the load, {load_after} after");
    println!(
        "Sockets: {} customers connected ({} failed), {} closed by the end; {} agents, {} closed; {} chats ended",
        get(&c.customers_connected),
        get(&c.customers_failed),
        get(&c.customers_closed),
        get(&c.agents_connected),
        get(&c.agents_closed),
        get(&c.ended)
    );
    println!(
        "Offers {}, accepted {}; unknown deliveries {}",
        get(&c.offers),
        get(&c.accepted),
        get(&c.unknown_deliveries)
    );
    if let Ok(e) = shared.errors.lock() {
        let mut e: Vec<_> = e.iter().collect();
        e.sort();
        for (code, n) in e {
            println!("Error frames — {code}: {n}");
        }
    }
    let log = std::fs::read_to_string(&hub.log).unwrap_or_default();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && !l.contains("No admin user"))
        .collect();
    println!("Hub log: {} warning/error lines", warnings.len());
    for l in warnings.iter().take(5) {
        println!("  {l}");
    }
    if !hub_alive {
        println!("THE HUB EXITED during the run:\n{}", hub.log_tail(20));
    }
    hub.stop();
    tasks.abort_all();
    drop(tmp);
    Ok(())
}
