//! Wiring: open the store, start the hub, serve HTTP. Used by `contact-hub serve` and by tests
//! (which bind port 0).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::acd::rules::{watch, RuleError, RuleSet};
use crate::chat::ChatService;
use crate::config::Config;
use crate::domain::{now_ms, Role};
use crate::hub::{self, HubHandle};
use crate::metrics::Metrics;
use crate::push::AgentPush;
use crate::store::{redact_url, Store};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub hub: HubHandle,
    pub metrics: Arc<Metrics>,
    pub routing: Arc<Routing>,
    /// Frames for particular agents' sockets.
    pub push: Arc<AgentPush>,
    pub chat: Arc<ChatService>,
    pub email: Arc<crate::email::EmailService>,
    /// The voice channel, when `sip.listen` is set.
    pub voice: Option<Arc<crate::voice::VoiceService>>,
}

/// The routing rules in force, replaced whole on each valid reload.
pub struct Routing {
    pub dir: std::path::PathBuf,
    current: std::sync::RwLock<Arc<RuleSet>>,
    /// The last invalid edit (file, line, reason), until a valid one replaces it.
    last_error: std::sync::RwLock<Option<RuleError>>,
}

impl Routing {
    pub fn rules(&self) -> Arc<RuleSet> {
        self.current
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn last_error(&self) -> Option<RuleError> {
        self.last_error.read().ok().and_then(|e| e.clone())
    }
}

/// The sample rules shipped with the project, written to an empty rules directory.
const SHIPPED_RULES: &[(&str, &str)] = &[
    ("queues.toml", include_str!("../routing-rules/queues.toml")),
    (
        "queues.cases.toml",
        include_str!("../routing-rules/queues.cases.toml"),
    ),
    (
        "routing.toml",
        include_str!("../routing-rules/routing.toml"),
    ),
    (
        "routing.cases.toml",
        include_str!("../routing-rules/routing.cases.toml"),
    ),
    ("README.md", include_str!("../routing-rules/README.md")),
    (
        "ivr/ivr.toml",
        include_str!("../routing-rules/ivr/ivr.toml"),
    ),
    (
        "ivr/ivr.cases.toml",
        include_str!("../routing-rules/ivr/ivr.cases.toml"),
    ),
];

/// Loads the routing rules, creating the directory from the shipped sample when it is missing.
pub fn load_rules(config: &Config) -> anyhow::Result<(std::path::PathBuf, RuleSet)> {
    let dir = config.routing.dir(&config.data_dir);
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::create_dir_all(dir.join("ivr"))
            .with_context(|| format!("cannot create {}", dir.join("ivr").display()))?;
        for (name, text) in SHIPPED_RULES {
            std::fs::write(dir.join(name), text)
                .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
        }
        tracing::info!(dir = %dir.display(), "wrote the sample routing rules; edit them to fit your company");
    }
    let rules = watch::load_dir(&dir)
        .map_err(|e| anyhow::anyhow!("invalid routing rules in {}: {e}", dir.display()))?;
    Ok((dir, rules))
}

impl AppState {
    /// Wall-clock time for IO layers (logic cores take time as an input instead).
    pub fn now(&self) -> i64 {
        now_ms()
    }
}

/// Opens and migrates the configured database.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.effective_database_url();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&url)))?;
    store.migrate().await.context("database migration failed")?;
    Ok(store)
}

/// A running hub: its address and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// Where the SMTP listener took mail, if it runs.
    pub smtp_addr: Option<SocketAddr>,
    /// Where SIP listens (UDP and TCP), when the voice channel runs.
    pub sip_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops serving and waits until the server has finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        self.state.email.stop().await;
        if let Some(v) = &self.state.voice {
            v.stop().await;
        }
        self.state.store.close().await;
    }

    /// Waits until the server ends (Ctrl-C / SIGTERM when started by [`serve`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Starts the hub on `config.http.listen` and returns once it is accepting connections.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let store = open_store(&config).await?;
    start_with_store(config, store).await
}

pub async fn start_with_store(config: Config, store: Store) -> anyhow::Result<Running> {
    let (dir, rules) = load_rules(&config)?;
    let hub = hub::start(
        store.clone(),
        rules.queues.clone(),
        config.agent.disconnect_grace_secs,
    )
    .await?;
    let routing = Arc::new(Routing {
        dir: dir.clone(),
        current: std::sync::RwLock::new(Arc::new(rules)),
        last_error: std::sync::RwLock::new(None),
    });
    // Hot reload: a valid edit replaces the rules whole; an invalid one is reported (file,
    // line, reason) and the rules in force stay.
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let watcher = watch::spawn(
        dir,
        std::time::Duration::from_millis(config.routing.reload_ms.max(50)),
        tx,
    );
    {
        let routing = routing.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            let _watcher = AbortOnDrop(watcher);
            while let Some(update) = rx.recv().await {
                match update {
                    Ok(set) => {
                        hub.set_queues(set.queues.clone()).await;
                        if let Ok(mut cur) = routing.current.write() {
                            *cur = Arc::new(set);
                        }
                        if let Ok(mut e) = routing.last_error.write() {
                            *e = None;
                        }
                    }
                    Err(e) => {
                        if let Ok(mut last) = routing.last_error.write() {
                            *last = Some(e);
                        }
                    }
                }
            }
        });
    }
    let listener = TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let addr = listener.local_addr()?;
    let mut config = config;
    let tls = match (config.http.tls_cert.as_str(), config.http.tls_key.as_str()) {
        ("", "") => None,
        ("", _) | (_, "") => anyhow::bail!("http.tls_cert and http.tls_key go together"),
        (cert, key) => Some(crate::https::server_config(
            std::path::Path::new(cert),
            std::path::Path::new(key),
        )?),
    };
    if tls.is_some() {
        config.http.cookie_secure = true;
    }
    let config = Arc::new(config);
    let push = Arc::new(AgentPush::default());
    let chat = ChatService::start(
        store.clone(),
        config.clone(),
        routing.clone(),
        hub.clone(),
        push.clone(),
    )
    .await?;
    let (email, smtp_addr) = crate::email::EmailService::start(
        store.clone(),
        config.clone(),
        routing.clone(),
        hub.clone(),
        push.clone(),
    )
    .await?;
    let voice = crate::voice::VoiceService::start(
        store.clone(),
        config.clone(),
        routing.clone(),
        hub.clone(),
        push.clone(),
    )
    .await?;
    let sip_addr = voice.as_ref().map(|v| v.sip_addr);
    let state = AppState {
        store,
        config,
        hub,
        metrics: Arc::new(Metrics::default()),
        routing,
        push,
        chat,
        email,
        voice,
    };
    let app = crate::api::router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let (tls, listener) = match tls {
        Some(c) => (Some(crate::https::TlsListener::new(listener, c)?), None),
        None => (None, Some(listener)),
    };
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        // The peer address feeds per-address rate limits (chat, web requests).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let served = match tls {
            // tap_io: axum gives connection info for TcpListener and tapped listeners only.
            Some(tls) => {
                use axum::serve::ListenerExt;
                axum::serve(tls.tap_io(|_| {}), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            None => {
                let Some(listener) = listener else { return };
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(Running {
        addr,
        smtp_addr,
        sip_addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `contact-hub serve`: start, say where, and stop cleanly on Ctrl-C or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    serve_with(config, |_| {}).await
}

/// [`serve`], calling `started` once the hub is up (the demo adds its sample traffic there).
pub async fn serve_with(config: Config, started: impl FnOnce(&Running)) -> anyhow::Result<()> {
    let running = start(config).await?;
    started(&running);
    let state = running.state.clone();
    tracing::info!(
        database = state.store.backend().name(),
        "Contact Hub is serving the console at {}://{} (API under /api/v1, docs at /api/v1/openapi.json)",
        if state.config.http.tls_cert.is_empty() { "http" } else { "https" },
        running.addr
    );
    if state.store.count_users_with_role(Role::Admin).await? == 0 {
        tracing::warn!(
            "No admin user yet. Create one with:  echo 'a-strong-password' | contact-hub user add admin --role admin"
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
