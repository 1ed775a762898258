//! The inbound SMTP/LMTP server against real clients: swaks and Python's smtplib.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use channel_email::parse::{parse, ParseOptions};
use channel_email::smtp::{Protocol, SmtpServer, SmtpServerConfig, TlsMode};
use channel_email::{LocalAddresses, Source};
use common::{peers_dir, require, require_python, RecordingSink};
use encoding_rs::{BIG5, GB18030};
use tokio::process::Command;

async fn start(sink: &Arc<RecordingSink>, tune: impl FnOnce(&mut SmtpServerConfig)) -> SmtpServer {
    let mut config = SmtpServerConfig::default();
    config.session.hostname = "mx.test".into();
    config.session.local_addresses = LocalAddresses::new()
        .with("service@example.com", "service")
        .with("sales@example.com", "sales");
    tune(&mut config);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    SmtpServer::start(addr, config, sink.clone()).await.unwrap()
}

struct Swaks {
    ok: bool,
    transcript: String,
}

async fn swaks(server: &SmtpServer, args: &[&str]) -> Swaks {
    let swaks = require("swaks", "apt-get install swaks");
    let port = server.local_addr().port().to_string();
    let out = Command::new(swaks)
        .args(["--server", "127.0.0.1", "--port", &port, "--timeout", "60"])
        .args(args)
        .output()
        .await
        .unwrap();
    Swaks {
        ok: out.status.success(),
        transcript: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

#[derive(Debug)]
struct PyResult {
    ok: bool,
    code: Option<u64>,
    attempts: Vec<u64>,
    json: String,
}

async fn smtplib(server: &SmtpServer, args: &[&str]) -> PyResult {
    let python = require_python("smtplib", "apt-get install python3");
    let port = server.local_addr().port().to_string();
    let out = Command::new(python)
        .arg(peers_dir().join("smtp_send.py"))
        .args(["--port", &port])
        .args(args)
        .output()
        .await
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "smtp_send.py failed: {json} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A tiny reader for the fields used here, to avoid a JSON dependency.
    let field = |name: &str| {
        json.rsplit(&format!("\"{name}\": "))
            .next()
            .filter(|_| json.contains(&format!("\"{name}\": ")))
            .map(|rest| {
                rest.split([',', '}'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
    };
    let attempts = json
        .match_indices("{\"code\": ")
        .filter_map(|(i, m)| {
            json[i + m.len()..]
                .split([',', '}'])
                .next()
                .and_then(|c| c.trim().parse().ok())
        })
        .collect();
    PyResult {
        ok: field("ok").as_deref() == Some("true"),
        code: field("code").and_then(|c| c.parse().ok()),
        attempts,
        json,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    format!("@{}", path.display())
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_gb2312_subject_and_big5_body_are_stored_and_decoded() {
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let subject = "关于发票的问题";
    let body = "您好，請問我的發票什麼時候寄出？謝謝！";
    let mut raw = format!(
        "From: =?gb2312?B?{}?= <Chen@Customer.Example>\r\nTo: service@example.com\r\n\
         Subject: =?gb2312?B?{}?=\r\nMessage-ID: <swaks-1@customer.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=big5\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n",
        b64(&GB18030.encode("陈先生").0),
        b64(&GB18030.encode(subject).0),
    )
    .into_bytes();
    raw.extend_from_slice(&BIG5.encode(body).0);
    raw.extend_from_slice(b"\r\n");
    let data = write(dir.path(), "big5.eml", &raw);
    let run = swaks(
        &server,
        &[
            "--from",
            "chen@customer.example",
            "--to",
            "service@example.com",
            "--data",
            &data,
        ],
    )
    .await;
    assert!(run.ok, "{}", run.transcript);
    assert!(
        run.transcript.contains("250 2.0.0 Ok: stored as"),
        "{}",
        run.transcript
    );

    let mail = sink.take().pop().expect("stored");
    assert_eq!(mail.envelope.mail_from, "chen@customer.example");
    assert_eq!(mail.envelope.recipients[0].key, "service");
    assert!(matches!(
        mail.envelope.source,
        Source::Smtp { tls: false, .. }
    ));
    let p = parse(&mail.raw, &ParseOptions::default());
    assert_eq!(p.subject, subject);
    assert_eq!(p.text_body.as_deref().map(str::trim), Some(body));
    let from = p.from.unwrap();
    assert_eq!(from.name.as_deref(), Some("陈先生"));
    assert_eq!(from.address, "chen@customer.example");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_unknown_recipient_gets_550() {
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |_| {}).await;
    let run = swaks(
        &server,
        &["--from", "a@client.test", "--to", "nobody@example.com"],
    )
    .await;
    assert!(!run.ok);
    assert!(run.transcript.contains("550 5.1.1"), "{}", run.transcript);
    assert_eq!(sink.attempts.load(std::sync::atomic::Ordering::SeqCst), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_malformed_mime_is_stored_with_warnings() {
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let data = write(
        dir.path(),
        "broken.eml",
        b"From: broken@client.test\r\nSubject: broken mime\r\n\
          Content-Type: multipart/mixed; boundary=\"NEVER-CLOSED\"\r\n\r\n\
          --NEVER-CLOSED\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
          the readable part\r\n--NEVER-CLOSED\r\nContent-Type: image/png\r\n\
          Content-Transfer-Encoding: base64\r\n\r\n%%%% not base64 %%%%\r\n",
    );
    let run = swaks(
        &server,
        &[
            "--from",
            "broken@client.test",
            "--to",
            "sales@example.com",
            "--data",
            &data,
        ],
    )
    .await;
    assert!(run.ok, "{}", run.transcript);
    let mail = sink.take().pop().unwrap();
    assert_eq!(mail.envelope.recipients[0].key, "sales");
    let p = parse(&mail.raw, &ParseOptions::default());
    assert!(p.text_body.unwrap().contains("the readable part"));
    assert!(!p.warnings.is_empty());
    assert!(p.message_id_synthesized);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_null_sender_dsn_is_flagged_as_bounce() {
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let data = write(
        dir.path(),
        "dsn.eml",
        b"From: Mail Delivery System <MAILER-DAEMON@relay.client.test>\r\n\
          To: service@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n\
          Message-ID: <dsn-1@relay.client.test>\r\nMIME-Version: 1.0\r\n\
          Content-Type: multipart/report; report-type=delivery-status; boundary=\"DSN\"\r\n\r\n\
          --DSN\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
          --DSN\r\nContent-Type: message/delivery-status\r\n\r\n\
          Reporting-MTA: dns; relay.client.test\r\n\r\nFinal-Recipient: rfc822; x@y.test\r\n\
          Action: failed\r\nStatus: 5.1.1\r\n\r\n--DSN--\r\n",
    );
    let run = swaks(
        &server,
        &[
            "--from",
            "<>",
            "--to",
            "service@example.com",
            "--data",
            &data,
        ],
    )
    .await;
    assert!(run.ok, "{}", run.transcript);
    let mail = sink.take().pop().unwrap();
    assert_eq!(mail.envelope.mail_from, "");
    let mut p = parse(&mail.raw, &ParseOptions::default());
    assert!(p.is_bounce);
    p.is_bounce = false;
    p.apply_envelope_sender(&mail.envelope.mail_from);
    assert!(p.is_bounce, "the null sender alone marks a bounce");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_lmtp_gets_one_reply_per_recipient() {
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |c| c.session.protocol = Protocol::Lmtp).await;
    let run = swaks(
        &server,
        &[
            "--protocol",
            "LMTP",
            "--from",
            "a@client.test",
            "--to",
            "service@example.com,sales@example.com",
        ],
    )
    .await;
    assert!(run.ok, "{}", run.transcript);
    let replies = run
        .transcript
        .matches("<-  250 2.0.0 Ok: stored as")
        .count();
    assert_eq!(replies, 2, "{}", run.transcript);
    let mail = sink.take().pop().unwrap();
    assert!(matches!(mail.envelope.source, Source::Lmtp { .. }));
    let keys: Vec<_> = mail
        .envelope
        .recipients
        .iter()
        .map(|r| r.key.as_str())
        .collect();
    assert_eq!(keys, ["service", "sales"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_data_over_the_limit_gets_552() {
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |c| c.session.max_message_size = 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut raw = b"From: big@client.test\r\nSubject: big\r\n\r\n".to_vec();
    for _ in 0..3000 {
        raw.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    let data = write(dir.path(), "big.eml", &raw);
    let run = swaks(
        &server,
        &[
            "--from",
            "big@client.test",
            "--to",
            "service@example.com",
            "--data",
            &data,
        ],
    )
    .await;
    assert!(!run.ok);
    assert!(run.transcript.contains("552 5.3.4"), "{}", run.transcript);
    assert_eq!(sink.count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_10mb_attachment_accepted_with_raised_limit_refused_over_it() {
    let ten_mb = 10 * 1024 * 1024;
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |c| c.session.max_message_size = 20 * 1024 * 1024).await;
    let size = ten_mb.to_string();
    let args = [
        "--to",
        "service@example.com",
        "--subject",
        "合同附件",
        "--attach-size",
        &size,
        "--attach-name",
        "合同扫描件.pdf",
    ];
    let r = smtplib(&server, &args).await;
    assert!(r.ok, "{r:?}");
    let mail = sink.take().pop().unwrap();
    let p = parse(&mail.raw, &ParseOptions::default());
    assert_eq!(p.subject, "合同附件");
    assert_eq!(p.attachments.len(), 1);
    let a = &p.attachments[0];
    assert_eq!(a.filename.as_deref(), Some("合同扫描件.pdf"));
    assert_eq!(a.size, ten_mb);
    assert!(!a.omitted);
    assert!(a
        .data
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i * 7 + 3) % 256) as u8));
    server.shutdown().await;

    // The default 5 MB limit: smtplib declares SIZE, so MAIL FROM is refused with 552.
    let server = start(&sink, |c| c.session.max_message_size = 5 * 1024 * 1024).await;
    let r = smtplib(&server, &args).await;
    assert!(!r.ok);
    assert_eq!(r.code, Some(552), "{r:?}");
    assert_eq!(sink.count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_temporary_sink_failure_gets_451_and_the_retry_stores_it_once() {
    let sink = Arc::new(RecordingSink::failing_first(1));
    let server = start(&sink, |_| {}).await;
    let r = smtplib(
        &server,
        &[
            "--to",
            "service@example.com",
            "--subject",
            "retry me",
            "--message-id",
            "<retry-1@client.test>",
            "--attempts",
            "3",
        ],
    )
    .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.attempts, vec![451, 250], "{}", r.json);
    let stored = sink.take();
    assert_eq!(stored.len(), 1);
    let p = parse(&stored[0].raw, &ParseOptions::default());
    assert_eq!(p.message_id, "retry-1@client.test");
    assert_eq!(p.subject, "retry me");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_permanent_refusal_gets_554() {
    let sink = Arc::new(RecordingSink {
        refuse: true,
        ..RecordingSink::default()
    });
    let server = start(&sink, |_| {}).await;
    let r = smtplib(&server, &["--to", "service@example.com"]).await;
    assert!(!r.ok);
    assert_eq!(r.code, Some(554), "{r:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_auto_reply_is_flagged() {
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |_| {}).await;
    let r = smtplib(
        &server,
        &[
            "--to",
            "service@example.com",
            "--subject",
            "自动回复：我正在休假",
            "--header",
            "Auto-Submitted: auto-replied",
            "--header",
            "X-Autoreply: yes",
            "--body",
            "我将于下周一回到办公室。",
        ],
    )
    .await;
    assert!(r.ok, "{r:?}");
    let p = parse(&sink.take().pop().unwrap().raw, &ParseOptions::default());
    assert!(p.auto_submitted);
    assert!(!p.is_bounce);
    assert_eq!(p.subject, "自动回复：我正在休假");
    assert_eq!(
        p.text_body.as_deref().map(str::trim),
        Some("我将于下周一回到办公室。")
    );
    server.shutdown().await;
}

fn self_signed(dir: &Path) -> Arc<channel_email::tls::ServerConfig> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    channel_email::tls::server_config(&cert_path, &key_path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_starttls_and_implicit_tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    for (mode, flag) in [
        (TlsMode::StartTls(tls.clone()), "--starttls"),
        (TlsMode::Implicit(tls.clone()), "--ssl"),
    ] {
        let sink = Arc::new(RecordingSink::default());
        let server = start(&sink, |c| c.tls = mode).await;
        let r = smtplib(
            &server,
            &["--to", "service@example.com", "--subject", "over TLS", flag],
        )
        .await;
        assert!(r.ok, "{flag}: {r:?}");
        assert!(r.json.contains("\"tls\": \"TLSv1."), "{}", r.json);
        let mail = sink.take().pop().unwrap();
        assert!(matches!(
            mail.envelope.source,
            Source::Smtp { tls: true, .. }
        ));
        assert_eq!(
            parse(&mail.raw, &ParseOptions::default()).subject,
            "over TLS"
        );
        server.shutdown().await;
    }
    // Without a certificate, STARTTLS is neither offered nor accepted.
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |_| {}).await;
    let r = smtplib(&server, &["--to", "service@example.com", "--starttls"]).await;
    assert!(!r.ok, "{r:?}");
    assert!(
        r.json.contains("STARTTLS extension not supported"),
        "{}",
        r.json
    );
    assert_eq!(sink.count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_421() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |c| c.max_connections = 1).await;
    let first = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let mut first = BufReader::new(first);
    let mut greeting = String::new();
    first.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    let mut second = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let mut reply = String::new();
    second.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("421 4.3.2"), "{reply}");
    drop(first);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_with_421() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sink = Arc::new(RecordingSink::default());
    let server = start(&sink, |c| {
        c.session.idle_timeout = std::time::Duration::from_millis(300)
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tcp.write_all(b"EHLO idle.test\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut all),
    )
    .await
    .expect("server closes an idle connection")
    .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("220 mx.test"), "{text}");
    assert!(text.contains("421 4.4.2 Idle timeout"), "{text}");
    server.shutdown().await;
}
