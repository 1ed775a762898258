//! Calls per second and memory per dialog, driven by SIPp on loopback.
//!
//! Run: `cargo bench -p channel-sip --bench cps` (needs `sipp`, `taskset`). The endpoint runs
//! on a single-threaded tokio runtime pinned to core 0; SIPp is pinned to core 1.
//! Env: CPS_RATE (default 1000), CPS_CALLS (default 20000), HOLD_DIALOGS (default 2000).

use channel_sip::*;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SDP: &str = "v=0\r\no=hub 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The SIPp command line, pinned to core 1.
fn sipp_cmd(target: &str, extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        "taskset",
        "-c",
        "1",
        "sipp",
        target,
        "-sn",
        "uac",
        "-i",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend([
        "-p".into(),
        free_port().to_string(),
        "-cp".into(),
        free_port().to_string(),
    ]);
    v.extend(["-mp".into(), free_port().to_string(), "-nostdin".into()]);
    v.extend(["-timeout".into(), "120s".into(), "-timeout_error".into()]);
    v.extend(extra.iter().cloned());
    v
}

fn stat(text: &str, label: &str) -> u64 {
    text.lines()
        .rfind(|l| l.contains(label))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("sipp missing: apt-get install sip-tester");
        std::process::exit(2);
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    // Pin this process (the endpoint) to core 0.
    let pid = std::process::id().to_string();
    let pinned = Command::new("taskset")
        .args(["-cp", "0", &pid])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let config = SipConfig::from_toml(
            "listen = \"127.0.0.1:0\"\ntcp = false\n[[inbound_trunk]]\nname = \"sipp\"\nallow = [\"127.0.0.1\"]\n",
        )
        .unwrap();
        let (handle, mut rx) = SipEndpoint::start(config, Arc::new(SharedCredentials::new())).await.unwrap();
        let h = handle.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let SipEvent::IncomingCall { leg, .. } = ev {
                    let _ = h.answer(leg, SDP.to_string()).await;
                }
            }
        });
        let target = handle.local_addr().to_string();
        println!("machine: {cores} cores, load average {}; endpoint pinned to core 0: {pinned}; single-threaded runtime", loadavg());

        // 1. Memory per established dialog (first, on a fresh heap): hold N calls up at once.
        let n = env_u32("HOLD_DIALOGS", 2000);
        let before = rss_kib();
        let args = sipp_cmd(&target, &[
            "-r".into(), "500".into(), "-m".into(), n.to_string(), "-l".into(), n.to_string(), "-d".into(), "15000".into(),
        ]);
        println!("\n$ {}", args.join(" "));
        let child = tokio::spawn({
            let args = args.clone();
            async move { tokio::process::Command::new(&args[0]).args(&args[1..]).output().await.unwrap() }
        });
        let wait = Instant::now();
        while handle.active_legs() < n as usize && wait.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the INVITE transactions finish so only dialogs remain.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let held = handle.active_dialogs();
        let during = rss_kib();
        println!("held dialogs: {held}, RSS {before} KiB -> {during} KiB: {:.1} KiB per dialog", (during.saturating_sub(before)) as f64 / held.max(1) as f64);
        let out = child.await.unwrap();
        let drain = Instant::now();
        while (handle.active_dialogs() > 0 || handle.active_transactions() > 0) && drain.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        println!("hold run: {} successful, {} failed", stat(&text, "Successful call"), stat(&text, "Failed call"));
        // 2. Calls per second: INVITE -> 100 -> 200 -> ACK -> BYE -> 200, no hold time.
        let rate = env_u32("CPS_RATE", 1000);
        let calls = env_u32("CPS_CALLS", 20000);
        let args = sipp_cmd(&target, &[
            "-r".into(), rate.to_string(), "-m".into(), calls.to_string(), "-l".into(), "5000".into(), "-d".into(), "0".into(),
        ]);
        println!("\n$ {}", args.join(" "));
        let started = Instant::now();
        let out = tokio::process::Command::new(&args[0]).args(&args[1..]).output().await.unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        let ok = stat(&text, "Successful call");
        let failed = stat(&text, "Failed call");
        println!("calls: {ok} successful, {failed} failed, sipp exit {}", out.status);
        println!("elapsed {elapsed:.2} s => {:.0} calls/s (offered rate {rate}/s)", ok as f64 / elapsed);
        // Let the lingering transactions (64*T1) drain before the memory phase.
        let drain = Instant::now();
        while (handle.active_dialogs() > 0 || handle.active_transactions() > 0) && drain.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "RSS after the run: {} KiB; load average: {}; stack tables {:?}; tokio tasks alive {}",
            rss_kib(),
            loadavg(),
            handle.stack_stats(),
            tokio::runtime::Handle::current().metrics().num_alive_tasks()
        );
        // RFC 3261 keeps finished transactions 64*T1 (32 s) to absorb retransmissions.
        let linger = Instant::now();
        while handle.stack_stats().1 > 0 && linger.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "after 64*T1 ({:.0} s later): RSS {} KiB; stack tables {:?}; tokio tasks alive {}",
            linger.elapsed().as_secs_f64(),
            rss_kib(),
            handle.stack_stats(),
            tokio::runtime::Handle::current().metrics().num_alive_tasks()
        );
        println!("after the run: dialogs {} transactions {} legs {}", handle.active_dialogs(), handle.active_transactions(), handle.active_legs());
        let mut states = std::collections::BTreeMap::new();
        for l in handle.legs() {
            *states.entry(format!("{:?}", l.state)).or_insert(0) += 1;
        }
        if !states.is_empty() {
            println!("legs left by state: {states:?}");
        }

        handle.shutdown().await;
    });
}
