//! TCP and TLS listeners, and a desk phone authenticating its own outgoing call.

mod common;
use channel_sip::*;
use common::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_tcp() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Answer);
    let target = handle.tcp_addr().expect("tcp listener").to_string();
    let out = run_sipp("call_bye.xml", &target, 5, &["-t", "t1", "-l", "1"]).await;
    assert!(out.status.success(), "sipp over TCP failed");
    wait_for(&log, "five calls ended", |evs| {
        evs.iter()
            .filter(|e| {
                matches!(
                    e,
                    SipEvent::Ended {
                        by: Party::Remote,
                        ..
                    }
                )
            })
            .count()
            == 5
    })
    .await;
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_phone_call_is_challenged_and_attributed_to_the_agent() {
    let mut config = base_config();
    // 127.0.0.1 is no trunk here: the phone must authenticate.
    config.inbound_trunks[0].allow = vec!["192.0.2.0/24".parse().unwrap()];
    let (handle, rx) = start(config).await;
    let log = hub(handle.clone(), rx, Script::Answer);
    let out = run_sipp(
        "desk_phone_call.xml",
        &handle.local_addr().to_string(),
        1,
        &["-au", "1001", "-ap", "pw1001"],
    )
    .await;
    assert!(out.status.success(), "sipp failed");
    match &events(&log)[0] {
        SipEvent::IncomingCall { origin, .. } => assert_eq!(
            origin,
            &CallOrigin::User {
                username: "1001".into(),
                agent_id: "agent-1".into()
            }
        ),
        other => panic!("{other:?}"),
    }
    // Wrong password: no call reaches the hub.
    let before = events(&log).len();
    let out = run_sipp(
        "desk_phone_call.xml",
        &handle.local_addr().to_string(),
        1,
        &["-au", "1001", "-ap", "nope", "-recv_timeout", "3000"],
    )
    .await;
    assert!(!out.status.success());
    assert!(!events(&log)[before..]
        .iter()
        .any(|e| matches!(e, SipEvent::IncomingCall { .. })));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_answers_options() {
    let dir = std::env::temp_dir().join(format!("sip-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (scripts/peers/sip.sh)");
    assert!(status.status.success());
    let tls_port = free_port();
    let mut config = base_config();
    config.tls = Some(TlsListenConfig {
        listen: format!("127.0.0.1:{tls_port}").parse().unwrap(),
        cert: cert.clone(),
        key,
    });
    let (handle, rx) = start(config).await;
    let _log = hub(handle.clone(), rx, Script::Nothing);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let pem = std::fs::read(&cert).unwrap();
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    for c in tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let client = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .unwrap();
    let local = tcp.local_addr().unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let options = format!(
        "OPTIONS sip:hub@127.0.0.1:{tls_port};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK-tls1\r\nMax-Forwards: 70\r\nFrom: <sip:probe@localhost>;tag=t1\r\nTo: <sip:hub@localhost>\r\nCall-ID: tls-options-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(options.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("answer over TLS")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 200 OK"), "{answer}");
    assert!(answer.contains("Allow: INVITE"), "{answer}");
    handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
