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

/// Starts a chat and returns the customer socket and its token.
async fn start_chat(hub: &TestHub, start: Value) -> (Ws, String) {
    let mut cust = customer_socket(hub).await;
    send(&mut cust, start).await;
    let started = next(&mut cust, "started").await;
    (cust, started["token"].as_str().unwrap().to_string())
}

async fn accept_next_offer(agent: &mut Ws) -> Value {
    let offer = next(agent, "offer").await;
    let contact = offer["contact"]["id"].as_i64().unwrap();
    send(agent, json!({"type": "accept", "contact_id": contact})).await;
    let s = next(agent, "contact_state").await;
    assert_eq!(s["state"], "connected", "{s}");
    offer
}

#[tokio::test]
async fn a_chat_and_its_messages_survive_a_hub_restart() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        rules(dir.path());
        let mut config = common::config_for(&db);
        config.routing.rules_dir = dir.path().display().to_string();
        let hub = TestHub::start_with(config.clone()).await;
        profile(&hub, "agent1", &["support:3"]).await;
        let mut agent = available_agent(&hub, "agent1").await;
        let (mut cust, token) = start_chat(
            &hub,
            json!({"type": "start", "name": "陳大文", "phone": "+886 2 2345 6789", "language": "zh-TW",
                   "message": {"client_id": "t1", "text": "請問營業時間？"}}),
        )
        .await;
        let offer = accept_next_offer(&mut agent).await;
        let contact = offer["contact"]["id"].as_i64().unwrap();
        send(
            &mut cust,
            json!({"type": "message", "client_id": "t2", "text": "還有，週六有開嗎？"}),
        )
        .await;
        next(&mut cust, "ack").await;
        send(&mut agent, json!({"type": "chat_send", "contact_id": contact, "client_id": "r1", "text": "週一至週五 9:00–18:00"})).await;
        next(&mut agent, "chat_ack").await;
        drop(cust);
        drop(agent);
        hub.stop().await;

        // The hub comes back: the customer resumes with the full history, in order, and the
        // chat is back in line for the agent (its previous agent first).
        let hub = TestHub::start_with(config).await;
        let mut cust = customer_socket(&hub).await;
        send(
            &mut cust,
            json!({"type": "resume", "token": token, "last_seq": 0}),
        )
        .await;
        let resumed = next(&mut cust, "resumed").await;
        assert_eq!(resumed["state"], "queued", "{resumed}");
        let mut texts = Vec::new();
        let mut seqs = Vec::new();
        while texts.len() < 4 {
            let m = message(&mut cust).await;
            seqs.push(m["seq"].as_u64().unwrap());
            texts.push(m["text"].as_str().unwrap().to_string());
        }
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        // The agent's joining is told whenever it reached the conversation; the rest keeps
        // the order it was written in.
        assert!(texts.iter().any(|t| t.contains("為您服務")), "{texts:?}");
        let written: Vec<&String> = texts.iter().filter(|t| !t.contains("為您服務")).collect();
        assert_eq!(
            written,
            [
                "請問營業時間？",
                "還有，週六有開嗎？",
                "週一至週五 9:00–18:00"
            ]
        );
        // Going available takes the waiting chat at once (the state is told as `reserved`).
        let token_a = hub.token("agent1").await;
        let mut agent = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &token_a)
            .await
            .unwrap();
        next(&mut agent, "hello").await;
        send(
            &mut agent,
            json!({"type": "set_state", "state": "available"}),
        )
        .await;
        let offer = next(&mut agent, "offer").await;
        assert_eq!(offer["contact"]["id"], contact);
        assert_eq!(
            offer["chat"]["messages"].as_array().unwrap().len(),
            4,
            "{offer}"
        );
        send(&mut agent, json!({"type": "accept", "contact_id": contact})).await;
        next(&mut agent, "contact_state").await;
        send(&mut agent, json!({"type": "chat_send", "contact_id": contact, "client_id": "r2", "text": "週六休息"})).await;
        next(&mut agent, "chat_ack").await;
        // After the restart the conversation goes on with the next seq numbers.
        loop {
            let m = message(&mut cust).await;
            if m["text"] == "週六休息" {
                assert!(m["seq"].as_u64().unwrap() > 4, "{m}");
                break;
            }
        }
        hub.stop().await;
    }
}

#[tokio::test]
async fn bad_frames_too_long_messages_and_floods_are_refused_and_persistent_offenders_disconnected()
{
    for db in common::databases().await {
        let s = start(&db, |c| c.chat.rate_per_minute = 6).await;
        let hub = &s.hub;
        let mut cust = customer_socket(hub).await;
        // Before a session exists, messages are refused.
        send(
            &mut cust,
            json!({"type": "message", "client_id": "x", "text": "hi"}),
        )
        .await;
        assert_eq!(next(&mut cust, "error").await["code"], "no_session");
        send_text(&mut cust, "{not json").await;
        assert_eq!(next(&mut cust, "error").await["code"], "invalid_json");
        send(&mut cust, json!({"type": "launch_rockets"})).await;
        assert_eq!(next(&mut cust, "error").await["code"], "unknown_type");
        send(
            &mut cust,
            json!({"type": "resume", "token": "chs_nobody", "last_seq": 0}),
        )
        .await;
        assert_eq!(next(&mut cust, "error").await["code"], "unknown_session");
        send(
            &mut cust,
            json!({"type": "start", "name": "x", "phone": "12"}),
        )
        .await;
        assert_eq!(next(&mut cust, "error").await["code"], "invalid_field");

        send(&mut cust, json!({"type": "start", "name": "Flood"})).await;
        next(&mut cust, "started").await;
        let long = "长".repeat(2001);
        send(
            &mut cust,
            json!({"type": "message", "client_id": "long", "text": long}),
        )
        .await;
        let e = next(&mut cust, "error").await;
        assert_eq!(
            (e["code"].as_str(), e["client_id"].as_str()),
            (Some("too_long"), Some("long"))
        );
        // An HTML message is stored as the text it is (consoles render text, never HTML).
        send(
            &mut cust,
            json!({"type": "message", "client_id": "h", "text": "<img src=x onerror=alert(1)>"}),
        )
        .await;
        let ack = next(&mut cust, "ack").await;
        assert_eq!(ack["client_id"], "h");
        // rate 6/minute with a burst of 3: the fourth new message within the burst is refused.
        let mut refused = 0;
        for i in 0..5 {
            send(
                &mut cust,
                json!({"type": "message", "client_id": format!("f{i}"), "text": "spam"}),
            )
            .await;
            let f = next_matching(&mut cust, Duration::from_secs(5), |t| {
                t == "ack" || t == "error"
            })
            .await;
            if f["type"] == "error" {
                assert_eq!(f["code"], "rate_limited", "{f}");
                refused += 1;
            }
        }
        assert!(refused >= 2, "{refused} refused");
        let conv = hub
            .store()
            .list_contacts(&contact_hub::store::ContactFilter {
                limit: 5,
                ..Default::default()
            })
            .await
            .unwrap()[0]
            .conversation_id
            .unwrap();
        let stored = hub.store().conversation_messages(conv).await.unwrap();
        assert!(stored
            .iter()
            .any(|m| m.body == "<img src=x onerror=alert(1)>"));
        assert!(!stored.iter().any(|m| m.body.starts_with("长长")));

        // A client that keeps sending bad frames is disconnected (close 1008).
        let mut bad = customer_socket(hub).await;
        for _ in 0..25 {
            use futures_util::SinkExt;
            if bad
                .send(tokio_tungstenite::tungstenite::Message::Text("nope".into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let closed = loop {
            use futures_util::StreamExt;
            match tokio::time::timeout(Duration::from_secs(5), bad.next()).await {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))))) => {
                    break Some(u16::from(f.code))
                }
                Ok(Some(Ok(_))) => continue,
                _ => break None,
            }
        };
        assert_eq!(closed, Some(1008));
        s.hub.stop().await;
    }
}

#[tokio::test]
async fn a_silent_customer_is_warned_then_the_chat_closes_and_goes_to_wrap_up() {
    for db in common::databases().await {
        let s = start(&db, |c| {
            c.chat.idle_timeout_secs = 3;
            c.chat.idle_warning_secs = 2;
        })
        .await;
        let hub = &s.hub;
        profile(hub, "agent1", &["support:3"]).await;
        let mut agent = available_agent(hub, "agent1").await;
        let (mut cust, _) = start_chat(
            hub,
            json!({"type": "start", "name": "Quiet", "language": "en"}),
        )
        .await;
        let offer = accept_next_offer(&mut agent).await;
        let contact = offer["contact"]["id"].as_i64().unwrap();
        send(&mut agent, json!({"type": "chat_send", "contact_id": contact, "client_id": "q", "text": "Are you there?"})).await;
        next(&mut agent, "chat_ack").await;
        let mut warned = false;
        loop {
            let m = message(&mut cust).await;
            if m["event"] == "idle_warning" {
                warned = true;
            }
            if m["event"] == "ended_idle" {
                break;
            }
        }
        assert!(warned);
        assert_eq!(next(&mut cust, "ended").await["reason"], "idle");
        assert_eq!(next(&mut agent, "chat_ended").await["reason"], "idle");
        let w = next_of(&mut agent, "contact_state").await;
        assert_eq!(w["state"], "wrap_up", "{w}");
        s.hub.stop().await;
    }
}

#[tokio::test]
async fn a_customer_who_leaves_the_queue_abandons_and_the_offer_is_withdrawn() {
    for db in common::databases().await {
        let s = start(&db, |c| c.chat.abandon_after_secs = 1).await;
        let hub = &s.hub;
        let (cust, _) = start_chat(hub, json!({"type": "start", "name": "Gone", "message": {"client_id": "g", "text": "hello?"}})).await;
        drop(cust);
        // Nobody is logged in; after the grace the contact is abandoned, not left waiting.
        let mut state = String::new();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let c = &hub
                .store()
                .list_contacts(&contact_hub::store::ContactFilter {
                    limit: 1,
                    ..Default::default()
                })
                .await
                .unwrap()[0];
            state = c.state.to_string();
            if state == "abandoned" {
                break;
            }
        }
        assert_eq!(state, "abandoned");
        s.hub.stop().await;
    }
}

#[tokio::test]
async fn a_chat_transferred_to_a_queue_reaches_an_agent_there_with_its_history() {
    for db in common::databases().await {
        let s = start(&db, |_| {}).await;
        let hub = &s.hub;
        profile(hub, "agent1", &["support:3"]).await;
        profile(hub, "agent2", &["billing:3"]).await;
        let mut a1 = available_agent(hub, "agent1").await;
        let mut a2 = available_agent(hub, "agent2").await;
        let (mut cust, _) = start_chat(
            hub,
            json!({"type": "start", "name": "王小明", "message": {"client_id": "m", "text": "我想问发票的问题"}}),
        )
        .await;
        let offer = accept_next_offer(&mut a1).await;
        let contact = offer["contact"]["id"].as_i64().unwrap();
        send(
            &mut a1,
            json!({"type": "transfer", "contact_id": contact, "queue": "billing"}),
        )
        .await;
        let t = next(&mut a1, "transferred").await;
        let new_contact = t["new_contact_id"].as_i64().unwrap();
        assert_ne!(new_contact, contact);
        assert_eq!(next_of(&mut a1, "contact_state").await["state"], "wrap_up");
        // The customer is told and waits again; the billing agent gets the whole history.
        loop {
            if message(&mut cust).await["event"] == "transferred" {
                break;
            }
        }
        let offer2 = accept_next_offer(&mut a2).await;
        assert_eq!(offer2["contact"]["id"], new_contact);
        assert_eq!(offer2["contact"]["queue"], "billing");
        assert_eq!(offer2["chat"]["messages"][0]["text"], "我想问发票的问题");
        send(&mut a2, json!({"type": "chat_send", "contact_id": new_contact, "client_id": "b", "text": "我是账务部的"})).await;
        next(&mut a2, "chat_ack").await;
        loop {
            let m = message(&mut cust).await;
            if m["from"] == "agent" {
                assert_eq!(m["text"], "我是账务部的");
                assert_eq!(m["name"], "agent2 display");
                break;
            }
        }
        // The first agent may no longer write to the customer.
        send(
            &mut a1,
            json!({"type": "chat_send", "contact_id": contact, "client_id": "z", "text": "还在"}),
        )
        .await;
        assert_eq!(next(&mut a1, "error").await["code"], "not_allowed");
        s.hub.stop().await;
    }
}

#[tokio::test]
async fn attachments_are_type_checked_stored_delivered_and_served_as_downloads() {
    for db in common::databases().await {
        let s = start(&db, |c| c.chat.max_attachment_bytes = 64 * 1024).await;
        let hub = &s.hub;
        profile(hub, "agent1", &["support:3"]).await;
        let mut agent = available_agent(hub, "agent1").await;
        let (mut cust, token) = start_chat(hub, json!({"type": "start", "name": "Pic"})).await;
        let offer = accept_next_offer(&mut agent).await;
        let contact = offer["contact"]["id"].as_i64().unwrap();
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&[0u8; 100]);
        let up = |body: Vec<u8>, ctype: &'static str, name: &'static str, id: &'static str| {
            hub.http
                .post(hub.url("/chat/attachments"))
                .bearer_auth(&token)
                .header("content-type", ctype)
                .header("x-filename", name)
                .header("x-client-id", id)
                .body(body)
                .send()
        };
        let res = up(png.clone(), "image/png", "%E7%A0%B4%E6%8D%9F.png", "u1")
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        let att = body["message"]["attachment"].clone();
        assert_eq!(att["name"], "破损.png");
        assert_eq!(att["content_type"], "image/png");
        // The agent gets it as a message; the customer's other sockets too.
        let m = from_customer(&mut agent).await;
        assert_eq!(m["message"]["attachment"]["id"], att["id"]);
        let _ = &mut cust;
        // Downloads: the customer with their token, agents with their login; always as a file.
        let id = att["id"].as_i64().unwrap();
        let res = hub
            .http
            .get(hub.url(&format!("/chat/attachments/{id}?token={token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"));
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        assert_eq!(res.bytes().await.unwrap().as_ref(), &png[..]);
        let res = hub
            .http
            .get(hub.url(&format!("/chat/attachments/{id}?token=chs_other")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let agent_token = hub.token("agent1").await;
        let res = hub
            .http
            .get(hub.url(&format!("/api/v1/attachments/{id}")))
            .bearer_auth(&agent_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        // An executable, a mislabelled file and an oversized one are refused, with reasons.
        let res = up(
            b"MZ\x90\x00\x03\x00\x00\x00".to_vec(),
            "application/octet-stream",
            "x.exe",
            "u2",
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 415);
        let res = up(png.clone(), "application/pdf", "fake.pdf", "u3")
            .await
            .unwrap();
        assert_eq!(res.status(), 415);
        let mut big = b"%PDF-".to_vec();
        big.resize(65 * 1024, b'x');
        let res = up(big, "application/pdf", "big.pdf", "u4").await.unwrap();
        assert_eq!(res.status(), 413);
        let _ = contact;
        s.hub.stop().await;
    }
}

#[tokio::test]
async fn with_nobody_available_the_widget_can_leave_a_message_or_ask_for_a_callback() {
    for db in common::databases().await {
        let s = start(&db, |_| {}).await;
        let hub = &s.hub;
        let status: Value = hub
            .http
            .get(hub.url("/chat/status?topic=billing"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["open"], false, "nobody is logged in: {status}");
        assert_eq!(status["within_hours"], true);
        let res = hub
            .http
            .post(hub.url("/chat/messages"))
            .json(&json!({"name": "刘芳", "email": "liufang@example.cn", "topic": "billing", "text": "请把发票寄到新地址", "language": "zh-CN"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let r: Value = res.json().await.unwrap();
        assert!(r["reference"].as_str().unwrap().starts_with("C-"));
        let c = hub
            .store()
            .get_contact(r["contact_id"].as_i64().unwrap())
            .await
            .unwrap();
        assert_eq!(
            (c.channel.as_str(), c.queue.as_deref(), c.state.as_str()),
            ("email", Some("billing"), "queued")
        );
        let msgs = hub
            .store()
            .conversation_messages(c.conversation_id.unwrap())
            .await
            .unwrap();
        assert_eq!(msgs[0].body, "请把发票寄到新地址");

        let res = hub
            .http
            .post(hub.url("/chat/callbacks"))
            .json(&json!({"name": "刘芳", "phone": "139 1000 2000", "text": "下午三点后", "language": "zh-CN"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let r: Value = res.json().await.unwrap();
        let c = hub
            .store()
            .get_contact(r["contact_id"].as_i64().unwrap())
            .await
            .unwrap();
        assert_eq!(c.channel.as_str(), "callback");
        let msgs = hub
            .store()
            .conversation_messages(c.conversation_id.unwrap())
            .await
            .unwrap();
        assert_eq!(msgs[0].meta["phone"], "+8613910002000");
        // Missing what is needed gets a clear 422.
        let res = hub
            .http
            .post(hub.url("/chat/callbacks"))
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422);
        let res = hub
            .http
            .post(hub.url("/chat/messages"))
            .json(&json!({"text": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422);
        let res = hub
            .http
            .post(hub.url("/chat/messages"))
            .json(&json!({"text": "hi", "email": "a@b.cn", "bogus": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "unknown fields are refused");

        // With an agent available the chat is open.
        profile(hub, "agent1", &["billing:3"]).await;
        let _agent = available_agent(hub, "agent1").await;
        let status: Value = hub
            .http
            .get(hub.url("/chat/status?topic=billing"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["open"], true, "{status}");
        assert_eq!(status["agents_logged_in"], 1);
        // (Not necessarily free: the web message left above is already offered to them.)
        s.hub.stop().await;
    }
}

#[tokio::test]
async fn the_demo_customer_opens_a_chat_when_an_agent_is_available_and_answers_the_agent() {
    let db = &common::databases().await[0];
    let s = start(db, |_| {}).await;
    let hub = &s.hub;
    contact_hub::demo::seed(hub.store(), &hub.running.state.config)
        .await
        .unwrap();
    profile(hub, "agent1", &["support:3"]).await;
    tokio::spawn(contact_hub::demo::sample_chats(
        hub.running.addr,
        hub.running.state.hub.clone(),
    ));
    let mut agent = available_agent(hub, "agent1").await;
    let offer = next_matching(&mut agent, Duration::from_secs(20), |t| t == "offer").await;
    assert_eq!(
        offer["screen_pop"]["customer"]["name"], "王小明",
        "matched by the demo email"
    );
    assert!(offer["chat"]["messages"][0]["text"]
        .as_str()
        .unwrap()
        .contains("墨盒"));
    let contact = offer["contact"]["id"].as_i64().unwrap();
    send(&mut agent, json!({"type": "accept", "contact_id": contact})).await;
    send(&mut agent, json!({"type": "chat_send", "contact_id": contact, "client_id": "d1", "text": "请问订单号是多少？"})).await;
    let reply = next_matching(&mut agent, Duration::from_secs(15), |t| t == "chat_message").await;
    let mut reply = reply;
    while reply["message"]["from"] != "customer" {
        reply = next_matching(&mut agent, Duration::from_secs(15), |t| t == "chat_message").await;
    }
    assert_eq!(reply["message"]["text"], "订单号是 A-10086。");
    s.hub.stop().await;
}
