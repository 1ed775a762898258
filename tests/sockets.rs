//! The agent and supervisor sockets against a real hub: auth, heartbeats, state, reconnect,
//! error frames, events in the store.

mod common;

use std::time::Duration;

use common::{next_frame, send_text, ws_connect, TestHub};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn sockets_refuse_the_unauthenticated_the_wrong_role_and_other_origins() {
    let dbs = common::databases().await;
    let hub = TestHub::start(&dbs[0]).await;
    let agent = hub.token("agent1").await;
    let admin = hub.token("admin1").await;
    let status = |e: tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(res) => res.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    let err = ws_connect(&hub.ws_url("/api/v1/agent/ws"), "")
        .await
        .unwrap_err();
    assert_eq!(status(err), 401);
    let err = ws_connect(&hub.ws_url("/api/v1/supervisor/ws"), "")
        .await
        .unwrap_err();
    assert_eq!(status(err), 401);
    let err = ws_connect(&hub.ws_url("/api/v1/supervisor/ws"), &agent)
        .await
        .unwrap_err();
    assert_eq!(
        status(err),
        403,
        "an agent is refused the supervisor socket"
    );
    let err = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &admin)
        .await
        .unwrap_err();
    assert_eq!(status(err), 403, "admins take no contacts");
    let err = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &"0".repeat(64))
        .await
        .unwrap_err();
    assert_eq!(status(err), 401);

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = hub
        .ws_url("/api/v1/agent/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {agent}").parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert_eq!(status(err), 403, "cross-site socket hijacking is refused");
    hub.stop().await;
}

#[tokio::test]
async fn agent_state_survives_a_reconnect_and_supervisors_see_every_change() {
    for db in common::databases().await {
        let hub = TestHub::start(&db).await;
        let agent = hub.token("agent1").await;
        let supervisor = hub.token("super1").await;
        let mut sup = ws_connect(&hub.ws_url("/api/v1/supervisor/ws"), &supervisor)
            .await
            .unwrap();
        let hello = next_frame(&mut sup).await;
        assert_eq!(hello["type"], "hello");
        let agents = hello["agents"].as_array().unwrap();
        assert_eq!(
            agents.len(),
            3,
            "two agents and a supervisor; no admin: {hello}"
        );
        assert!(agents.iter().all(|a| a["state"]["state"] == "logged_out"));

        let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent)
            .await
            .unwrap();
        let hello = next_frame(&mut ws).await;
        assert_eq!(hello["type"], "hello", "{}", db.name);
        assert_eq!(hello["agent"]["username"], "agent1");
        assert_eq!(hello["state"]["state"], "logged_out");
        assert_eq!(hello["heartbeat_secs"], 1);
        let agent_id = hello["agent"]["id"].as_i64().unwrap();

        send_text(&mut ws, r#"{"type":"set_state","state":"available"}"#).await;
        let r = next_frame(&mut ws).await;
        assert_eq!(
            (r["type"].as_str(), r["state"]["state"].as_str()),
            (Some("agent_state"), Some("available"))
        );
        let seen = next_frame(&mut sup).await;
        assert_eq!(seen["type"], "agent_state");
        assert_eq!(
            (seen["agent_id"].as_i64(), seen["state"]["state"].as_str()),
            (Some(agent_id), Some("available"))
        );

        send_text(
            &mut ws,
            r#"{"type":"set_state","state":"not_ready","reason":"lunch"}"#,
        )
        .await;
        let r = next_frame(&mut ws).await;
        assert_eq!(
            (r["state"]["state"].as_str(), r["state"]["reason"].as_str()),
            (Some("not_ready"), Some("lunch"))
        );
        assert_eq!(next_frame(&mut sup).await["state"]["reason"], "lunch");

        // The connection drops; a new socket within the grace period gets the same state back.
        drop(ws);
        let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent)
            .await
            .unwrap();
        let hello = next_frame(&mut ws).await;
        assert_eq!(
            (
                hello["state"]["state"].as_str(),
                hello["state"]["reason"].as_str()
            ),
            (Some("not_ready"), Some("lunch")),
            "{}",
            db.name
        );
        drop(ws);

        // Gone for longer than the grace (2 s in tests): logged out, and supervisors are told.
        let out = tokio::time::timeout(Duration::from_secs(6), next_frame(&mut sup))
            .await
            .unwrap();
        assert_eq!(out["state"]["state"], "logged_out", "{out}");

        // Every change is in the agent event log, with its cause.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = hub.store().agent_events(agent_id, 100).await.unwrap();
        let states: Vec<_> = events.iter().map(|e| e.state.clone().unwrap()).collect();
        assert_eq!(
            states,
            vec!["available", "not_ready", "logged_out"],
            "{}",
            db.name
        );
        assert_eq!(events[1].reason.as_deref(), Some("lunch"));
        assert_eq!(events[0].data["cause"], "agent", "chosen by the agent");
        assert_eq!(events[2].data["cause"], "disconnected");
        hub.stop().await;
    }
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_a_persistent_offender_is_disconnected() {
    let dbs = common::databases().await;
    let hub = TestHub::start(&dbs[0]).await;
    let agent = hub.token("agent2").await;
    let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent)
        .await
        .unwrap();
    next_frame(&mut ws).await;
    let cases = [
        ("not json", "invalid_json"),
        (r#"{"no":"type"}"#, "invalid_message"),
        (r#"{"type":"launch_rockets"}"#, "unknown_type"),
        (r#"{"type":"set_state","state":"busy"}"#, "invalid_state"),
        (
            r#"{"type":"set_state","state":"not_ready"}"#,
            "state_refused",
        ),
        (
            r#"{"type":"set_state","state":"not_ready","reason":"<b>x</b>"}"#,
            "state_refused",
        ),
        (
            r#"{"type":"set_state","state":"not_ready","reason":7}"#,
            "invalid_reason",
        ),
    ];
    for (frame, code) in cases {
        send_text(&mut ws, frame).await;
        let e = next_frame(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame}"
        );
    }
    send_text(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(
        next_frame(&mut ws).await["type"],
        "pong",
        "still usable after errors"
    );
    // The state did not change through any of that.
    send_text(&mut ws, r#"{"type":"set_state","state":"logged_out"}"#).await;
    assert_eq!(next_frame(&mut ws).await["state"]["state"], "logged_out");

    // An oversized frame closes the socket; so do 20 bad frames.
    let mut ws2 = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent)
        .await
        .unwrap();
    next_frame(&mut ws2).await;
    send_text(&mut ws2, &"x".repeat(100 * 1024)).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws2.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(closed);

    for _ in 0..13 {
        send_text(&mut ws, "garbage").await;
    }
    let mut close_code = None;
    let mut errors = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" {
                    errors += 1;
                }
            }
            Message::Close(frame) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        errors, 13,
        "7 before + 13 = 20 error frames, then the close"
    );
    assert_eq!(close_code, Some(1008));
    hub.stop().await;
}

#[tokio::test]
async fn heartbeats_flow_and_a_silent_client_is_dropped() {
    let dbs = common::databases().await;
    let hub = TestHub::start(&dbs[0]).await;
    let agent = hub.token("agent1").await;
    let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent)
        .await
        .unwrap();
    // The client neither reads nor writes (so it sends no pongs either): after three
    // heartbeats of silence the server closes. Then read what it sent.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let mut heartbeats = 0;
    let mut closed = false;
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(msg))) => msg,
            // The server hung up (reading its close frame can race the client's queued pong).
            Ok(None) | Ok(Some(Err(_))) => {
                closed = true;
                break;
            }
            Err(_) => break,
        };
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "heartbeat" {
                    assert!(v["server_time"].as_str().unwrap().ends_with('Z'));
                    heartbeats += 1;
                }
            }
            Message::Close(f) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(1001));
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(heartbeats >= 2, "{heartbeats}");
    assert!(closed, "a silent client is disconnected");
    hub.stop().await;
}
