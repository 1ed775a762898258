//! The IMAP poller against a real dovecot started by the test (temp config, maildir and
//! passwd-file user; `dovecot -F -c conf` as a child process on a random loopback port).

mod common;

use std::path::{Path, PathBuf};

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use channel_email::imap::{AfterStore, ImapConfig, ImapEvent, ImapPoller, ImapSecurity};
use channel_email::parse::{parse, ParseOptions};
use channel_email::{InboundMail, MailSink, SinkError, Source, Stored};
use common::RecordingSink;
use tokio::sync::{mpsc, watch};

use channel_email::testing::{free_port, Dovecot};

/// The maildir flags of message `name` in `folder` (`""` for INBOX): `None` if not there.
fn flags(maildir: &Path, folder: &str, name: &str) -> Option<String> {
    for sub in ["new", "cur"] {
        let dir = maildir.join(folder).join(sub);
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file == name || file.starts_with(&format!("{name}:")) {
                return Some(
                    file.split_once(":2,")
                        .map(|(_, f)| f.to_string())
                        .unwrap_or_default(),
                );
            }
        }
    }
    None
}

/// The flags of the message in `folder` whose content contains `needle` (a MOVE gives the
/// file a new name).
fn flags_by_content(maildir: &Path, folder: &str, needle: &str) -> Option<String> {
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(maildir.join(folder).join(sub))
            .ok()?
            .flatten()
        {
            let content = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if content.contains(needle) {
                let file = entry.file_name().to_string_lossy().into_owned();
                return Some(
                    file.split_once(":2,")
                        .map(|(_, f)| f.to_string())
                        .unwrap_or_default(),
                );
            }
        }
    }
    None
}

fn message(n: u32, subject: &str) -> Vec<u8> {
    format!(
        "Return-Path: <cust{n}@client.test>\r\nFrom: Customer {n} <cust{n}@client.test>\r\n\
         To: service@example.com\r\nSubject: {subject}\r\nMessage-ID: <imap-{n}@client.test>\r\n\
         Date: Tue, 1 Dec 2026 10:00:00 +0800\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         message number {n}\r\n"
    )
    .into_bytes()
}

fn config(port: u16) -> ImapConfig {
    ImapConfig {
        host: "127.0.0.1".into(),
        port,
        security: ImapSecurity::Plain,
        username: "agent".into(),
        password: "secret".into(),
        address: "service@example.com".into(),
        key: "service".into(),
        idle_period: Duration::from_secs(60),
        retry_failed_after: Duration::from_millis(500),
        timeout: Duration::from_secs(20),
        ..ImapConfig::default()
    }
}

async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<ImapEvent>,
    what: &str,
    pred: impl Fn(&ImapEvent) -> bool,
) -> ImapEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("poller running");
        if pred(&e) {
            return e;
        }
    }
}

/// A sink that checks, while storing, that the message is not yet flagged on the server.
struct CheckingSink {
    maildir: PathBuf,
    inner: RecordingSink,
    seen_while_storing: Mutex<Vec<String>>,
}

impl MailSink for CheckingSink {
    async fn deliver(&self, mail: InboundMail) -> Result<Stored, SinkError> {
        let p = parse(&mail.raw, &ParseOptions::default());
        let name = p.message_id.split('@').next().unwrap().to_string();
        let f = flags(&self.maildir, "", &format!("{name}.msg")).unwrap_or_default();
        if f.contains('S') {
            self.seen_while_storing.lock().unwrap().push(name);
        }
        self.inner.deliver(mail).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_mail_is_stored_then_flagged_and_idle_brings_new_mail() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path(), free_port());
    dovecot.deliver("imap-1.msg", &message(1, "first"));
    dovecot.deliver("imap-2.msg", &message(2, "第二封邮件"));

    let sink = Arc::new(CheckingSink {
        maildir: dovecot.maildir(),
        inner: RecordingSink::default(),
        seen_while_storing: Mutex::new(Vec::new()),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let poller = ImapPoller::new(config(dovecot.port), sink.clone()).with_events(tx);
    let task = tokio::spawn(poller.run(stop_rx));

    let connected = next_event(&mut rx, "connect", |e| {
        matches!(e, ImapEvent::Connected { .. })
    })
    .await;
    assert_eq!(connected, ImapEvent::Connected { idle: true });
    let polled = next_event(&mut rx, "first poll", |e| matches!(e, ImapEvent::Polled(_))).await;
    let ImapEvent::Polled(report) = polled else {
        unreachable!()
    };
    assert_eq!((report.unseen, report.stored, report.failed), (2, 2, 0));
    for n in ["imap-1.msg", "imap-2.msg"] {
        assert!(
            flags(&dovecot.maildir(), "", n).unwrap().contains('S'),
            "{n} flagged after storing"
        );
    }
    assert!(
        sink.seen_while_storing.lock().unwrap().is_empty(),
        "flagged before stored"
    );

    // New mail while the poller IDLEs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    dovecot.deliver("imap-3.msg", &message(3, "arrives during IDLE"));
    next_event(&mut rx, "IDLE delivery", |e| {
        matches!(e, ImapEvent::Stored { .. })
    })
    .await;

    let stored = sink.inner.take();
    let subjects: Vec<String> = stored
        .iter()
        .map(|m| parse(&m.raw, &ParseOptions::default()).subject)
        .collect();
    assert_eq!(subjects, ["first", "第二封邮件", "arrives during IDLE"]);
    let m = &stored[2];
    assert_eq!(m.envelope.mail_from, "cust3@client.test");
    assert_eq!(m.envelope.recipients[0].key, "service");
    assert!(matches!(&m.envelope.source, Source::Imap { mailbox, .. } if mailbox == "INBOX"));
    assert!(flags(&dovecot.maildir(), "", "imap-3.msg")
        .unwrap()
        .contains('S'));

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("poller stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_failure_leaves_the_message_unseen_for_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path(), free_port());
    dovecot.deliver("imap-7.msg", &message(7, "retry me"));

    let sink = Arc::new(RecordingSink::failing_first(1));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(
        ImapPoller::new(config(dovecot.port), sink.clone())
            .with_events(tx)
            .run(stop_rx),
    );

    let failed = next_event(&mut rx, "failed delivery", |e| {
        matches!(e, ImapEvent::NotStored { .. })
    })
    .await;
    let ImapEvent::NotStored { uid, error } = failed else {
        unreachable!()
    };
    assert!(matches!(error, SinkError::Temporary(_)));
    let f = flags(&dovecot.maildir(), "", "imap-7.msg").unwrap();
    assert!(!f.contains('S'), "not flagged after a failed store: {f:?}");
    assert_eq!(sink.count(), 0);

    let stored = next_event(&mut rx, "retried delivery", |e| {
        matches!(e, ImapEvent::Stored { .. })
    })
    .await;
    assert!(
        matches!(stored, ImapEvent::Stored { uid: u, .. } if u == uid),
        "same message retried"
    );
    assert!(flags(&dovecot.maildir(), "", "imap-7.msg")
        .unwrap()
        .contains('S'));
    assert_eq!(sink.count(), 1);
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 2);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("poller stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_mail_is_moved_to_the_configured_folder() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path(), free_port());
    dovecot.deliver("imap-9.msg", &message(9, "move me"));
    let sink = Arc::new(RecordingSink::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let mut cfg = config(dovecot.port);
    cfg.after_store = AfterStore::MoveTo("Processed".into());
    let task = tokio::spawn(
        ImapPoller::new(cfg, sink.clone())
            .with_events(tx)
            .run(stop_rx),
    );
    next_event(&mut rx, "stored", |e| matches!(e, ImapEvent::Stored { .. })).await;
    next_event(&mut rx, "poll done", |e| matches!(e, ImapEvent::Polled(_))).await;
    assert_eq!(
        flags(&dovecot.maildir(), "", "imap-9.msg"),
        None,
        "gone from INBOX"
    );
    let moved = flags_by_content(&dovecot.maildir(), ".Processed", "<imap-9@client.test>")
        .expect("in Processed");
    assert!(moved.contains('S'));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("poller stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_back_off_until_the_server_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = Arc::new(RecordingSink::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let mut cfg = config(port);
    cfg.reconnect.initial = Duration::from_millis(100);
    cfg.reconnect.max_delay = Duration::from_millis(800);
    let task = tokio::spawn(
        ImapPoller::new(cfg, sink.clone())
            .with_events(tx)
            .run(stop_rx),
    );

    let mut delays = Vec::new();
    for _ in 0..3 {
        let ImapEvent::Disconnected { retry_in, .. } =
            next_event(&mut rx, "refused connection", |e| {
                matches!(e, ImapEvent::Disconnected { .. })
            })
            .await
        else {
            unreachable!()
        };
        delays.push(retry_in);
    }
    assert_eq!(
        delays,
        [100, 200, 400].map(Duration::from_millis),
        "exponential back-off"
    );

    let dovecot = Dovecot::start(dir.path(), port);
    dovecot.deliver("imap-11.msg", &message(11, "after the outage"));
    next_event(&mut rx, "connected", |e| {
        matches!(e, ImapEvent::Connected { .. })
    })
    .await;
    next_event(&mut rx, "stored", |e| matches!(e, ImapEvent::Stored { .. })).await;
    assert_eq!(
        parse(&sink.take()[0].raw, &ParseOptions::default()).subject,
        "after the outage"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("poller stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_over_tls_with_a_private_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mail_dir = dir.path().join("server");
    std::fs::create_dir_all(&mail_dir).unwrap();
    let dovecot = Dovecot::start_with(&mail_dir, free_port(), Some((&cert_path, &key_path)));
    dovecot.deliver("imap-21.msg", &message(21, "over TLS"));

    let sink = Arc::new(RecordingSink::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let mut cfg = config(dovecot.port);
    cfg.host = "localhost".into();
    cfg.security = ImapSecurity::Tls;
    cfg.extra_roots_pem = Some(cert_path.clone());
    let task = tokio::spawn(
        ImapPoller::new(cfg, sink.clone())
            .with_events(tx)
            .run(stop_rx),
    );
    next_event(&mut rx, "stored over TLS", |e| {
        matches!(e, ImapEvent::Stored { .. })
    })
    .await;
    assert_eq!(
        parse(&sink.take()[0].raw, &ParseOptions::default()).subject,
        "over TLS"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("poller stops")
        .unwrap();

    // Without trusting the certificate the poller refuses the server.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let mut cfg = config(dovecot.port);
    cfg.host = "localhost".into();
    cfg.security = ImapSecurity::Tls;
    let task = tokio::spawn(
        ImapPoller::new(cfg, sink.clone())
            .with_events(tx)
            .run(stop_rx),
    );
    let e = next_event(&mut rx, "refused certificate", |e| {
        matches!(e, ImapEvent::Disconnected { .. })
    })
    .await;
    assert!(
        format!("{e:?}").to_lowercase().contains("certificate"),
        "{e:?}"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("poller stops")
        .unwrap();
}
