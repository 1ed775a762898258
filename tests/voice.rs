//! Calls through the real hub with real SIP phones (PJSIP, pjsua2): a customer calls the trunk,
//! navigates the IVR by DTMF, waits with music, is bridged to an agent whose desk phone is
//! registered with digest; each phone plays its own tone and records what it hears, so audio is
//! proven in both directions; hold, hang-up from either side, the stereo recording, the call
//! record, attended transfers between two desk phones (consult and hand over; consult and hang
//! up, which hands over too; the colleague's follow-up contact), and a caller who gives up
//! while queued (abandoned).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ws_connect, TestHub};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

static NEXT_RTP: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

fn rtp_base() -> u16 {
    // One RTP range per phone process, apart from other test processes.
    let n = NEXT_RTP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    30000 + (std::process::id() as u16 % 200) * 100 + n * 20
}

/// A PJSIP phone driven over its stdin (tests/peers/pjsua_voice.py).
struct Phone {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Phone {
    fn start(args: &[&str]) -> Phone {
        let ok = Command::new("python3")
            .args(["-c", "import pjsua2"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "PJSIP is missing: pip install pjsua2-python (or run scripts/peers/sip.sh)"
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pjsua_voice.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--rtp-port", &rtp_base().to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut p = Phone {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        };
        p.expect("READY", Duration::from_secs(20));
        p
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Whether the phone has printed a line starting with `prefix` so far (without waiting).
    fn has_said(&mut self, prefix: &str) -> bool {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.iter().any(|l| l.starts_with(prefix))
    }

    /// Waits for a line starting with `prefix`; returns it.
    fn expect(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "phone: no {prefix:?} within {within:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Quits and waits, so its recording is complete on disk.
    fn quit(mut self) {
        self.send("quit");
        let _ = self.expect("BYE", Duration::from_secs(20));
        let _ = self.child.wait();
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent socket read all the time by a task of its own (so it answers the hub's pings
/// while the test waits on a phone), frames handed over by type.
struct AgentSocket {
    tx: futures_util::stream::SplitSink<common::Ws, Message>,
    rx: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
}

impl AgentSocket {
    async fn open(ws: common::Ws) -> AgentSocket {
        let (tx, mut read) = ws.split();
        let (frames, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(m)) = read.next().await {
                if let Message::Text(t) = m {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                        if frames.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        AgentSocket { tx, rx }
    }

    async fn send(&mut self, v: serde_json::Value) {
        self.tx
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next frame of type `kind` within `secs`.
    async fn next(&mut self, kind: &str, secs: u64) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(v)) if v["type"] == kind => return v,
                Ok(Some(_)) => continue,
                _ => panic!("no {kind:?} frame within {secs} s"),
            }
        }
    }

    /// Skips `kind` frames until one whose state is `state` (each within `secs`).
    async fn until_state(&mut self, kind: &str, state: &str, secs: u64) {
        while self.next(kind, secs).await["state"] != state {}
    }
}

/// Waits for a phone line without blocking the runtime.
async fn phone_expect(p: &mut Phone, prefix: &str, secs: u64) -> String {
    let prefix = prefix.to_string();
    tokio::task::block_in_place(|| p.expect(&prefix, Duration::from_secs(secs)))
}

/// A mono 8 kHz 16-bit WAV of a sine tone.
fn tone_wav(path: &Path, freq: f64, secs: f64) {
    let n = (8000.0 * secs) as usize;
    let mut data = Vec::with_capacity(n * 2);
    for i in 0..n {
        let v =
            (0.4 * 32767.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16;
        data.extend_from_slice(&v.to_le_bytes());
    }
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).unwrap();
}

/// (sample rate, channels of samples) of a 16-bit PCM WAV.
fn read_wav(path: &Path) -> (u32, Vec<Vec<f64>>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut i = 12;
    let (mut rate, mut channels) = (8000u32, 1usize);
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let size = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        let body = &b[i + 8..(i + 8 + size).min(b.len())];
        if id == b"fmt " {
            channels = u16::from_le_bytes(body[2..4].try_into().unwrap()) as usize;
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let mut out = vec![Vec::new(); channels];
            for (k, s) in body.chunks_exact(2).enumerate() {
                out[k % channels].push(i16::from_le_bytes([s[0], s[1]]) as f64);
            }
            return (rate, out);
        }
        i += 8 + size + (size & 1);
    }
    panic!("{}: no data chunk", path.display());
}

/// Power of `freq` in `samples` (Goertzel).
fn power(samples: &[f64], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s = x + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / samples.len().max(1) as f64
}

/// Seconds (one-second windows) in which `want` clearly dominates `other`.
fn seconds_of(samples: &[f64], rate: u32, want: f64, other: f64) -> usize {
    samples
        .chunks(rate as usize)
        .filter(|w| w.len() == rate as usize)
        .filter(|w| {
            let p = power(w, rate, want);
            p > 10.0 * power(w, rate, other) && p > 1e4
        })
        .count()
}

fn rules(dir: &Path) {
    std::fs::write(
        dir.join("queues.toml"),
        "[[queue]]\nname = \"support\"\nskills = [\"support:2\"]\noffer_timeout_secs = 20\nwrap_up_secs = 60\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("routing.toml"),
        "[[rule]]\nname = \"all\"\nqueue = \"support\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("ivr")).unwrap();
    std::fs::write(
        dir.join("ivr/ivr.toml"),
        r#"[defaults]
first_digit_timeout_secs = 8
retries = 1

[[flow]]
name = "test"
languages = ["zh-CN"]
language = "zh-CN"
start = "menu"

[flow.node.menu]
type = "menu"
prompts = ["welcome", "press1"]
choices = { 1 = "support" }
fallback = "support"

[flow.node.support]
type = "set"
ivr_choice = "1"
next = "to_queue"

[flow.node.to_queue]
type = "queue"

[queue_experience.default]
music_on_hold = true
greeting = ["please_hold"]
announce_position = false
announce_wait = false
comfort_secs = 0
callback_key = ""
"#,
    )
    .unwrap();
}

struct Setup {
    hub: TestHub,
    sip: String,
    dir: tempfile::TempDir,
    _db: common::TestDb,
}

async fn start() -> Setup {
    let db = common::databases().await.swap_remove(0);
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    rules(&rules_dir);
    std::fs::write(
        dir.path().join("sip.toml"),
        "t1_ms = 100\n[[inbound_trunk]]\nname = \"carrier\"\nallow = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let mut config = common::config_for(&db);
    config.routing.rules_dir = rules_dir.display().to_string();
    config.sip.file = dir.path().join("sip.toml").display().to_string();
    config.voice.recordings_dir = dir.path().join("recordings").display().to_string();
    let hub = TestHub::start_with(config).await;
    let sip = hub
        .running
        .sip_addr
        .expect("the hub serves SIP")
        .to_string();
    Setup {
        hub,
        sip,
        dir,
        _db: db,
    }
}

/// agent1 with a desk phone account and the support skill, on the agent socket, available.
async fn agent(hub: &TestHub) -> (AgentSocket, String, i64) {
    desk_agent(hub, "agent1", "1001").await
}

/// `name` with desk phone account `phone` (password `phone-{phone}-pw`) and the support skill,
/// on the agent socket, available.
async fn desk_agent(hub: &TestHub, name: &str, phone: &str) -> (AgentSocket, String, i64) {
    let admin = hub.token("admin1").await;
    let id = hub.store().user_by_name(name).await.unwrap().unwrap().id;
    let (s, b) = hub
        .send_json(
            Method::PUT,
            &admin,
            &format!("/api/v1/users/{id}/profile"),
            json!({"skills": ["support:3"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = hub
        .send_json(
            Method::PUT,
            &admin,
            &format!("/api/v1/users/{id}/phone"),
            json!({"username": phone, "password": format!("phone-{phone}-pw")}),
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let token = hub.token(name).await;
    let ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &token)
        .await
        .unwrap();
    let mut ws = AgentSocket::open(ws).await;
    ws.next("hello", 5).await;
    ws.send(json!({"type": "set_state", "state": "available"}))
        .await;
    (ws, token, id)
}

async fn wait_registered(hub: &TestHub, token: &str, id: i64) {
    let started = Instant::now();
    loop {
        let (_, b) = hub.get(token, &format!("/api/v1/users/{id}/phone")).await;
        if b["registered"] == true {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the desk phone never registered: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn events(hub: &TestHub, contact: i64) -> Vec<String> {
    hub.store()
        .contact_events(contact)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_the_agents_desk_phone_through_the_ivr_with_audio_both_ways_and_a_stereo_recording(
) {
    let s = start().await;
    let hub = &s.hub;
    let (mut ws, token, agent_id) = agent(hub).await;
    let tones = s.dir.path();
    tone_wav(&tones.join("agent.wav"), 1000.0, 30.0);
    tone_wav(&tones.join("customer.wav"), 440.0, 30.0);
    let agent_rx = tones.join("agent-heard.wav");
    let customer_rx = tones.join("customer-heard.wav");

    let mut desk = Phone::start(&[
        "--auto-answer",
        "--play",
        tones.join("agent.wav").to_str().unwrap(),
        "--record",
        agent_rx.to_str().unwrap(),
    ]);
    desk.send(&format!("register {} 1001 phone-1001-pw", s.sip));
    phone_expect(&mut desk, "REGISTERED 200", 10).await;
    wait_registered(hub, &token, agent_id).await;

    let mut customer = Phone::start(&[
        "--play",
        tones.join("customer.wav").to_str().unwrap(),
        "--record",
        customer_rx.to_str().unwrap(),
    ]);
    customer.send(&format!("call sip:+864008001234@{}", s.sip));
    phone_expect(&mut customer, "CONFIRMED", 10).await;
    // The menu plays; the caller chooses 1.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    customer.send("dtmf 1");

    let offer = ws.next("offer", 15).await;
    assert_eq!(offer["contact"]["channel"], "voice", "{offer}");
    let contact = offer["contact"]["id"].as_i64().unwrap();
    phone_expect(&mut desk, "INCOMING", 10).await;
    phone_expect(&mut desk, "CONFIRMED", 10).await;
    let state = ws.next("call_state", 10).await;
    assert_eq!(state["state"], "connected", "{state}");

    // Talking: each side's tone crosses to the other.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Hold: the customer hears music instead of the agent; then back.
    ws.send(json!({"type": "call_hold", "contact_id": contact}))
        .await;
    let held = ws.next("call_state", 10).await;
    assert_eq!(held["held"], true, "{held}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.send(json!({"type": "call_unhold", "contact_id": contact}))
        .await;
    let back = ws.next("call_state", 10).await;
    assert_eq!(back["held"], false, "{back}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The customer hangs up: the agent's phone is hung up too and wrap-up begins.
    customer.send("hangup");
    phone_expect(&mut customer, "DISCONNECTED", 10).await;
    phone_expect(&mut desk, "DISCONNECTED", 10).await;
    loop {
        let s = ws.next("contact_state", 10).await;
        if s["state"] == "wrap_up" {
            break;
        }
        assert_eq!(s["state"], "connected", "{s}");
    }
    customer.quit();
    desk.quit();

    // Audio both ways.
    let (rate, heard) = read_wav(&agent_rx);
    let agent_heard = seconds_of(&heard[0], rate, 440.0, 1000.0);
    assert!(
        agent_heard >= 3,
        "the agent heard the customer's 440 Hz for {agent_heard} s"
    );
    let (rate, heard) = read_wav(&customer_rx);
    let customer_heard = seconds_of(&heard[0], rate, 1000.0, 440.0);
    assert!(
        customer_heard >= 3,
        "the customer heard the agent's 1 kHz for {customer_heard} s"
    );

    // The recording: customer left, agent right.
    let (_, r) = hub
        .get(&token, &format!("/api/v1/contacts/{contact}/recordings"))
        .await;
    let rec = r["recordings"][0].clone();
    assert!(rec["duration_ms"].as_i64().unwrap() > 5000, "{r}");
    let res = hub
        .http
        .get(hub.url(&format!("/api/v1/recordings/{}", rec["id"])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let file = s.dir.path().join("recording.wav");
    std::fs::write(&file, res.bytes().await.unwrap()).unwrap();
    let (rate, ch) = read_wav(&file);
    assert_eq!(ch.len(), 2, "stereo");
    assert!(
        seconds_of(&ch[0], rate, 440.0, 1000.0) >= 3,
        "the customer's tone is on the left"
    );
    assert!(
        seconds_of(&ch[1], rate, 1000.0, 440.0) >= 3,
        "the agent's tone is on the right"
    );

    // The call record.
    let kinds = events(hub, contact).await;
    for k in [
        "call_arrived",
        "ivr_started",
        "queued",
        "agent_ringing",
        "answered",
        "hold",
        "unhold",
        "ended",
        "recording",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event in {kinds:?}");
    }
    let ended = hub
        .store()
        .contact_events(contact)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "ended")
        .unwrap();
    assert_eq!(ended.data["by"], "customer");
    ws.send(json!({"type": "wrap_up", "contact_id": contact, "disposition": "resolved"}))
        .await;
    let closed = ws.next("contact_state", 10).await;
    assert_eq!(closed["state"], "closed");
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attended_transfers_between_desk_phones_leave_the_customer_talking_to_the_colleague() {
    let s = start().await;
    let hub = &s.hub;
    let (mut ws1, token1, id1) = desk_agent(hub, "agent1", "1001").await;
    let (mut ws2, token2, id2) = desk_agent(hub, "agent2", "1002").await;
    let tones = s.dir.path();
    tone_wav(&tones.join("agent1.wav"), 1000.0, 40.0);
    tone_wav(&tones.join("agent2.wav"), 700.0, 40.0);
    tone_wav(&tones.join("customer.wav"), 440.0, 40.0);
    let (heard1, heard2, heard_c) = (
        tones.join("agent1-heard.wav"),
        tones.join("agent2-heard.wav"),
        tones.join("customer-heard.wav"),
    );
    let mut desks = Vec::new();
    for (user, tone, rx, token, id) in [
        ("1001", "agent1.wav", &heard1, &token1, id1),
        ("1002", "agent2.wav", &heard2, &token2, id2),
    ] {
        let mut desk = Phone::start(&[
            "--auto-answer",
            "--play",
            tones.join(tone).to_str().unwrap(),
            "--record",
            rx.to_str().unwrap(),
        ]);
        desk.send(&format!("register {} {user} phone-{user}-pw", s.sip));
        phone_expect(&mut desk, "REGISTERED 200", 10).await;
        wait_registered(hub, token, id).await;
        desks.push(desk);
    }
    let [mut desk1, mut desk2]: [Phone; 2] = desks.try_into().ok().unwrap();
    // Only agent1 is offered the call: agent2 takes a break until the consultation.
    ws2.send(json!({"type": "set_state", "state": "not_ready", "reason": "break"}))
        .await;

    let mut customer = Phone::start(&[
        "--play",
        tones.join("customer.wav").to_str().unwrap(),
        "--record",
        heard_c.to_str().unwrap(),
    ]);
    customer.send(&format!("call sip:+864008001234@{}", s.sip));
    phone_expect(&mut customer, "CONFIRMED", 10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    customer.send("dtmf 1");
    let offer = ws1.next("offer", 15).await;
    let contact = offer["contact"]["id"].as_i64().unwrap();
    phone_expect(&mut desk1, "CONFIRMED", 10).await;
    assert_eq!(ws1.next("call_state", 10).await["state"], "connected");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // agent1 consults agent2 (the customer waits on hold), then hands the call over.
    ws2.send(json!({"type": "set_state", "state": "available"}))
        .await;
    ws1.send(json!({"type": "call_consult", "contact_id": contact, "agent_id": id2}))
        .await;
    phone_expect(&mut desk2, "INCOMING", 10).await;
    phone_expect(&mut desk2, "CONFIRMED", 10).await;
    loop {
        let st = ws1.next("call_state", 10).await;
        if st["state"] == "consulting" {
            break;
        }
        assert_eq!(st["state"], "consult_ringing", "{st}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    ws1.send(json!({"type": "call_complete_transfer", "contact_id": contact}))
        .await;
    phone_expect(&mut desk1, "DISCONNECTED", 10).await;
    // agent1 wraps the first contact up, so the call can come back to them below.
    ws1.send(json!({"type": "wrap_up", "contact_id": contact, "disposition": "resolved"}))
        .await;
    ws1.until_state("contact_state", "closed", 10).await;
    let follow_up = ws2.next("offer", 15).await;
    let contact2 = follow_up["contact"]["id"].as_i64().unwrap();
    assert_ne!(
        contact2, contact,
        "the colleague works a follow-up contact: {follow_up}"
    );
    ws2.until_state("call_state", "connected", 10).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // agent2 consults agent1 back and hangs up the desk phone once agent1 answered: the
    // customer stays, now with agent1 (a hang-up there hands the call over).
    ws2.send(json!({"type": "call_consult", "contact_id": contact2, "agent_id": id1}))
        .await;
    phone_expect(&mut desk1, "INCOMING", 10).await;
    phone_expect(&mut desk1, "CONFIRMED", 10).await;
    ws2.until_state("call_state", "consulting", 10).await;
    desk2.send("hangup");
    phone_expect(&mut desk2, "DISCONNECTED", 10).await;
    let back = ws1.next("offer", 15).await;
    let contact3 = back["contact"]["id"].as_i64().unwrap();
    assert_ne!(contact3, contact2, "{back}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !customer.has_said("DISCONNECTED"),
        "the customer stayed on the line"
    );

    // The customer hangs up: the call ends for agent1.
    customer.send("hangup");
    phone_expect(&mut customer, "DISCONNECTED", 10).await;
    phone_expect(&mut desk1, "DISCONNECTED", 10).await;
    for p in [customer, desk1, desk2] {
        p.quit();
    }

    // The customer heard agent1, then agent2; agent2 heard the customer (after the handover)
    // and agent1 (in the consultation), agent1 the customer and agent2.
    let (rate, c) = read_wav(&heard_c);
    for (tone, who) in [(1000.0, "agent1"), (700.0, "agent2")] {
        let secs = seconds_of(&c[0], rate, tone, 440.0);
        assert!(
            secs >= 2,
            "the customer heard {who}'s {tone} Hz for {secs} s"
        );
    }
    let (rate, a2) = read_wav(&heard2);
    let secs = seconds_of(&a2[0], rate, 440.0, 700.0);
    assert!(secs >= 2, "agent2 heard the customer for {secs} s");
    let secs = seconds_of(&a2[0], rate, 1000.0, 700.0);
    assert!(
        secs >= 1,
        "agent2 heard agent1 in the consultation for {secs} s"
    );
    let (rate, a1) = read_wav(&heard1);
    let secs = seconds_of(&a1[0], rate, 700.0, 1000.0);
    assert!(
        secs >= 1,
        "agent1 heard agent2 in the consultations for {secs} s"
    );
    // agent1's phone records both of its calls: the customer before the first transfer and
    // after agent2 left.
    let secs = seconds_of(&a1[0], rate, 440.0, 1000.0);
    assert!(secs >= 4, "agent1 heard the customer for {secs} s");
    let kinds = events(hub, contact2).await;
    for k in ["consult_answered", "transfer"] {
        assert!(
            kinds.iter().any(|x| x == k),
            "no {k} event on the follow-up contact: {kinds:?}"
        );
    }

    // The call record: the consultation and the transfer on the first contact.
    let kinds = events(hub, contact).await;
    for k in ["answered", "consult_answered", "transfer"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event in {kinds:?}");
    }
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_while_queued_is_counted_as_abandoned() {
    let s = start().await;
    let hub = &s.hub;
    let mut customer = Phone::start(&[]);
    customer.send(&format!("call sip:+864008001234@{}", s.sip));
    phone_expect(&mut customer, "CONFIRMED", 10).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    customer.send("dtmf 1");
    // Queued (nobody is logged in), the caller gives up.
    let started = Instant::now();
    let contact = loop {
        let c = hub
            .store()
            .list_contacts(&contact_hub::store::ContactFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(c) = c.first().filter(|c| c.queue.is_some()) {
            break c.id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the call was never queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    customer.send("hangup");
    phone_expect(&mut customer, "DISCONNECTED", 10).await;
    let started = Instant::now();
    loop {
        let c = hub.store().get_contact(contact).await.unwrap();
        if c.state.as_str() == "abandoned" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "state {}",
            c.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin = hub.token("super1").await;
    let (_, q) = hub.get(&admin, "/api/v1/queues").await;
    let support = q["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "support")
        .unwrap()
        .clone();
    let voice = support["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["channel"] == "voice")
        .unwrap()
        .clone();
    assert_eq!(voice["abandoned"], 1, "{voice}");
    customer.quit();
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_hanging_up_the_desk_phone_ends_the_call_for_the_customer() {
    let s = start().await;
    let hub = &s.hub;
    let (mut ws, token, agent_id) = agent(hub).await;
    let mut desk = Phone::start(&["--auto-answer"]);
    desk.send(&format!("register {} 1001 phone-1001-pw", s.sip));
    phone_expect(&mut desk, "REGISTERED 200", 10).await;
    wait_registered(hub, &token, agent_id).await;
    let mut customer = Phone::start(&[]);
    customer.send(&format!("call sip:+864008001234@{}", s.sip));
    phone_expect(&mut customer, "CONFIRMED", 10).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    customer.send("dtmf 1");
    let offer = ws.next("offer", 15).await;
    let contact = offer["contact"]["id"].as_i64().unwrap();
    phone_expect(&mut desk, "CONFIRMED", 10).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    desk.send("hangup");
    phone_expect(&mut desk, "DISCONNECTED", 10).await;
    phone_expect(&mut customer, "DISCONNECTED", 10).await;
    loop {
        let s = ws.next("contact_state", 10).await;
        if s["state"] == "wrap_up" {
            break;
        }
        assert_eq!(s["state"], "connected", "{s}");
    }
    let ended = hub
        .store()
        .contact_events(contact)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "ended")
        .expect("an ended event");
    assert_eq!(ended.data["by"], "agent");
    customer.quit();
    desk.quit();
    s.hub.stop().await;
}
