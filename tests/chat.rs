//! Web chat through the real hub with WebSocket clients on both sides: a customer starts a chat
//! (matched to their record), an agent gets the offer with the screen-pop and the transcript,
//! messages cross in order and are stored before they are acknowledged, resends are stored
//! once, a reconnect resumes where it stopped, and a hub restart loses nothing. Limits, idle
//! and abandon timers, transfers, attachments and the out-of-hours requests.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{next_matching, next_of, send_text, ws_connect, TestHub, Ws};
use reqwest::Method;
use serde_json::{json, Value};

fn rules(dir: &Path) {
    let mut queues = String::new();
    for q in ["support", "sales", "billing"] {
        queues += &format!(
            "[[queue]]\nname = \"{q}\"\nskills = [\"{q}:2\"]\noffer_timeout_secs = 30\nwrap_up_secs = 60\n\n"
        );
    }
    std::fs::write(dir.join("queues.toml"), queues).unwrap();
    std::fs::write(
        dir.join("routing.toml"),
        "[[rule]]\nname = \"billing-topic\"\nivr_choice = \"billing\"\nqueue = \"billing\"\n\n\
         [[rule]]\nname = \"everything_else\"\nqueue = \"support\"\n",
    )
    .unwrap();
}

struct Setup {
    hub: TestHub,
    _rules: tempfile::TempDir,
}

async fn start(db: &common::TestDb, tune: impl FnOnce(&mut contact_hub::config::Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    rules(dir.path());
    let mut config = common::config_for(db);
    config.routing.rules_dir = dir.path().display().to_string();
    tune(&mut config);
    let hub = TestHub::start_with(config).await;
    Setup { hub, _rules: dir }
}

async fn profile(hub: &TestHub, user: &str, skills: &[&str]) {
    let admin = hub.token("admin1").await;
    let id = hub.store().user_by_name(user).await.unwrap().unwrap().id;
    let (s, b) = hub
        .send_json(
            Method::PUT,
            &admin,
            &format!("/api/v1/users/{id}/profile"),
            json!({"skills": skills, "chat": 3}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

/// An agent socket, logged in and available.
async fn available_agent(hub: &TestHub, user: &str) -> Ws {
    let token = hub.token(user).await;
    let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &token)
        .await
        .unwrap();
    next_of(&mut ws, "hello").await;
    send_text(&mut ws, r#"{"type":"set_state","state":"available"}"#).await;
    let s = next_of(&mut ws, "agent_state").await;
    assert_eq!(s["state"]["state"], "available", "{s}");
    ws
}

async fn customer_socket(hub: &TestHub) -> Ws {
    ws_connect(&hub.ws_url("/chat/ws"), "").await.unwrap()
}

async fn send(ws: &mut Ws, v: Value) {
    send_text(ws, &v.to_string()).await;
}

async fn next(ws: &mut Ws, kind: &str) -> Value {
    next_of(ws, kind).await
}

/// The next customer-side `message` frame.
async fn message(ws: &mut Ws) -> Value {
    next(ws, "message").await
}

/// The next `chat_message` an agent gets that the customer wrote.
async fn from_customer(ws: &mut Ws) -> Value {
    loop {
        let m = next(ws, "chat_message").await;
        if m["message"]["from"] == "customer" {
            return m;
        }
    }
}

async fn known_customer(hub: &TestHub) -> i64 {
    let token = hub.token("agent1").await;
    let (s, c) = hub
        .send_json(
            Method::POST,
            &token,
            "/api/v1/customers",
            json!({"name": "王小明", "tier": "vip", "emails": ["wang@example.cn"], "phones": ["13800138000"], "language": "zh-CN"}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    c["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_chat_crosses_both_ways_in_order_with_the_screen_pop_and_ends_with_a_disposition() {
    for db in common::databases().await {
        let s = start(&db, |_| {}).await;
        let hub = &s.hub;
        profile(hub, "agent1", &["support:3"]).await;
        let customer_id = known_customer(hub).await;
        let mut agent = available_agent(hub, "agent1").await;

        let mut cust = customer_socket(hub).await;
        send(
            &mut cust,
            json!({"type": "start", "name": "王小明", "email": "Wang@Example.cn", "language": "zh-CN",
                   "message": {"client_id": "c1", "text": "你好，我的墨盒破了"}}),
        )
        .await;
        let started = next(&mut cust, "started").await;
        assert_eq!(started["state"], "queued", "{started}");
        let token = started["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("chs_"));
        // The first message came with the start: it is the conversation's seq 1.
        let first = message(&mut cust).await;
        assert_eq!(
            (first["seq"].as_u64(), first["text"].as_str()),
            (Some(1), Some("你好，我的墨盒破了"))
        );

        let offer = next(&mut agent, "offer").await;
        assert_eq!(offer["contact"]["channel"], "chat", "{offer}");
        assert_eq!(
            offer["screen_pop"]["customer"]["id"], customer_id,
            "matched by email: {offer}"
        );
        assert_eq!(offer["chat"]["messages"][0]["text"], "你好，我的墨盒破了");
        assert_eq!(offer["chat"]["visitor"]["email"], "wang@example.cn");
        let contact = offer["contact"]["id"].as_i64().unwrap();
        send(&mut agent, json!({"type": "accept", "contact_id": contact})).await;
        next(&mut agent, "contact_state").await;

        let joined = message(&mut cust).await;
        assert_eq!(joined["event"], "agent_joined", "{joined}");
        assert!(joined["text"].as_str().unwrap().contains("agent1 display"));

        // Alternate messages; each side must see the other's in order, acknowledged with
        // increasing seq numbers.
        let mut seqs = Vec::new();
        for i in 0..5 {
            send(&mut cust, json!({"type": "message", "client_id": format!("cm{i}"), "text": format!("客户 {i}")})).await;
            let ack = next(&mut cust, "ack").await;
            assert_eq!(ack["client_id"], format!("cm{i}"));
            seqs.push(ack["seq"].as_u64().unwrap());
            let got = from_customer(&mut agent).await;
            assert_eq!(got["message"]["text"], format!("客户 {i}"));
            assert_eq!(got["contact_id"], contact);

            send(&mut agent, json!({"type": "chat_send", "contact_id": contact, "client_id": format!("am{i}"), "text": format!("客服 {i}")})).await;
            let ack = next(&mut agent, "chat_ack").await;
            seqs.push(ack["message"]["seq"].as_u64().unwrap());
            let got = message(&mut cust).await;
            assert_eq!(got["text"], format!("客服 {i}"));
            assert_eq!(got["from"], "agent");
            assert!(
                got.get("agent_id").is_none(),
                "agent ids stay internal: {got}"
            );
        }
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

        // Typing and read receipts cross; notes do not reach the customer.
        send(&mut cust, json!({"type": "typing", "active": true})).await;
        assert_eq!(next(&mut agent, "chat_typing").await["active"], true);
        send(
            &mut agent,
            json!({"type": "chat_read", "contact_id": contact, "seq": seqs[seqs.len() - 2]}),
        )
        .await;
        assert_eq!(
            next(&mut cust, "read").await["seq"].as_u64(),
            Some(seqs[seqs.len() - 2])
        );
        send(&mut agent, json!({"type": "chat_note", "contact_id": contact, "client_id": "n1", "text": "VIP：优先补发"})).await;
        let note = next(&mut agent, "chat_ack").await;
        assert_eq!(note["message"]["from"], "note");

        // A resend of an acknowledged message is stored once and acknowledged again.
        send(
            &mut cust,
            json!({"type": "message", "client_id": "cm0", "text": "客户 0"}),
        )
        .await;
        assert_eq!(next(&mut cust, "ack").await["seq"].as_u64(), Some(seqs[0]));

        // The customer reconnects (a reload) and resumes after what it had: nothing is
        // missing, nothing is duplicated, notes stay internal.
        drop(cust);
        send(&mut agent, json!({"type": "chat_send", "contact_id": contact, "client_id": "gone", "text": "您还在吗？"})).await;
        next(&mut agent, "chat_ack").await;
        let mut cust = customer_socket(hub).await;
        send(
            &mut cust,
            json!({"type": "resume", "token": token, "last_seq": seqs[3]}),
        )
        .await;
        let resumed = next(&mut cust, "resumed").await;
        assert_eq!(resumed["state"], "connected");
        let mut replay = Vec::new();
        loop {
            let m = message(&mut cust).await;
            replay.push((
                m["seq"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            ));
            if m["text"] == "您还在吗？" {
                break;
            }
        }
        let want: Vec<u64> = seqs.iter().copied().filter(|s| *s > seqs[3]).collect();
        assert_eq!(
            replay.iter().map(|r| r.0).collect::<Vec<_>>()[..want.len()],
            want[..]
        );
        assert!(
            !replay.iter().any(|r| r.1.contains("VIP")),
            "a note reached the customer: {replay:?}"
        );

        // The agent's history is the same conversation, notes included, in seq order.
        send(
            &mut agent,
            json!({"type": "chat_history", "contact_id": contact}),
        )
        .await;
        let h = next(&mut agent, "chat_history").await;
        let hist: Vec<u64> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert!(hist.windows(2).all(|w| w[0] < w[1]), "{hist:?}");
        assert!(h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["from"] == "note"));

        // The store has every message exactly once.
        let conv = offer["contact"]["conversation_id"].as_i64().unwrap();
        let stored = hub.store().conversation_messages(conv).await.unwrap();
        assert_eq!(stored.len(), hist.len(), "{db_name}", db_name = db.name);

        // The agent ends the chat: the customer is told, the contact goes to wrap-up and
        // closes with the disposition.
        send(
            &mut agent,
            json!({"type": "chat_end", "contact_id": contact}),
        )
        .await;
        assert_eq!(next(&mut cust, "ended").await["reason"], "agent");
        let wrap =
            next_matching(&mut agent, Duration::from_secs(5), |t| t == "contact_state").await;
        assert_eq!(wrap["state"], "wrap_up", "{wrap}");
        send(&mut agent, json!({"type": "wrap_up", "contact_id": contact, "disposition": "resolved", "notes": "已补发"})).await;
        let closed = next_of(&mut agent, "contact_state").await;
        assert_eq!(closed["state"], "closed");
        // Writing after the end is refused with a reason.
        send(
            &mut cust,
            json!({"type": "message", "client_id": "late", "text": "还有一个问题"}),
        )
        .await;
        let e = next(&mut cust, "error").await;
        assert_eq!(
            (e["code"].as_str(), e["client_id"].as_str()),
            (Some("ended"), Some("late"))
        );
        s.hub.stop().await;
    }
}
