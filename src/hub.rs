//! The hub loop: the single owner of live state (agent presence today; the ACD joins it).
//! IO tasks talk to it through a bounded channel; it publishes changes on a broadcast channel
//! and hands them to the writer task, never awaiting the database itself.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::agents::{AgentBoard, AgentChange, AgentStateView, AgentStatus, Cause, StateError};
use crate::domain::{now_ms, Role};
use crate::store::{AgentEventRow, Store};

pub enum HubInput {
    Connect {
        agent_id: i64,
        reply: oneshot::Sender<AgentStateView>,
    },
    Disconnect {
        agent_id: i64,
    },
    SetState {
        agent_id: i64,
        status: AgentStatus,
        reason: Option<String>,
        reply: oneshot::Sender<Result<(AgentStateView, bool), StateError>>,
    },
    Snapshot {
        reply: oneshot::Sender<Vec<(i64, AgentStateView)>>,
    },
    LogOut {
        agent_id: i64,
    },
}

/// What the hub publishes to sockets.
#[derive(Debug, Clone)]
pub enum HubEvent {
    AgentState(AgentChange),
}

#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<HubInput>,
    events: broadcast::Sender<HubEvent>,
}

#[derive(Debug, thiserror::Error)]
#[error("the hub has stopped")]
pub struct HubStopped;

impl HubHandle {
    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.events.subscribe()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> HubInput,
    ) -> Result<T, HubStopped> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| HubStopped)?;
        rx.await.map_err(|_| HubStopped)
    }

    pub async fn connect(&self, agent_id: i64) -> Result<AgentStateView, HubStopped> {
        self.ask(|reply| HubInput::Connect { agent_id, reply })
            .await
    }

    pub async fn disconnect(&self, agent_id: i64) {
        let _ = self.tx.send(HubInput::Disconnect { agent_id }).await;
    }

    pub async fn set_state(
        &self,
        agent_id: i64,
        status: AgentStatus,
        reason: Option<String>,
    ) -> Result<Result<(AgentStateView, bool), StateError>, HubStopped> {
        self.ask(|reply| HubInput::SetState {
            agent_id,
            status,
            reason,
            reply,
        })
        .await
    }

    /// The user ended their session: whatever their sockets, they take no more work.
    pub async fn log_out(&self, agent_id: i64) {
        let _ = self.tx.send(HubInput::LogOut { agent_id }).await;
    }

    pub async fn snapshot(&self) -> Result<Vec<(i64, AgentStateView)>, HubStopped> {
        self.ask(|reply| HubInput::Snapshot { reply }).await
    }
}

/// Starts the hub loop and its writer task. Agents left logged in by a previous run are logged
/// out first (with an event), so the log never shows an agent available across a restart.
pub async fn start(store: Store, disconnect_grace_secs: i64) -> anyhow::Result<HubHandle> {
    log_out_after_restart(&store).await?;
    let (tx, rx) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(4096);
    let (writer_tx, writer_rx) = mpsc::channel(65_536);
    tokio::spawn(writer(store, writer_rx));
    let board = AgentBoard::new(disconnect_grace_secs * 1000);
    tokio::spawn(run(board, rx, events.clone(), writer_tx));
    Ok(HubHandle { tx, events })
}

async fn log_out_after_restart(store: &Store) -> anyhow::Result<()> {
    let now = now_ms();
    let mut rows = Vec::new();
    for user in store.list_users().await? {
        if user.role == Role::Admin {
            continue;
        }
        let last = store.agent_events(user.id, 1).await?;
        if let Some(e) = last.last() {
            if e.state.as_deref() != Some(AgentStatus::LoggedOut.as_str()) {
                rows.push(event_row(&AgentChange {
                    agent_id: user.id,
                    at: now,
                    view: AgentStateView {
                        state: AgentStatus::LoggedOut,
                        reason: None,
                        since: crate::domain::rfc3339(now),
                    },
                    cause: Cause::Restart,
                }));
            }
        }
    }
    if !rows.is_empty() {
        store.append_agent_events(&rows).await?;
    }
    Ok(())
}

fn event_row(c: &AgentChange) -> AgentEventRow {
    AgentEventRow {
        agent_id: c.agent_id,
        at: c.at,
        kind: "state".into(),
        state: Some(c.view.state.as_str().into()),
        reason: c.view.reason.clone(),
        data: serde_json::json!({ "cause": c.cause }),
    }
}

async fn run(
    mut board: AgentBoard,
    mut rx: mpsc::Receiver<HubInput>,
    events: broadcast::Sender<HubEvent>,
    writer: mpsc::Sender<AgentEventRow>,
) {
    loop {
        let deadline = board.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => {
                    let wait = (at - now_ms()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(wait)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { break };
                let now = now_ms();
                match input {
                    HubInput::Connect { agent_id, reply } => {
                        let _ = reply.send(board.connect(now, agent_id));
                    }
                    HubInput::Disconnect { agent_id } => board.disconnect(now, agent_id),
                    HubInput::SetState { agent_id, status, reason, reply } => {
                        let _ = reply.send(board.set_state(now, agent_id, status, reason));
                    }
                    HubInput::LogOut { agent_id } => board.log_out(now, agent_id),
                    HubInput::Snapshot { reply } => {
                        let _ = reply.send(board.snapshot());
                    }
                }
            }
            _ = sleep => board.handle_timeout(now_ms()),
        }
        while let Some(change) = board.poll_change() {
            if writer.send(event_row(&change)).await.is_err() {
                tracing::error!("event writer stopped; agent events are not being stored");
            }
            let _ = events.send(HubEvent::AgentState(change));
        }
    }
}

/// Writes events in batches; a failed write is retried, never dropped.
async fn writer(store: Store, mut rx: mpsc::Receiver<AgentEventRow>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = store.append_agent_events(&batch).await {
            tracing::error!(error = %e, events = batch.len(), "storing agent events failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        batch.clear();
    }
}
