//! Wiring: open the store, start the hub, serve HTTP. Used by `contact-hub serve` and by tests
//! (which bind port 0).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::domain::{now_ms, Role};
use crate::hub::{self, HubHandle};
use crate::metrics::Metrics;
use crate::store::{redact_url, Store};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub hub: HubHandle,
    pub metrics: Arc<Metrics>,
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
    let hub = hub::start(store.clone(), config.agent.disconnect_grace_secs).await?;
    let listener = TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let addr = listener.local_addr()?;
    let state = AppState {
        store,
        config: Arc::new(config),
        hub,
        metrics: Arc::new(Metrics::default()),
    };
    let app = crate::api::router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(Running {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// `contact-hub serve`: start, say where, and stop cleanly on Ctrl-C or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    let state = running.state.clone();
    tracing::info!(
        database = state.store.backend().name(),
        "Contact Hub is serving the console at http://{} (API under /api/v1, docs at /api/v1/openapi.json)",
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
