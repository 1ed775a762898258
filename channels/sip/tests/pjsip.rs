//! A real desk phone and a real trunk UA: PJSIP through pjsua2 (tests/peers/pjsua_peer.py).

mod common;
use channel_sip::*;
use common::*;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

fn python() -> String {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pjsua2"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "pjsua2 is not installed: run `pip install pjsua2-python` (scripts/peers/sip.sh does it)"
    );
    "python3".into()
}

/// Start the peer; its output lines arrive on the channel.
fn peer(args: &[String]) -> (tokio::process::Child, mpsc::UnboundedReceiver<String>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pjsua_peer.py");
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

async fn expect_line(rx: &mut mpsc::UnboundedReceiver<String>, prefix: &str) -> String {
    let wait = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = rx.recv().await {
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
        None
    });
    match wait.await {
        Ok(Some(line)) => line,
        _ => panic!("pjsua peer never printed {prefix:?}"),
    }
}

fn rtp_port() -> String {
    // One RTP range per pjsua process (TESTING.md), away from other tests.
    (42000 + (std::process::id() % 200) * 40).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_phone_registers_then_answers_a_call_the_hub_originates() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    let hub_addr = handle.local_addr().to_string();
    let args: Vec<String> = [
        "phone",
        "--hub",
        &hub_addr,
        "--user",
        "1002",
        "--password",
        "pw1002",
        "--rtp-port",
        &rtp_port(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut child, mut lines) = peer(&args);
    expect_line(&mut lines, "REGISTERED 200").await;
    wait_for(&log, "Registered event", |evs| {
        evs.iter().any(|e| matches!(e, SipEvent::Registered { user, agent_id, .. } if user == "1002" && agent_id == "agent-2"))
    })
    .await;
    let leg = handle
        .originate(
            Target::User("1002".into()),
            Caller {
                display: Some("Queue support".into()),
                user: "support".into(),
            },
            SDP.to_string(),
        )
        .await
        .unwrap();
    expect_line(&mut lines, "INCOMING").await;
    wait_for(&log, "answered by the phone", |evs| {
        evs.iter().any(|e| matches!(e, SipEvent::Answered { leg: l, remote_sdp: Some(sdp) } if *l == leg && sdp.contains("m=audio")))
    })
    .await;
    assert!(events(&log)
        .iter()
        .any(|e| matches!(e, SipEvent::Progress { leg: l, code: 180, .. } if *l == leg)));
    expect_line(&mut lines, "CONFIRMED").await;
    handle.hangup(leg).await.unwrap();
    expect_line(&mut lines, "DISCONNECTED").await;
    expect_line(&mut lines, "UNREGISTERED").await;
    assert!(child.wait().await.unwrap().success());
    wait_for(&log, "Unregistered event", |evs| {
        evs.iter()
            .any(|e| matches!(e, SipEvent::Unregistered { user, .. } if user == "1002"))
    })
    .await;
    assert!(events(&log).contains(&SipEvent::Ended {
        leg,
        by: Party::Local,
        cause: EndCause::Normal
    }));
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_caller_is_answered_and_hangs_up() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Answer);
    let hub_addr = handle.local_addr().to_string();
    let port = (rtp_port().parse::<u32>().unwrap() + 20).to_string();
    let args: Vec<String> = [
        "call",
        "--hub",
        &hub_addr,
        "--user",
        "+8613800138000",
        "--to",
        "+8610",
        "--rtp-port",
        &port,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut child, mut lines) = peer(&args);
    expect_line(&mut lines, "CONFIRMED").await;
    expect_line(&mut lines, "DISCONNECTED").await;
    assert!(child.wait().await.unwrap().success());
    wait_for(&log, "ended by the caller", |evs| {
        evs.iter().any(|e| {
            matches!(
                e,
                SipEvent::Ended {
                    by: Party::Remote,
                    cause: EndCause::Normal,
                    ..
                }
            )
        })
    })
    .await;
    match &events(&log)[0] {
        SipEvent::IncomingCall {
            origin,
            from,
            to,
            remote_sdp,
            ..
        } => {
            assert_eq!(
                origin,
                &CallOrigin::Trunk {
                    name: "loopback-carrier".into()
                }
            );
            assert_eq!(from.user.as_deref(), Some("+8613800138000"));
            assert_eq!(to.user.as_deref(), Some("+8610"));
            assert!(remote_sdp.as_deref().unwrap().contains("PCMU"));
        }
        other => panic!("{other:?}"),
    }
    let incoming = events(&log)
        .iter()
        .filter(|e| matches!(e, SipEvent::IncomingCall { .. }))
        .count();
    assert_eq!(incoming, 1, "{:#?}", events(&log));
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_from_a_source_no_trunk_allows_gets_403() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Answer);
    let hub_addr = handle.local_addr().to_string();
    let port = (rtp_port().parse::<u32>().unwrap() + 10).to_string();
    // 127.0.0.2 is loopback too, but not in the trunk's allow-list (127.0.0.1/32).
    let args: Vec<String> = [
        "call",
        "--hub",
        &hub_addr,
        "--bind",
        "127.0.0.2",
        "--to",
        "+8610",
        "--rtp-port",
        &port,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut child, mut lines) = peer(&args);
    let line = expect_line(&mut lines, "DISCONNECTED").await;
    assert_eq!(line, "DISCONNECTED 403");
    let _ = child.wait().await;
    assert!(events(&log).is_empty(), "{:?}", events(&log));
    handle.shutdown().await;
}
