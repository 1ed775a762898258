//! One conversation's session protocol, free of IO: sequence numbers, store-before-ack,
//! resume after reconnect, typing, read receipts, idle and abandon timers, end of chat.
//!
//! Driven with `handle(now, input)` and `handle_timeout(now)`; results come out of
//! `poll_output()`; `poll_timeout()` says when to call back.

use std::collections::{HashMap, VecDeque};

use crate::frames::{
    rfc3339, AgentInfo, AttachmentView, ConversationState, EndReason, FrameError, From,
    MessageView, ServerFrame,
};

pub type Millis = i64;
/// One customer socket.
pub type ConnId = u64;
/// Whoever waits for an agent's (or an upload's) message to be stored.
pub type Ticket = u64;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The customer has not written (or typed) for this long since the agent last wrote:
    /// the conversation ends (`Idle`).
    pub idle_timeout_ms: Millis,
    /// A warning is stored this long before the idle end.
    pub idle_warning_ms: Millis,
    /// A queued customer with no open socket for this long has left (`Abandoned`).
    pub abandon_after_ms: Millis,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idle_timeout_ms: 900_000,
            idle_warning_ms: 120_000,
            abandon_after_ms: 120_000,
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub seq: u64,
    pub from: From,
    pub name: Option<String>,
    pub text: String,
    pub at: Millis,
    pub client_id: Option<String>,
    pub event: Option<String>,
    pub attachment: Option<AttachmentView>,
    pub agent_id: Option<i64>,
}

impl Message {
    pub fn view(&self) -> MessageView {
        MessageView {
            seq: self.seq,
            from: self.from,
            name: self.name.clone(),
            text: self.text.clone(),
            at: rfc3339(self.at),
            client_id: self.client_id.clone(),
            event: self.event.clone(),
            attachment: self.attachment.clone(),
            agent_id: self.agent_id,
        }
    }

    /// What the customer sees: no agent ids, no other parties' client ids.
    fn customer_view(&self) -> MessageView {
        let mut v = self.view();
        v.agent_id = None;
        if self.from != From::Customer {
            v.client_id = None;
        }
        v
    }
}

/// A message to store, with its conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub conversation_id: i64,
    pub message: Message,
}

/// The agent serving the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: i64,
    pub name: String,
}

/// A conversation as the store knows it, to make it live again (after a restart, or when it
/// was evicted from memory).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub conversation_id: i64,
    pub language: String,
    pub state: ConversationState,
    pub agent: Option<Agent>,
    /// Every stored message, in `seq` order.
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A customer socket joined; `started` carries the resume token when it just created the
    /// conversation (the `started` frame hands it to the client).
    CustomerOpened {
        conn: ConnId,
        last_seq: u64,
        started: Option<String>,
    },
    CustomerClosed {
        conn: ConnId,
    },
    /// From a socket (`conn`) or an upload (`ticket`).
    CustomerMessage {
        conn: Option<ConnId>,
        ticket: Option<Ticket>,
        client_id: String,
        text: String,
        attachment: Option<AttachmentView>,
    },
    CustomerTyping {
        active: bool,
    },
    CustomerRead {
        seq: u64,
    },
    CustomerEnd,
    AgentJoined(Agent),
    /// The agent handed the conversation on (a transfer); it waits in a queue again.
    AgentLeft,
    AgentMessage {
        agent: Agent,
        ticket: Ticket,
        client_id: String,
        text: String,
        note: bool,
    },
    AgentTyping {
        active: bool,
    },
    AgentRead {
        seq: u64,
    },
    AgentEnd,
    /// Place in line while waiting.
    Queue {
        position: usize,
        expected_wait_secs: i64,
    },
    /// The store's answer for the message with this `seq`.
    Stored {
        seq: u64,
        ok: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    All,
    Conn(ConnId),
    AllExcept(ConnId),
}

/// What the agent's console is told.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    Message(Box<MessageView>),
    Typing {
        active: bool,
    },
    Read {
        seq: u64,
    },
    /// Whether the customer has a socket open.
    CustomerOnline(bool),
    Ended(EndReason),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Store(NewMessage),
    Customer {
        to: Target,
        frame: ServerFrame,
    },
    /// For the agent serving (`agent`), if any.
    Agent {
        agent: Option<i64>,
        event: AgentEvent,
    },
    /// An agent's or upload's message: stored (its view) or refused.
    Acked {
        ticket: Ticket,
        result: Result<MessageView, FrameError>,
    },
    /// The conversation is over; `was` is the state it ended from (queued = abandoned).
    Ended {
        reason: EndReason,
        was: ConversationState,
        agent: Option<i64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum AckTo {
    Conns(Vec<ConnId>),
    Ticket(Ticket),
    Nobody,
}

#[derive(Debug, Clone)]
struct Pending {
    message: Message,
    ack: AckTo,
    /// Sent to the customer once this message is (or could not be) stored: the `ended` frame
    /// follows the closing message.
    then: Option<ServerFrame>,
}

pub struct Conversation {
    id: i64,
    language: String,
    state: ConversationState,
    agent: Option<Agent>,
    settings: Settings,
    messages: Vec<Message>,
    /// Sent to the store, waiting for its answer, in `seq` order.
    pending: VecDeque<Pending>,
    next_seq: u64,
    /// `client_id` → seq, per side, so a message sent again is stored once.
    customer_ids: HashMap<String, u64>,
    agent_ids: HashMap<String, u64>,
    conns: Vec<ConnId>,
    /// Last time the customer wrote or typed.
    customer_active_at: Millis,
    /// Last time the agent wrote to the customer.
    agent_wrote_at: Option<Millis>,
    idle_warned: bool,
    /// Since when no customer socket has been open.
    offline_since: Option<Millis>,
    customer_typing: bool,
    agent_typing: bool,
    queue: Option<(usize, i64)>,
    /// Last seq the other side was told it has read (no repeats).
    customer_read: u64,
    agent_read: u64,
    outputs: VecDeque<Output>,
}

impl Conversation {
    pub fn new(now: Millis, snapshot: Snapshot, settings: Settings) -> Conversation {
        let next_seq = snapshot.messages.last().map_or(1, |m| m.seq + 1);
        let mut customer_ids = HashMap::new();
        let mut agent_ids = HashMap::new();
        for m in &snapshot.messages {
            if let Some(id) = &m.client_id {
                match m.from {
                    From::Customer => {
                        customer_ids.insert(id.clone(), m.seq);
                    }
                    From::Agent | From::Note => {
                        agent_ids.insert(id.clone(), m.seq);
                    }
                    From::System => {}
                }
            }
        }
        Conversation {
            id: snapshot.conversation_id,
            language: snapshot.language,
            state: snapshot.state,
            agent: snapshot.agent,
            settings,
            messages: snapshot.messages,
            pending: VecDeque::new(),
            next_seq,
            customer_ids,
            agent_ids,
            conns: Vec::new(),
            // A conversation made live again (after a restart) starts its idle clock afresh:
            // the customer may have been waiting for the hub to come back.
            customer_active_at: now,
            agent_wrote_at: None,
            idle_warned: false,
            offline_since: Some(now),
            customer_typing: false,
            agent_typing: false,
            queue: None,
            customer_read: 0,
            agent_read: 0,
            outputs: VecDeque::new(),
        }
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn state(&self) -> ConversationState {
        self.state
    }

    pub fn agent(&self) -> Option<&Agent> {
        self.agent.as_ref()
    }

    pub fn language(&self) -> &str {
        &self.language
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The customer sockets attached now.
    pub fn sockets(&self) -> &[ConnId] {
        &self.conns
    }

    pub fn has_sockets(&self) -> bool {
        !self.conns.is_empty()
    }

    /// Nothing is waiting for the store: the conversation may be dropped from memory.
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.state {
            ConversationState::Ended => None,
            ConversationState::Queued => self
                .offline_since
                .map(|t| t + self.settings.abandon_after_ms),
            ConversationState::Connected => {
                let since = self.idle_since()?;
                let end = since + self.settings.idle_timeout_ms;
                if self.idle_warned {
                    Some(end)
                } else {
                    Some(end - self.settings.idle_warning_ms)
                }
            }
        }
    }

    /// The idle clock runs from the agent's last message when the customer has not answered.
    fn idle_since(&self) -> Option<Millis> {
        let wrote = self.agent_wrote_at?;
        (wrote >= self.customer_active_at).then_some(wrote)
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        match self.state {
            ConversationState::Ended => {}
            ConversationState::Queued => {
                if let Some(t) = self.offline_since {
                    if now >= t + self.settings.abandon_after_ms {
                        self.end(now, EndReason::Abandoned);
                    }
                }
            }
            ConversationState::Connected => {
                let Some(since) = self.idle_since() else {
                    return;
                };
                let end = since + self.settings.idle_timeout_ms;
                if now >= end {
                    self.end(now, EndReason::Idle);
                } else if !self.idle_warned && now >= end - self.settings.idle_warning_ms {
                    self.idle_warned = true;
                    let mins = (self.settings.idle_warning_ms / 60_000).max(1);
                    let text = system_text(&self.language, SystemText::IdleWarning(mins));
                    self.system(now, "idle_warning", text);
                }
            }
        }
    }

    pub fn handle(&mut self, now: Millis, input: Input) {
        match input {
            Input::CustomerOpened {
                conn,
                last_seq,
                started,
            } => self.opened(conn, last_seq, started),
            Input::CustomerClosed { conn } => {
                self.conns.retain(|c| *c != conn);
                if self.conns.is_empty() {
                    self.offline_since = Some(now);
                    if self.customer_typing {
                        self.customer_typing = false;
                        self.tell_agent(AgentEvent::Typing { active: false });
                    }
                    self.tell_agent(AgentEvent::CustomerOnline(false));
                }
            }
            Input::CustomerMessage {
                conn,
                ticket,
                client_id,
                text,
                attachment,
            } => self.customer_message(now, conn, ticket, client_id, text, attachment),
            Input::CustomerTyping { active } => {
                if self.state == ConversationState::Ended {
                    return;
                }
                self.customer_active_at = now;
                self.idle_warned = false;
                if active != self.customer_typing {
                    self.customer_typing = active;
                    self.tell_agent(AgentEvent::Typing { active });
                }
            }
            Input::CustomerRead { seq } => {
                let seq = seq.min(self.next_seq.saturating_sub(1));
                if seq > self.customer_read {
                    self.customer_read = seq;
                    self.tell_agent(AgentEvent::Read { seq });
                }
            }
            Input::CustomerEnd => {
                if self.state != ConversationState::Ended {
                    self.end(now, EndReason::Customer);
                }
            }
            Input::AgentJoined(agent) => {
                if self.state == ConversationState::Ended {
                    return;
                }
                if self.agent.as_ref() == Some(&agent) && self.state == ConversationState::Connected
                {
                    return;
                }
                self.state = ConversationState::Connected;
                self.queue = None;
                let text = system_text(&self.language, SystemText::Joined(&agent.name));
                let name = agent.name.clone();
                self.agent = Some(agent);
                // The idle clock starts with the agent's first words, not on joining.
                self.agent_wrote_at = None;
                self.idle_warned = false;
                self.system_named(now, "agent_joined", text, Some(name));
            }
            Input::AgentLeft => {
                if self.state != ConversationState::Connected {
                    return;
                }
                self.state = ConversationState::Queued;
                self.agent_typing = false;
                let text = system_text(&self.language, SystemText::Transferred);
                self.system(now, "transferred", text);
                self.agent = None;
                self.agent_wrote_at = None;
                if self.conns.is_empty() {
                    self.offline_since = Some(now);
                }
            }
            Input::AgentMessage {
                agent,
                ticket,
                client_id,
                text,
                note,
            } => self.agent_message(now, agent, ticket, client_id, text, note),
            Input::AgentTyping { active } => {
                if self.state != ConversationState::Connected || active == self.agent_typing {
                    return;
                }
                self.agent_typing = active;
                let name = self.agent.as_ref().map(|a| a.name.clone());
                self.tell_customer(Target::All, ServerFrame::Typing { active, name });
            }
            Input::AgentRead { seq } => {
                let seq = seq.min(self.next_seq.saturating_sub(1));
                if seq > self.agent_read {
                    self.agent_read = seq;
                    self.tell_customer(Target::All, ServerFrame::Read { seq });
                }
            }
            Input::AgentEnd => {
                if self.state != ConversationState::Ended {
                    self.end(now, EndReason::Agent);
                }
            }
            Input::Queue {
                position,
                expected_wait_secs,
            } => {
                if self.state != ConversationState::Queued {
                    return;
                }
                if self.queue != Some((position, expected_wait_secs)) {
                    self.queue = Some((position, expected_wait_secs));
                    self.tell_customer(
                        Target::All,
                        ServerFrame::Queue {
                            position,
                            expected_wait_secs,
                        },
                    );
                }
            }
            Input::Stored { seq, ok } => self.stored(seq, ok),
        }
    }

    fn opened(&mut self, conn: ConnId, last_seq: u64, started: Option<String>) {
        if !self.conns.contains(&conn) {
            self.conns.push(conn);
        }
        let was_offline = self.offline_since.take().is_some();
        let agent = self.agent.as_ref().map(|a| AgentInfo {
            name: a.name.clone(),
        });
        let first = if let Some(token) = started {
            ServerFrame::Started {
                conversation_id: self.id,
                token,
                state: self.state,
                agent,
            }
        } else {
            ServerFrame::Resumed {
                conversation_id: self.id,
                state: self.state,
                agent,
            }
        };
        self.tell_customer(Target::Conn(conn), first);
        let start = self.messages.partition_point(|m| m.seq <= last_seq);
        let replay: Vec<ServerFrame> = self.messages[start..]
            .iter()
            .filter(|m| m.from != From::Note)
            .map(|m| ServerFrame::Message(m.customer_view()))
            .collect();
        for f in replay {
            self.tell_customer(Target::Conn(conn), f);
        }
        if let Some((position, expected_wait_secs)) = self.queue {
            self.tell_customer(
                Target::Conn(conn),
                ServerFrame::Queue {
                    position,
                    expected_wait_secs,
                },
            );
        }
        if self.agent_typing {
            let name = self.agent.as_ref().map(|a| a.name.clone());
            self.tell_customer(
                Target::Conn(conn),
                ServerFrame::Typing { active: true, name },
            );
        }
        if self.agent_read > 0 {
            self.tell_customer(
                Target::Conn(conn),
                ServerFrame::Read {
                    seq: self.agent_read,
                },
            );
        }
        if self.state == ConversationState::Ended {
            if let Some(reason) = self.end_reason() {
                self.tell_customer(Target::Conn(conn), ServerFrame::Ended { reason });
            }
        }
        if was_offline && self.state != ConversationState::Ended {
            self.tell_agent(AgentEvent::CustomerOnline(true));
        }
    }

    fn end_reason(&self) -> Option<EndReason> {
        let m = self
            .messages
            .iter()
            .rev()
            .find(|m| m.event.as_deref().is_some_and(|e| e.starts_with("ended")))?;
        Some(match m.event.as_deref() {
            Some("ended_agent") => EndReason::Agent,
            Some("ended_idle") => EndReason::Idle,
            Some("ended_abandoned") => EndReason::Abandoned,
            _ => EndReason::Customer,
        })
    }

    fn customer_message(
        &mut self,
        now: Millis,
        conn: Option<ConnId>,
        ticket: Option<Ticket>,
        client_id: String,
        text: String,
        attachment: Option<AttachmentView>,
    ) {
        let refuse = |this: &mut Self, e: FrameError| {
            let e = e.for_message(&client_id);
            if let Some(c) = conn {
                this.tell_customer(Target::Conn(c), e.frame());
            }
            if let Some(t) = ticket {
                this.outputs.push_back(Output::Acked {
                    ticket: t,
                    result: Err(e),
                });
            }
        };
        // Sent again after a reconnect: the first copy counts.
        if let Some(&seq) = self.customer_ids.get(&client_id) {
            if let Some(p) = self.pending.iter_mut().find(|p| p.message.seq == seq) {
                match (&mut p.ack, conn) {
                    (AckTo::Conns(list), Some(c)) if !list.contains(&c) => list.push(c),
                    _ => {}
                }
                return;
            }
            if let Some(m) = self.messages.iter().find(|m| m.seq == seq) {
                let ack = ServerFrame::Ack {
                    client_id: client_id.clone(),
                    seq,
                    at: rfc3339(m.at),
                };
                let view = m.customer_view();
                if let Some(c) = conn {
                    self.tell_customer(Target::Conn(c), ack);
                }
                if let Some(t) = ticket {
                    self.outputs.push_back(Output::Acked {
                        ticket: t,
                        result: Ok(view),
                    });
                }
            }
            return;
        }
        if self.state == ConversationState::Ended {
            refuse(
                self,
                FrameError::new("ended", "this conversation has ended"),
            );
            return;
        }
        self.customer_active_at = now;
        self.idle_warned = false;
        self.customer_typing = false;
        let seq = self.take_seq();
        self.customer_ids.insert(client_id.clone(), seq);
        let message = Message {
            seq,
            from: From::Customer,
            name: None,
            text,
            at: now,
            client_id: Some(client_id),
            event: None,
            attachment,
            agent_id: None,
        };
        let ack = match (conn, ticket) {
            (_, Some(t)) => AckTo::Ticket(t),
            (Some(c), None) => AckTo::Conns(vec![c]),
            (None, None) => AckTo::Nobody,
        };
        self.store(message, ack);
    }

    fn agent_message(
        &mut self,
        now: Millis,
        agent: Agent,
        ticket: Ticket,
        client_id: String,
        text: String,
        note: bool,
    ) {
        if let Some(&seq) = self.agent_ids.get(&client_id) {
            if let Some(m) = self.messages.iter().find(|m| m.seq == seq) {
                let view = m.view();
                self.outputs.push_back(Output::Acked {
                    ticket,
                    result: Ok(view),
                });
            } else {
                // Still being stored: the first request will be answered; refuse this copy.
                self.outputs.push_back(Output::Acked {
                    ticket,
                    result: Err(FrameError::new("pending", "this message is being stored")
                        .for_message(&client_id)),
                });
            }
            return;
        }
        let allowed = if note {
            true
        } else {
            self.state == ConversationState::Connected
                && self.agent.as_ref().is_some_and(|a| a.id == agent.id)
        };
        if !allowed {
            let e = if self.state == ConversationState::Ended {
                FrameError::new("ended", "this conversation has ended")
            } else {
                FrameError::new("not_allowed", "you are not serving this conversation")
            };
            self.outputs.push_back(Output::Acked {
                ticket,
                result: Err(e.for_message(&client_id)),
            });
            return;
        }
        let seq = self.take_seq();
        self.agent_ids.insert(client_id.clone(), seq);
        if !note {
            self.agent_wrote_at = Some(now);
            self.idle_warned = false;
            self.agent_typing = false;
        }
        let message = Message {
            seq,
            from: if note { From::Note } else { From::Agent },
            name: Some(agent.name.clone()),
            text,
            at: now,
            client_id: Some(client_id),
            event: None,
            attachment: None,
            agent_id: Some(agent.id),
        };
        self.store(message, AckTo::Ticket(ticket));
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn store(&mut self, message: Message, ack: AckTo) {
        self.outputs.push_back(Output::Store(NewMessage {
            conversation_id: self.id,
            message: message.clone(),
        }));
        self.pending.push_back(Pending {
            message,
            ack,
            then: None,
        });
    }

    fn system(&mut self, now: Millis, event: &str, text: String) {
        self.system_named(now, event, text, None);
    }

    /// A system message naming someone (the agent who joined).
    fn system_named(&mut self, now: Millis, event: &str, text: String, name: Option<String>) {
        let seq = self.take_seq();
        let message = Message {
            seq,
            from: From::System,
            name,
            text,
            at: now,
            client_id: None,
            event: Some(event.to_string()),
            attachment: None,
            agent_id: None,
        };
        self.store(message, AckTo::Nobody);
    }

    fn end(&mut self, now: Millis, reason: EndReason) {
        let was = self.state;
        self.state = ConversationState::Ended;
        self.customer_typing = false;
        self.agent_typing = false;
        let text = system_text(&self.language, SystemText::Ended(reason));
        self.system(now, &format!("ended_{}", reason.as_str()), text);
        if let Some(p) = self.pending.back_mut() {
            p.then = Some(ServerFrame::Ended { reason });
        }
        let agent = self.agent.as_ref().map(|a| a.id);
        self.outputs.push_back(Output::Agent {
            agent,
            event: AgentEvent::Ended(reason),
        });
        self.outputs.push_back(Output::Ended { reason, was, agent });
    }

    fn stored(&mut self, seq: u64, ok: bool) {
        let Some(i) = self.pending.iter().position(|p| p.message.seq == seq) else {
            return;
        };
        let Some(p) = self.pending.remove(i) else {
            return;
        };
        let m = p.message;
        let then = p.then;
        if !ok {
            if let Some(f) = then {
                self.tell_customer(Target::All, f);
            }
            if let Some(id) = &m.client_id {
                match m.from {
                    From::Customer => self.customer_ids.remove(id),
                    _ => self.agent_ids.remove(id),
                };
            }
            let e = FrameError::new(
                "not_stored",
                "the message could not be stored; send it again",
            );
            match p.ack {
                AckTo::Conns(conns) => {
                    let e = match &m.client_id {
                        Some(id) => e.for_message(id),
                        None => e,
                    };
                    for c in conns {
                        self.tell_customer(Target::Conn(c), e.frame());
                    }
                }
                AckTo::Ticket(t) => {
                    let e = match &m.client_id {
                        Some(id) => e.for_message(id),
                        None => e,
                    };
                    self.outputs.push_back(Output::Acked {
                        ticket: t,
                        result: Err(e),
                    });
                }
                AckTo::Nobody => {}
            }
            return;
        }
        // Keep `messages` in seq order even if an earlier message is still pending.
        let at = self.messages.partition_point(|x| x.seq < m.seq);
        self.messages.insert(at, m.clone());
        let sender_conns = match &p.ack {
            AckTo::Conns(c) => c.clone(),
            _ => Vec::new(),
        };
        if m.from == From::Customer {
            let ack = ServerFrame::Ack {
                client_id: m.client_id.clone().unwrap_or_default(),
                seq: m.seq,
                at: rfc3339(m.at),
            };
            for c in &sender_conns {
                self.tell_customer(Target::Conn(*c), ack.clone());
            }
        }
        if m.from != From::Note {
            let frame = ServerFrame::Message(m.customer_view());
            match sender_conns.as_slice() {
                [] => self.tell_customer(Target::All, frame),
                [only] => self.tell_customer(Target::AllExcept(*only), frame),
                many => {
                    let others: Vec<ConnId> = self
                        .conns
                        .iter()
                        .copied()
                        .filter(|c| !many.contains(c))
                        .collect();
                    for c in others {
                        self.tell_customer(Target::Conn(c), frame.clone());
                    }
                }
            }
        }
        if let Some(f) = then {
            self.tell_customer(Target::All, f);
        }
        let view = m.view();
        if let AckTo::Ticket(t) = p.ack {
            self.outputs.push_back(Output::Acked {
                ticket: t,
                result: Ok(view.clone()),
            });
        }
        self.tell_agent(AgentEvent::Message(Box::new(view)));
    }

    fn tell_customer(&mut self, to: Target, frame: ServerFrame) {
        let any = match to {
            Target::All => !self.conns.is_empty(),
            Target::Conn(c) => self.conns.contains(&c),
            Target::AllExcept(c) => self.conns.iter().any(|x| *x != c),
        };
        if any {
            self.outputs.push_back(Output::Customer { to, frame });
        }
    }

    fn tell_agent(&mut self, event: AgentEvent) {
        let agent = self.agent.as_ref().map(|a| a.id);
        self.outputs.push_back(Output::Agent { agent, event });
    }
}

enum SystemText<'a> {
    Joined(&'a str),
    Transferred,
    IdleWarning(i64),
    Ended(EndReason),
}

/// System messages in the conversation's language.
fn system_text(lang: &str, t: SystemText<'_>) -> String {
    match (lang, t) {
        ("zh-CN", SystemText::Joined(n)) => format!("客服 {n} 为您服务"),
        ("zh-TW", SystemText::Joined(n)) => format!("客服 {n} 為您服務"),
        (_, SystemText::Joined(n)) => format!("{n} has joined the chat"),
        ("zh-CN", SystemText::Transferred) => "正在为您转接，请稍候".into(),
        ("zh-TW", SystemText::Transferred) => "正在為您轉接，請稍候".into(),
        (_, SystemText::Transferred) => "You are being transferred; please wait a moment".into(),
        ("zh-CN", SystemText::IdleWarning(m)) => {
            format!("您已有一段时间没有回复，对话将在 {m} 分钟后自动结束")
        }
        ("zh-TW", SystemText::IdleWarning(m)) => {
            format!("您已有一段時間沒有回覆，對話將在 {m} 分鐘後自動結束")
        }
        (_, SystemText::IdleWarning(m)) => format!(
            "We haven't heard from you for a while; this chat will close in {m} minute{}",
            if m == 1 { "" } else { "s" }
        ),
        ("zh-CN", SystemText::Ended(EndReason::Idle)) => {
            "由于长时间没有回复，对话已自动结束".into()
        }
        ("zh-TW", SystemText::Ended(EndReason::Idle)) => {
            "由於長時間沒有回覆，對話已自動結束".into()
        }
        (_, SystemText::Ended(EndReason::Idle)) => {
            "This chat was closed after a period of inactivity".into()
        }
        ("zh-CN", SystemText::Ended(EndReason::Agent)) => "对话已结束，感谢您的咨询".into(),
        ("zh-TW", SystemText::Ended(EndReason::Agent)) => "對話已結束，感謝您的諮詢".into(),
        (_, SystemText::Ended(EndReason::Agent)) => {
            "The chat has ended. Thank you for contacting us".into()
        }
        ("zh-CN", SystemText::Ended(_)) => "客户已离开对话".into(),
        ("zh-TW", SystemText::Ended(_)) => "客戶已離開對話".into(),
        (_, SystemText::Ended(_)) => "The customer left the chat".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(state: ConversationState) -> Snapshot {
        Snapshot {
            conversation_id: 7,
            language: "zh-CN".into(),
            state,
            agent: None,
            messages: Vec::new(),
        }
    }

    fn drain(c: &mut Conversation) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    /// Confirms every store request, as a store that never fails would.
    fn settle(c: &mut Conversation) -> Vec<Output> {
        let mut all = Vec::new();
        loop {
            let out = drain(c);
            if out.is_empty() {
                return all;
            }
            for o in &out {
                if let Output::Store(m) = o {
                    c.handle(
                        0,
                        Input::Stored {
                            seq: m.message.seq,
                            ok: true,
                        },
                    );
                }
            }
            all.extend(out);
        }
    }

    fn alice() -> Agent {
        Agent {
            id: 3,
            name: "Alice".into(),
        }
    }

    fn customer_msg(conn: ConnId, id: &str, text: &str) -> Input {
        Input::CustomerMessage {
            conn: Some(conn),
            ticket: None,
            client_id: id.into(),
            text: text.into(),
            attachment: None,
        }
    }

    #[test]
    fn a_message_is_acknowledged_only_after_it_is_stored() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        drain(&mut c);
        c.handle(10, customer_msg(1, "m1", "你好"));
        let out = drain(&mut c);
        assert!(
            matches!(&out[..], [Output::Store(m)] if m.message.seq == 1),
            "{out:?}"
        );
        c.handle(11, Input::Stored { seq: 1, ok: true });
        let out = drain(&mut c);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Customer {
                to: Target::Conn(1),
                frame: ServerFrame::Ack { seq: 1, .. }
            }
        )));
        assert!(out.iter().any(|o| matches!(o,
            Output::Agent { event: AgentEvent::Message(m), .. } if m.text == "你好")));
    }

    #[test]
    fn a_message_sent_twice_is_stored_once_and_acknowledged_again() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(1, customer_msg(1, "m1", "a"));
        settle(&mut c);
        // The socket dropped before the ack arrived; the client resends on a new socket.
        c.handle(2, Input::CustomerClosed { conn: 1 });
        c.handle(
            3,
            Input::CustomerOpened {
                conn: 2,
                last_seq: 0,
                started: None,
            },
        );
        c.handle(4, customer_msg(2, "m1", "a"));
        let out = settle(&mut c);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Store(_))),
            "{out:?}"
        );
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Customer {
                to: Target::Conn(2),
                frame: ServerFrame::Ack { seq: 1, .. }
            }
        )));
        assert_eq!(c.messages().len(), 1);
    }

    #[test]
    fn a_resend_while_the_first_copy_is_being_stored_waits_for_it() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(1, customer_msg(1, "m1", "a"));
        drain(&mut c);
        c.handle(
            2,
            Input::CustomerOpened {
                conn: 2,
                last_seq: 0,
                started: None,
            },
        );
        c.handle(2, customer_msg(2, "m1", "a"));
        let out = drain(&mut c);
        assert!(!out.iter().any(|o| matches!(o, Output::Store(_))));
        c.handle(3, Input::Stored { seq: 1, ok: true });
        let acks: Vec<_> = drain(&mut c)
            .into_iter()
            .filter_map(|o| match o {
                Output::Customer {
                    to: Target::Conn(n),
                    frame: ServerFrame::Ack { .. },
                } => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(acks, vec![1, 2]);
    }

    #[test]
    fn resume_replays_what_came_after_last_seq_in_order_without_notes() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(1, customer_msg(1, "m1", "one"));
        c.handle(2, Input::AgentJoined(alice()));
        settle(&mut c);
        for (i, note) in [(1, false), (2, true), (3, false)] {
            c.handle(
                3,
                Input::AgentMessage {
                    agent: alice(),
                    ticket: i,
                    client_id: format!("a{i}"),
                    text: format!("agent {i}"),
                    note,
                },
            );
        }
        settle(&mut c);
        c.handle(4, Input::CustomerClosed { conn: 1 });
        c.handle(
            5,
            Input::CustomerOpened {
                conn: 9,
                last_seq: 1,
                started: None,
            },
        );
        let frames: Vec<ServerFrame> = drain(&mut c)
            .into_iter()
            .filter_map(|o| match o {
                Output::Customer {
                    to: Target::Conn(9),
                    frame,
                } => Some(frame),
                _ => None,
            })
            .collect();
        assert!(matches!(
            frames[0],
            ServerFrame::Resumed {
                state: ConversationState::Connected,
                ..
            }
        ));
        let seqs: Vec<(u64, String)> = frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Message(m) => Some((m.seq, m.text.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            seqs,
            vec![
                (2, "客服 Alice 为您服务".to_string()),
                (3, "agent 1".to_string()),
                (5, "agent 3".to_string())
            ]
        );
    }

    #[test]
    fn a_failed_store_is_reported_and_the_message_can_be_sent_again() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(1, customer_msg(1, "m1", "a"));
        drain(&mut c);
        c.handle(2, Input::Stored { seq: 1, ok: false });
        let out = drain(&mut c);
        assert!(out.iter().any(|o| matches!(o,
            Output::Customer { frame: ServerFrame::Error { code: "not_stored", client_id: Some(id), .. }, .. } if id == "m1")));
        assert!(!out.iter().any(|o| matches!(o, Output::Agent { .. })));
        c.handle(3, customer_msg(1, "m1", "a"));
        let out = drain(&mut c);
        assert!(matches!(&out[..], [Output::Store(m)] if m.message.seq == 2));
    }

    #[test]
    fn only_the_serving_agent_may_write_to_the_customer() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::AgentMessage {
                agent: alice(),
                ticket: 1,
                client_id: "x".into(),
                text: "hi".into(),
                note: false,
            },
        );
        let out = drain(&mut c);
        assert!(
            matches!(&out[..], [Output::Acked { ticket: 1, result: Err(e) }] if e.code == "not_allowed")
        );
        // A note is fine at any time.
        c.handle(
            0,
            Input::AgentMessage {
                agent: alice(),
                ticket: 2,
                client_id: "y".into(),
                text: "VIP, be quick".into(),
                note: true,
            },
        );
        assert!(matches!(drain(&mut c)[..], [Output::Store(_)]));
    }

    #[test]
    fn idle_customer_is_warned_then_the_chat_ends() {
        let s = Settings {
            idle_timeout_ms: 600_000,
            idle_warning_ms: 120_000,
            abandon_after_ms: 60_000,
        };
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), s);
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(0, Input::AgentJoined(alice()));
        settle(&mut c);
        assert_eq!(
            c.poll_timeout(),
            None,
            "no idle clock before the agent writes"
        );
        c.handle(
            1_000,
            Input::AgentMessage {
                agent: alice(),
                ticket: 1,
                client_id: "a".into(),
                text: "还在吗？".into(),
                note: false,
            },
        );
        settle(&mut c);
        assert_eq!(c.poll_timeout(), Some(1_000 + 480_000));
        c.handle_timeout(481_000);
        let out = settle(&mut c);
        assert!(out.iter().any(
            |o| matches!(o, Output::Store(m) if m.message.event.as_deref() == Some("idle_warning"))
        ));
        assert_eq!(c.poll_timeout(), Some(601_000));
        c.handle_timeout(601_000);
        let out = settle(&mut c);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Ended {
                reason: EndReason::Idle,
                was: ConversationState::Connected,
                agent: Some(3)
            }
        )));
        assert_eq!(c.state(), ConversationState::Ended);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn customer_typing_resets_the_idle_clock() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(0, Input::AgentJoined(alice()));
        c.handle(
            1,
            Input::AgentMessage {
                agent: alice(),
                ticket: 1,
                client_id: "a".into(),
                text: "?".into(),
                note: false,
            },
        );
        settle(&mut c);
        c.handle(500, Input::CustomerTyping { active: true });
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn a_queued_customer_who_stays_away_abandons() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        assert_eq!(c.poll_timeout(), None);
        c.handle(1_000, Input::CustomerClosed { conn: 1 });
        assert_eq!(c.poll_timeout(), Some(121_000));
        // A reload within the grace keeps the place.
        c.handle(
            5_000,
            Input::CustomerOpened {
                conn: 2,
                last_seq: 0,
                started: None,
            },
        );
        assert_eq!(c.poll_timeout(), None);
        c.handle(6_000, Input::CustomerClosed { conn: 2 });
        c.handle_timeout(126_000);
        let out = settle(&mut c);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Ended {
                reason: EndReason::Abandoned,
                was: ConversationState::Queued,
                agent: None
            }
        )));
    }

    #[test]
    fn typing_and_read_receipts_cross_once() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(0, Input::AgentJoined(alice()));
        settle(&mut c);
        c.handle(1, Input::CustomerTyping { active: true });
        c.handle(2, Input::CustomerTyping { active: true });
        let typing = drain(&mut c)
            .into_iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Agent {
                        event: AgentEvent::Typing { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(typing, 1);
        c.handle(3, Input::CustomerRead { seq: 99 });
        let out = drain(&mut c);
        assert!(
            matches!(
                &out[..],
                [Output::Agent {
                    event: AgentEvent::Read { seq: 1 },
                    ..
                }]
            ),
            "{out:?}"
        );
        c.handle(3, Input::CustomerRead { seq: 1 });
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn after_the_end_the_customer_can_read_but_not_write() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(0, Input::AgentJoined(alice()));
        c.handle(1, Input::AgentEnd);
        settle(&mut c);
        c.handle(2, customer_msg(1, "late", "wait"));
        let out = drain(&mut c);
        assert!(matches!(
            &out[..],
            [Output::Customer {
                frame: ServerFrame::Error { code: "ended", .. },
                ..
            }]
        ));
        c.handle(
            3,
            Input::CustomerOpened {
                conn: 2,
                last_seq: 0,
                started: None,
            },
        );
        let out = drain(&mut c);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Customer {
                frame: ServerFrame::Ended {
                    reason: EndReason::Agent
                },
                ..
            }
        )));
    }

    #[test]
    fn a_transfer_puts_the_conversation_back_in_line() {
        let mut c = Conversation::new(0, snapshot(ConversationState::Queued), Settings::default());
        c.handle(
            0,
            Input::CustomerOpened {
                conn: 1,
                last_seq: 0,
                started: Some("tok".into()),
            },
        );
        c.handle(0, Input::AgentJoined(alice()));
        c.handle(1, Input::AgentLeft);
        settle(&mut c);
        assert_eq!(c.state(), ConversationState::Queued);
        assert!(c.agent().is_none());
        c.handle(
            2,
            Input::Queue {
                position: 1,
                expected_wait_secs: 30,
            },
        );
        assert!(drain(&mut c).iter().any(|o| matches!(
            o,
            Output::Customer {
                frame: ServerFrame::Queue { position: 1, .. },
                ..
            }
        )));
    }
}
