//! The agent and supervisor sockets: JSON text frames `{"type": ...}` (docs/protocol.md).
//! Both authenticate at the upgrade, send heartbeats, answer bad frames with an error frame and
//! disconnect a client that keeps misbehaving or goes silent.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::acd::types::AgentStateKind;
use crate::agents::AgentStateView;
use crate::auth::AuthUser;
use crate::domain::{now_ms, rfc3339, ContactState, Role, User};
use crate::error::ApiError;
use crate::hub::{ContactOp, HubEvent, Wanted};
use crate::server::AppState;

/// Largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Error frames tolerated before the socket is closed.
const MAX_ERRORS: u32 = 20;
/// Silence (in heartbeats) after which the client is considered gone.
const SILENT_HEARTBEATS: u32 = 3;

fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    // Browsers send the session cookie with cross-site WebSocket upgrades; only same-origin
    // pages may open a socket with it.
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split("://").nth(1).unwrap_or("");
    if origin_host == host {
        Ok(())
    } else {
        Err(ApiError::forbidden("cross-origin socket refused"))
    }
}

fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    ws.map(|w| {
        w.max_message_size(MAX_FRAME_BYTES)
            .max_frame_size(MAX_FRAME_BYTES)
    })
    .map_err(|r| {
        ApiError::new(
            r.status(),
            "websocket_required",
            format!("open this endpoint as a WebSocket: {}", r.body_text()),
        )
    })
}

pub async fn agent_socket(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: AuthUser,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor])?;
    check_origin(&headers)?;
    let ws = upgrade(ws)?;
    Ok(ws
        .on_upgrade(move |socket| agent_session(state, user.user, socket))
        .into_response())
}

pub async fn supervisor_socket(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: AuthUser,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    user.require(&[Role::Supervisor, Role::Admin])?;
    check_origin(&headers)?;
    let ws = upgrade(ws)?;
    Ok(ws
        .on_upgrade(move |socket| supervisor_session(state, user.user, socket))
        .into_response())
}

async fn send(socket: &mut WebSocket, v: &impl Serialize) -> bool {
    match serde_json::to_string(v) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

fn error_frame(code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "code": code, "message": message.into()})
}

/// What came in on a socket, already checked.
enum Inbound {
    Frame(Value),
    /// Not a JSON object with a string `type`: answer with this error frame.
    Bad(Value),
    /// Control frames and pongs: only prove the client is alive.
    Alive,
    Closed,
}

fn classify(msg: Option<Result<Message, axum::Error>>) -> Inbound {
    match msg {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Inbound::Closed,
        Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.get("type").and_then(Value::as_str).is_some() => Inbound::Frame(v),
            Ok(_) => Inbound::Bad(error_frame(
                "invalid_message",
                "a frame is a JSON object with a string \"type\"",
            )),
            Err(e) => Inbound::Bad(error_frame("invalid_json", format!("not JSON: {e}"))),
        },
        Some(Ok(Message::Binary(_))) => Inbound::Bad(error_frame(
            "invalid_message",
            "binary frames are not supported; send JSON text",
        )),
        Some(Ok(_)) => Inbound::Alive,
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

fn heartbeat() -> Value {
    json!({"type": "heartbeat", "server_time": rfc3339(now_ms())})
}

fn state_frame(state: &AgentStateView) -> Value {
    json!({"type": "agent_state", "state": state})
}

async fn agent_session(state: AppState, agent: User, mut socket: WebSocket) {
    let metrics = state.metrics.clone();
    metrics.agent_sockets.fetch_add(1, Ordering::Relaxed);
    let mut events = state.hub.subscribe();
    let hb_secs = state.config.agent.heartbeat_secs.max(1);
    let profile = match state.store.agent_profile(agent.id).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, agent_id = agent.id, "cannot load the agent profile");
            close(&mut socket, 1011, "store unavailable").await;
            metrics.agent_sockets.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let Ok(session) = state.hub.connect(agent.id, profile).await else {
        close(&mut socket, 1011, "hub stopped").await;
        metrics.agent_sockets.fetch_sub(1, Ordering::Relaxed);
        return;
    };
    tracing::info!(agent_id = agent.id, "agent socket open");
    let mut contacts = Vec::new();
    for (id, cstate, deadline) in &session.contacts {
        let mut item = contact_payload(&state, *id).await;
        item["state"] = json!(cstate);
        item["expires_at"] = json!(deadline
            .filter(|_| *cstate == ContactState::Offered)
            .map(rfc3339));
        item["wrap_up_until"] = json!(deadline
            .filter(|_| *cstate == ContactState::WrapUp)
            .map(rfc3339));
        contacts.push(item);
    }
    let hello = json!({
        "type": "hello",
        "agent": agent,
        "state": session.state,
        "contacts": contacts,
        "dispositions": state.config.agent.dispositions,
        "heartbeat_secs": hb_secs,
    });
    let mut alive = send(&mut socket, &hello).await;
    let (push_id, mut pushed) = state.push.register(agent.id);
    let mut ticker = tokio::time::interval(Duration::from_secs(hb_secs));
    ticker.tick().await;
    let mut last_seen = Instant::now();
    let mut errors = 0u32;
    while alive {
        tokio::select! {
            msg = socket.recv() => {
                last_seen = Instant::now();
                let reply = match classify(msg) {
                    Inbound::Closed => break,
                    Inbound::Alive => continue,
                    Inbound::Bad(e) => Err(e),
                    Inbound::Frame(v) => agent_frame(&state, &agent, v).await,
                };
                match reply {
                    Ok(Some(v)) => alive = send(&mut socket, &v).await,
                    Ok(None) => {}
                    Err(e) => {
                        errors += 1;
                        alive = send(&mut socket, &e).await;
                        if errors >= MAX_ERRORS {
                            close(&mut socket, 1008, "too many bad frames").await;
                            break;
                        }
                    }
                }
            }
            frame = pushed.recv() => {
                let Some(frame) = frame else { break };
                alive = send(&mut socket, &frame).await;
            }
            ev = events.recv() => match ev {
                Ok(HubEvent::AgentState { agent: a, view }) if a == agent.id => {
                    alive = send(&mut socket, &state_frame(&view)).await;
                }
                Ok(HubEvent::Offer { contact, agent: a, expires_at }) if a == agent.id => {
                    let mut frame = contact_payload(&state, contact).await;
                    frame["type"] = "offer".into();
                    frame["expires_at"] = rfc3339(expires_at).into();
                    alive = send(&mut socket, &frame).await;
                }
                Ok(HubEvent::OfferCancelled { contact, agent: a, reason }) if a == agent.id => {
                    alive = send(&mut socket, &json!({"type": "offer_cancelled", "contact_id": contact, "reason": reason})).await;
                }
                Ok(HubEvent::ContactState { contact, agent: Some(a), state: cs, until }) if a == agent.id => {
                    if cs != ContactState::Offered {
                        alive = send(&mut socket, &json!({
                            "type": "contact_state", "contact_id": contact, "state": cs,
                            "wrap_up_until": until.map(rfc3339),
                        })).await;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Missed changes: resend the current state rather than guess.
                    if let Ok(all) = state.hub.agents().await {
                        if let Some((_, s)) = all.into_iter().find(|(id, _)| *id == agent.id) {
                            alive = send(&mut socket, &state_frame(&s)).await;
                        }
                    }
                }
                Err(RecvError::Closed) => break,
            },
            _ = ticker.tick() => {
                if last_seen.elapsed() > Duration::from_secs(hb_secs * SILENT_HEARTBEATS as u64) {
                    close(&mut socket, 1001, "no heartbeat from client").await;
                    break;
                }
                alive = send(&mut socket, &heartbeat()).await
                    && socket.send(Message::Ping(Default::default())).await.is_ok();
            }
        }
    }
    state.push.unregister(agent.id, push_id);
    if let Some(v) = &state.voice {
        if !state.push.is_connected(agent.id) {
            // No console left: a softphone cannot ring.
            v.set_endpoint(agent.id, None, false).await;
        }
    }
    state.hub.disconnect(agent.id).await;
    metrics.agent_sockets.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(agent_id = agent.id, "agent socket closed");
}

/// The contact (and its customer's screen-pop) for an offer or a restored work item.
async fn contact_payload(state: &AppState, contact: i64) -> Value {
    let Ok(c) = state.store.get_contact(contact).await else {
        return json!({"contact": {"id": contact}, "screen_pop": null});
    };
    let pop = match c.customer_id {
        Some(customer) => state
            .store
            .screen_pop(
                customer,
                chrono::Utc::now().date_naive(),
                &state.config.archive,
            )
            .await
            .ok(),
        None => None,
    };
    let chat = crate::chat::agent::offer_extra(state, &c).await;
    let email = crate::email::offer_extra(state, &c).await;
    json!({"contact": c, "screen_pop": pop, "chat": chat, "email": email})
}

fn contact_id(v: &Value) -> Result<i64, Value> {
    v.get("contact_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| error_frame("invalid_message", "contact_id (a number) is required"))
}

/// Handles one agent frame: `Ok(Some(reply))`, `Ok(None)`, or `Err(error frame)`.
async fn agent_frame(state: &AppState, agent: &User, v: Value) -> Result<Option<Value>, Value> {
    let agent_id = agent.id;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    if crate::chat::agent::is_chat_frame(kind) {
        return crate::chat::agent::frame(state, agent, kind, &v).await;
    }
    if crate::voice::agent::is_call_frame(kind) {
        return crate::voice::agent::frame(state, agent, kind, &v).await;
    }
    let op = match kind {
        "ping" => return Ok(Some(json!({"type": "pong"}))),
        "set_state" => return set_state(state, agent_id, &v).await,
        "accept" => ContactOp::Accept,
        "reject" => ContactOp::Reject,
        "complete" => ContactOp::Complete {
            hold_ms: v.get("hold_ms").and_then(Value::as_i64).unwrap_or(0).max(0),
        },
        "wrap_up" => {
            let disposition = match v.get("disposition") {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) if state.config.agent.dispositions.contains(d) => {
                    Some(d.clone())
                }
                Some(_) => {
                    return Err(error_frame(
                        "invalid_disposition",
                        format!(
                            "disposition must be one of {}",
                            state.config.agent.dispositions.join(", ")
                        ),
                    ))
                }
            };
            let notes = match v.get("notes") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(n)) if n.chars().count() <= 4000 => n.clone(),
                Some(_) => {
                    return Err(error_frame(
                        "invalid_notes",
                        "notes: text of at most 4000 characters",
                    ))
                }
            };
            ContactOp::WrapUp { disposition, notes }
        }
        "wrap_up_extend" => ContactOp::Extend {
            secs: v
                .get("secs")
                .and_then(Value::as_u64)
                .unwrap_or(30)
                .clamp(1, 600) as u32,
        },
        other => {
            return Err(error_frame(
                "unknown_type",
                format!("unknown message type {other:?}"),
            ))
        }
    };
    let contact = contact_id(&v)?;
    match state.hub.contact_op(agent_id, contact, op).await {
        Ok(Ok(())) => Ok(None),
        Ok(Err(e)) => {
            tracing::info!(agent_id, contact_id = contact, error = %e, "agent request refused");
            let code = match e {
                crate::acd::engine::AcdError::NoSuchOffer { .. } => "no_such_offer",
                crate::acd::engine::AcdError::UnknownContact(_) => "unknown_contact",
                crate::acd::engine::AcdError::UnknownAgent(_) => "not_logged_in",
                _ => "not_allowed",
            };
            Err(error_frame(code, e.to_string()))
        }
        Err(_) => Err(error_frame("unavailable", "the hub is stopping")),
    }
}

async fn set_state(state: &AppState, agent_id: i64, v: &Value) -> Result<Option<Value>, Value> {
    let reason = match v.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(error_frame("invalid_reason", "reason must be a string")),
    };
    let wanted = match v.get("state").and_then(Value::as_str) {
        Some("available") => Wanted::Available,
        Some("not_ready") => Wanted::NotReady(reason.unwrap_or_default()),
        Some("logged_out") => Wanted::LoggedOut,
        _ => {
            return Err(error_frame(
                "invalid_state",
                "state must be one of available, not_ready, logged_out",
            ))
        }
    };
    match state.hub.set_state(agent_id, wanted).await {
        // A change reaches every socket of the agent through the hub's broadcast; only a
        // no-op is answered here, so no client sees the state twice.
        Ok(Ok((_, true))) => Ok(None),
        Ok(Ok((view, false))) => Ok(Some(state_frame(&view))),
        Ok(Err(e)) => Err(error_frame("state_refused", e)),
        Err(_) => Err(error_frame("unavailable", "the hub is stopping")),
    }
}

async fn supervisor_session(state: AppState, user: User, mut socket: WebSocket) {
    let metrics = state.metrics.clone();
    metrics.supervisor_sockets.fetch_add(1, Ordering::Relaxed);
    let mut events = state.hub.subscribe();
    let hb_secs = state.config.agent.heartbeat_secs.max(1);
    let mut alive = match supervisor_hello(&state, &user, hb_secs).await {
        Some(hello) => send(&mut socket, &hello).await,
        None => {
            close(&mut socket, 1011, "snapshot failed").await;
            false
        }
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(hb_secs));
    ticker.tick().await;
    let mut last_seen = Instant::now();
    let mut errors = 0u32;
    while alive {
        tokio::select! {
            msg = socket.recv() => {
                last_seen = Instant::now();
                let reply = match classify(msg) {
                    Inbound::Closed => break,
                    Inbound::Alive => continue,
                    Inbound::Bad(e) => Err(e),
                    Inbound::Frame(v) => match v.get("type").and_then(Value::as_str) {
                        Some("ping") => Ok(json!({"type": "pong"})),
                        Some(other) => Err(error_frame("unknown_type", format!("unknown message type {other:?}"))),
                        None => Err(error_frame("invalid_message", "missing type")),
                    },
                };
                match reply {
                    Ok(v) => alive = send(&mut socket, &v).await,
                    Err(e) => {
                        errors += 1;
                        alive = send(&mut socket, &e).await;
                        if errors >= MAX_ERRORS {
                            close(&mut socket, 1008, "too many bad frames").await;
                            break;
                        }
                    }
                }
            }
            ev = events.recv() => match ev {
                Ok(HubEvent::AgentState { agent, view }) => {
                    alive = send(&mut socket, &json!({"type": "agent_state", "agent_id": agent, "state": view})).await;
                }
                Ok(HubEvent::Stats(snapshot)) => {
                    alive = send(&mut socket, &json!({"type": "stats", "stats": &*snapshot})).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Too far behind to replay: send a fresh snapshot instead.
                    alive = match supervisor_hello(&state, &user, hb_secs).await {
                        Some(mut snap) => {
                            snap["type"] = "snapshot".into();
                            send(&mut socket, &snap).await
                        }
                        None => false,
                    };
                }
                Err(RecvError::Closed) => break,
            },
            _ = ticker.tick() => {
                if last_seen.elapsed() > Duration::from_secs(hb_secs * SILENT_HEARTBEATS as u64) {
                    close(&mut socket, 1001, "no heartbeat from client").await;
                    break;
                }
                alive = send(&mut socket, &heartbeat()).await
                    && socket.send(Message::Ping(Default::default())).await.is_ok();
            }
        }
    }
    metrics.supervisor_sockets.fetch_sub(1, Ordering::Relaxed);
}

/// The supervisor's view on connect: every agent with its state, and the queues.
async fn supervisor_hello(state: &AppState, user: &User, hb_secs: u64) -> Option<Value> {
    let users = state.store.list_users().await.ok()?;
    let live = state.hub.agents().await.ok()?;
    let stats = state.hub.stats().await.ok()?;
    let agents: Vec<Value> = users
        .into_iter()
        .filter(|u| u.role != Role::Admin)
        .map(|u| {
            let s = live
                .iter()
                .find(|(id, _)| *id == u.id)
                .map(|(_, s)| s.clone())
                .unwrap_or(AgentStateView {
                    state: AgentStateKind::LoggedOut,
                    reason: None,
                    since: rfc3339(now_ms()),
                });
            json!({"agent": u, "state": s})
        })
        .collect();
    let queues = state.store.list_queues().await.ok()?;
    Some(json!({
        "type": "hello",
        "user": user,
        "agents": agents,
        "queues": queues,
        "stats": &*stats,
        "heartbeat_secs": hb_secs,
    }))
}
