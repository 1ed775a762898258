//! Shared test plumbing: an endpoint on 127.0.0.1 with a random port, a scripted "hub" that
//! answers or rings, and the real peers (SIPp, pjsua2) as child processes.
#![allow(dead_code)]

use channel_sip::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const SDP: &str = "v=0\r\no=hub 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

pub fn sipp_binary() -> PathBuf {
    match which("sipp") {
        Some(p) => p,
        None => panic!(
            "SIPp is not installed: run `apt-get install sip-tester` (scripts/peers/sip.sh does it)"
        ),
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A free port on 127.0.0.1 (UDP and TCP both free at the time of asking).
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn credentials() -> SharedCredentials {
    let c = SharedCredentials::new();
    for (user, agent) in [("1001", "agent-1"), ("1002", "agent-2")] {
        c.set(
            user,
            AgentCredential {
                agent_id: agent.into(),
                secret: Secret::Password(format!("pw{user}")),
            },
        );
    }
    c
}

pub fn base_config() -> SipConfig {
    SipConfig::from_toml(
        r#"
listen = "127.0.0.1:0"
t1_ms = 50

[[inbound_trunk]]
name = "loopback-carrier"
allow = ["127.0.0.1/32"]
"#,
    )
    .unwrap()
}

pub async fn start(config: SipConfig) -> (SipHandle, mpsc::Receiver<SipEvent>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SipEndpoint::start(config, Arc::new(credentials()))
        .await
        .expect("endpoint starts")
}

/// What the scripted hub does with an incoming call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// 180 then 200 with `SDP`.
    Answer,
    /// 180 and wait (for the caller's CANCEL).
    Ring,
    /// Answer; answer remote offers, then put the caller on hold with our own re-INVITE.
    MidCall,
    /// 183 with early SDP, then 486.
    Busy,
    /// Only record events.
    Nothing,
}

pub type Log = Arc<Mutex<Vec<SipEvent>>>;

/// Run a hub that follows `script` and records every event.
pub fn hub(handle: SipHandle, mut rx: mpsc::Receiver<SipEvent>, script: Script) -> Log {
    let log: Log = Arc::default();
    let out = log.clone();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let SipEvent::IncomingCall { leg, .. } = &ev {
                let leg = *leg;
                match script {
                    Script::Answer | Script::MidCall => {
                        let _ = handle.ringing(leg, None).await;
                        let _ = handle.answer(leg, SDP.to_string()).await;
                    }
                    Script::Ring => {
                        let _ = handle.ringing(leg, None).await;
                    }
                    Script::Busy => {
                        handle.ringing(leg, Some(SDP.to_string())).await.unwrap();
                        handle
                            .reject(leg, 486, Some("agent busy".into()))
                            .await
                            .unwrap();
                    }
                    Script::Nothing => {}
                }
            }
            if let SipEvent::RemoteOffer { offer, leg, .. } = &ev {
                if script == Script::Answer || script == Script::MidCall {
                    let _ = handle.answer_offer(*offer, SDP.to_string()).await;
                }
                if script == Script::MidCall {
                    let (h, leg) = (handle.clone(), *leg);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        h.reinvite(leg, SDP.replace("a=sendrecv", "a=sendonly"))
                            .await
                            .unwrap();
                    });
                }
            }
            out.lock().unwrap().push(ev);
        }
    });
    log
}

pub fn events(log: &Log) -> Vec<SipEvent> {
    log.lock().unwrap().clone()
}

/// Wait (bounded) until `pred` holds over the log.
pub async fn wait_for(log: &Log, what: &str, pred: impl Fn(&[SipEvent]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if pred(&log.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}; events: {:#?}", events(log));
}

/// Wait until every dialog, leg and (64*T1 later) transaction is gone.
pub async fn wait_clean(handle: &SipHandle) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if handle.active_dialogs() == 0
            && handle.active_legs() == 0
            && handle.active_transactions() == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "leak: dialogs={} legs={} tasks={} transactions={} {:?}",
        handle.active_dialogs(),
        handle.active_legs(),
        handle.leg_tasks(),
        handle.active_transactions(),
        handle.transaction_keys()
    );
}

/// Start SIPp as a UAS (the called phone) on a free port; returns the port and its output.
pub fn sipp_uas(scenario_name: &'static str) -> (u16, tokio::task::JoinHandle<Output>) {
    sipp_uas_on(scenario_name, free_port())
}

/// Like `sipp_uas`, on a given port (a phone that registered from it).
pub fn sipp_uas_on(
    scenario_name: &'static str,
    port: u16,
) -> (u16, tokio::task::JoinHandle<Output>) {
    let task = tokio::spawn(async move {
        let control = free_port().to_string();
        let media = free_port().to_string();
        tokio::process::Command::new(sipp_binary())
            .args(["-sf", scenario(scenario_name).to_str().unwrap()])
            .args([
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-cp",
                &control,
                "-mp",
                &media,
            ])
            .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    });
    (port, task)
}

/// Run SIPp against `target` with the scenario; returns its output (stdout/stderr, status).
pub async fn run_sipp(scenario_name: &str, target: &str, calls: u32, extra: &[&str]) -> Output {
    run_sipp_from(scenario_name, target, calls, extra, free_port()).await
}

/// Like `run_sipp`, from a given local port.
pub async fn run_sipp_from(
    scenario_name: &str,
    target: &str,
    calls: u32,
    extra: &[&str],
    local_port: u16,
) -> Output {
    let sipp = sipp_binary();
    let port = local_port.to_string();
    let control = free_port().to_string();
    let media = free_port().to_string();
    let err_file = std::env::temp_dir().join(format!("sipp-{scenario_name}-{port}.err"));
    let mut cmd = tokio::process::Command::new(sipp);
    cmd.arg(target)
        .args(["-sf", scenario(scenario_name).to_str().unwrap()])
        .args(["-m", &calls.to_string()])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-cp",
            &control,
            "-mp",
            &media,
        ])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .args(["-error_file", err_file.to_str().unwrap()])
        .args(extra)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("sipp finished within 60 s")
        .expect("sipp runs");
    if !out.status.success() {
        let errors = std::fs::read_to_string(&err_file).unwrap_or_default();
        eprintln!(
            "sipp {scenario_name} failed ({}):\n{}\n{}\nerrors:\n{errors}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_file(&err_file);
    out
}

/// "N successful calls" as SIPp reports them on its final screen.
pub fn sipp_successful(out: &Output) -> Option<u64> {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rfind(|l| l.contains("Successful call"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|c| c.trim().parse().ok())
}
