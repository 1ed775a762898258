//! Voice through the hub (issue 6 target: ≥ 1,000 calls per second on one core with no failed
//! call): SIPp calls the real `contact-hub` binary's trunk, the IVR of `+864008001234` answers
//! (200 OK with its SDP, prompts start playing), SIPp hangs up.
//!
//! ```text
//! cargo build --release --bin contact-hub
//! cargo bench --bench voice_cps
//! VOICE_RATES=500,1000 VOICE_STEP_SECS=10 VOICE_HOLD=200,500 cargo bench --bench voice_cps
//! ```
//!
//! The hub runs from a temp dir of its own (its own HTTP, SIP and RTP ports, SQLite under the
//! temp dir, the project's `routing-rules/` copied with its IVR, the demo's `sip.toml`: calls from
//! 127.0.0.1 count as a carrier trunk), pinned with `taskset` to `HUB_CORE` (0); SIPp is pinned
//! to `SIPP_CORE` (1). The scenario files are written next to the hub and their text is printed.
//!
//! 1. Held calls (`VOICE_HOLD`, default `200,500`; a fresh hub each): SIPp opens N calls at 100/s
//!    and holds them `VOICE_HOLD_SECS` (30) with RTP both ways — the hub plays the IVR prompts and
//!    then music on hold (a silent caller is queued), SIPp streams a looped G.711 μ-law tone back
//!    (`rtp_stream`). Reports hub RSS per held call and hub CPU while they are all up.
//! 2. Calls per second (`VOICE_RATES`, default `250,500,750,1000,1250,1500`, `VOICE_STEP_SECS`
//!    (10) each, a fresh hub): INVITE → IVR 200 → ACK → BYE at once. Reports calls completed per
//!    second, failed calls, retransmissions, hub CPU % of its core.
//!
//! `HUB_BIN` (default `target/release/contact-hub`), `VOICE_LOG` (the hub's `RUST_LOG`, default
//! `warn`; `info` is the shipped default and logs a few lines per call).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CALLED: &str = "+864008001234";

fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    env_str(name, default)
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {s:?} is not a number"))
        })
        .collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// utime + stime of a process in seconds (USER_HZ = 100).
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let f = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    (f(11).unwrap_or(0.0) + f(12).unwrap_or(0.0)) / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP (SIP listens on both).
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// 1 s of a 440 Hz tone as an 8 kHz G.711 μ-law WAV (what `rtp_stream` plays in a loop).
fn ulaw_wav() -> Vec<u8> {
    fn ulaw(sample: i16) -> u8 {
        const BIAS: i32 = 0x84;
        let mut s = sample as i32;
        let sign = if s < 0 {
            s = -s;
            0x80
        } else {
            0
        };
        let s = (s.min(32635) + BIAS) as u32;
        let exp = (31 - s.leading_zeros()).saturating_sub(7).min(7);
        let mant = (s >> (exp + 3)) & 0x0f;
        !(sign | (exp << 4) as u8 | mant as u8)
    }
    let data: Vec<u8> = (0..8000)
        .map(|i| {
            let t = i as f64 / 8000.0;
            ulaw((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16)
        })
        .collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&7u16.to_le_bytes()); // μ-law
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

/// The SIPp scenario: INVITE with G.711 + telephone-event, the IVR's 200, ACK, `<pause/>`
/// (`-d`), BYE. With `rtp` (a WAV file), SIPp streams it looped from its own port per call
/// (`[auto_media_port]`) while the call is up.
fn scenario(rtp: Option<&Path>) -> String {
    let port = if rtp.is_some() {
        "[auto_media_port]"
    } else {
        "[media_port]"
    };
    let (start, stop) = match rtp {
        Some(wav) => (
            format!(
                "\n  <nop><action><exec rtp_stream=\"{},-1,0\"/></action></nop>",
                wav.display()
            ),
            "\n  <nop><action><exec rtp_stream=\"pause\"/></action></nop>",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="Contact Hub trunk call answered by the IVR{rtp_name}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench Caller" <sip:+8613900[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:+8613900[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Subject: Contact Hub benchmark
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio {port} RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench Caller" <sip:+8613900[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:+8613900[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>{start}
  <pause/>{stop}
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench Caller" <sip:+8613900[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:+8613900[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <ResponseTimeRepartition value="5, 10, 20, 50, 100, 200, 500"/>
  <CallLengthRepartition value="10, 50, 100, 500, 1000, 5000, 30000"/>
</scenario>
"#,
        rtp_name = if rtp.is_some() { ", RTP both ways" } else { "" }
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

struct Hub {
    child: Child,
    sip: String,
    dir: PathBuf,
}

impl Hub {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start(bin: &Path, base: &Path, name: &str, core: &str) -> Hub {
        let dir = base.join(name);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("routing-rules"),
            &dir.join("rules"),
        );
        // What `contact-hub demo` writes: calls from this machine count as a carrier trunk.
        std::fs::write(
            dir.join("sip.toml"),
            "[[inbound_trunk]]\nname = \"local\"\nallow = [\"127.0.0.1\", \"::1\"]\n",
        )
        .unwrap();
        let (http, sip) = (free_port(), free_port());
        let config = format!(
            "data_dir = \"{data}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n[sip]\n\
             listen = \"127.0.0.1:{sip}\"\nfile = \"{sipfile}\"\n\n[smtp]\nlisten = \"\"\n\n\
             [routing]\nrules_dir = \"{rules}\"\n\n[voice]\nrtp_bind = \"127.0.0.1\"\n\
             rtp_port_min = 41000\nrtp_port_max = 48999\n",
            data = dir.join("data").display(),
            sipfile = dir.join("sip.toml").display(),
            rules = dir.join("rules").display(),
        );
        std::fs::write(dir.join("contact-hub.toml"), &config).unwrap();
        let log = std::fs::File::create(dir.join("hub.log")).unwrap();
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", core])
            .arg(bin)
            .arg("--config")
            .arg(dir.join("contact-hub.toml"))
            .arg("serve")
            .env_clear()
            .env("PATH", env_str("PATH", "/usr/bin:/bin"))
            .env("HOME", env_str("HOME", "/tmp"))
            .env("RUST_LOG", env_str("VOICE_LOG", "warn"))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("start contact-hub");
        // Up when /healthz answers.
        let t = Instant::now();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", http)) {
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
                let mut r = String::new();
                let _ = s.read_to_string(&mut r);
                if r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200") {
                    break;
                }
            }
            if t.elapsed() > Duration::from_secs(60) {
                panic!(
                    "the hub did not come up; its log:\n{}",
                    std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Hub {
            child,
            sip: format!("127.0.0.1:{sip}"),
            dir,
        }
    }

    fn stop(mut self) {
        // SIGTERM to the hub itself (taskset execs it, so the child is the hub).
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SIPp command line (pinned to its core, its own ports).
fn sipp_args(hub: &Hub, xml: &Path, extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "-c".into(),
        env_str("SIPP_CORE", "1"),
        "sipp".into(),
        hub.sip.clone(),
        "-sf".into(),
        xml.display().to_string(),
        "-s".into(),
        CALLED.into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-cp".into(),
        free_port().to_string(),
        "-nostdin".into(),
        "-trace_stat".into(),
        "-fd".into(),
        "1".into(),
        "-stf".into(),
        hub.dir.join("sipp-stats.csv").display().to_string(),
        "-timeout".into(),
        "180s".into(),
        "-timeout_error".into(),
    ];
    v.extend(extra.iter().cloned());
    v
}

fn show(args: &[String]) -> String {
    format!("taskset {}", args.join(" "))
}

/// A counter from SIPp's final screen (`label | periodic | cumulative`).
fn stat(text: &str, label: &str) -> u64 {
    text.lines()
        .rfind(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|c| c.split_whitespace().next())
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0)
}

/// A column of the last line of SIPp's `-trace_stat` CSV.
fn csv_stat(path: &Path, column: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let idx = header.iter().position(|h| *h == column)?;
    let last = lines.rfind(|l| !l.trim().is_empty())?;
    last.split(';').nth(idx)?.trim().parse().ok()
}

fn held_calls(bin: &Path, base: &Path, n: u64, hold_secs: u64, core: &str) {
    let hub = Hub::start(bin, base, &format!("hold{n}"), core);
    std::thread::sleep(Duration::from_secs(2));
    let pid = hub.pid();
    let before = rss_kib(pid);
    let wav = hub.dir.join("tone-ulaw.wav");
    std::fs::write(&wav, ulaw_wav()).unwrap();
    let xml = hub.dir.join("ivr_call_rtp.xml");
    std::fs::write(&xml, scenario(Some(&wav))).unwrap();
    let args = sipp_args(
        &hub,
        &xml,
        &[
            "-mp".into(),
            "31000".into(),
            "-r".into(),
            "100".into(),
            "-m".into(),
            n.to_string(),
            "-l".into(),
            n.to_string(),
            "-d".into(),
            (hold_secs * 1000).to_string(),
        ],
    );
    println!("\n$ {}", show(&args));
    let sipp = Command::new("taskset")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp");
    // All calls up after n/100 s; let the INVITE transactions finish, then measure for 5 s.
    std::thread::sleep(Duration::from_secs_f64(n as f64 / 100.0 + 4.0));
    let current = csv_stat(&hub.dir.join("sipp-stats.csv"), "CurrentCall").unwrap_or(0.0);
    let (c0, t0) = (cpu_of(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let cpu = (cpu_of(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let during = rss_kib(pid);
    let current_after = csv_stat(&hub.dir.join("sipp-stats.csv"), "CurrentCall").unwrap_or(0.0);
    let out = sipp.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = stat(&text, "Successful call");
    let failed = stat(&text, "Failed call");
    let held = current.min(current_after).max(1.0);
    println!(
        "held {held:.0} calls ({current:.0}..{current_after:.0} up while measured) with RTP both ways: \
         hub RSS {before} KiB -> {during} KiB = {:.1} KiB per call; hub CPU {cpu:.1} % of one core \
         ({:.3} % per call); sipp: {ok} successful, {failed} failed, exit {}; load average {}",
        (during.saturating_sub(before)) as f64 / held,
        cpu / held,
        out.status,
        loadavg()
    );
    if failed > 0 || !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        println!(
            "sipp stderr (last lines): {}",
            err.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    hub.stop();
}

fn main() {
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("sipp is missing: apt-get install -y sip-tester");
        std::process::exit(2);
    }
    let bin = PathBuf::from(env_str(
        "HUB_BIN",
        &format!("{}/target/release/contact-hub", env!("CARGO_MANIFEST_DIR")),
    ));
    if !bin.exists() {
        eprintln!(
            "{} is missing: cargo build --release --bin contact-hub",
            bin.display()
        );
        std::process::exit(2);
    }
    let core = env_str("HUB_CORE", "0");
    let rates = env_list("VOICE_RATES", "250,500,750,1000,1250,1500");
    let step = env_list("VOICE_STEP_SECS", "10")[0].max(1);
    let holds = env_list("VOICE_HOLD", "200,500");
    let hold_secs = env_list("VOICE_HOLD_SECS", "30")[0].max(10);
    let base = tempfile::tempdir().unwrap();
    println!("== Voice through the hub (issue 6) ==");
    println!(
        "hub: {} pinned to core {core} (RUST_LOG={}); sipp pinned to core {}; {} cores; load average {}",
        bin.display(),
        env_str("VOICE_LOG", "warn"),
        env_str("SIPP_CORE", "1"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    println!(
        "\nscenario (ivr_call.xml; the RTP variant adds rtp_stream after the ACK and \
         [auto_media_port]):\n{}",
        scenario(None)
    );

    for n in holds {
        held_calls(&bin, base.path(), n, hold_secs, &core);
    }

    let hub = Hub::start(&bin, base.path(), "cps", &core);
    let pid = hub.pid();
    let xml = hub.dir.join("ivr_call.xml");
    std::fs::write(&xml, scenario(None)).unwrap();
    let mut rows = Vec::new();
    for rate in rates {
        let calls = rate * step;
        let args = sipp_args(
            &hub,
            &xml,
            &[
                "-r".into(),
                rate.to_string(),
                "-m".into(),
                calls.to_string(),
                "-l".into(),
                (rate * 4).max(1000).to_string(),
                "-d".into(),
                "0".into(),
                "-mp".into(),
                "32000".into(),
            ],
        );
        println!("\n$ {}", show(&args));
        let load = loadavg();
        let (c0, t0) = (cpu_of(pid), Instant::now());
        let out = Command::new("taskset").args(&args).output().expect("sipp");
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (cpu_of(pid) - c0) / secs * 100.0;
        let text = String::from_utf8_lossy(&out.stdout);
        let ok = stat(&text, "Successful call");
        let failed = stat(&text, "Failed call");
        let retrans =
            csv_stat(&hub.dir.join("sipp-stats.csv"), "Retransmissions(C)").unwrap_or(0.0);
        let cps = ok as f64 / secs;
        println!(
            "offered {rate}/s for {step} s: {ok} successful, {failed} failed, {retrans:.0} retransmissions \
             in {secs:.1} s = {cps:.0} calls/s; hub CPU {cpu:.0} % of its core ({:.0} µs per call); \
             hub RSS {} KiB; load average {load} -> {}",
            cpu / 100.0 * secs / ok.max(1) as f64 * 1e6,
            rss_kib(pid),
            loadavg()
        );
        rows.push((rate, ok, failed, cps, cpu));
        // Let the hub finish the calls' records and the transactions linger out a little.
        std::thread::sleep(Duration::from_secs(3));
        if failed * 20 > calls {
            println!("more than 5 % failed: stopping the ramp");
            break;
        }
    }
    hub.stop();
    println!("\nsummary (target >= 1000 calls/s on one core, 0 failed):");
    for (rate, ok, failed, cps, cpu) in rows {
        println!(
            "  offered {rate:>5}/s: {cps:>6.0} calls/s, {ok} ok, {failed} failed, hub CPU {cpu:.0} %{}",
            if rate >= 1000 && cps >= 990.0 && failed == 0 {
                "  MET"
            } else {
                ""
            }
        );
    }
    println!("load average after: {}", loadavg());
}
