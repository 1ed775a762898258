//! The chat engine: one task owning every live conversation (the sans-IO cores of
//! `conversation`), the customer sockets attached to them, their timers, and a writer task that
//! stores messages in batches before anyone is told of them.
//!
//! The hub plugs in through [`ChatBackend`] (storage, starting conversations) and drives the
//! agent side through [`ChatHandle`]; what agents must hear comes out as [`ChatNotice`]s.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::conversation::{
    Agent, AgentEvent, ConnId, Conversation, Input, Millis, NewMessage, Output, Settings, Snapshot,
    Target, Ticket,
};
use crate::frames::{
    AttachmentView, ConversationState, EndReason, FrameError, MessageView, ServerFrame,
    StartRequest,
};
use crate::limits::{Limiter, Rate};

/// Why the backend could not do something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The request itself is wrong (e.g. an unreadable phone number): tell the client.
    Invalid(String),
    /// Storage failed; the client may try again.
    Unavailable(String),
}

/// What the hub provides: storage and the start of a conversation.
pub trait ChatBackend: Send + Sync + 'static {
    /// Creates the conversation from the pre-chat form — customer matched by email/phone,
    /// the first message (if any) stored as seq 1, the contact queued — and returns it with
    /// the resume token the client keeps.
    fn start(
        &self,
        req: StartRequest,
        peer: IpAddr,
    ) -> impl Future<Output = Result<(Snapshot, String), BackendError>> + Send;

    /// The conversation a resume token belongs to.
    fn resolve(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<i64>, BackendError>> + Send;

    /// A conversation with all its messages, to make it live.
    fn load(
        &self,
        conversation: i64,
    ) -> impl Future<Output = Result<Option<Snapshot>, BackendError>> + Send;

    /// Stores messages, all or none.
    fn store(&self, batch: &[NewMessage]) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// What the agent side must hear, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatNotice {
    Agent {
        conversation: i64,
        agent: Option<i64>,
        event: AgentEvent,
    },
    Ended {
        conversation: i64,
        reason: EndReason,
        was: ConversationState,
        agent: Option<i64>,
    },
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub settings: Settings,
    /// Messages per minute (and burst) from one conversation, and from one address.
    pub session_rate: Rate,
    pub address_rate: Rate,
    /// Conversations started per minute from one address.
    pub start_rate: Rate,
    /// Frames queued for a slow customer socket before it is dropped (it can resume).
    pub socket_queue: usize,
    /// How long an ended conversation stays in memory for resumes before it is reloaded
    /// from the store on demand.
    pub keep_ended_ms: Millis,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            settings: Settings::default(),
            session_rate: Rate {
                per_minute: 30,
                burst: 10,
            },
            address_rate: Rate {
                per_minute: 120,
                burst: 40,
            },
            start_rate: Rate {
                per_minute: 10,
                burst: 5,
            },
            socket_queue: 512,
            keep_ended_ms: 600_000,
        }
    }
}

/// Frames for one customer socket, already serialized (a broadcast serializes once).
pub type Outbound = Arc<str>;

enum Command {
    /// Attach a socket to a live conversation; `false` = not live.
    Resume {
        conversation: i64,
        conn: ConnId,
        ip: IpAddr,
        last_seq: u64,
        tx: mpsc::Sender<Outbound>,
        reply: oneshot::Sender<bool>,
    },
    /// Make a conversation live (if it is not) and, with a socket, attach it.
    Activate {
        snapshot: Snapshot,
        socket: Option<Attach>,
    },
    Closed {
        conn: ConnId,
    },
    /// A frame from a customer socket, already checked.
    Customer {
        conn: ConnId,
        input: Input,
    },
    Upload {
        conversation: i64,
        client_id: String,
        text: String,
        attachment: AttachmentView,
        reply: oneshot::Sender<Result<MessageView, FrameError>>,
    },
    Agent {
        conversation: i64,
        input: AgentInput,
    },
    AgentMessage {
        conversation: i64,
        agent: Agent,
        client_id: String,
        text: String,
        note: bool,
        reply: oneshot::Sender<Result<MessageView, FrameError>>,
    },
    Transcript {
        conversation: i64,
        reply: oneshot::Sender<Option<Vec<MessageView>>>,
    },
    Online {
        conversation: i64,
        reply: oneshot::Sender<Option<bool>>,
    },
    Waiting {
        reply: oneshot::Sender<Vec<i64>>,
    },
    Stats {
        reply: oneshot::Sender<EngineStats>,
    },
    Stored {
        results: Vec<(i64, u64, bool)>,
    },
}

/// A customer socket joining a conversation: its id, address, the last seq it has, the resume
/// token when it just started the conversation, and where its frames go.
struct Attach {
    conn: ConnId,
    ip: IpAddr,
    last_seq: u64,
    started: Option<String>,
    tx: mpsc::Sender<Outbound>,
}

/// The agent's side of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentInput {
    Joined(Agent),
    Left,
    Typing(bool),
    Read(u64),
    End,
    Queue {
        position: usize,
        expected_wait_secs: i64,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub conversations: usize,
    pub sockets: usize,
    pub pending_tickets: usize,
}

/// The engine's address: cheap to clone.
#[derive(Clone)]
pub struct ChatHandle {
    tx: mpsc::Sender<Command>,
    next_conn: Arc<AtomicU64>,
    starts: Arc<std::sync::Mutex<Limiter<IpAddr>>>,
    pub(crate) limits: crate::frames::Limits,
}

/// The engine task has ended (the hub is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl std::error::Error for Stopped {}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the chat engine has stopped")
    }
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

impl ChatHandle {
    pub fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether this address may start another conversation now.
    pub fn allow_start(&self, ip: IpAddr) -> bool {
        match self.starts.lock() {
            Ok(mut l) => l.allow(&ip, now_ms()),
            Err(_) => true,
        }
    }

    async fn send(&self, c: Command) -> Result<(), Stopped> {
        self.tx.send(c).await.map_err(|_| Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| Stopped)
    }

    pub(crate) async fn resume(
        &self,
        conversation: i64,
        conn: ConnId,
        ip: IpAddr,
        last_seq: u64,
        tx: mpsc::Sender<Outbound>,
    ) -> Result<bool, Stopped> {
        self.ask(|reply| Command::Resume {
            conversation,
            conn,
            ip,
            last_seq,
            tx,
            reply,
        })
        .await
    }

    pub(crate) async fn open(
        &self,
        snapshot: Snapshot,
        conn: ConnId,
        ip: IpAddr,
        last_seq: u64,
        started: Option<String>,
        tx: mpsc::Sender<Outbound>,
    ) -> Result<(), Stopped> {
        self.send(Command::Activate {
            snapshot,
            socket: Some(Attach {
                conn,
                ip,
                last_seq,
                started,
                tx,
            }),
        })
        .await
    }

    pub(crate) async fn closed(&self, conn: ConnId) {
        let _ = self.send(Command::Closed { conn }).await;
    }

    pub(crate) async fn customer(&self, conn: ConnId, input: Input) -> Result<(), Stopped> {
        self.send(Command::Customer { conn, input }).await
    }

    /// Makes a conversation live (after a restart, for an agent taking it) if it is not.
    pub async fn activate(&self, snapshot: Snapshot) -> Result<(), Stopped> {
        self.send(Command::Activate {
            snapshot,
            socket: None,
        })
        .await
    }

    /// A customer's upload, stored by the hub, becomes a message of the conversation.
    pub async fn upload(
        &self,
        conversation: i64,
        client_id: String,
        text: String,
        attachment: AttachmentView,
    ) -> Result<Result<MessageView, FrameError>, Stopped> {
        self.ask(|reply| Command::Upload {
            conversation,
            client_id,
            text,
            attachment,
            reply,
        })
        .await
    }

    pub async fn agent(&self, conversation: i64, input: AgentInput) -> Result<(), Stopped> {
        self.send(Command::Agent {
            conversation,
            input,
        })
        .await
    }

    /// An agent's message (or internal note); answered once it is stored.
    pub async fn agent_message(
        &self,
        conversation: i64,
        agent: Agent,
        client_id: String,
        text: String,
        note: bool,
    ) -> Result<Result<MessageView, FrameError>, Stopped> {
        self.ask(|reply| Command::AgentMessage {
            conversation,
            agent,
            client_id,
            text,
            note,
            reply,
        })
        .await
    }

    /// Every stored message of a live conversation (`None` = not live).
    pub async fn transcript(&self, conversation: i64) -> Result<Option<Vec<MessageView>>, Stopped> {
        self.ask(|reply| Command::Transcript {
            conversation,
            reply,
        })
        .await
    }

    /// Whether the customer of a live conversation has a socket open (`None` = not live).
    pub async fn online(&self, conversation: i64) -> Result<Option<bool>, Stopped> {
        self.ask(|reply| Command::Online {
            conversation,
            reply,
        })
        .await
    }

    /// Live conversations waiting for an agent.
    pub async fn waiting(&self) -> Result<Vec<i64>, Stopped> {
        self.ask(|reply| Command::Waiting { reply }).await
    }

    pub async fn stats(&self) -> Result<EngineStats, Stopped> {
        self.ask(|reply| Command::Stats { reply }).await
    }
}

struct Conn {
    conversation: i64,
    ip: IpAddr,
    tx: mpsc::Sender<Outbound>,
}

struct Engine {
    config: EngineConfig,
    conversations: HashMap<i64, Conversation>,
    conns: HashMap<ConnId, Conn>,
    /// (deadline, conversation) and each conversation's current deadline.
    timers: BTreeSet<(Millis, i64)>,
    deadlines: HashMap<i64, Millis>,
    /// Ended conversations with no socket: dropped from memory after `keep_ended_ms`.
    idle_since: HashMap<i64, Millis>,
    tickets: HashMap<Ticket, oneshot::Sender<Result<MessageView, FrameError>>>,
    next_ticket: Ticket,
    session_limits: Limiter<i64>,
    address_limits: Limiter<IpAddr>,
    writer: mpsc::UnboundedSender<NewMessage>,
    notices: mpsc::UnboundedSender<ChatNotice>,
}

/// Starts the engine and its writer; returns the handle and the stream of notices for agents.
pub fn start<B: ChatBackend>(
    backend: Arc<B>,
    config: EngineConfig,
    limits: crate::frames::Limits,
) -> (ChatHandle, mpsc::UnboundedReceiver<ChatNotice>) {
    let (tx, rx) = mpsc::channel(8192);
    let (writer_tx, writer_rx) = mpsc::unbounded_channel();
    let (notices_tx, notices_rx) = mpsc::unbounded_channel();
    let handle = ChatHandle {
        tx: tx.clone(),
        next_conn: Arc::new(AtomicU64::new(1)),
        starts: Arc::new(std::sync::Mutex::new(Limiter::new(config.start_rate))),
        limits,
    };
    let engine = Engine {
        session_limits: Limiter::new(config.session_rate),
        address_limits: Limiter::new(config.address_rate),
        config,
        conversations: HashMap::new(),
        conns: HashMap::new(),
        timers: BTreeSet::new(),
        deadlines: HashMap::new(),
        idle_since: HashMap::new(),
        tickets: HashMap::new(),
        next_ticket: 1,
        writer: writer_tx,
        notices: notices_tx,
    };
    tokio::spawn(writer(backend, writer_rx, tx));
    tokio::spawn(engine.run(rx));
    (handle, notices_rx)
}

/// Stores messages in batches (whatever arrived while the last batch was written), then tells
/// the engine which were stored. A failed batch is retried message by message so one bad
/// message cannot sink the others.
async fn writer<B: ChatBackend>(
    backend: Arc<B>,
    mut rx: mpsc::UnboundedReceiver<NewMessage>,
    engine: mpsc::Sender<Command>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let results: Vec<(i64, u64, bool)> = match backend.store(&batch).await {
            Ok(()) => batch
                .iter()
                .map(|m| (m.conversation_id, m.message.seq, true))
                .collect(),
            Err(e) => {
                tracing::warn!(error = ?e, messages = batch.len(), "storing chat messages failed; retrying one by one");
                let mut r = Vec::with_capacity(batch.len());
                for m in &batch {
                    let ok = backend.store(std::slice::from_ref(m)).await.is_ok();
                    r.push((m.conversation_id, m.message.seq, ok));
                }
                r
            }
        };
        batch.clear();
        if engine.send(Command::Stored { results }).await.is_err() {
            return;
        }
    }
}

impl Engine {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let next = self.timers.first().map(|(t, _)| *t);
            let sleep = async {
                match next {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis((at - now_ms()).max(0) as u64))
                            .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { return };
                    self.command(now_ms(), cmd);
                }
                _ = sleep => self.timeout(now_ms()),
            }
        }
    }

    fn timeout(&mut self, now: Millis) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            self.deadlines.remove(&id);
            if let Some(c) = self.conversations.get_mut(&id) {
                c.handle_timeout(now);
            }
            self.flush(now, id);
        }
        // Forget ended conversations nobody looks at (a resume reloads them).
        let keep = self.config.keep_ended_ms;
        let old: Vec<i64> = self
            .idle_since
            .iter()
            .filter(|(_, t)| now - **t > keep)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            let settled = self.conversations.get(&id).is_none_or(|c| c.is_settled());
            if settled {
                self.idle_since.remove(&id);
                self.conversations.remove(&id);
            }
        }
    }

    fn ticket(&mut self, reply: oneshot::Sender<Result<MessageView, FrameError>>) -> Ticket {
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.tickets.insert(t, reply);
        t
    }

    fn command(&mut self, now: Millis, cmd: Command) {
        match cmd {
            Command::Resume {
                conversation,
                conn,
                ip,
                last_seq,
                tx,
                reply,
            } => {
                if !self.conversations.contains_key(&conversation) {
                    let _ = reply.send(false);
                    return;
                }
                let _ = reply.send(true);
                self.attach(now, conversation, conn, ip, last_seq, None, tx);
            }
            Command::Activate { snapshot, socket } => {
                let id = snapshot.conversation_id;
                if !self.conversations.contains_key(&id) {
                    let c = Conversation::new(now, snapshot, self.config.settings.clone());
                    if c.state() == ConversationState::Ended {
                        self.idle_since.insert(id, now);
                    }
                    self.conversations.insert(id, c);
                    self.flush(now, id);
                }
                if let Some(a) = socket {
                    self.attach(now, id, a.conn, a.ip, a.last_seq, a.started, a.tx);
                }
            }
            Command::Closed { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    if let Some(conv) = self.conversations.get_mut(&c.conversation) {
                        conv.handle(now, Input::CustomerClosed { conn });
                    }
                    self.flush(now, c.conversation);
                }
            }
            Command::Customer { conn, input } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let (id, ip) = (c.conversation, c.ip);
                if let Input::CustomerMessage { client_id, .. } = &input {
                    let known = self.conversations.get(&id).is_some_and(|c| {
                        c.messages()
                            .iter()
                            .any(|m| m.client_id.as_ref() == Some(client_id))
                    });
                    // A resend of a stored message costs nothing; new ones count.
                    if !known
                        && (!self.session_limits.allow(&id, now)
                            || !self.address_limits.allow(&ip, now))
                    {
                        let e = FrameError::new("rate_limited", "too many messages; wait a moment")
                            .for_message(client_id);
                        self.send_to(conn, &e.frame());
                        return;
                    }
                }
                if let Some(conv) = self.conversations.get_mut(&id) {
                    conv.handle(now, input);
                }
                self.flush(now, id);
            }
            Command::Upload {
                conversation,
                client_id,
                text,
                attachment,
                reply,
            } => {
                if !self.conversations.contains_key(&conversation) {
                    let _ = reply.send(Err(FrameError::new(
                        "unknown_session",
                        "this conversation is not open",
                    )));
                    return;
                }
                let ticket = self.ticket(reply);
                if let Some(conv) = self.conversations.get_mut(&conversation) {
                    conv.handle(
                        now,
                        Input::CustomerMessage {
                            conn: None,
                            ticket: Some(ticket),
                            client_id,
                            text,
                            attachment: Some(attachment),
                        },
                    );
                }
                self.flush(now, conversation);
            }
            Command::Agent {
                conversation,
                input,
            } => {
                let input = match input {
                    AgentInput::Joined(a) => Input::AgentJoined(a),
                    AgentInput::Left => Input::AgentLeft,
                    AgentInput::Typing(active) => Input::AgentTyping { active },
                    AgentInput::Read(seq) => Input::AgentRead { seq },
                    AgentInput::End => Input::AgentEnd,
                    AgentInput::Queue {
                        position,
                        expected_wait_secs,
                    } => Input::Queue {
                        position,
                        expected_wait_secs,
                    },
                };
                if let Some(conv) = self.conversations.get_mut(&conversation) {
                    conv.handle(now, input);
                }
                self.flush(now, conversation);
            }
            Command::AgentMessage {
                conversation,
                agent,
                client_id,
                text,
                note,
                reply,
            } => {
                if !self.conversations.contains_key(&conversation) {
                    let _ = reply.send(Err(FrameError::new(
                        "unknown_conversation",
                        "this conversation is not open",
                    )
                    .for_message(&client_id)));
                    return;
                }
                let ticket = self.ticket(reply);
                if let Some(conv) = self.conversations.get_mut(&conversation) {
                    conv.handle(
                        now,
                        Input::AgentMessage {
                            agent,
                            ticket,
                            client_id,
                            text,
                            note,
                        },
                    );
                }
                self.flush(now, conversation);
            }
            Command::Transcript {
                conversation,
                reply,
            } => {
                let t = self
                    .conversations
                    .get(&conversation)
                    .map(|c| c.messages().iter().map(|m| m.view()).collect());
                let _ = reply.send(t);
            }
            Command::Online {
                conversation,
                reply,
            } => {
                let _ = reply.send(
                    self.conversations
                        .get(&conversation)
                        .map(|c| c.has_sockets()),
                );
            }
            Command::Waiting { reply } => {
                let ids = self
                    .conversations
                    .values()
                    .filter(|c| c.state() == ConversationState::Queued)
                    .map(|c| c.id())
                    .collect();
                let _ = reply.send(ids);
            }
            Command::Stats { reply } => {
                let _ = reply.send(EngineStats {
                    conversations: self.conversations.len(),
                    sockets: self.conns.len(),
                    pending_tickets: self.tickets.len(),
                });
            }
            Command::Stored { results } => {
                let mut touched = Vec::new();
                for (id, seq, ok) in results {
                    if let Some(conv) = self.conversations.get_mut(&id) {
                        conv.handle(now, Input::Stored { seq, ok });
                        touched.push(id);
                    }
                }
                touched.dedup();
                for id in touched {
                    self.flush(now, id);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attach(
        &mut self,
        now: Millis,
        id: i64,
        conn: ConnId,
        ip: IpAddr,
        last_seq: u64,
        started: Option<String>,
        tx: mpsc::Sender<Outbound>,
    ) {
        self.conns.insert(
            conn,
            Conn {
                conversation: id,
                ip,
                tx,
            },
        );
        self.idle_since.remove(&id);
        if let Some(conv) = self.conversations.get_mut(&id) {
            conv.handle(
                now,
                Input::CustomerOpened {
                    conn,
                    last_seq,
                    started,
                },
            );
        }
        self.flush(now, id);
    }

    fn send_to(&mut self, conn: ConnId, frame: &ServerFrame) {
        let text: Outbound = frame.to_json().into();
        self.send_text(conn, text);
    }

    fn send_text(&mut self, conn: ConnId, text: Outbound) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.tx.try_send(text).is_err() {
            // Too slow (or gone): drop the socket; the client resumes from its last seq.
            tracing::debug!(conn, "chat socket too slow; disconnecting it");
            let id = c.conversation;
            self.conns.remove(&conn);
            if let Some(conv) = self.conversations.get_mut(&id) {
                conv.handle(now_ms(), Input::CustomerClosed { conn });
            }
        }
    }

    /// Carries out what a conversation asked for and re-arms its timer.
    fn flush(&mut self, now: Millis, id: i64) {
        while let Some(out) = self
            .conversations
            .get_mut(&id)
            .and_then(|c| c.poll_output())
        {
            match out {
                Output::Store(m) => {
                    let _ = self.writer.send(m);
                }
                Output::Customer { to, frame } => {
                    let text: Outbound = frame.to_json().into();
                    let targets: Vec<ConnId> = match to {
                        Target::Conn(c) => vec![c],
                        Target::All | Target::AllExcept(_) => self
                            .conversations
                            .get(&id)
                            .map(|c| c.sockets().to_vec())
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|k| !matches!(to, Target::AllExcept(x) if x == *k))
                            .collect(),
                    };
                    for c in targets {
                        self.send_text(c, text.clone());
                    }
                }
                Output::Agent { agent, event } => {
                    let _ = self.notices.send(ChatNotice::Agent {
                        conversation: id,
                        agent,
                        event,
                    });
                }
                Output::Acked { ticket, result } => {
                    if let Some(reply) = self.tickets.remove(&ticket) {
                        let _ = reply.send(result);
                    }
                }
                Output::Ended { reason, was, agent } => {
                    let _ = self.notices.send(ChatNotice::Ended {
                        conversation: id,
                        reason,
                        was,
                        agent,
                    });
                }
            }
        }
        let Some(conv) = self.conversations.get(&id) else {
            return;
        };
        if conv.state() == ConversationState::Ended && !conv.has_sockets() {
            self.idle_since.entry(id).or_insert(now);
        }
        let next = conv.poll_timeout();
        let current = self.deadlines.get(&id).copied();
        if current != next {
            if let Some(t) = current {
                self.timers.remove(&(t, id));
                self.deadlines.remove(&id);
            }
            if let Some(t) = next {
                self.timers.insert((t, id));
                self.deadlines.insert(id, t);
            }
        }
        // Ended conversations need a sweep even without a timer of their own.
        if self.idle_since.contains_key(&id) {
            let at = now + self.config.keep_ended_ms + 1;
            if !self.deadlines.contains_key(&id) {
                self.timers.insert((at, id));
                self.deadlines.insert(id, at);
            }
        }
    }
}
