//! The HTTP API against a real in-process hub: auth, roles, errors, the customer archive.

mod common;

use common::TestHub;
use reqwest::Method;
use serde_json::{json, Value};

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn login_gives_a_token_and_an_http_only_cookie_and_logout_ends_it() {
    for db in common::databases().await {
        let hub = TestHub::start(&db).await;
        let res = hub
            .http
            .post(hub.url("/api/v1/auth/login"))
            .json(&json!({"username": "Agent1", "password": "password-agent1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "{}: usernames are case-insensitive",
            db.name
        );
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.starts_with("hub_session="), "{cookie}");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let body: Value = res.json().await.unwrap();
        let token = body["token"].as_str().unwrap();
        assert_eq!(body["user"]["role"], "agent");
        assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));

        // The cookie alone authenticates (as a browser would).
        let session = cookie.split(';').next().unwrap();
        let me = hub
            .http
            .get(hub.url("/api/v1/auth/me"))
            .header("cookie", session)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        let (status, me) = hub.get(token, "/api/v1/auth/me").await;
        assert_eq!(
            (status, me["user"]["username"].as_str()),
            (200, Some("agent1"))
        );

        let out = hub
            .http
            .post(hub.url("/api/v1/auth/logout"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 204);
        assert!(out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        let (status, body) = hub.get(token, "/api/v1/auth/me").await;
        assert_eq!((status, error_code(&body)), (401, "session_expired"));
        let (status, body) = hub.get("", "/api/v1/customers").await;
        assert_eq!((status, error_code(&body)), (401, "unauthorized"));
        hub.stop().await;
    }
}

#[tokio::test]
async fn repeated_failed_logins_back_off_and_the_lock_survives_a_restart() {
    for db in common::databases().await {
        let mut config = common::config_for(&db);
        config.auth.max_failed_logins = 3;
        config.auth.lockout_base_secs = 60;
        let hub = TestHub::start_with(config.clone()).await;
        let attempt = |password: &'static str| {
            let hub = &hub;
            async move {
                let res = hub
                    .http
                    .post(hub.url("/api/v1/auth/login"))
                    .json(&json!({"username": "super1", "password": password}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.unwrap())
            }
        };
        for _ in 0..2 {
            let (s, b) = attempt("wrong").await;
            assert_eq!((s, error_code(&b)), (401, "invalid_credentials"));
        }
        let (s, _) = attempt("wrong").await;
        assert_eq!(s, 401, "the failure that locks is still a 401");
        let (s, b) = attempt("password-super1").await;
        assert_eq!(
            (s, error_code(&b)),
            (429, "too_many_attempts"),
            "{}: locked even with the right password",
            db.name
        );
        let retry = b["error"]["retry_after_secs"].as_i64().unwrap();
        assert!((50..=60).contains(&retry), "{retry}");
        // An unknown user is refused the same way as a wrong password.
        let res = hub
            .http
            .post(hub.url("/api/v1/auth/login"))
            .json(&json!({"username": "nobody", "password": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        hub.stop().await;
        let hub = TestHub::start_with(config).await;
        let res = hub
            .http
            .post(hub.url("/api/v1/auth/login"))
            .json(&json!({"username": "super1", "password": "password-super1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 429, "{}: the lock is in the store", db.name);
        // Other users are not affected.
        hub.token("agent1").await;
        hub.stop().await;
    }
}

#[tokio::test]
async fn roles_are_enforced_on_every_route() {
    for db in common::databases().await {
        let hub = TestHub::start(&db).await;
        let agent = hub.token("agent1").await;
        let supervisor = hub.token("super1").await;
        let admin = hub.token("admin1").await;
        let (s, b) = hub.get(&agent, "/api/v1/users").await;
        assert_eq!((s, error_code(&b)), (403, "forbidden"), "{}", db.name);
        assert_eq!(hub.get(&supervisor, "/api/v1/users").await.0, 200);
        let new_user = json!({"username": "newbie", "role": "agent", "password": "long-enough-1"});
        assert_eq!(
            hub.send_json(Method::POST, &supervisor, "/api/v1/users", new_user.clone())
                .await
                .0,
            403
        );
        let (s, b) = hub
            .send_json(Method::POST, &admin, "/api/v1/users", new_user.clone())
            .await;
        assert_eq!((s, b["username"].as_str()), (201, Some("newbie")));
        let (s, b) = hub
            .send_json(Method::POST, &admin, "/api/v1/users", new_user)
            .await;
        assert_eq!((s, error_code(&b)), (409, "conflict"));
        let (s, b) = hub
            .send_json(
                Method::POST,
                &admin,
                "/api/v1/users",
                json!({"username": "x", "role": "agent", "password": "short"}),
            )
            .await;
        assert_eq!((s, error_code(&b)), (422, "invalid"));

        let (s, c) = hub
            .send_json(
                Method::POST,
                &agent,
                "/api/v1/customers",
                json!({"name": "角色 Test"}),
            )
            .await;
        assert_eq!(s, 201);
        let id = c["id"].as_i64().unwrap();
        let record =
            json!({"category": "document", "reference": "LIC-1", "expires_on": "2030-01-01"});
        assert_eq!(
            hub.send_json(
                Method::POST,
                &agent,
                &format!("/api/v1/customers/{id}/records"),
                record.clone()
            )
            .await
            .0,
            403
        );
        assert_eq!(
            hub.send_json(
                Method::POST,
                &supervisor,
                &format!("/api/v1/customers/{id}/records"),
                record
            )
            .await
            .0,
            200
        );
        assert_eq!(
            hub.send_json(
                Method::DELETE,
                &supervisor,
                &format!("/api/v1/customers/{id}"),
                json!({})
            )
            .await
            .0,
            403
        );
        assert_eq!(
            hub.send_json(
                Method::DELETE,
                &admin,
                &format!("/api/v1/customers/{id}"),
                json!({})
            )
            .await
            .0,
            204
        );
        assert_eq!(
            hub.get(&admin, &format!("/api/v1/customers/{id}")).await.0,
            404
        );

        // /metrics: supervisors and admins, not agents.
        assert_eq!(
            hub.http
                .get(hub.url("/metrics"))
                .bearer_auth(&agent)
                .send()
                .await
                .unwrap()
                .status(),
            403
        );
        let text = hub
            .http
            .get(hub.url("/metrics"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("contact_hub_http_requests_total{method=\"POST\",route=\"/api/v1/auth/login\",status=\"200\"}"), "{text}");
        assert!(
            text.contains("contact_hub_logins_total{outcome=\"ok\"} 3"),
            "{text}"
        );
        hub.stop().await;
    }
}

#[tokio::test]
async fn bad_input_gets_clear_json_errors_never_a_500() {
    let dbs = common::databases().await;
    let hub = TestHub::start(&dbs[0]).await;
    let token = hub.token("agent1").await;
    let raw = |method: Method, path: &str, ctype: &str, body: Vec<u8>| {
        let req = hub
            .http
            .request(method, hub.url(path))
            .bearer_auth(&token)
            .header("content-type", ctype.to_string())
            .body(body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.expect("every error is JSON");
            (status, body)
        }
    };
    // (method, path, content type, body, expected status, expected error code)
    type Case = (
        Method,
        &'static str,
        &'static str,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/v1/customers",
            "application/json",
            b"{\"name\": ".to_vec(),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "application/json",
            br#"{"name": 5}"#.to_vec(),
            422,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "application/json",
            br#"{"name":"x","favourite_colour":"red"}"#.to_vec(),
            422,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "application/json",
            br#"{"name":"x","tier":"platinum"}"#.to_vec(),
            422,
            "invalid",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "application/json",
            br#"{"name":"x","phones":["not a number"]}"#.to_vec(),
            422,
            "invalid",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "application/json",
            br#"{"name":""}"#.to_vec(),
            422,
            "invalid",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "text/plain",
            br#"{"name":"x"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "application/json",
            vec![b' '; 2 * 1024 * 1024],
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "application/json",
            vec![0xff, 0xfe, 0x00],
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/customers/abc",
            "application/json",
            vec![],
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/customers/99999",
            "application/json",
            vec![],
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/customers/99999/screen-pop",
            "application/json",
            vec![],
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/customers?q=x&bogus=1",
            "application/json",
            vec![],
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/contacts?channel=pigeon",
            "application/json",
            vec![],
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/contacts/77777",
            "application/json",
            vec![],
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/no-such-thing",
            "application/json",
            vec![],
            404,
            "not_found",
        ),
        (
            Method::PUT,
            "/api/v1/customers",
            "application/json",
            vec![],
            405,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/api/v1/agent/ws",
            "application/json",
            vec![],
            400,
            "websocket_required",
        ),
    ];
    for (method, path, ctype, body, status, code) in cases {
        let (s, b) = raw(method.clone(), path, ctype, body).await;
        assert_eq!((s, error_code(&b)), (status, code), "{method} {path}: {b}");
        assert!(!b["error"]["message"].as_str().unwrap().is_empty());
    }
    // Records are validated too.
    let (_, c) = hub
        .send_json(
            Method::POST,
            &token,
            "/api/v1/customers",
            json!({"name": "Rec"}),
        )
        .await;
    let admin = hub.token("admin1").await;
    let (s, b) = hub
        .send_json(
            Method::POST,
            &admin,
            &format!("/api/v1/customers/{}/records", c["id"]),
            json!({"category": "document", "reference": "X", "expires_on": "31/12/9999"}),
        )
        .await;
    assert_eq!((s, error_code(&b)), (422, "invalid"), "{b}");
    hub.stop().await;
}

#[tokio::test]
async fn customers_round_trip_in_chinese_and_screen_pop_alerts() {
    for db in common::databases().await {
        let hub = TestHub::start(&db).await;
        let agent = hub.token("agent1").await;
        let admin = hub.token("admin1").await;
        let (s, c) = hub
            .send_json(Method::POST, &agent, "/api/v1/customers", json!({
                "name": "臺灣測試 <script>alert(1)</script>", "kind": "company", "tier": "vip",
                "tags": ["繁體", "key account"], "phones": ["(02) 2345-6789"], "region": "TW",
                "emails": ["Ops@Example.TW"], "do_not_call": true, "language": "zh-TW", "notes": "備註"
            }))
            .await;
        assert_eq!(s, 201, "{c}");
        let id = c["id"].as_i64().unwrap();
        assert_eq!(
            c["name"], "臺灣測試 <script>alert(1)</script>",
            "stored as given; the console escapes it"
        );
        assert_eq!(c["identities"][0]["value"], "+886223456789");
        assert_eq!(c["identities"][1]["value"], "ops@example.tw");
        assert_eq!(c["do_not_call"], true);

        let (_, found) = hub
            .get(&agent, "/api/v1/customers?q=%2B886%202%202345%206789")
            .await;
        assert_eq!(found["customers"][0]["id"], id, "{}", db.name);
        let (_, found) = hub
            .get(&agent, "/api/v1/customers?q=%E6%B8%AC%E8%A9%A6")
            .await; // 測試
        assert_eq!(found["customers"][0]["id"], id);

        let (s, u) = hub
            .send_json(
                Method::PATCH,
                &agent,
                &format!("/api/v1/customers/{id}"),
                json!({"tier": "important", "phones": ["+886 2 2345 0000"]}),
            )
            .await;
        assert_eq!(s, 200, "{u}");
        assert_eq!(u["tier"], "important");
        assert_eq!(
            u["name"], "臺灣測試 <script>alert(1)</script>",
            "absent fields are kept"
        );
        assert_eq!(u["identities"].as_array().unwrap().len(), 2);

        let (s, _) = hub.send_json(Method::POST, &admin, &format!("/api/v1/customers/{id}/records"), json!({
            "category": "document", "reference": "LIC-9999", "description": "營業執照", "expires_on": "9999-12-31"
        })).await;
        assert_eq!(s, 200);
        let (s, pop) = hub
            .get(&agent, &format!("/api/v1/customers/{id}/screen-pop"))
            .await;
        assert_eq!(s, 200);
        assert_eq!(
            pop["alerts"][0]["kind"], "document_expiry_suspicious",
            "{pop}"
        );
        assert_eq!(pop["records"]["documents"][0]["description"], "營業執照");
        let (s, hist) = hub
            .get(&agent, &format!("/api/v1/customers/{id}/history"))
            .await;
        assert_eq!(
            (s, hist["contacts"].as_array().map(|a| a.len())),
            (200, Some(0))
        );

        // A second customer may not take the same number.
        let (s, b) = hub
            .send_json(
                Method::POST,
                &agent,
                "/api/v1/customers",
                json!({"name": "Dup", "phones": ["+886223450000"]}),
            )
            .await;
        assert_eq!((s, error_code(&b)), (409, "conflict"));

        let (s, q) = hub.get(&agent, "/api/v1/queues").await;
        assert_eq!(s, 200);
        let names: Vec<&str> = q["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["support", "sales", "billing", "vip"],
            "the queues of routing-rules/"
        );
        assert!(q["agents"]["agents_by_state"].is_object());
        hub.stop().await;
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_the_console_is_served() {
    let dbs = common::databases().await;
    let hub = TestHub::start(&dbs[0]).await;
    let doc: Value = hub
        .http
        .get(hub.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/login",
        "/api/v1/customers",
        "/api/v1/customers/{id}/screen-pop",
        "/api/v1/customers/{id}/history",
        "/api/v1/contacts",
        "/api/v1/queues",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ScreenPop"].is_object());
    let health: Value = hub
        .http
        .get(hub.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let page = hub.http.get(hub.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert!(page.text().await.unwrap().contains("app.js"));
    for asset in [
        "/app.js",
        "/app.css",
        "/i18n.js",
        "/shared.js",
        "/wallboard",
        "/wallboard.js",
        "/wallboard.css",
    ] {
        assert_eq!(
            hub.http.get(hub.url(asset)).send().await.unwrap().status(),
            200,
            "{asset}"
        );
    }
    hub.stop().await;
}

/// Sends one HTTP/1.1 request over TLS (trusting only `cert`) and returns the whole response.
async fn https_request(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
    request: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = channel_email::tls::client_config(Some(cert)).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the hub's certificate");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut out),
    )
    .await
    .expect("the response within 5 s")
    .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// With `http.tls_cert`/`http.tls_key` the console, the API and the agent socket are served over
/// TLS (browsers give the softphone a microphone on https:// pages), the session cookie is
/// Secure, and plain HTTP on that port gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_certificate_serves_https_and_wss() {
    let dbs = common::databases().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut config = common::config_for(&dbs[0]);
    config.http.tls_cert = cert_path.display().to_string();
    config.http.tls_key = key_path.display().to_string();
    let hub = TestHub::start_with(config).await;
    let addr = hub.running.addr;

    let health = https_request(
        addr,
        &cert_path,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let console = https_request(
        addr,
        &cert_path,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        console.starts_with("HTTP/1.1 200") && console.contains("<html"),
        "{}",
        &console[..console.len().min(400)]
    );

    let body = r#"{"username":"agent1","password":"password-agent1"}"#;
    let login = https_request(
        addr,
        &cert_path,
        &format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let cookie = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let json = &login[login.find("\r\n\r\n").unwrap() + 4..];
    let token = serde_json::from_str::<Value>(json.trim()).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // The agent socket over WSS.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tls = channel_email::tls::client_config(Some(&cert_path)).unwrap();
    let mut req = format!("wss://localhost:{}/api/v1/agent/ws", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("a WSS agent socket");
    let hello = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            use futures_util::StreamExt;
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "hello" {
                        return v;
                    }
                }
                other => panic!("no hello: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert!(hello["agent"].is_object(), "{hello}");

    // Plain HTTP to the TLS port: no HTTP answer (the handshake fails).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut buf),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    hub.stop().await;
}
