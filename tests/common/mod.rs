//! Shared test helpers: databases on both backends, an in-process hub, HTTP and socket clients.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use contact_hub::config::Config;
use contact_hub::domain::{now_ms, Role, User};
use contact_hub::server::{self, Running};
use contact_hub::store::Store;

/// A database for one test: SQLite in a temp dir, or a fresh PostgreSQL database.
pub struct TestDb {
    pub name: &'static str,
    pub url: String,
    /// Keeps the SQLite directory alive.
    pub dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The backends to run a test on: SQLite always; PostgreSQL when `TEST_DATABASE_URL` is set.
/// With `HUB_REQUIRE_POSTGRES=1` (set by scripts/test) a missing PostgreSQL fails the test.
pub async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut dbs = vec![TestDb {
        name: "sqlite",
        url: format!("sqlite://{}/hub.db?mode=rwc", dir.path().display()),
        dir: Some(dir),
    }];
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => dbs.push(fresh_postgres(&admin_url).await),
        _ => {
            if std::env::var("HUB_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("TEST_DATABASE_URL is not set: run scripts/test, which installs and starts PostgreSQL");
            }
        }
    }
    dbs
}

async fn fresh_postgres(admin_url: &str) -> TestDb {
    use sqlx::Connection;
    let name = format!(
        "hub_t_{}_{}_{}",
        std::process::id(),
        now_ms() % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    TestDb {
        name: "postgres",
        url: format!("{base}/{name}"),
        dir: None,
    }
}

pub async fn store(db: &TestDb) -> Store {
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

pub fn config_for(db: &TestDb) -> Config {
    let mut config = Config::from_parts(None, &[]).unwrap();
    config.database_url = db.url.clone();
    // Files a hub writes (recordings, the demo's sip.toml) go to a directory of the test's own.
    config.data_dir = tempfile::tempdir().expect("temp dir").keep();
    config.http.listen = "127.0.0.1:0".into();
    config.smtp.listen = "127.0.0.1:0".into();
    config.sip.listen = "127.0.0.1:0".into();
    config.voice.rtp_bind = "127.0.0.1".into();
    config.voice.rtp_port_min = 0;
    config.voice.rtp_port_max = 0;
    config.agent.heartbeat_secs = 1;
    config.agent.disconnect_grace_secs = 2;
    config.routing.rules_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/routing-rules").into();
    config
}

pub async fn add_user(store: &Store, username: &str, role: Role, password: &str) -> User {
    let hash = contact_hub::auth::hash_password(password).unwrap();
    store
        .create_user(
            username,
            &format!("{username} display"),
            role,
            &hash,
            now_ms(),
        )
        .await
        .unwrap()
}

/// A hub serving on a free port, with one user of each role (password `password-<name>`).
pub struct TestHub {
    pub running: Running,
    pub base: String,
    pub http: reqwest::Client,
}

pub const USERS: &[(&str, Role)] = &[
    ("agent1", Role::Agent),
    ("agent2", Role::Agent),
    ("super1", Role::Supervisor),
    ("admin1", Role::Admin),
];

impl TestHub {
    pub async fn start(db: &TestDb) -> TestHub {
        Self::start_with(config_for(db)).await
    }

    pub async fn start_with(config: Config) -> TestHub {
        // TEST_LOG=debug (an env filter) shows the hub's log while a test runs.
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let store = Store::connect(&config.effective_database_url())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        for (name, role) in USERS {
            if store.user_by_name(name).await.unwrap().is_none() {
                add_user(&store, name, *role, &format!("password-{name}")).await;
            }
        }
        let running = server::start_with_store(config, store).await.unwrap();
        let base = format!("http://{}", running.addr);
        TestHub {
            running,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.running.state.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Logs in and returns the bearer token.
    pub async fn token(&self, username: &str) -> String {
        let res = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": username, "password": format!("password-{username}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login {username}");
        let body: serde_json::Value = res.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let res = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let res = self
            .http
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.running.addr, path)
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// Opens a socket with a bearer token.
pub async fn ws_connect(
    url: &str,
    token: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    if !token.is_empty() {
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Next JSON text frame that is not a `heartbeat` or a `stats` frame, within 5 s.
pub async fn next_frame(ws: &mut Ws) -> serde_json::Value {
    next_matching(ws, std::time::Duration::from_secs(5), |t| t != "stats").await
}

/// Next frame of the given type, skipping others, within 10 s.
pub async fn next_of(ws: &mut Ws, kind: &str) -> serde_json::Value {
    next_matching(ws, std::time::Duration::from_secs(10), |t| t == kind).await
}

/// Next JSON text frame (never a heartbeat) whose type passes `want`, within `within`.
pub async fn next_matching(
    ws: &mut Ws,
    within: std::time::Duration,
    want: impl Fn(&str) -> bool,
) -> serde_json::Value {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no wanted frame within {within:?}"))
            .expect("socket open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            let kind = v["type"].as_str().unwrap_or("");
            if kind != "heartbeat" && want(kind) {
                return v;
            }
            if std::env::var("TEST_TRACE_FRAMES").is_ok() {
                eprintln!("skipped frame: {v}");
            }
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
        .await
        .unwrap();
}
