//! Outbound sending against a real relay: aiosmtpd capturing what it receives.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use channel_email::autoack::{AckConfig, AckDecision, AckPolicy, AckRequest};
use channel_email::backoff::RetrySchedule;
use channel_email::outbound::{
    ack_email, compose, reply, AttemptOutcome, AttemptReport, RelayConfig, RelaySecurity, Sender,
};
use channel_email::parse::{parse, Mailbox, ParseOptions};
use channel_email::thread::TicketPattern;
use channel_email::LocalAddresses;
use chrono::Utc;
use common::{peers_dir, require_python};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Relay {
    _child: Child,
    dir: PathBuf,
}

async fn start_relay(port: u16, dir: &Path) -> Relay {
    let python = require_python("aiosmtpd", "pip install aiosmtpd");
    let mut child = Command::new(python)
        .arg(peers_dir().join("capture_smtpd.py"))
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("aiosmtpd starts")
        .unwrap();
    assert_eq!(ready.as_deref(), Some("READY"));
    Relay {
        _child: child,
        dir: dir.to_path_buf(),
    }
}

impl Relay {
    fn captured(&self, n: usize) -> (Vec<u8>, String) {
        let raw = std::fs::read(self.dir.join(format!("{n}.eml"))).unwrap();
        let env = std::fs::read_to_string(self.dir.join(format!("{n}.env"))).unwrap();
        (raw, env)
    }
}

fn relay_config(port: u16) -> RelayConfig {
    RelayConfig {
        host: "127.0.0.1".into(),
        port,
        security: RelaySecurity::None,
        hello_name: "hub.example.com".into(),
        timeout: Duration::from_secs(10),
        ..RelayConfig::default()
    }
}

fn service() -> Mailbox {
    Mailbox {
        name: Some("客户服务中心".into()),
        address: "service@example.com".into(),
    }
}

fn header_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    head.split("\r\n").map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_and_acknowledgement_reach_aiosmtpd_with_thread_headers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let relay = start_relay(port, dir.path()).await;
    let sender = Sender::new(&relay_config(port), RetrySchedule::default()).unwrap();

    let original = parse(
        "From: 陈先生 <chen@customer.example>\r\nTo: service@example.com\r\n\
         Subject: 关于发票的问题\r\nMessage-ID: <orig-2@customer.example>\r\n\
         References: <orig-1@customer.example>\r\n\r\n请问发票什么时候开？\r\n"
            .as_bytes(),
        &ParseOptions::default(),
    );
    let tickets = TicketPattern::default();

    // An agent's reply.
    let mut r = reply(
        &original,
        service(),
        "您好，发票已于今天寄出。".into(),
        None,
    );
    r.ticket = Some("1024".into());
    let composed = compose(&r, "reply-1@example.com", Utc::now(), &tickets).unwrap();
    let mut reports: Vec<AttemptReport> = Vec::new();
    let last = sender
        .send_with_retry(&composed, |a| reports.push(a.clone()))
        .await;
    assert!(
        matches!(last.outcome, AttemptOutcome::Sent { .. }),
        "{last:?}"
    );
    assert_eq!(reports.len(), 1);

    let (raw, env) = relay.captured(1);
    assert_eq!(
        raw, composed.raw,
        "the relay got exactly the bytes returned to the hub"
    );
    assert_eq!(env, "service@example.com\nchen@customer.example\n");
    let headers = header_lines(&raw);
    assert!(
        headers
            .iter()
            .any(|h| h == "Message-ID: <reply-1@example.com>"),
        "{headers:?}"
    );
    assert!(headers
        .iter()
        .any(|h| h == "In-Reply-To: <orig-2@customer.example>"));
    assert!(
        headers
            .iter()
            .any(|h| h == "References: <orig-1@customer.example> <orig-2@customer.example>"),
        "{headers:?}"
    );
    assert!(
        headers.iter().all(|h| h.is_ascii()),
        "headers are encoded words: {headers:?}"
    );
    assert!(!headers.iter().any(|h| h.starts_with("Auto-Submitted")));
    let p = parse(&raw, &ParseOptions::default());
    assert_eq!(p.subject, "[#1024] Re: 关于发票的问题");
    assert_eq!(p.from.unwrap().name.as_deref(), Some("客户服务中心"));
    assert_eq!(
        p.text_body.as_deref().map(str::trim),
        Some("您好，发票已于今天寄出。")
    );

    // The automatic acknowledgement of a new conversation.
    let mut policy = AckPolicy::new(AckConfig {
        our_addresses: LocalAddresses::new().with("service@example.com", "service"),
        ..AckConfig::default()
    });
    let AckDecision::Send(ack) = policy.decide(
        &AckRequest {
            email: &original,
            envelope_from: Some("chen@customer.example"),
            is_new_conversation: true,
            queue: "billing",
            ticket: "1025",
            language: None,
            customer_name: Some("陈先生"),
            expected_response: "4 小时",
        },
        Utc::now(),
    ) else {
        panic!("an acknowledgement is due");
    };
    let composed = compose(
        &ack_email(&ack, service()),
        "ack-1@example.com",
        Utc::now(),
        &tickets,
    )
    .unwrap();
    let last = sender.send_with_retry(&composed, |_| {}).await;
    assert!(
        matches!(last.outcome, AttemptOutcome::Sent { .. }),
        "{last:?}"
    );
    let (raw, _) = relay.captured(2);
    let headers = header_lines(&raw);
    assert!(
        headers.iter().any(|h| h == "Auto-Submitted: auto-replied"),
        "{headers:?}"
    );
    assert!(headers
        .iter()
        .any(|h| h == "In-Reply-To: <orig-2@customer.example>"));
    let p = parse(&raw, &ParseOptions::default());
    assert!(
        p.auto_submitted,
        "our ack is recognised as automatic by our own parser"
    );
    assert_eq!(p.subject, "[#1025] 我们已收到您的来信：关于发票的问题");
    assert!(p.text_body.unwrap().contains("陈先生您好"));
    assert_eq!(
        p.references,
        vec!["orig-1@customer.example", "orig-2@customer.example"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_is_retried_with_back_off_until_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let schedule = RetrySchedule {
        initial: Duration::from_millis(200),
        factor: 2,
        max_delay: Duration::from_secs(2),
        max_attempts: 10,
    };
    let sender = Sender::new(&relay_config(port), schedule.clone()).unwrap();
    let mail = channel_email::outbound::OutgoingEmail {
        from: Some(service()),
        to: vec![Mailbox {
            name: None,
            address: "wang@customer.example".into(),
        }],
        subject: "稍后送达".into(),
        text: "relay was down".into(),
        ..Default::default()
    };
    let composed = compose(
        &mail,
        "retry-1@example.com",
        Utc::now(),
        &TicketPattern::default(),
    )
    .unwrap();

    let send = tokio::spawn(async move {
        let mut reports = Vec::new();
        let last = sender
            .send_with_retry(&composed, |r| reports.push(r.clone()))
            .await;
        (last, reports)
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let relay = start_relay(port, dir.path()).await;
    let (last, reports) = tokio::time::timeout(Duration::from_secs(30), send)
        .await
        .expect("sender finishes")
        .unwrap();

    assert!(
        matches!(last.outcome, AttemptOutcome::Sent { .. }),
        "{reports:#?}"
    );
    assert!(reports.len() >= 3, "{reports:#?}");
    for r in &reports[..reports.len() - 1] {
        assert!(
            matches!(r.outcome, AttemptOutcome::Transient { .. }),
            "{r:?}"
        );
        let delay = chrono::Duration::from_std(schedule.delay(r.attempt)).unwrap();
        assert_eq!(
            r.next_attempt,
            Some(r.at + delay),
            "back-off follows the schedule"
        );
    }
    // The waits grow: 200 ms, 400 ms, 800 ms ...
    let gaps: Vec<i64> = reports
        .windows(2)
        .map(|w| (w[1].at - w[0].at).num_milliseconds())
        .collect();
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
    assert_eq!(last.attempt as usize, reports.len());
    let (raw, _) = relay.captured(1);
    assert_eq!(parse(&raw, &ParseOptions::default()).subject, "稍后送达");
}
