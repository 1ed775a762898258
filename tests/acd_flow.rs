//! The ACD through the real hub: a contact created over REST is offered on the agent socket
//! with its screen-pop, accepted, completed and wrapped up with a disposition; ring-no-answer;
//! supervisors get §7 statistics; queued contacts survive a restart; rules reload hot.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{next_frame, next_matching, next_of, send_text, ws_connect, TestHub};
use reqwest::Method;
use serde_json::{json, Value};

/// Rules for these tests: the four sample queues open around the clock, with short timeouts,
/// so a test waits seconds, not minutes, whatever the time of day.
fn fast_rules(dir: &Path, offer_timeout: u32) {
    let mut queues = String::new();
    for q in ["support", "sales", "billing", "vip"] {
        queues += &format!(
            "[[queue]]\nname = \"{q}\"\nskills = [\"{q}:2\"]\noffer_timeout_secs = {offer_timeout}\nwrap_up_secs = 60\n\n"
        );
    }
    std::fs::write(dir.join("queues.toml"), queues).unwrap();
    std::fs::write(
        dir.join("routing.toml"),
        "[[rule]]\nname = \"mandarin\"\nlanguage = \"zh\"\nskills = [\"mandarin:3\"]\ncontinue = true\n\n\
         [[rule]]\nname = \"everything_else\"\nqueue = \"support\"\n",
    )
    .unwrap();
}

async fn hub_with_rules(db: &common::TestDb, rules: &Path) -> TestHub {
    let mut config = common::config_for(db);
    config.routing.rules_dir = rules.display().to_string();
    config.routing.reload_ms = 100;
    TestHub::start_with(config).await
}

async fn profile(hub: &TestHub, admin: &str, user: &str, skills: &[&str]) {
    let id = hub.store().user_by_name(user).await.unwrap().unwrap().id;
    let (s, b) = hub
        .send_json(
            Method::PUT,
            admin,
            &format!("/api/v1/users/{id}/profile"),
            json!({"skills": skills, "chat": 2}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

async fn customer(hub: &TestHub, token: &str) -> i64 {
    let (s, c) = hub
        .send_json(Method::POST, token, "/api/v1/customers", json!({"name": "王小明", "tier": "ordinary", "phones": ["13800138000"], "language": "zh-CN"}))
        .await;
    assert_eq!(s, 201, "{c}");
    c["id"].as_i64().unwrap()
}

async fn new_contact(hub: &TestHub, token: &str, body: Value) -> Value {
    let (s, c) = hub
        .send_json(Method::POST, token, "/api/v1/contacts", body)
        .await;
    assert_eq!(s, 201, "{c}");
    c
}

#[tokio::test]
async fn a_chat_is_offered_with_its_screen_pop_accepted_and_wrapped_up_with_a_disposition() {
    for db in common::databases().await {
        let rules = tempfile::tempdir().unwrap();
        fast_rules(rules.path(), 20);
        let hub = hub_with_rules(&db, rules.path()).await;
        let admin = hub.token("admin1").await;
        let supervisor = hub.token("super1").await;
        let agent = hub.token("agent1").await;
        profile(&hub, &admin, "agent1", &["support:3", "mandarin:5"]).await;
        let customer_id = customer(&hub, &agent).await;

        let mut sup = ws_connect(&hub.ws_url("/api/v1/supervisor/ws"), &supervisor)
            .await
            .unwrap();
        let hello = next_frame(&mut sup).await;
        assert!(
            hello["stats"]["agents"]["agents_by_state"].is_object(),
            "{hello}"
        );

        let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent)
            .await
            .unwrap();
        let hello = next_frame(&mut ws).await;
        assert_eq!(hello["state"]["state"], "logged_out");
        assert!(hello["dispositions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "resolved"));
        send_text(&mut ws, r#"{"type":"set_state","state":"available"}"#).await;
        assert_eq!(
            next_frame(&mut ws).await["state"]["state"],
            "available",
            "{}",
            db.name
        );

        let created = new_contact(
            &hub,
            &supervisor,
            json!({"channel": "chat", "customer_id": customer_id, "subject": "墨盒破损"}),
        )
        .await;
        let contact_id = created["contact"]["id"].as_i64().unwrap();
        assert_eq!(
            created["contact"]["queue"], "support",
            "routed by the rules: {created}"
        );
        let offer = next_of(&mut ws, "offer").await;
        assert_eq!(offer["contact"]["id"], contact_id);
        assert_eq!(
            offer["screen_pop"]["customer"]["name"], "王小明",
            "the offer carries the screen-pop"
        );
        assert!(offer["expires_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            next_of(&mut ws, "agent_state").await["state"]["state"],
            "reserved"
        );

        send_text(
            &mut ws,
            &json!({"type": "accept", "contact_id": contact_id}).to_string(),
        )
        .await;
        let cs = next_of(&mut ws, "contact_state").await;
        assert_eq!(
            (cs["contact_id"].as_i64(), cs["state"].as_str()),
            (Some(contact_id), Some("connected"))
        );
        assert_eq!(
            next_of(&mut ws, "agent_state").await["state"]["state"],
            "busy"
        );

        // Bad operations are refused with an error frame and change nothing.
        send_text(
            &mut ws,
            &json!({"type": "accept", "contact_id": contact_id}).to_string(),
        )
        .await;
        assert_eq!(next_of(&mut ws, "error").await["code"], "no_such_offer");
        send_text(
            &mut ws,
            &json!({"type": "wrap_up", "contact_id": contact_id, "disposition": "made_up"})
                .to_string(),
        )
        .await;
        assert_eq!(
            next_of(&mut ws, "error").await["code"],
            "invalid_disposition"
        );
        send_text(
            &mut ws,
            &json!({"type": "complete", "contact_id": 987654}).to_string(),
        )
        .await;
        assert_eq!(next_of(&mut ws, "error").await["code"], "not_allowed");

        send_text(
            &mut ws,
            &json!({"type": "complete", "contact_id": contact_id}).to_string(),
        )
        .await;
        let cs = next_of(&mut ws, "contact_state").await;
        assert_eq!(cs["state"], "wrap_up");
        assert!(cs["wrap_up_until"].as_str().is_some());
        send_text(&mut ws, &json!({"type": "wrap_up", "contact_id": contact_id, "disposition": "resolved", "notes": "已补发墨盒"}).to_string()).await;
        assert_eq!(next_of(&mut ws, "contact_state").await["state"], "closed");
        assert_eq!(
            next_of(&mut ws, "agent_state").await["state"]["state"],
            "available"
        );

        // The supervisor sees the answered contact in the §7 figures.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let support = loop {
            let stats = next_of(&mut sup, "stats").await;
            let q = stats["stats"]["queues"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["queue"] == "support" && q["channel"] == "chat")
                .cloned();
            if let Some(q) = q.filter(|q| q["handled"] == 1) {
                break q;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no stats with the handled contact"
            );
        };
        assert_eq!(
            (support["offered"].as_u64(), support["answered"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(support["service_level"], 1.0);
        assert!(support["aht_ms"].as_f64().unwrap() > 0.0);
        let (_, queues) = hub.get(&agent, "/api/v1/queues").await;
        let rest = queues["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "support")
            .unwrap();
        assert_eq!(
            rest["figures"][0]["answered"], 1,
            "GET /api/v1/queues has the same figures"
        );

        // The contact's record: every step, and the disposition.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, detail) = hub
            .get(&agent, &format!("/api/v1/contacts/{contact_id}"))
            .await;
        assert_eq!(
            detail["contact"]["state"], "closed",
            "{}: {detail}",
            db.name
        );
        let states: Vec<&str> = detail["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["state"].as_str())
            .collect();
        assert_eq!(
            states,
            vec!["queued", "offered", "connected", "wrap_up", "closed"]
        );
        let last = detail["events"].as_array().unwrap().last().unwrap();
        assert_eq!(
            (
                last["data"]["disposition"].as_str(),
                last["data"]["notes"].as_str()
            ),
            (Some("resolved"), Some("已补发墨盒"))
        );
        hub.stop().await;
    }
}

#[tokio::test]
async fn ring_no_answer_requeues_the_contact_and_sets_the_agent_not_ready() {
    let dbs = common::databases().await;
    let rules = tempfile::tempdir().unwrap();
    fast_rules(rules.path(), 1);
    let hub = hub_with_rules(&dbs[0], rules.path()).await;
    let admin = hub.token("admin1").await;
    let agent = hub.token("agent1").await;
    profile(&hub, &admin, "agent1", &["support:3"]).await;
    profile(&hub, &admin, "agent2", &["support:3"]).await;
    let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent)
        .await
        .unwrap();
    next_frame(&mut ws).await;
    send_text(&mut ws, r#"{"type":"set_state","state":"available"}"#).await;
    next_of(&mut ws, "agent_state").await;
    let created = new_contact(
        &hub,
        &agent,
        json!({"channel": "email", "queue": "support", "subject": "RONA"}),
    )
    .await;
    let id = created["contact"]["id"].as_i64().unwrap();
    assert_eq!(next_of(&mut ws, "offer").await["contact"]["id"], id);
    let cancelled = next_of(&mut ws, "offer_cancelled").await;
    assert_eq!(
        (
            cancelled["contact_id"].as_i64(),
            cancelled["reason"].as_str()
        ),
        (Some(id), Some("timeout"))
    );
    let st = loop {
        let s = next_of(&mut ws, "agent_state").await;
        if s["state"]["state"] != "reserved" {
            break s;
        }
    };
    assert_eq!(
        (
            st["state"]["state"].as_str(),
            st["state"]["reason"].as_str()
        ),
        (Some("not_ready"), Some("no_answer"))
    );
    // Accepting the expired offer is refused.
    send_text(
        &mut ws,
        &json!({"type": "accept", "contact_id": id}).to_string(),
    )
    .await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "no_such_offer");
    // Another agent gets it.
    let agent2 = hub.token("agent2").await;
    let mut ws2 = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent2)
        .await
        .unwrap();
    next_frame(&mut ws2).await;
    send_text(&mut ws2, r#"{"type":"set_state","state":"available"}"#).await;
    assert_eq!(next_of(&mut ws2, "offer").await["contact"]["id"], id);
    hub.stop().await;
}

#[tokio::test]
async fn queued_digital_contacts_survive_a_restart_in_order_and_are_offered_once() {
    for db in common::databases().await {
        let rules = tempfile::tempdir().unwrap();
        fast_rules(rules.path(), 20);
        let mut config = common::config_for(&db);
        config.routing.rules_dir = rules.path().display().to_string();
        let hub = TestHub::start_with(config.clone()).await;
        let admin = hub.token("admin1").await;
        profile(&hub, &admin, "agent1", &["support:3"]).await;
        let mut ids = Vec::new();
        for (i, channel) in ["email", "chat", "email", "voice"].iter().enumerate() {
            let c = new_contact(
                &hub,
                &admin,
                json!({"channel": channel, "queue": "support", "subject": format!("#{i}")}),
            )
            .await;
            ids.push(c["contact"]["id"].as_i64().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        hub.stop().await;

        let hub = TestHub::start_with(config).await;
        let agent = hub.token("agent1").await;
        // The voice call died with the old process; its record is closed as failed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, voice) = hub
            .get(&agent, &format!("/api/v1/contacts/{}", ids[3]))
            .await;
        assert_eq!(voice["contact"]["state"], "failed", "{}: {voice}", db.name);
        let (_, q) = hub.get(&agent, "/api/v1/queues").await;
        let support = q["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "support")
            .unwrap();
        assert_eq!(
            support["waiting"], 3,
            "{}: three digital contacts wait again: {support}",
            db.name
        );

        // Each knows its place in line again.
        for (place, id) in ids[..3].iter().enumerate() {
            let (s, p) = hub
                .get(&agent, &format!("/api/v1/contacts/{id}/position"))
                .await;
            assert_eq!(s, 200, "{p}");
            assert!(p["expected_wait_secs"].as_i64().unwrap() > 0);
            // Email and chat wait in lanes of their own: the place counts within the lane.
            let expected = if place == 2 { 2 } else { 1 };
            assert_eq!(p["position"], expected, "{}: contact {id}", db.name);
        }
        let (s, p) = hub
            .get(&agent, &format!("/api/v1/contacts/{}/position", ids[3]))
            .await;
        assert_eq!((s, p["error"]["code"].as_str()), (404, Some("not_waiting")));

        let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &agent)
            .await
            .unwrap();
        next_frame(&mut ws).await;
        send_text(&mut ws, r#"{"type":"set_state","state":"available"}"#).await;
        // Work everything offered (an agent may hold an email and a chat at once).
        let mut offered = Vec::new();
        let mut closed = 0;
        while closed < 3 {
            let f = next_matching(&mut ws, Duration::from_secs(10), |t| {
                t == "offer" || t == "contact_state"
            })
            .await;
            if f["type"] == "offer" {
                let id = f["contact"]["id"].as_i64().unwrap();
                offered.push(id);
                send_text(
                    &mut ws,
                    &json!({"type": "accept", "contact_id": id}).to_string(),
                )
                .await;
                continue;
            }
            let id = f["contact_id"].as_i64().unwrap();
            match f["state"].as_str().unwrap() {
                "connected" => {
                    send_text(
                        &mut ws,
                        &json!({"type": "complete", "contact_id": id}).to_string(),
                    )
                    .await
                }
                "wrap_up" => {
                    send_text(
                        &mut ws,
                        &json!({"type": "wrap_up", "contact_id": id, "disposition": "resolved"})
                            .to_string(),
                    )
                    .await
                }
                "closed" => closed += 1,
                other => panic!("unexpected state {other}"),
            }
        }
        assert_eq!(offered, ids[..3].to_vec(), "{}: original order", db.name);
        // Nothing more is offered.
        let more =
            tokio::time::timeout(Duration::from_millis(800), next_of(&mut ws, "offer")).await;
        assert!(more.is_err(), "nothing offered twice");
        hub.stop().await;
    }
}

#[tokio::test]
async fn routing_rules_reload_hot_and_a_bad_edit_keeps_the_rules_in_force() {
    let dbs = common::databases().await;
    let rules = tempfile::tempdir().unwrap();
    fast_rules(rules.path(), 20);
    let hub = hub_with_rules(&dbs[0], rules.path()).await;
    let admin = hub.token("admin1").await;
    let (_, status) = hub.get(&admin, "/api/v1/routing").await;
    assert_eq!(status["queues"].as_array().unwrap().len(), 4);
    assert!(status["last_error"].is_null());

    let good = std::fs::read_to_string(rules.path().join("queues.toml")).unwrap();
    std::fs::write(
        rules.path().join("queues.toml"),
        format!("{good}\n[[queue]]\nname = \"complaints\"\n"),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, status) = hub.get(&admin, "/api/v1/routing").await;
        if status["queues"].as_array().unwrap().len() == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new queue never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, q) = hub.get(&admin, "/api/v1/queues").await;
    assert!(q["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == "complaints"));

    std::fs::write(
        rules.path().join("queues.toml"),
        format!("{good}\n[[queue]]\nname = \"broken\"\nstrategy = \"fastest\"\n"),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let err = loop {
        let (_, status) = hub.get(&admin, "/api/v1/routing").await;
        if !status["last_error"].is_null() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bad edit was never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(err["last_error"]["file"], "queues.toml");
    let line = err["last_error"]["line"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(rules.path().join("queues.toml")).unwrap();
    assert!(
        text.lines().nth(line - 1).unwrap().contains("fastest"),
        "line {line}: {err}"
    );
    assert_eq!(
        err["queues"].as_array().unwrap().len(),
        5,
        "the previous rules stay in force"
    );
    let agent = hub.token("agent1").await;
    let (s, _) = hub
        .send_json(
            Method::POST,
            &agent,
            "/api/v1/contacts",
            json!({"channel": "email", "queue": "complaints"}),
        )
        .await;
    assert_eq!(
        s, 201,
        "the queue of the last good rules still takes contacts"
    );
    hub.stop().await;
}
