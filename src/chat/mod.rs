//! The web chat channel inside the hub: the store and routing behind the chat engine
//! (`channel-chat`), and the glue between chat conversations, the ACD and agents' sockets.
//!
//! - A visitor's `start` is stored (conversation, session, contact, first message) and then
//!   routed like any contact; the ACD's offer reaches an agent with the screen-pop.
//! - When the agent accepts, the conversation learns who serves it; messages then flow both
//!   ways, each stored before anyone sees it.
//! - When the chat ends (agent, customer, idle), a served contact goes to wrap-up and a waiting
//!   one is abandoned.

pub mod agent;
pub mod http;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use channel_chat::conversation::{Message, Snapshot};
use channel_chat::engine::{BackendError, ChatBackend, ChatHandle, ChatNotice, EngineConfig};
use channel_chat::frames::{AttachmentView, ConversationState, From, StartRequest};
use channel_chat::limits::{Limiter, Rate};
use channel_chat::{AgentEvent, AgentInput, NewMessage};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::acd::rules::ContactAttributes;
use crate::acd::types::ContactSpec;
use crate::config::Config;
use crate::domain::{now_ms, Channel, ContactState, IdentityKind};
use crate::hub::{ContactOp, HubEvent, HubHandle};
use crate::identity::{normalize_email, normalize_phone};
use crate::push::AgentPush;
use crate::server::Routing;
use crate::store::{MessageRow, NewChat, Store, StoreError, Visitor};

/// Which contact is a conversation's current one, and who serves it.
#[derive(Default)]
pub struct Links {
    inner: RwLock<LinksInner>,
}

#[derive(Default)]
struct LinksInner {
    contact_conv: HashMap<i64, i64>,
    conv_contact: HashMap<i64, i64>,
    serving: HashMap<i64, i64>,
}

impl Links {
    pub fn link(&self, conversation: i64, contact: i64) {
        if let Ok(mut l) = self.inner.write() {
            l.contact_conv.insert(contact, conversation);
            l.conv_contact.insert(conversation, contact);
        }
    }

    pub fn conversation(&self, contact: i64) -> Option<i64> {
        self.inner.read().ok()?.contact_conv.get(&contact).copied()
    }

    pub fn contact(&self, conversation: i64) -> Option<i64> {
        self.inner
            .read()
            .ok()?
            .conv_contact
            .get(&conversation)
            .copied()
    }

    pub fn serving(&self, conversation: i64) -> Option<i64> {
        self.inner.read().ok()?.serving.get(&conversation).copied()
    }

    fn set_serving(&self, conversation: i64, agent: Option<i64>) {
        if let Ok(mut l) = self.inner.write() {
            match agent {
                Some(a) => l.serving.insert(conversation, a),
                None => l.serving.remove(&conversation),
            };
        }
    }
}

/// The chat channel's configuration (`[chat]`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Sites that may embed the chat window (`frame-ancestors`); `*` = any.
    pub allowed_origins: Vec<String>,
    /// Topics offered in the pre-chat form; each is a routing attribute (`ivr_choice`).
    pub topics: Vec<String>,
    pub max_message_chars: usize,
    /// Messages per minute from one conversation (a burst of a third of it is allowed).
    pub rate_per_minute: u32,
    pub max_attachment_bytes: usize,
    pub idle_timeout_secs: i64,
    pub idle_warning_secs: i64,
    pub abandon_after_secs: i64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            allowed_origins: vec!["*".into()],
            topics: vec!["support".into(), "sales".into(), "billing".into()],
            max_message_chars: 2000,
            rate_per_minute: 30,
            max_attachment_bytes: 5 * 1024 * 1024,
            idle_timeout_secs: 900,
            idle_warning_secs: 120,
            abandon_after_secs: 120,
        }
    }
}

/// The region for phone numbers written without a country code: a visitor writing Traditional
/// Chinese is most likely in Taiwan (`0912 345 678`), else the configured default.
pub fn region_for(language: Option<&str>, default_region: &str) -> String {
    match language.map(channel_chat::frames::normalize_language) {
        Some("zh-TW") if default_region.eq_ignore_ascii_case("CN") => "TW".into(),
        _ => default_region.to_string(),
    }
}

/// The store and routing behind the chat engine.
pub struct Backend {
    store: Store,
    config: Arc<Config>,
    routing: Arc<Routing>,
    hub: HubHandle,
    links: Arc<Links>,
}

fn unavailable(e: StoreError) -> BackendError {
    tracing::error!(error = %e, "chat storage failed");
    BackendError::Unavailable(e.to_string())
}

/// A stored message as the chat engine holds it.
pub(crate) fn message_of(row: &MessageRow, attachments: &HashMap<i64, AttachmentView>) -> Message {
    Message {
        seq: row.seq.max(0) as u64,
        from: From::parse(&row.sender).unwrap_or(From::System),
        name: row.name.clone(),
        text: row.body.clone(),
        at: row.created_at,
        client_id: row.client_id.clone(),
        event: row.event.clone(),
        attachment: row
            .attachment_id
            .and_then(|id| attachments.get(&id).cloned()),
        agent_id: row.agent_id,
    }
}

fn row_of(m: &NewMessage) -> MessageRow {
    let msg = &m.message;
    MessageRow {
        conversation_id: m.conversation_id,
        seq: msg.seq as i64,
        sender: msg.from.as_str().into(),
        agent_id: msg.agent_id,
        name: msg.name.clone(),
        body: msg.text.clone(),
        client_id: msg.client_id.clone(),
        event: msg.event.clone(),
        attachment_id: msg.attachment.as_ref().map(|a| a.id),
        meta: json!({}),
        created_at: msg.at,
    }
}

impl Backend {
    /// The conversation's messages with their attachments described.
    async fn messages(&self, conversation: i64) -> Result<Vec<Message>, StoreError> {
        let rows = self.store.conversation_messages(conversation).await?;
        let ids: Vec<i64> = rows.iter().filter_map(|r| r.attachment_id).collect();
        let attachments: HashMap<i64, AttachmentView> = self
            .store
            .attachments_by_ids(&ids)
            .await?
            .into_iter()
            .map(|a| {
                (
                    a.id,
                    AttachmentView {
                        id: a.id,
                        name: a.file_name,
                        content_type: a.content_type,
                        size: a.size.max(0) as u64,
                        url: None,
                    },
                )
            })
            .collect();
        Ok(rows.iter().map(|r| message_of(r, &attachments)).collect())
    }

    async fn snapshot(&self, conversation: i64) -> Result<Option<Snapshot>, StoreError> {
        let Some(chat) = self.store.chat(conversation).await? else {
            return Ok(None);
        };
        let contact = chat.contact.as_ref();
        // Who serves it now is the ACD's to say (the store may lag behind, e.g. just after a
        // restart put served chats back in line).
        let phase = match contact {
            Some(c) => self.hub.contact_phase(c.id).await.ok().flatten(),
            None => None,
        };
        let serving = match phase {
            Some((ContactState::Connected, Some(a), _)) => Some(a),
            _ => None,
        };
        let state = if !chat.open {
            ConversationState::Ended
        } else if serving.is_some() {
            ConversationState::Connected
        } else {
            ConversationState::Queued
        };
        let agent = match (state, serving) {
            (ConversationState::Connected, Some(a)) => {
                let u = self.store.get_user(a).await?;
                Some(channel_chat::Agent {
                    id: a,
                    name: u.display_name,
                })
            }
            _ => None,
        };
        if let Some(c) = contact {
            self.links.link(conversation, c.id);
        }
        if let Some(a) = &agent {
            self.links.set_serving(conversation, Some(a.id));
        }
        Ok(Some(Snapshot {
            conversation_id: conversation,
            language: chat.language,
            state,
            agent,
            messages: self.messages(conversation).await?,
        }))
    }
}

impl ChatBackend for Backend {
    async fn start(
        &self,
        req: StartRequest,
        _peer: IpAddr,
    ) -> Result<(Snapshot, String), BackendError> {
        let region =
            crate::chat::region_for(req.language.as_deref(), &self.config.archive.default_region);
        let region = &region;
        let email = req
            .email
            .as_deref()
            .map(normalize_email)
            .transpose()
            .map_err(|_| BackendError::Invalid("email: not an email address".into()))?;
        let phone = req
            .phone
            .as_deref()
            .map(|p| normalize_phone(p, region))
            .transpose()
            .map_err(|_| BackendError::Invalid("phone: not a phone number".into()))?;
        let mut customer_id = None;
        for (kind, value) in [
            (IdentityKind::Email, email.as_deref()),
            (IdentityKind::Phone, phone.as_deref()),
        ] {
            if let (None, Some(v)) = (customer_id, value) {
                customer_id = self
                    .store
                    .customer_by_identity(kind, v)
                    .await
                    .map_err(unavailable)?;
            }
        }
        let customer = match customer_id {
            Some(id) => Some(self.store.get_customer(id).await.map_err(unavailable)?),
            None => None,
        };
        let language = req
            .language
            .clone()
            .or_else(|| customer.as_ref().and_then(|c| c.language.clone()))
            .map(|l| channel_chat::frames::normalize_language(&l).to_string())
            .unwrap_or_else(|| "zh-CN".into());
        let topic = req
            .topic
            .clone()
            .filter(|t| self.config.chat.topics.contains(t));
        let now = now_ms();
        let mut attrs = ContactAttributes::new(Channel::Chat);
        attrs.called = Some("chat".into());
        attrs.ivr_choice = topic.clone();
        attrs.language = Some(language.clone());
        if let Some(c) = &customer {
            attrs.tier = Some(c.tier.clone());
            attrs.tags = c.tags.clone();
        }
        let decision = self.routing.rules().route(&attrs, now);
        let (token, token_hash) = {
            let (t, _) = crate::auth::new_token();
            let t = format!("chs_{t}");
            let h = crate::auth::token_hash(&t);
            (t, h)
        };
        let first = req
            .message
            .as_ref()
            .map(|m| (m.client_id.clone(), m.text.clone()));
        let subject = first
            .as_ref()
            .map(|(_, t)| t.chars().take(80).collect::<String>());
        let (conversation, contact) = self
            .store
            .create_chat(
                &NewChat {
                    customer_id,
                    language: language.clone(),
                    subject,
                    visitor: Visitor {
                        name: req.name.clone(),
                        email: email.clone(),
                        phone: phone.clone(),
                        topic: topic.clone(),
                        page: req.page.clone(),
                    },
                    token_hash,
                    queue: decision.queue.clone(),
                    priority: decision.priority,
                    skills: decision.extra_skills.clone(),
                    routed_by: decision.rule.clone(),
                    overflow: decision.overflow.clone(),
                    first_message: first.clone(),
                },
                now,
            )
            .await
            .map_err(unavailable)?;
        self.links.link(conversation, contact.id);
        let last_agent = match customer_id {
            Some(c) => self.store.last_agent(c).await.map_err(unavailable)?,
            None => None,
        };
        tracing::info!(
            contact_id = contact.id,
            conversation_id = conversation,
            queue = %decision.queue,
            known_customer = customer_id.is_some(),
            "chat started"
        );
        // Stored first, then routed.
        self.hub
            .route(
                ContactSpec {
                    id: contact.id,
                    channel: Channel::Chat,
                    queue: decision.queue,
                    priority: decision.priority,
                    enqueued_at: now,
                    extra_skills: decision.extra_skills,
                    last_agent,
                },
                decision.overflow,
            )
            .await;
        let messages = first
            .map(|(client_id, text)| {
                vec![Message {
                    seq: 1,
                    from: From::Customer,
                    name: None,
                    text,
                    at: now,
                    client_id: Some(client_id),
                    event: None,
                    attachment: None,
                    agent_id: None,
                }]
            })
            .unwrap_or_default();
        Ok((
            Snapshot {
                conversation_id: conversation,
                language,
                state: ConversationState::Queued,
                agent: None,
                messages,
            },
            token,
        ))
    }

    async fn resolve(&self, token: &str) -> Result<Option<i64>, BackendError> {
        let hash = crate::auth::token_hash(token);
        Ok(self
            .store
            .chat_by_token(&hash)
            .await
            .map_err(unavailable)?
            .map(|c| c.conversation_id))
    }

    async fn load(&self, conversation: i64) -> Result<Option<Snapshot>, BackendError> {
        self.snapshot(conversation).await.map_err(unavailable)
    }

    async fn store(&self, batch: &[NewMessage]) -> Result<(), BackendError> {
        let rows: Vec<MessageRow> = batch.iter().map(row_of).collect();
        self.store
            .insert_messages(&rows)
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))
    }
}

/// The chat channel: engine handle, links, and what the HTTP routes need.
pub struct ChatService {
    pub engine: ChatHandle,
    pub backend: Arc<Backend>,
    pub links: Arc<Links>,
    pub push: Arc<AgentPush>,
    store: Store,
    hub: HubHandle,
    /// Leave-a-message, callback and upload requests per address.
    pub http_limits: Mutex<Limiter<IpAddr>>,
    /// Agents' display names, for what customers see.
    names: Mutex<HashMap<i64, String>>,
}

impl ChatService {
    /// Starts the engine and the glue task; conversations still open from a previous run
    /// become live again (so their timers run and agents can take them).
    pub async fn start(
        store: Store,
        config: Arc<Config>,
        routing: Arc<Routing>,
        hub: HubHandle,
        push: Arc<AgentPush>,
    ) -> anyhow::Result<Arc<ChatService>> {
        let links = Arc::new(Links::default());
        let backend = Arc::new(Backend {
            store: store.clone(),
            config: config.clone(),
            routing,
            hub: hub.clone(),
            links: links.clone(),
        });
        let c = &config.chat;
        let per_minute = c.rate_per_minute.max(1);
        let engine_config = EngineConfig {
            settings: channel_chat::Settings {
                idle_timeout_ms: c.idle_timeout_secs.max(1) * 1000,
                idle_warning_ms: c.idle_warning_secs.clamp(0, c.idle_timeout_secs.max(1)) * 1000,
                abandon_after_ms: c.abandon_after_secs.max(1) * 1000,
            },
            session_rate: Rate {
                per_minute,
                burst: (per_minute / 3).max(3),
            },
            address_rate: Rate {
                per_minute: per_minute * 4,
                burst: (per_minute * 4 / 3).max(10),
            },
            ..EngineConfig::default()
        };
        let limits = channel_chat::Limits {
            max_message_chars: c.max_message_chars.max(1),
        };
        let (engine, notices) = channel_chat::start(backend.clone(), engine_config, limits);
        let service = Arc::new(ChatService {
            engine,
            backend,
            links,
            push,
            store: store.clone(),
            hub: hub.clone(),
            http_limits: Mutex::new(Limiter::new(Rate {
                per_minute: 20,
                burst: 10,
            })),
            names: Mutex::new(HashMap::new()),
        });
        for chat in store.open_chats().await? {
            if let Some(snapshot) = service.backend.snapshot(chat.conversation_id).await? {
                let _ = service.engine.activate(snapshot).await;
            }
        }
        let events = hub.subscribe();
        tokio::spawn(service.clone().run(notices, events));
        Ok(service)
    }

    pub fn allow_http(&self, ip: IpAddr) -> bool {
        self.http_limits
            .lock()
            .map(|mut l| l.allow(&ip, now_ms()))
            .unwrap_or(true)
    }

    async fn agent_name(&self, agent: i64) -> String {
        if let Some(n) = self.names.lock().ok().and_then(|m| m.get(&agent).cloned()) {
            return n;
        }
        let name = self
            .store
            .get_user(agent)
            .await
            .map(|u| u.display_name)
            .unwrap_or_else(|_| format!("#{agent}"));
        if let Ok(mut m) = self.names.lock() {
            m.insert(agent, name.clone());
        }
        name
    }

    pub async fn agent(&self, agent: i64) -> channel_chat::Agent {
        channel_chat::Agent {
            id: agent,
            name: self.agent_name(agent).await,
        }
    }

    /// Makes a conversation live in the engine if it is not (after a restart or eviction).
    pub async fn ensure_live(&self, conversation: i64) -> bool {
        match self.engine.transcript(conversation).await {
            Ok(Some(_)) => true,
            Ok(None) => match self.backend.snapshot(conversation).await {
                Ok(Some(s)) => self.engine.activate(s).await.is_ok(),
                _ => false,
            },
            Err(_) => false,
        }
    }

    /// Every stored message of a conversation, from the store (for one that is not live).
    pub async fn backend_messages(
        &self,
        conversation: i64,
    ) -> Option<Vec<channel_chat::MessageView>> {
        let m = self.backend.messages(conversation).await.ok()?;
        Some(m.iter().map(|x| x.view()).collect())
    }

    pub fn links_serving_clear(&self, conversation: i64) {
        self.links.set_serving(conversation, None);
    }

    /// The conversation of a chat contact, from the links or the store.
    pub async fn conversation_of(&self, contact: i64) -> Option<i64> {
        if let Some(c) = self.links.conversation(contact) {
            return Some(c);
        }
        let c = self.store.get_contact(contact).await.ok()?;
        if c.channel != Channel::Chat {
            return None;
        }
        let conv = c.conversation_id?;
        if self.store.latest_contact(conv).await.ok()??.id == contact {
            self.links.link(conv, contact);
        }
        Some(conv)
    }

    /// The agent now serving a conversation: joins it if the ACD says so but the news was
    /// missed (a lagging event stream).
    pub async fn joined(&self, conversation: i64, agent: i64) {
        if self.ensure_live(conversation).await {
            let a = self.agent(agent).await;
            let _ = self.engine.agent(conversation, AgentInput::Joined(a)).await;
        }
        // Only now: whoever sees the agent as serving sends after the join (the engine takes
        // commands in order), so no message of theirs can arrive before it.
        self.links.set_serving(conversation, Some(agent));
    }

    async fn run(
        self: Arc<Self>,
        mut notices: tokio::sync::mpsc::UnboundedReceiver<ChatNotice>,
        mut events: tokio::sync::broadcast::Receiver<HubEvent>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = notices.recv() => match n {
                    Some(n) => self.notice(n).await,
                    None => return,
                },
                ev = events.recv() => match ev {
                    Ok(e) => self.hub_event(e).await,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "chat glue fell behind the hub's events");
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => self.queue_positions().await,
            }
        }
    }

    async fn notice(&self, n: ChatNotice) {
        match n {
            ChatNotice::Agent {
                conversation,
                agent,
                event,
            } => {
                let Some(agent) = agent else { return };
                let contact = self.links.contact(conversation);
                let frame = agent_frame(conversation, contact, event);
                self.push.send(agent, frame);
            }
            ChatNotice::Ended {
                conversation,
                reason,
                was,
                agent,
            } => {
                let now = now_ms();
                if let Err(e) = self.store.close_conversation(conversation, now).await {
                    tracing::error!(error = %e, conversation_id = conversation, "cannot mark the chat closed");
                }
                self.links.set_serving(conversation, None);
                let Some(contact) = self.links.contact(conversation) else {
                    return;
                };
                tracing::info!(
                    contact_id = contact,
                    conversation_id = conversation,
                    reason = reason.as_str(),
                    "chat ended"
                );
                match (was, agent) {
                    (ConversationState::Connected, Some(a)) => {
                        // Handling is over: the agent wraps up (disposition, notes).
                        match self
                            .hub
                            .contact_op(a, contact, ContactOp::Complete { hold_ms: 0 })
                            .await
                        {
                            Ok(Ok(())) | Err(_) => {}
                            Ok(Err(e)) => {
                                tracing::debug!(contact_id = contact, error = %e, "chat already completed")
                            }
                        }
                    }
                    _ => self.hub.abandon(contact).await,
                }
            }
        }
    }

    async fn hub_event(&self, e: HubEvent) {
        match e {
            HubEvent::ContactState {
                contact,
                agent: Some(agent),
                state: ContactState::Connected,
                ..
            } => {
                // Only the conversation's current contact: a late event of one already
                // transferred away must not bring its agent back.
                if let Some(conv) = self.links.conversation(contact) {
                    if self.links.contact(conv) == Some(contact) {
                        self.joined(conv, agent).await;
                    }
                }
            }
            HubEvent::Offer { contact, .. } => {
                if let Some(conv) = self.links.conversation(contact) {
                    self.ensure_live(conv).await;
                }
            }
            HubEvent::ContactState {
                contact,
                agent: None,
                state: ContactState::Closed,
                ..
            } => {
                // The ACD refused the contact (queue closed or full): end the chat.
                if let Some(conv) = self.links.conversation(contact) {
                    if self.links.contact(conv) == Some(contact) {
                        let _ = self.engine.agent(conv, AgentInput::End).await;
                    }
                }
            }
            _ => {}
        }
    }

    /// Tells waiting customers their place in line.
    async fn queue_positions(&self) {
        let Ok(waiting) = self.engine.waiting().await else {
            return;
        };
        let pairs: Vec<(i64, i64)> = waiting
            .into_iter()
            .filter_map(|conv| self.links.contact(conv).map(|c| (conv, c)))
            .collect();
        if pairs.is_empty() {
            return;
        }
        let Ok(positions) = self
            .hub
            .positions(pairs.iter().map(|(_, c)| *c).collect())
            .await
        else {
            return;
        };
        for ((conv, _), p) in pairs.into_iter().zip(positions) {
            if let Some((position, wait_ms)) = p {
                let _ = self
                    .engine
                    .agent(
                        conv,
                        AgentInput::Queue {
                            position,
                            expected_wait_secs: (wait_ms + 999) / 1000,
                        },
                    )
                    .await;
            }
        }
    }
}

/// An engine notice as an agent socket frame.
fn agent_frame(conversation: i64, contact: Option<i64>, event: AgentEvent) -> Value {
    let base =
        |kind: &str| json!({"type": kind, "conversation_id": conversation, "contact_id": contact});
    match event {
        AgentEvent::Message(m) => {
            let mut f = base("chat_message");
            f["message"] = json!(m);
            f
        }
        AgentEvent::Typing { active } => {
            let mut f = base("chat_typing");
            f["active"] = json!(active);
            f
        }
        AgentEvent::Read { seq } => {
            let mut f = base("chat_read");
            f["seq"] = json!(seq);
            f
        }
        AgentEvent::CustomerOnline(online) => {
            let mut f = base("chat_presence");
            f["online"] = json!(online);
            f
        }
        AgentEvent::Ended(reason) => {
            let mut f = base("chat_ended");
            f["reason"] = json!(reason);
            f
        }
    }
}
