//! Email through the real hub with real peers: swaks and Python's smtplib deliver to the hub's
//! SMTP listener, aiosmtpd is the outbound relay that captures acknowledgements and replies,
//! dovecot is an IMAP mailbox the hub polls. Threading, duplicates, auto-replies and bounces,
//! charsets, large attachments, agent replies over REST, retries when the relay is down, split
//! and merge, and a hub restart in the middle of a delivery.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use channel_email::testing::{free_port, require, Dovecot};
use common::{next_of, send_text, ws_connect, TestHub, Ws};
use reqwest::Method;
use serde_json::{json, Value};

fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("channels/email/tests/peers")
}

fn python_with(module: &str) -> PathBuf {
    let python = require("python3", "apt-get install python3");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python module {module} is missing: pip install {module} (or run scripts/peers/email.sh)"
    );
    python
}

/// aiosmtpd capturing every message it receives into a directory.
struct Relay {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Kept open: the relay's later output must not hit a closed pipe.
    _stdout: std::process::ChildStdout,
}

impl Relay {
    fn start_on(port: u16) -> Relay {
        let python = python_with("aiosmtpd");
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python)
            .arg(peers().join("capture_smtpd.py"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 5];
        out.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"READY");
        Relay {
            child,
            port,
            dir,
            _stdout: out,
        }
    }

    /// The raw messages captured so far, waiting up to `within` for at least `n`.
    fn messages(&self, n: usize, within: Duration) -> Vec<String> {
        let started = Instant::now();
        loop {
            let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect();
            files.sort_by_key(|p| {
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(0)
            });
            if files.len() >= n || started.elapsed() > within {
                return files
                    .iter()
                    .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header's value in a raw message (unfolded).
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = &mut value {
            if line.starts_with(' ') || line.starts_with('\t') {
                v.push_str(line.trim_start());
                continue;
            }
            return value;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                value = Some(v.trim().to_string());
            }
        }
    }
    value
}

fn rules(dir: &Path) {
    let mut queues = String::new();
    for q in ["support", "billing"] {
        queues += &format!(
            "[[queue]]\nname = \"{q}\"\nskills = [\"{q}:2\"]\noffer_timeout_secs = 60\nwrap_up_secs = 60\n\n"
        );
    }
    std::fs::write(dir.join("queues.toml"), queues).unwrap();
    std::fs::write(
        dir.join("routing.toml"),
        "[[rule]]\nname = \"billing-mail\"\ncalled = [\"billing@*\"]\nqueue = \"billing\"\n\n\
         [[rule]]\nname = \"everything_else\"\nqueue = \"support\"\n",
    )
    .unwrap();
}

struct Setup {
    hub: TestHub,
    smtp: u16,
    _rules: tempfile::TempDir,
}

fn email_config(config: &mut contact_hub::config::Config, relay_port: u16) {
    config.email.domain = "bluebird.example".into();
    config.email.addresses = vec![
        contact_hub::email::MailboxConfig {
            address: "service@bluebird.example".into(),
            name: "蓝鸟办公 客服".into(),
        },
        contact_hub::email::MailboxConfig {
            address: "billing@bluebird.example".into(),
            name: "蓝鸟办公 账务".into(),
        },
    ];
    config.email.relay.host = "127.0.0.1".into();
    config.email.relay.port = relay_port;
    config.email.relay.retry_initial_secs = 1;
    config.email.response_hours.insert("billing".into(), 8);
}

async fn start(
    db: &common::TestDb,
    relay_port: u16,
    tune: impl FnOnce(&mut contact_hub::config::Config),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    rules(dir.path());
    let mut config = common::config_for(db);
    config.routing.rules_dir = dir.path().display().to_string();
    email_config(&mut config, relay_port);
    tune(&mut config);
    let hub = TestHub::start_with(config).await;
    let smtp = hub
        .running
        .smtp_addr
        .expect("the hub listens for SMTP")
        .port();
    Setup {
        hub,
        smtp,
        _rules: dir,
    }
}

/// Sends a raw message with swaks; returns swaks' exit status and output.
fn swaks(port: u16, from: &str, to: &str, raw: &[u8]) -> (bool, String) {
    let swaks = require("swaks", "apt-get install swaks");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("msg.eml");
    std::fs::write(&file, raw).unwrap();
    let out = Command::new(swaks)
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--from",
            from,
            "--to",
            to,
        ])
        .arg("--data")
        .arg(format!("@{}", file.display()))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Sends with Python's smtplib (the crate's peer script); returns its JSON verdict.
fn smtplib(port: u16, args: &[&str]) -> Value {
    let python = require("python3", "apt-get install python3");
    let out = Command::new(python)
        .arg(peers().join("smtp_send.py"))
        .args(["--port", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap_or_else(|_| {
        panic!(
            "smtp_send.py said {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

/// GB2312 subject (encoded word) and a Big5 body.
fn chinese_mail(message_id: &str) -> Vec<u8> {
    let (subject, _, _) = encoding_rs::GBK.encode("发票问题：十一月账单");
    let b64 = base64(&subject);
    let (body, _, _) =
        encoding_rs::BIG5.encode("您好，我的十一月發票金額不對，請協助查詢。\r\n陳大文\r\n");
    let mut m = crlf(&format!(
        "From: =?UTF-8?B?{name}?= <david.chan@example.tw>\nTo: billing@bluebird.example\n\
         Subject: =?GB2312?B?{b64}?=\nMessage-ID: <{message_id}>\nDate: Tue, 01 Dec 2026 09:00:00 +0800\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=big5\nContent-Transfer-Encoding: 8bit\n\n",
        name = base64("陳大文".as_bytes())
    ));
    m.extend_from_slice(&body);
    m
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn email_contacts(hub: &TestHub) -> Vec<contact_hub::domain::Contact> {
    hub.store()
        .list_contacts(&contact_hub::store::ContactFilter {
            channel: Some(contact_hub::domain::Channel::Email),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn available_agent(hub: &TestHub, user: &str, skills: &[&str]) -> (Ws, String) {
    let admin = hub.token("admin1").await;
    let id = hub.store().user_by_name(user).await.unwrap().unwrap().id;
    let (s, b) = hub
        .send_json(
            Method::PUT,
            &admin,
            &format!("/api/v1/users/{id}/profile"),
            json!({"skills": skills, "email": 3}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let token = hub.token(user).await;
    let mut ws = ws_connect(&hub.ws_url("/api/v1/agent/ws"), &token)
        .await
        .unwrap();
    next_of(&mut ws, "hello").await;
    send_text(&mut ws, r#"{"type":"set_state","state":"available"}"#).await;
    (ws, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_stored_threaded_acknowledged_once_and_answered_with_proper_headers() {
    for db in common::databases().await {
        let relay = Relay::start_on(free_port());
        let s = start(&db, relay.port, |_| {}).await;
        let hub = &s.hub;

        // swaks delivers a GB2312-subject, Big5-body mail to billing@.
        let (ok, out) = swaks(
            s.smtp,
            "david.chan@example.tw",
            "billing@bluebird.example",
            &chinese_mail("inv-1@example.tw"),
        );
        assert!(ok, "{out}");
        let contact = wait_for("the email contact", async || {
            email_contacts(hub).await.into_iter().next()
        })
        .await;
        assert_eq!(
            contact.queue.as_deref(),
            Some("billing"),
            "routed by the address written to"
        );
        let conv = contact.conversation_id.unwrap();
        let emails = hub.store().conversation_emails(conv).await.unwrap();
        assert_eq!(emails[0].subject.as_deref(), Some("发票问题：十一月账单"));
        let messages = hub.store().conversation_messages(conv).await.unwrap();
        assert!(
            messages[0].body.contains("十一月發票金額不對"),
            "{:?}",
            messages[0].body
        );
        assert_eq!(messages[0].name.as_deref(), Some("陳大文"));
        // An unknown sender became a customer.
        let customer = hub
            .store()
            .get_customer(contact.customer_id.expect("a customer"))
            .await
            .unwrap();
        assert_eq!(customer.name, "陳大文");
        assert!(
            customer
                .language
                .as_deref()
                .is_some_and(|l| l.starts_with("zh")),
            "{customer:?}"
        );

        // The acknowledgement went out through the relay: threaded, auto-submitted, with the
        // ticket, in the customer's script.
        let ack = relay
            .messages(1, Duration::from_secs(10))
            .pop()
            .expect("an acknowledgement");
        assert_eq!(
            header(&ack, "In-Reply-To").as_deref(),
            Some("<inv-1@example.tw>")
        );
        assert_eq!(
            header(&ack, "Auto-Submitted").as_deref(),
            Some("auto-replied")
        );
        assert!(header(&ack, "To")
            .unwrap()
            .contains("david.chan@example.tw"));
        assert!(header(&ack, "From")
            .unwrap()
            .contains("billing@bluebird.example"));
        let ack_parsed = channel_email::parse::parse(ack.as_bytes(), &Default::default());
        assert!(
            ack_parsed.subject.contains(&format!("[#{conv}]")),
            "{}",
            ack_parsed.subject
        );
        let ack_text = ack_parsed.text_body.unwrap_or_default();
        assert!(
            ack_text.contains("8 小時") || ack_text.contains("8 小时"),
            "the queue's promised time: {ack_text}"
        );
        let ack_id = ack_parsed.message_id.clone();

        // The same mail again (an MTA retry after a lost 250) is stored once, acknowledged once.
        let (ok, _) = swaks(
            s.smtp,
            "david.chan@example.tw",
            "billing@bluebird.example",
            &chinese_mail("inv-1@example.tw"),
        );
        assert!(ok);
        // The customer answers the acknowledgement (smtplib): same conversation, no new ack.
        let v = smtplib(
            s.smtp,
            &[
                "--mail-from",
                "david.chan@example.tw",
                "--to",
                "billing@bluebird.example",
                "--subject",
                &format!("Re: {}", ack_parsed.subject),
                "--body",
                "补充：订单号 B-778。",
                "--message-id",
                "<inv-2@example.tw>",
                "--header",
                &format!("In-Reply-To: <{ack_id}>"),
            ],
        );
        assert_eq!(v["ok"], true, "{v}");
        let emails = wait_for("the reply in the conversation", async || {
            let e = hub.store().conversation_emails(conv).await.unwrap();
            (e.len() >= 3).then_some(e)
        })
        .await;
        assert_eq!(
            emails.len(),
            3,
            "mail, ack, reply — the duplicate is not stored"
        );
        assert_eq!(emails[2].flags["thread_reason"], "in_reply_to");
        assert_eq!(
            email_contacts(hub).await.len(),
            1,
            "one contact for the thread"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            relay.messages(2, Duration::from_millis(100)).len(),
            1,
            "acknowledged once"
        );

        // An agent takes the contact and replies: stored first, sent through the relay with
        // the thread's headers and the ticket.
        let (mut agent, token) = available_agent(hub, "agent1", &["billing:3"]).await;
        let offer = next_of(&mut agent, "offer").await;
        assert_eq!(offer["contact"]["id"], contact.id);
        assert_eq!(
            offer["email"]["messages"][0]["email"]["subject"], "发票问题：十一月账单",
            "{offer}"
        );
        send_text(
            &mut agent,
            &json!({"type": "accept", "contact_id": contact.id}).to_string(),
        )
        .await;
        next_of(&mut agent, "contact_state").await;
        let (st, r) = hub
            .send_json(Method::POST, &token, &format!("/api/v1/conversations/{conv}/reply"),
                json!({"contact_id": contact.id, "mode": "reply", "text": "陳先生您好，已為您更正發票。"}))
            .await;
        assert_eq!(st, 202, "{r}");
        let status = next_of(&mut agent, "email_status").await;
        assert_eq!(status["status"], "sent", "{status}");
        let sent = relay.messages(2, Duration::from_secs(10));
        let reply = &sent[1];
        assert_eq!(
            header(reply, "In-Reply-To").as_deref(),
            Some("<inv-2@example.tw>")
        );
        let refs = header(reply, "References").unwrap();
        assert!(
            refs.contains("<inv-2@example.tw>") && refs.contains(&format!("<{ack_id}>")),
            "{refs}"
        );
        let reply_parsed = channel_email::parse::parse(reply.as_bytes(), &Default::default());
        assert!(
            reply_parsed.subject.contains(&format!("[#{conv}]")),
            "{}",
            reply_parsed.subject
        );
        assert_eq!(
            reply_parsed.text_body.as_deref().map(str::trim),
            Some("陳先生您好，已為您更正發票。")
        );
        assert_eq!(
            format!("<{}>", reply_parsed.message_id),
            header(reply, "Message-ID").unwrap()
        );
        // The stored copy is exactly what the relay got, and the conversation shows it.
        let (_, c) = hub
            .get(&token, &format!("/api/v1/conversations/{conv}"))
            .await;
        let last = c["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["from"], "agent");
        assert_eq!(last["outbox"][0]["status"], "sent", "{last}");
        assert_eq!(last["email"]["message_id"], reply_parsed.message_id);
        s.hub.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_replies_bounces_malformed_and_huge_mail_are_stored_without_loops_or_crashes() {
    let db = &common::databases().await[0];
    let relay = Relay::start_on(free_port());
    let s = start(db, relay.port, |c| {
        c.email.max_attachment_bytes = 12 * 1024 * 1024
    })
    .await;
    let hub = &s.hub;
    // An out-of-office reply: stored, never acknowledged.
    let auto = crlf("From: Emily <emily.carter@example.com>\nTo: service@bluebird.example\nSubject: Out of office\n\
        Message-ID: <ooo-1@example.com>\nAuto-Submitted: auto-replied\nX-Autoreply: yes\n\nI am away until Monday.\n");
    assert!(
        swaks(
            s.smtp,
            "emily.carter@example.com",
            "service@bluebird.example",
            &auto
        )
        .0
    );
    // A delivery status notification from the null sender.
    let dsn = crlf("From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\nTo: service@bluebird.example\n\
        Subject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn-1@mx.example.com>\nMIME-Version: 1.0\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n\
        The mail could not be delivered.\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n\
        Final-Recipient: rfc822; nobody@example.com\nAction: failed\nStatus: 5.1.1\n--b--\n");
    assert!(swaks(s.smtp, "", "service@bluebird.example", &dsn).0);
    // Malformed MIME: a multipart with no boundary and broken encoded words.
    let broken = crlf("From: =?utf-8?B?!!!?= <liufang@example.cn>\nTo: service@bluebird.example\nSubject: =?gb2312?Q?=C4=E3=BA=C3\n\
        Message-ID: <broken-1@example.cn>\nMIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\nContent-Type: text/plain\n\n还能读到这一行\n--y--\n");
    assert!(
        swaks(
            s.smtp,
            "liufang@example.cn",
            "service@bluebird.example",
            &broken
        )
        .0
    );
    // A 10 MB attachment by smtplib.
    let big = smtplib(
        s.smtp,
        &[
            "--mail-from",
            "wang.xiaoming@example.cn",
            "--to",
            "service@bluebird.example",
            "--subject",
            "合同扫描件",
            "--body",
            "请查收附件。",
            "--message-id",
            "<big-1@example.cn>",
            "--attach-size",
            "10485760",
            "--attach-name",
            "合同.pdf",
        ],
    );
    assert_eq!(big["ok"], true, "{big}");
    // An address we do not serve is refused; nothing is stored for it.
    let (ok, out) = swaks(s.smtp, "x@example.com", "nobody@bluebird.example", &auto);
    assert!(!ok && out.contains("550"), "{out}");

    let contacts = wait_for("four email contacts", async || {
        let c = email_contacts(hub).await;
        (c.len() >= 4).then_some(c)
    })
    .await;
    assert_eq!(contacts.len(), 4);
    let mut by_id = std::collections::HashMap::new();
    for c in &contacts {
        let conv = c.conversation_id.unwrap();
        let e = hub
            .store()
            .conversation_emails(conv)
            .await
            .unwrap()
            .remove(0);
        by_id.insert(e.message_id.clone(), (c.clone(), e));
    }
    let (_, e) = &by_id["ooo-1@example.com"];
    assert_eq!(e.flags["auto_submitted"], true);
    let (c, e) = &by_id["dsn-1@mx.example.com"];
    assert_eq!(e.flags["bounce"], true);
    assert!(
        c.customer_id.is_none(),
        "a bounce does not become a customer"
    );
    let (c, e) = &by_id["broken-1@example.cn"];
    assert!(
        !e.flags["warnings"].as_array().unwrap().is_empty(),
        "{:?}",
        e.flags
    );
    let body = &hub
        .store()
        .conversation_messages(c.conversation_id.unwrap())
        .await
        .unwrap()[0]
        .body;
    assert!(body.contains("还能读到这一行"), "{body:?}");
    let (c, _) = &by_id["big-1@example.cn"];
    let files = hub
        .store()
        .message_files(c.conversation_id.unwrap())
        .await
        .unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].1.file_name, "合同.pdf");
    assert_eq!(files[0].1.size, 10 * 1024 * 1024);
    // Only the big mail (a person writing) and the malformed one got an acknowledgement.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acks = relay.messages(3, Duration::from_millis(200));
    assert_eq!(
        acks.len(),
        2,
        "no ack for auto-replies and bounces: {acks:?}"
    );
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_keeps_the_reply_pending_visibly_and_it_goes_when_the_relay_is_back() {
    let db = &common::databases().await[0];
    let relay_port = free_port();
    let s = start(db, relay_port, |c| c.email.acknowledge = false).await;
    let hub = &s.hub;
    assert!(swaks(s.smtp, "liufang@example.cn", "service@bluebird.example",
        &crlf("From: 刘芳 <liufang@example.cn>\nTo: service@bluebird.example\nSubject: 配送时间\nMessage-ID: <r-1@example.cn>\n\n请问什么时候发货？\n")).0);
    let (mut agent, token) = available_agent(hub, "agent1", &["support:3"]).await;
    let offer = next_of(&mut agent, "offer").await;
    let contact = offer["contact"]["id"].as_i64().unwrap();
    let conv = offer["contact"]["conversation_id"].as_i64().unwrap();
    send_text(
        &mut agent,
        &json!({"type": "accept", "contact_id": contact}).to_string(),
    )
    .await;
    next_of(&mut agent, "contact_state").await;
    let (st, r) = hub
        .send_json(
            Method::POST,
            &token,
            &format!("/api/v1/conversations/{conv}/reply"),
            json!({"contact_id": contact, "mode": "reply", "text": "明天上午发货。"}),
        )
        .await;
    assert_eq!(st, 202, "{r}");
    let status = next_of(&mut agent, "email_status").await;
    assert_eq!(status["status"], "pending", "{status}");
    assert!(status["error"].as_str().is_some());
    assert!(status["next_attempt_at"].as_str().is_some());
    // The relay comes up; a next attempt (1 s, 2 s, … back-off) delivers it.
    let relay = Relay::start_on(relay_port);
    loop {
        let status = next_of(&mut agent, "email_status").await;
        if status["status"] == "sent" {
            break;
        }
        assert_eq!(status["status"], "pending", "{status}");
    }
    let sent = relay.messages(1, Duration::from_secs(5));
    assert_eq!(sent.len(), 1);
    assert_eq!(
        header(&sent[0], "In-Reply-To").as_deref(),
        Some("<r-1@example.cn>")
    );
    let outbox = hub.store().outbox_status(conv).await.unwrap();
    assert_eq!(
        (outbox[0].status.as_str(), outbox[0].attempts >= 2),
        ("sent", true)
    );
    // Split and merge: the reply moves to a conversation of its own and back.
    let (st, b) = hub
        .send_json(
            Method::POST,
            &token,
            &format!("/api/v1/conversations/{conv}/split"),
            json!({"seq": 2}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let new = b["conversation_id"].as_i64().unwrap();
    assert_eq!(
        hub.store().conversation_emails(conv).await.unwrap().len(),
        1
    );
    assert_eq!(hub.store().conversation_emails(new).await.unwrap().len(), 1);
    let (st, b) = hub
        .send_json(
            Method::POST,
            &token,
            &format!("/api/v1/conversations/{new}/merge"),
            json!({"into": conv}),
        )
        .await;
    assert_eq!(st, 204, "{b}");
    let seqs: Vec<i64> = hub
        .store()
        .conversation_emails(conv)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2]);
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_in_an_imap_mailbox_is_stored_then_marked_seen() {
    let db = &common::databases().await[0];
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path(), free_port());
    dovecot.deliver(
        "m1.msg",
        &crlf("From: Emily Carter <emily.carter@example.com>\nTo: service@bluebird.example\nSubject: Invoice copy\n\
            Message-ID: <imap-1@example.com>\n\nCould you send me a copy of invoice INV-2291?\n"),
    );
    let s = start(db, free_port(), |c| {
        c.email.acknowledge = false;
        c.email.imap = vec![contact_hub::email::ImapToml {
            host: "127.0.0.1".into(),
            port: dovecot.port,
            security: "plain".into(),
            username: "agent".into(),
            password: "secret".into(),
            mailbox: "INBOX".into(),
            address: "service@bluebird.example".into(),
            move_to: String::new(),
            poll_secs: 1,
        }];
    })
    .await;
    let hub = &s.hub;
    let contact = wait_for("the IMAP mail", async || {
        email_contacts(hub).await.into_iter().next()
    })
    .await;
    let emails = hub
        .store()
        .conversation_emails(contact.conversation_id.unwrap())
        .await
        .unwrap();
    assert_eq!(emails[0].subject.as_deref(), Some("Invoice copy"));
    assert_eq!(emails[0].flags["source"], "imap:INBOX");
    // Marked seen only after it was stored.
    let seen = wait_for("the \\Seen flag", async || {
        std::fs::read_dir(dovecot.maildir().join("cur"))
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|f| {
                f.starts_with("m1.msg") && f.rsplit(":2,").next().is_some_and(|fl| fl.contains('S'))
            })
    })
    .await;
    assert!(seen.contains('S'));
    s.hub.stop().await;
}

/// Speaks SMTP up to the middle of DATA, then stops.
fn half_delivery(port: u16, raw: &[u8]) -> std::net::TcpStream {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let mut talk = |c: &mut std::net::TcpStream, line: &str| {
        if !line.is_empty() {
            c.write_all(line.as_bytes()).unwrap();
        }
        let n = c.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(talk(&mut c, "").starts_with("220"));
    assert!(talk(&mut c, "EHLO mta.example.cn\r\n").contains("250"));
    assert!(talk(&mut c, "MAIL FROM:<wang.xiaoming@example.cn>\r\n").starts_with("250"));
    assert!(talk(&mut c, "RCPT TO:<service@bluebird.example>\r\n").starts_with("250"));
    assert!(talk(&mut c, "DATA\r\n").starts_with("354"));
    c.write_all(&raw[..raw.len() / 2]).unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restart_during_a_delivery_loses_nothing_and_stores_nothing_twice() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        rules(dir.path());
        let mut config = common::config_for(&db);
        config.routing.rules_dir = dir.path().display().to_string();
        email_config(&mut config, free_port());
        config.email.acknowledge = false;
        let hub = TestHub::start_with(config.clone()).await;
        let port = hub.running.smtp_addr.unwrap().port();
        let first = crlf("From: 王小明 <wang.xiaoming@example.cn>\nTo: service@bluebird.example\nSubject: 退货\n\
            Message-ID: <restart-1@example.cn>\n\n我想退一盒墨盒。\n");
        let second = crlf("From: 王小明 <wang.xiaoming@example.cn>\nTo: service@bluebird.example\nSubject: 地址变更\n\
            Message-ID: <restart-2@example.cn>\n\n我的收货地址改了，请更新。\n");
        // The first mail is accepted (250): it is stored, whatever happens next.
        assert!(
            swaks(
                port,
                "wang.xiaoming@example.cn",
                "service@bluebird.example",
                &first
            )
            .0
        );
        // The second is half-way through DATA when the hub stops: no 250, so the MTA keeps it.
        let mut half = half_delivery(port, &second);
        hub.stop().await;
        let mut rest = Vec::new();
        let _ = half.read_to_end(&mut rest);
        assert!(
            !String::from_utf8_lossy(&rest).contains("250 "),
            "the interrupted mail was not accepted"
        );

        let hub = TestHub::start_with(config).await;
        let port = hub.running.smtp_addr.unwrap().port();
        // The MTA retries both (it never saw the second's 250; it may resend the first too).
        assert!(
            swaks(
                port,
                "wang.xiaoming@example.cn",
                "service@bluebird.example",
                &second
            )
            .0
        );
        assert!(
            swaks(
                port,
                "wang.xiaoming@example.cn",
                "service@bluebird.example",
                &first
            )
            .0
        );
        let contacts = wait_for("two contacts", async || {
            let c = email_contacts(&hub).await;
            (c.len() >= 2).then_some(c)
        })
        .await;
        assert_eq!(contacts.len(), 2, "each mail once, on {}", db.name);
        assert!(
            contacts.iter().all(|c| c.state.as_str() == "queued"),
            "both wait for an agent"
        );
        hub.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_a_closed_queue_waits_for_the_opening_instead_of_being_closed() {
    let db = &common::databases().await[0];
    let dir = tempfile::tempdir().unwrap();
    rules(dir.path());
    // Billing is closed today (a holiday in its own time zone), support is open.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let closed = format!(
        "[[queue]]\nname = \"support\"\nskills = [\"support:2\"]\n\n[[queue]]\nname = \"billing\"\nskills = [\"billing:2\"]\n\
         [queue.hours]\nutc_offset = \"+00:00\"\nevery_day = [\"00:00-24:00\"]\nholidays = [\"{today}\", \"{tomorrow}\"]\n"
    );
    std::fs::write(dir.path().join("queues.toml"), &closed).unwrap();
    let mut config = common::config_for(db);
    config.routing.rules_dir = dir.path().display().to_string();
    config.routing.reload_ms = 100;
    email_config(&mut config, free_port());
    config.email.acknowledge = false;
    let hub = TestHub::start_with(config).await;
    let port = hub.running.smtp_addr.unwrap().port();
    let (mut agent, _) = available_agent(&hub, "agent1", &["billing:3"]).await;
    assert!(swaks(port, "liufang@example.cn", "billing@bluebird.example",
        &crlf("From: 刘芳 <liufang@example.cn>\nTo: billing@bluebird.example\nSubject: 发票抬头\nMessage-ID: <closed-1@example.cn>\n\n请把抬头改成公司名称。\n")).0);
    let contact = wait_for("the email contact", async || {
        email_contacts(&hub).await.into_iter().next()
    })
    .await;
    let events = wait_for("the parking event", async || {
        let e = hub.store().contact_events(contact.id).await.unwrap();
        e.iter()
            .any(|e| e.kind == "waiting_for_opening")
            .then_some(e)
    })
    .await;
    let parked = events
        .iter()
        .find(|e| e.kind == "waiting_for_opening")
        .unwrap();
    assert_eq!(parked.data["queue"], "billing");
    assert!(parked.data["until"].as_str().is_some(), "{:?}", parked.data);
    assert_eq!(
        hub.store()
            .get_contact(contact.id)
            .await
            .unwrap()
            .state
            .as_str(),
        "queued",
        "kept, not closed"
    );
    // The queue opens (here: the operator removes the holidays); the mail is offered.
    std::fs::write(
        dir.path().join("queues.toml"),
        closed.replace(
            &format!("holidays = [\"{today}\", \"{tomorrow}\"]"),
            "holidays = []",
        ),
    )
    .unwrap();
    let offer = common::next_matching(&mut agent, Duration::from_secs(10), |t| t == "offer").await;
    assert_eq!(offer["contact"]["id"], contact.id);
    hub.stop().await;
}
