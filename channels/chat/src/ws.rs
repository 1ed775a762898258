//! The WebSocket driver for one customer socket (`/chat/ws`): checks each frame, starts or
//! resumes the conversation through the backend, hands the rest to the engine, and writes the
//! engine's frames out. Heartbeats; a client that keeps misbehaving or goes silent is closed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::sync::mpsc;

use crate::conversation::Input;
use crate::engine::{BackendError, ChatBackend, ChatHandle, Outbound};
use crate::frames::{parse_client_frame, rfc3339, ClientFrame, FrameError, ServerFrame};
use crate::limits::{Bucket, Rate};

/// Refused frames tolerated before the socket is closed.
pub const MAX_ERRORS: u32 = 20;
/// Largest frame a customer may send (a 2000-character message is at most ~8 KiB of JSON).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub heartbeat: Duration,
    /// Heartbeats without any sign of life before the socket is closed.
    pub silent_heartbeats: u32,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            heartbeat: Duration::from_secs(15),
            silent_heartbeats: 3,
        }
    }
}

async fn send(socket: &mut WebSocket, frame: &ServerFrame) -> bool {
    socket
        .send(Message::Text(frame.to_json().into()))
        .await
        .is_ok()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn backend_error(e: BackendError) -> FrameError {
    match e {
        BackendError::Invalid(m) => FrameError::new("invalid_field", m),
        BackendError::Unavailable(_) => FrameError::new(
            "not_stored",
            "the chat service is busy; try again in a moment",
        ),
    }
}

/// Serves one customer socket until it closes.
pub async fn serve<B: ChatBackend>(
    mut socket: WebSocket,
    peer: IpAddr,
    chat: ChatHandle,
    backend: Arc<B>,
    config: SocketConfig,
) {
    let conn = chat.next_conn();
    let (tx, mut rx) = mpsc::channel::<Outbound>(512);
    let mut attached = false;
    let mut errors = 0u32;
    let mut ticker = tokio::time::interval(config.heartbeat);
    ticker.tick().await;
    let mut last_seen = Instant::now();
    // Any frame counts against this, typing and read receipts included: a flood is refused
    // (and, as errors add up, disconnected) before it reaches the engine.
    let frame_rate = Rate {
        per_minute: 600,
        burst: 60,
    };
    let mut frames = Bucket::new(frame_rate, now_ms());
    loop {
        tokio::select! {
            msg = socket.recv() => {
                last_seen = Instant::now();
                let text = match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        errors += 1;
                        let e = FrameError::new("invalid_message", "binary frames are not supported; send JSON text");
                        if !send(&mut socket, &e.frame()).await { break }
                        if errors >= MAX_ERRORS { close(&mut socket, 1008, "too many bad frames").await; break }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                let result = match parse_client_frame(text.as_str(), &chat.limits) {
                    Err(e) => Err(e),
                    Ok(_) if !frames.take(frame_rate, now_ms()) => {
                        Err(FrameError::new("rate_limited", "too many frames; slow down"))
                    }
                    Ok(frame) => handle_frame(&mut socket, frame, conn, peer, &chat, &backend, &tx, &mut attached).await,
                };
                match result {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        errors += 1;
                        if !send(&mut socket, &e.frame()).await { break }
                        if errors >= MAX_ERRORS {
                            close(&mut socket, 1008, "too many bad frames").await;
                            break;
                        }
                    }
                }
            }
            out = rx.recv() => {
                let Some(text) = out else {
                    // The engine dropped this socket (too slow): the client will resume.
                    close(&mut socket, 1013, "too slow; reconnect").await;
                    break;
                };
                if socket.send(Message::Text(text.as_ref().into())).await.is_err() { break }
            }
            _ = ticker.tick() => {
                if last_seen.elapsed() > config.heartbeat * config.silent_heartbeats {
                    close(&mut socket, 1001, "no heartbeat from client").await;
                    break;
                }
                let hb = ServerFrame::Heartbeat { server_time: rfc3339(now_ms()) };
                if !send(&mut socket, &hb).await || socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    if attached {
        chat.closed(conn).await;
    }
}

/// `Ok(true)` go on, `Ok(false)` stop, `Err` answer with an error frame.
#[allow(clippy::too_many_arguments)]
async fn handle_frame<B: ChatBackend>(
    socket: &mut WebSocket,
    frame: ClientFrame,
    conn: u64,
    peer: IpAddr,
    chat: &ChatHandle,
    backend: &Arc<B>,
    tx: &mpsc::Sender<Outbound>,
    attached: &mut bool,
) -> Result<bool, FrameError> {
    let stopped = |_| FrameError::new("unavailable", "the hub is stopping");
    match frame {
        ClientFrame::Ping => Ok(send(socket, &ServerFrame::Pong).await),
        ClientFrame::Start(req) => {
            if *attached {
                return Err(FrameError::new(
                    "invalid_message",
                    "this socket already has a conversation",
                ));
            }
            if !chat.allow_start(peer) {
                return Err(FrameError::new(
                    "rate_limited",
                    "too many new conversations from this address; wait a moment",
                ));
            }
            let (snapshot, token) = backend.start(req, peer).await.map_err(backend_error)?;
            chat.open(snapshot, conn, peer, 0, Some(token), tx.clone())
                .await
                .map_err(stopped)?;
            *attached = true;
            Ok(true)
        }
        ClientFrame::Resume { token, last_seq } => {
            if *attached {
                return Err(FrameError::new(
                    "invalid_message",
                    "this socket already has a conversation",
                ));
            }
            let unknown =
                || FrameError::new("unknown_session", "no such conversation; start a new one");
            let Some(id) = backend.resolve(&token).await.map_err(backend_error)? else {
                return Err(unknown());
            };
            let live = chat
                .resume(id, conn, peer, last_seq, tx.clone())
                .await
                .map_err(stopped)?;
            if !live {
                let Some(snapshot) = backend.load(id).await.map_err(backend_error)? else {
                    return Err(unknown());
                };
                chat.open(snapshot, conn, peer, last_seq, None, tx.clone())
                    .await
                    .map_err(stopped)?;
            }
            *attached = true;
            Ok(true)
        }
        other => {
            if !*attached {
                return Err(FrameError::new("no_session", "send start or resume first"));
            }
            let input = match other {
                ClientFrame::Message { client_id, text } => Input::CustomerMessage {
                    conn: Some(conn),
                    ticket: None,
                    client_id,
                    text,
                    attachment: None,
                },
                ClientFrame::Typing { active } => Input::CustomerTyping { active },
                ClientFrame::Read { seq } => Input::CustomerRead { seq },
                ClientFrame::End => Input::CustomerEnd,
                ClientFrame::Ping | ClientFrame::Start(_) | ClientFrame::Resume { .. } => {
                    return Ok(true)
                }
            };
            chat.customer(conn, input).await.map_err(stopped)?;
            Ok(true)
        }
    }
}
