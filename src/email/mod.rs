//! The email channel inside the hub: the store and routing behind the protocol crate
//! (`channel-email`).
//!
//! - Inbound mail (SMTP/LMTP from the company's MTA, or IMAP mailboxes) is parsed, matched to a
//!   customer (an unknown sender becomes one), threaded into its conversation, and stored with
//!   its raw bytes and files **before** the protocol side acknowledges it (SMTP 250, IMAP
//!   `\Seen`). A conversation without an open contact gets a new one, routed by the ACD.
//! - A new conversation is acknowledged automatically (never auto-replies, bounces, lists).
//! - Agents reply, reply-all and forward from the console; every outgoing mail is stored in the
//!   conversation and in the outbox first, then sent through the relay with back-off; a failed
//!   send stays visible to the agent.

pub mod http;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use channel_email::autoack::{AckConfig, AckDecision, AckPolicy, AckRequest, Language};
use channel_email::backoff::RetrySchedule;
use channel_email::outbound::{
    self, compose, new_message_id, AttemptOutcome, ComposedEmail, OutgoingEmail, RelayConfig,
    RelaySecurity, Sender,
};
use channel_email::parse::{parse, Mailbox, ParseOptions, ParsedEmail};
use channel_email::smtp::{Protocol, SessionConfig, SmtpServer, SmtpServerConfig, TlsMode};
use channel_email::thread::{self, KnownFacts, ThreadConfig, ThreadInput, TicketPattern};
use channel_email::{InboundMail, LocalAddresses, MailSink, SinkError, Stored};
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::acd::rules::ContactAttributes;
use crate::acd::types::ContactSpec;
use crate::archive::normalize_customer;
use crate::config::Config;
use crate::domain::{now_ms, Channel, Contact, CustomerInput, IdentityKind};
use crate::hub::HubHandle;
use crate::push::AgentPush;
use crate::server::Routing;
use crate::store::{
    Backend, EmailFile, EmailRouting, EmailStored, NewEmail, OutboxEntry, Store, StoreError,
};

/// One address the hub accepts mail for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    pub address: String,
    /// The display name our mail from this address carries (e.g. "蓝鸟办公 客服").
    #[serde(default)]
    pub name: String,
}

/// The relay outgoing mail goes through (`[email.relay]`); an empty host sends nothing (mail
/// waits, marked failed, for the operator to configure one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayToml {
    pub host: String,
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub security: String,
    pub username: String,
    pub password: String,
    pub timeout_secs: u64,
    /// Retries: first wait, doubling, at most this many attempts in all.
    pub retry_initial_secs: u64,
    pub retry_max_attempts: u32,
}

impl Default for RelayToml {
    fn default() -> Self {
        RelayToml {
            host: String::new(),
            port: 25,
            security: "none".into(),
            username: String::new(),
            password: String::new(),
            timeout_secs: 60,
            retry_initial_secs: 30,
            retry_max_attempts: 12,
        }
    }
}

/// An IMAP mailbox polled for mail (`[[email.imap]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapToml {
    pub host: String,
    pub port: u16,
    /// `plain` or `tls`.
    #[serde(default = "default_imap_security")]
    pub security: String,
    pub username: String,
    pub password: String,
    #[serde(default = "default_inbox")]
    pub mailbox: String,
    /// The address this mailbox receives (routing: as if it had come by SMTP to it).
    pub address: String,
    /// Move stored mail to this folder; empty = only mark it seen.
    #[serde(default)]
    pub move_to: String,
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
}

fn default_imap_security() -> String {
    "tls".into()
}
fn default_inbox() -> String {
    "INBOX".into()
}
fn default_poll_secs() -> u64 {
    60
}

/// The email channel's configuration (`[email]`; the SMTP listener is `[smtp]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// Our domain: Message-IDs, and any address there counts as ours (no acknowledgement loops).
    pub domain: String,
    /// The addresses accepted (SMTP refuses others with 550); each is the `called` routing
    /// attribute of its mail (`routing.toml`: `called = ["billing@*"]`).
    pub addresses: Vec<MailboxConfig>,
    pub max_message_bytes: usize,
    pub max_attachment_bytes: usize,
    /// Acknowledge a new conversation automatically.
    pub acknowledge: bool,
    pub ack_per_sender_per_hour: usize,
    /// Same sender and subject within this many days joins the open conversation.
    pub thread_window_days: i64,
    /// Promised first-response time per queue, in hours (said in the acknowledgement).
    pub response_hours: HashMap<String, u32>,
    pub default_response_hours: u32,
    pub relay: RelayToml,
    pub imap: Vec<ImapToml>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            domain: "contact-hub.local".into(),
            addresses: vec![MailboxConfig {
                address: "service@contact-hub.local".into(),
                name: "Customer Service".into(),
            }],
            max_message_bytes: 25 * 1024 * 1024,
            max_attachment_bytes: 15 * 1024 * 1024,
            acknowledge: true,
            ack_per_sender_per_hour: 3,
            thread_window_days: 14,
            response_hours: HashMap::new(),
            default_response_hours: 24,
            relay: RelayToml::default(),
            imap: Vec::new(),
        }
    }
}

impl EmailConfig {
    fn local_addresses(&self) -> LocalAddresses {
        let mut l = LocalAddresses::new();
        for a in &self.addresses {
            l.insert(&a.address, &a.address.to_lowercase());
        }
        l
    }

    fn relay(&self) -> Option<RelayConfig> {
        if self.relay.host.trim().is_empty() {
            return None;
        }
        Some(RelayConfig {
            host: self.relay.host.clone(),
            port: self.relay.port,
            security: match self.relay.security.as_str() {
                "starttls" => RelaySecurity::StartTls,
                "tls" => RelaySecurity::Tls,
                _ => RelaySecurity::None,
            },
            username: Some(self.relay.username.clone()).filter(|u| !u.is_empty()),
            password: Some(self.relay.password.clone()).filter(|p| !p.is_empty()),
            hello_name: self.domain.clone(),
            timeout: Duration::from_secs(self.relay.timeout_secs.max(1)),
            extra_roots_pem: None,
        })
    }

    fn schedule(&self) -> RetrySchedule {
        RetrySchedule {
            initial: Duration::from_secs(self.relay.retry_initial_secs.max(1)),
            factor: 2,
            max_delay: Duration::from_secs(3600),
            max_attempts: self.relay.retry_max_attempts.max(1),
        }
    }

    fn expected_response(&self, queue: &str, lang: Language) -> String {
        let h = self
            .response_hours
            .get(queue)
            .copied()
            .unwrap_or(self.default_response_hours);
        match lang {
            Language::ZhCn => format!("{h} 小时"),
            Language::ZhTw => format!("{h} 小時"),
            Language::En => format!("{h} hour{}", if h == 1 { "" } else { "s" }),
        }
    }

    /// Our mailbox (address and name) for replies from `address`, else the first one.
    pub fn mailbox(&self, address: Option<&str>) -> Mailbox {
        let found = address.and_then(|a| {
            self.addresses
                .iter()
                .find(|m| m.address.eq_ignore_ascii_case(a))
        });
        let m = found.or(self.addresses.first());
        match m {
            Some(m) => Mailbox {
                name: Some(m.name.clone()).filter(|n| !n.is_empty()),
                address: m.address.to_lowercase(),
            },
            None => Mailbox {
                name: None,
                address: format!("service@{}", self.domain),
            },
        }
    }
}

/// The ticket reference of a conversation, as it appears in subjects (`[#123]`).
pub fn ticket_of(conversation: i64) -> String {
    conversation.to_string()
}

pub struct EmailService {
    store: Store,
    config: Arc<Config>,
    routing: Arc<Routing>,
    hub: HubHandle,
    push: Arc<AgentPush>,
    ack: Mutex<AckPolicy>,
    tickets: TicketPattern,
    outbox_wake: Notify,
    sender: Option<Sender>,
    smtp: tokio::sync::Mutex<Option<SmtpServer>>,
    stop_imap: tokio::sync::watch::Sender<bool>,
    writer: EmailWriter,
}

/// An email waiting for the writer, and who to answer once its transaction has committed.
struct WriteJob {
    email: NewEmail,
    now: i64,
    done: tokio::sync::oneshot::Sender<Result<EmailStored, StoreError>>,
}

/// Where emails (inbound and outgoing) are stored. On SQLite, which writes one transaction at
/// a time anyway, by group commit: one writer task takes whatever has queued up while its last
/// transaction ran and stores it in one transaction (`Store::store_emails`: one write turn and
/// one WAL commit for all). Each caller is answered only after the transaction holding its email
/// committed, so "stored before acknowledged" holds; an email alone in the queue is written at
/// once (no waiting for company). On PostgreSQL each delivery writes on its own connection, side
/// by side (one writer there serialised them and halved the rate, BENCHMARKS.md).
enum EmailWriter {
    Direct(Store),
    Group(tokio::sync::mpsc::UnboundedSender<WriteJob>),
}

/// Messages up to this size are parsed on the runtime's thread, bigger ones on the blocking pool.
const INLINE_PARSE_BYTES: usize = 16 * 1024;

/// At most this many emails share a transaction (bounds the time one write turn is held).
const WRITE_BATCH: usize = 32;

impl EmailWriter {
    fn start(store: Store) -> EmailWriter {
        if store.backend() == Backend::Postgres {
            return EmailWriter::Direct(store);
        }
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<WriteJob>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let emails: Vec<(&NewEmail, i64)> =
                    batch.iter().map(|j| (&j.email, j.now)).collect();
                let results = store.store_emails(&emails).await;
                drop(emails);
                for (job, result) in batch.into_iter().zip(results) {
                    // A caller that went away (its connection dropped) is not told.
                    let _ = job.done.send(result);
                }
            }
        });
        EmailWriter::Group(jobs)
    }

    /// Stores one email; returns once it is committed (or failed).
    async fn store(&self, email: NewEmail, now: i64) -> Result<EmailStored, StoreError> {
        let jobs = match self {
            EmailWriter::Direct(store) => return store.store_email(&email, now).await,
            EmailWriter::Group(jobs) => jobs,
        };
        let (done, answer) = tokio::sync::oneshot::channel();
        jobs.send(WriteJob { email, now, done })
            .map_err(|_| StoreError::Invalid("the email writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Invalid("the email writer stopped".into()))?
    }
}

/// The sink the protocol side delivers to.
struct Sink(Arc<EmailService>);

impl MailSink for Sink {
    async fn deliver(&self, mail: InboundMail) -> Result<Stored, SinkError> {
        self.0.deliver(mail).await
    }
}

fn temporary(e: StoreError) -> SinkError {
    tracing::error!(error = %e, "storing an email failed; the sender will retry");
    SinkError::Temporary("cannot store the message now; try again later".into())
}

impl EmailService {
    /// Starts the SMTP listener, the IMAP pollers and the outbox sender. Returns the service
    /// and the SMTP address it listens on.
    pub async fn start(
        store: Store,
        config: Arc<Config>,
        routing: Arc<Routing>,
        hub: HubHandle,
        push: Arc<AgentPush>,
    ) -> anyhow::Result<(Arc<EmailService>, Option<SocketAddr>)> {
        let e = &config.email;
        let local = e.local_addresses();
        let tickets = TicketPattern::default();
        let ack = AckPolicy::new(AckConfig {
            our_addresses: local.clone(),
            our_domains: vec![e.domain.to_lowercase()],
            max_per_sender: e.ack_per_sender_per_hour.max(1),
            window: chrono::Duration::hours(1),
            tickets: tickets.clone(),
            ..AckConfig::default()
        });
        let sender = match e.relay() {
            Some(r) => Some(Sender::new(&r, e.schedule())?),
            None => None,
        };
        let (stop_imap, stop_rx) = tokio::sync::watch::channel(false);
        // Ingest reads (duplicate, sender, threading facts) right before it writes: on the
        // writing connection they find its page cache warm.
        let store = store.writer_side();
        let service = Arc::new(EmailService {
            writer: EmailWriter::start(store.clone()),
            store,
            config: config.clone(),
            routing,
            hub,
            push,
            ack: Mutex::new(ack),
            tickets,
            outbox_wake: Notify::new(),
            sender,
            smtp: tokio::sync::Mutex::new(None),
            stop_imap,
        });
        let mut smtp_addr = None;
        if !config.smtp.listen.trim().is_empty() {
            let tls = match (&config.smtp.tls_cert, &config.smtp.tls_key) {
                (c, k) if !c.is_empty() && !k.is_empty() => {
                    let cfg = channel_email::tls::server_config(
                        std::path::Path::new(c),
                        std::path::Path::new(k),
                    )
                    .map_err(|err| anyhow::anyhow!("smtp.tls_cert / smtp.tls_key: {err}"))?;
                    TlsMode::StartTls(cfg)
                }
                _ => TlsMode::None,
            };
            let addr = tokio::net::lookup_host(config.smtp.listen.trim())
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    anyhow::anyhow!("smtp.listen {:?} is not host:port", config.smtp.listen)
                })?;
            let server = SmtpServer::start(
                addr,
                SmtpServerConfig {
                    session: SessionConfig {
                        hostname: e.domain.clone(),
                        protocol: if config.smtp.lmtp {
                            Protocol::Lmtp
                        } else {
                            Protocol::Smtp
                        },
                        local_addresses: local.clone(),
                        max_message_size: e.max_message_bytes,
                        ..SessionConfig::default()
                    },
                    tls,
                    ..SmtpServerConfig::default()
                },
                Arc::new(Sink(service.clone())),
            )
            .await
            .map_err(|err| {
                anyhow::anyhow!("cannot listen for SMTP on {}: {err}", config.smtp.listen)
            })?;
            smtp_addr = Some(server.local_addr());
            *service.smtp.lock().await = Some(server);
        }
        for account in &e.imap {
            let cfg = channel_email::imap::ImapConfig {
                host: account.host.clone(),
                port: account.port,
                security: if account.security == "plain" {
                    channel_email::imap::ImapSecurity::Plain
                } else {
                    channel_email::imap::ImapSecurity::Tls
                },
                username: account.username.clone(),
                password: account.password.clone(),
                mailbox: account.mailbox.clone(),
                after_store: if account.move_to.is_empty() {
                    channel_email::imap::AfterStore::MarkSeen
                } else {
                    channel_email::imap::AfterStore::MoveTo(account.move_to.clone())
                },
                address: account.address.to_lowercase(),
                key: account.address.to_lowercase(),
                poll_interval: Duration::from_secs(account.poll_secs.max(1)),
                ..channel_email::imap::ImapConfig::default()
            };
            let poller = channel_email::imap::ImapPoller::new(cfg, Arc::new(Sink(service.clone())));
            let stop = stop_rx.clone();
            tokio::spawn(async move { poller.run(stop).await });
        }
        tokio::spawn(service.clone().run_outbox());
        Ok((service, smtp_addr))
    }

    /// Stops listening (SMTP and IMAP); mail already stored stays.
    pub async fn stop(&self) {
        let _ = self.stop_imap.send(true);
        if let Some(s) = self.smtp.lock().await.take() {
            s.shutdown().await;
        }
    }

    fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            max_attachment_size: self.config.email.max_attachment_bytes,
            max_total_attachment_size: self.config.email.max_message_bytes,
            ..ParseOptions::default()
        }
    }

    /// Parses, matches, threads and stores one inbound mail; routes it; acknowledges it.
    pub async fn deliver(&self, mail: InboundMail) -> Result<Stored, SinkError> {
        let opts = self.parse_options();
        let InboundMail {
            envelope,
            raw,
            received_at: _,
        } = mail;
        // A small message parses in about 0.1–0.2 ms: cheaper here than the two thread
        // switches of a hand-off to the blocking pool; big ones must not stall the runtime.
        // A parser panic is a temporary refusal either way (the message is not lost).
        let (mut parsed, raw) = if raw.len() <= INLINE_PARSE_BYTES {
            let parsed =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&raw, &opts)))
                    .map_err(|_| SinkError::Temporary("parser stopped".into()))?;
            (parsed, raw)
        } else {
            tokio::task::spawn_blocking(move || (parse(&raw, &opts), raw))
                .await
                .map_err(|_| SinkError::Temporary("parser stopped".into()))?
        };
        parsed.apply_envelope_sender(&envelope.mail_from);
        let mailbox = envelope
            .recipients
            .first()
            .map(|r| r.key.clone())
            .unwrap_or_else(|| self.config.email.mailbox(None).address);
        let id = self
            .ingest(
                &parsed,
                raw,
                &envelope.mail_from,
                &mailbox,
                &source_of(&envelope.source),
            )
            .await?;
        Ok(Stored { id: id.to_string() })
    }

    /// The customer an email is from: by address, else a new customer record (not for bounces
    /// and mail from our own domain).
    async fn customer_for(
        &self,
        parsed: &ParsedEmail,
        found: Option<crate::domain::Customer>,
    ) -> Result<Option<crate::domain::Customer>, SinkError> {
        let Some(from) = parsed.reply_address().or(parsed.from.as_ref()) else {
            return Ok(None);
        };
        let address = from.address.to_lowercase();
        if let Some(c) = found {
            return Ok(Some(c));
        }
        let ours = address.ends_with(&format!("@{}", self.config.email.domain.to_lowercase()));
        if parsed.is_bounce || ours || channel_email::autoack::is_no_reply(&address) {
            return Ok(None);
        }
        let name = from
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| address.split('@').next().unwrap_or(&address).to_string());
        let text = format!(
            "{} {}",
            parsed.subject,
            parsed.text_body.as_deref().unwrap_or("")
        );
        let input = CustomerInput {
            name: Some(name),
            emails: Some(vec![address.clone()]),
            language: Some(Language::detect(&text).tag().to_string()),
            notes: Some("Created from an email.".into()),
            ..CustomerInput::default()
        };
        let customer = match normalize_customer(&input, None, &self.config.archive) {
            Ok(c) => c,
            Err(_) => return Ok(None),
        };
        match self.store.create_customer(&customer, now_ms()).await {
            Ok(id) => {
                tracing::info!(customer_id = id, "a new customer from an email");
                Ok(Some(self.store.get_customer(id).await.map_err(temporary)?))
            }
            // Someone else created them a moment ago.
            Err(StoreError::Conflict(_)) => self
                .store
                .customer_owning(IdentityKind::Email, &address)
                .await
                .map_err(temporary),
            Err(e) => Err(temporary(e)),
        }
    }

    /// The threading facts for one message, and the customer's last agent, read from the store.
    async fn facts(
        &self,
        parsed: &ParsedEmail,
        customer: Option<i64>,
        normalized: &str,
    ) -> Result<(KnownFacts<i64>, Option<i64>), SinkError> {
        let mut facts = KnownFacts::default();
        let ids: Vec<String> = parsed
            .in_reply_to
            .iter()
            .chain(parsed.references.iter())
            .cloned()
            .collect();
        let ticket = self
            .tickets
            .find(&parsed.subject)
            .and_then(|t| Some((t.to_string(), t.parse::<i64>().ok()?)));
        let since = now_ms() - self.config.email.thread_window_days.max(0) * 86_400_000;
        let recent = match (customer, parsed.from.as_ref()) {
            (Some(c), Some(sender)) => Some((c, sender.address.clone())),
            _ => None,
        };
        let found = self
            .store
            .email_thread_facts(
                &ids,
                ticket.as_ref().map(|t| t.1),
                recent.as_ref().map(|(c, _)| (*c, normalized, since)),
                customer,
            )
            .await
            .map_err(temporary)?;
        let last_agent = found.last_agent;
        facts.by_message_id = found.by_message_id;
        if let (Some((t, _)), Some(c)) = (ticket, found.ticket) {
            facts.by_ticket.insert(t, c);
        }
        if let (Some((_, sender)), Some(c)) = (recent, found.recent) {
            facts
                .recent
                .insert((sender, normalized.to_string()), (c, Utc::now()));
        }
        Ok((facts, last_agent))
    }

    async fn ingest(
        &self,
        parsed: &ParsedEmail,
        raw: Vec<u8>,
        envelope_from: &str,
        mailbox: &str,
        source: &str,
    ) -> Result<i64, SinkError> {
        // One read for the duplicate check and the sender's customer.
        let sender = parsed
            .reply_address()
            .or(parsed.from.as_ref())
            .map(|f| f.address.to_lowercase());
        let (stored_in, found) = self
            .store
            .email_ingest_lookup(&parsed.message_id, sender.as_deref())
            .await
            .map_err(temporary)?;
        // The same message delivered twice is stored once.
        if let Some(conv) = stored_in {
            tracing::info!(
                conversation_id = conv,
                "an email arrived again; already stored"
            );
            return Ok(conv);
        }
        let customer = self.customer_for(parsed, found).await?;
        let customer_id = customer.as_ref().map(|c| c.id);
        let normalized = thread::normalize_subject(&parsed.subject, &self.tickets);
        let (facts, last_agent) = self.facts(parsed, customer_id, &normalized).await?;
        let decision = thread::decide(
            &ThreadInput::from(parsed),
            &facts,
            &ThreadConfig {
                tickets: self.tickets.clone(),
                subject_window: chrono::Duration::days(self.config.email.thread_window_days.max(0)),
            },
            Utc::now(),
        );
        let text = format!(
            "{} {}",
            parsed.subject,
            parsed.text_body.as_deref().unwrap_or("")
        );
        let language = customer
            .as_ref()
            .and_then(|c| c.language.as_deref())
            .and_then(Language::from_tag)
            .unwrap_or_else(|| Language::detect(&text));
        let now = now_ms();
        let mut attrs = ContactAttributes::new(Channel::Email);
        attrs.called = Some(mailbox.to_string());
        attrs.language = Some(language.tag().to_string());
        if let Some(c) = &customer {
            attrs.tier = Some(c.tier.clone());
            attrs.tags = c.tags.clone();
        }
        let route = self.routing.rules().route(&attrs, now);
        let files: Vec<EmailFile> = parsed
            .attachments
            .iter()
            .filter(|a| !a.data.is_empty())
            .map(|a| EmailFile {
                file_name: a
                    .filename
                    .clone()
                    .unwrap_or_else(|| format!("attachment-{}", a.index + 1)),
                content_type: a.content_type.clone(),
                sha256: crate::auth::hex(&Sha256::digest(&a.data)),
                data: a.data.clone(),
                content_id: a.content_id.clone(),
                inline: a.inline,
            })
            .collect();
        let omitted: Vec<Value> = parsed
            .attachments
            .iter()
            .filter(|a| a.omitted)
            .map(|a| json!({"name": a.filename, "size": a.size, "content_type": a.content_type}))
            .collect();
        let flags = json!({
            "thread_reason": decision.reason,
            "ticket": decision.ticket,
            "mailbox": mailbox,
            "source": source,
            "auto_submitted": parsed.auto_submitted,
            "bounce": parsed.is_bounce,
            "list": parsed.is_list,
            "warnings": parsed.warnings,
            "omitted_attachments": omitted,
            "attachment_indices": parsed.attachments.iter().filter(|a| !a.data.is_empty()).map(|a| a.index).collect::<Vec<_>>(),
            "envelope_from": envelope_from,
            // Where answers go when it differs from From (the console shows it and addresses
            // the reply there, as `outbound::reply` does).
            "reply_to": parsed.reply_to.iter().map(|m| m.address.as_str()).collect::<Vec<_>>(),
        });
        let from = parsed.from.clone();
        let body = match parsed.text_body.clone().filter(|t| !t.trim().is_empty()) {
            Some(t) => t,
            // Nothing readable came out of the MIME structure: keep the raw body as text so the
            // agent still sees what the customer wrote (the raw message is stored too).
            None if parsed.html_body.is_none() => raw_body_text(&raw),
            None => String::new(),
        };
        let stored = self
            .writer
            .store(
                NewEmail {
                    conversation: decision.conversation,
                    customer_id,
                    language: language.tag().into(),
                    subject: Some(parsed.subject.clone()).filter(|s| !s.is_empty()),
                    thread_key: Some(normalized.clone()).filter(|s| !s.is_empty()),
                    direction: "inbound",
                    sender: "customer",
                    agent_id: None,
                    name: from.as_ref().and_then(|f| f.name.clone()),
                    body,
                    message_id: parsed.message_id.clone(),
                    in_reply_to: parsed.in_reply_to.first().cloned(),
                    references: parsed.references.clone(),
                    from_addr: from.as_ref().map(|f| f.address.clone()),
                    from_name: from.as_ref().and_then(|f| f.name.clone()),
                    to: parsed.to.iter().map(|m| m.address.clone()).collect(),
                    cc: parsed.cc.iter().map(|m| m.address.clone()).collect(),
                    html: parsed.html_sanitized.clone(),
                    flags,
                    raw,
                    files,
                    routing: Some(EmailRouting {
                        queue: route.queue.clone(),
                        priority: route.priority,
                        skills: route.extra_skills.clone(),
                        routed_by: route.rule.clone(),
                        overflow: route.overflow.clone(),
                    }),
                    outbox: None,
                },
                now,
            )
            .await
            .map_err(temporary)?;
        let (conversation, seq, new_contact, open_contact) = match stored {
            EmailStored::Duplicate { conversation, .. } => return Ok(conversation),
            EmailStored::Stored {
                conversation,
                seq,
                new_contact,
                open_contact,
                ..
            } => (conversation, seq, new_contact, open_contact),
        };
        tracing::info!(
            conversation_id = conversation,
            seq,
            reason = ?decision.reason,
            new_contact = new_contact.as_ref().map(|c| c.id),
            "email stored"
        );
        // Stored first, then routed.
        if let Some(c) = &new_contact {
            self.hub
                .route(
                    ContactSpec {
                        id: c.id,
                        channel: Channel::Email,
                        queue: route.queue.clone(),
                        priority: route.priority,
                        enqueued_at: now,
                        extra_skills: route.extra_skills.clone(),
                        last_agent,
                    },
                    route.overflow.clone(),
                )
                .await;
        }
        if let Some(c) = &open_contact {
            self.tell_holder(
                c,
                json!({"type": "email_message", "conversation_id": conversation, "seq": seq}),
            )
            .await;
        }
        if self.config.email.acknowledge && decision.reason == thread::ThreadReason::New {
            let queue = new_contact
                .as_ref()
                .and_then(|c| c.queue.clone())
                .unwrap_or_else(|| route.queue.clone());
            self.acknowledge(
                parsed,
                envelope_from,
                conversation,
                &queue,
                language,
                customer.as_ref().map(|c| c.name.as_str()),
                mailbox,
            )
            .await;
        }
        Ok(conversation)
    }

    /// Tells the agent holding a contact (offered, connected, wrapping up) about it.
    async fn tell_holder(&self, contact: &Contact, mut frame: Value) {
        if let Ok(Some((_, Some(agent), _))) = self.hub.contact_phase(contact.id).await {
            frame["contact_id"] = json!(contact.id);
            self.push.send(agent, frame);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn acknowledge(
        &self,
        parsed: &ParsedEmail,
        envelope_from: &str,
        conversation: i64,
        queue: &str,
        language: Language,
        customer_name: Option<&str>,
        mailbox: &str,
    ) {
        let ticket = ticket_of(conversation);
        let expected = self.config.email.expected_response(queue, language);
        let decision = match self.ack.lock() {
            Ok(mut policy) => policy.decide(
                &AckRequest {
                    email: parsed,
                    envelope_from: Some(envelope_from),
                    is_new_conversation: true,
                    queue,
                    ticket: &ticket,
                    language: Some(language),
                    customer_name,
                    expected_response: &expected,
                },
                Utc::now(),
            ),
            Err(_) => return,
        };
        let ack = match decision {
            AckDecision::Send(a) => a,
            AckDecision::Skip(reason) => {
                tracing::info!(conversation_id = conversation, reason = ?reason, "no acknowledgement");
                return;
            }
        };
        let mut mail = outbound::ack_email(&ack, self.config.email.mailbox(Some(mailbox)));
        mail.ticket = Some(ticket);
        if let Err(e) = self
            .send_stored(conversation, None, "ack", "system", None, mail, None)
            .await
        {
            tracing::error!(conversation_id = conversation, error = %e, "cannot queue the acknowledgement");
        }
    }

    /// Composes an outgoing mail, stores it in the conversation and the outbox (one after the
    /// other: the message first), and wakes the sender. Returns (seq, outbox id, Message-ID).
    #[allow(clippy::too_many_arguments)]
    pub async fn send_stored(
        &self,
        conversation: i64,
        contact: Option<i64>,
        kind: &str,
        sender: &'static str,
        agent: Option<(i64, String)>,
        mail: OutgoingEmail,
        files: Option<Vec<EmailFile>>,
    ) -> Result<(i64, i64, String), String> {
        let message_id = new_message_id(&self.config.email.domain);
        let composed =
            compose(&mail, &message_id, Utc::now(), &self.tickets).map_err(|e| e.to_string())?;
        let subject = subject_of(&composed.raw).or(Some(mail.subject.clone()));
        let now = now_ms();
        let stored = self
            .writer
            .store(
                NewEmail {
                    conversation: Some(conversation),
                    customer_id: None,
                    language: String::new(),
                    subject,
                    thread_key: None,
                    direction: "outbound",
                    sender,
                    agent_id: agent.as_ref().map(|a| a.0),
                    name: agent
                        .as_ref()
                        .map(|a| a.1.clone())
                        .or_else(|| mail.from.as_ref().and_then(|f| f.name.clone())),
                    body: mail.text.clone(),
                    message_id: composed.message_id.clone(),
                    in_reply_to: mail.in_reply_to.clone(),
                    references: mail.references.clone(),
                    from_addr: mail.from.as_ref().map(|f| f.address.clone()),
                    from_name: mail.from.as_ref().and_then(|f| f.name.clone()),
                    to: mail.to.iter().map(|m| m.address.clone()).collect(),
                    cc: mail.cc.iter().map(|m| m.address.clone()).collect(),
                    html: mail.html.clone(),
                    flags: json!({ "kind": kind }),
                    raw: composed.raw.clone(),
                    files: files.unwrap_or_default(),
                    routing: None,
                    outbox: Some(OutboxEntry {
                        contact,
                        kind: kind.to_string(),
                        envelope_from: composed.envelope_from.clone(),
                        recipients: composed.recipients.clone(),
                    }),
                },
                now,
            )
            .await
            .map_err(|e| e.to_string())?;
        let (seq, outbox) = match stored {
            EmailStored::Stored {
                seq,
                outbox: Some(outbox),
                ..
            } => (seq, outbox),
            // A fresh Message-ID is never a duplicate.
            _ => return Err("the outgoing mail was not queued".into()),
        };
        self.outbox_wake.notify_one();
        Ok((seq, outbox, composed.message_id))
    }

    /// Sends due mail, one at a time, and sleeps until the next is due (or new mail wakes it).
    async fn run_outbox(self: Arc<Self>) {
        loop {
            let now = now_ms();
            match self.store.due_outbox(now, 20).await {
                Ok(items) => {
                    for item in items {
                        self.attempt(item).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the email outbox"),
            }
            let next = self.store.next_outbox_due().await.ok().flatten();
            let wait = next
                .map(|t| (t - now_ms()).clamp(0, 30_000))
                .unwrap_or(30_000);
            tokio::select! {
                _ = self.outbox_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            }
        }
    }

    async fn attempt(&self, item: crate::store::OutboxItem) {
        let now = now_ms();
        let attempts = item.attempts + 1;
        let (status, next, error) = match &self.sender {
            None => (
                "failed",
                now,
                Some("no relay is configured (email.relay.host)".to_string()),
            ),
            Some(sender) => {
                let mail = ComposedEmail {
                    message_id: item.message_id.clone(),
                    envelope_from: item.envelope_from.clone(),
                    recipients: item.recipients.clone(),
                    raw: item.raw.clone(),
                };
                match sender.send_once(&mail).await {
                    AttemptOutcome::Sent { .. } => ("sent", now, None),
                    AttemptOutcome::Permanent { error } => ("failed", now, Some(error)),
                    AttemptOutcome::Transient { error } => {
                        let at = Utc
                            .timestamp_millis_opt(now)
                            .single()
                            .unwrap_or_else(Utc::now);
                        match self
                            .config
                            .email
                            .schedule()
                            .next_attempt(at, attempts as u32)
                        {
                            Some(t) => ("pending", t.timestamp_millis(), Some(error)),
                            None => ("failed", now, Some(error)),
                        }
                    }
                }
            }
        };
        if status != "sent" {
            tracing::warn!(
                outbox_id = item.id,
                attempts,
                status,
                "an email could not be sent"
            );
            tracing::debug!(outbox_id = item.id, error = ?error, "relay error");
        }
        if let Err(e) = self
            .store
            .mark_outbox(item.id, status, attempts, next, error.as_deref(), now)
            .await
        {
            tracing::error!(error = %e, "cannot record a send attempt");
        }
        if let Some(contact) = item.contact_id {
            if let Ok(c) = self.store.get_contact(contact).await {
                let frame = json!({
                    "type": "email_status", "conversation_id": item.conversation_id, "seq": item.seq,
                    "outbox_id": item.id, "status": status, "attempts": attempts,
                    "next_attempt_at": (status == "pending").then(|| crate::domain::rfc3339(next)),
                    "error": error,
                });
                // To whoever holds the contact now, else to the agent who had it.
                let holder = match self.hub.contact_phase(c.id).await {
                    Ok(Some((_, Some(a), _))) => Some(a),
                    _ => c.agent_id,
                };
                if let Some(a) = holder {
                    let mut frame = frame;
                    frame["contact_id"] = json!(c.id);
                    self.push.send(a, frame);
                }
            }
        }
    }

    /// Tries a failed mail again now.
    pub async fn retry(&self, outbox: i64) -> Result<(), StoreError> {
        let item = self.store.outbox_item(outbox).await?;
        self.store
            .mark_outbox(
                item.id,
                "pending",
                item.attempts,
                now_ms(),
                item.last_error.as_deref(),
                now_ms(),
            )
            .await?;
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// The parsed form of a stored email (to answer it).
    pub async fn parsed(&self, conversation: i64, seq: i64) -> Result<ParsedEmail, StoreError> {
        let raw = self.store.email_raw(conversation, seq).await?;
        let opts = self.parse_options();
        tokio::task::spawn_blocking(move || parse(&raw, &opts))
            .await
            .map_err(|_| StoreError::Invalid("parser stopped".into()))
    }
}

/// The part after the header block, decoded leniently (UTF-8, else GB18030), without MIME
/// boundary lines.
fn raw_body_text(raw: &[u8]) -> String {
    let start = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    let body = &raw[start..];
    let text = match std::str::from_utf8(body) {
        Ok(t) => t.to_string(),
        Err(_) => encoding_rs::GB18030.decode(body).0.into_owned(),
    };
    text.lines()
        .filter(|l| !l.starts_with("--") && !l.to_ascii_lowercase().starts_with("content-"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .chars()
        .take(100_000)
        .collect()
}

fn source_of(s: &channel_email::Source) -> String {
    match s {
        channel_email::Source::Smtp { tls, .. } => {
            if *tls {
                "smtp+tls".into()
            } else {
                "smtp".into()
            }
        }
        channel_email::Source::Lmtp { .. } => "lmtp".into(),
        channel_email::Source::Imap { mailbox, .. } => format!("imap:{mailbox}"),
    }
}

/// The decoded Subject of composed bytes (it carries the ticket tag the composer added).
fn subject_of(raw: &[u8]) -> Option<String> {
    let parsed = parse(
        raw,
        &ParseOptions {
            sanitize: false,
            ..ParseOptions::default()
        },
    );
    Some(parsed.subject).filter(|s| !s.is_empty())
}

/// The email part of an offer or work item.
pub async fn offer_extra(state: &crate::server::AppState, contact: &Contact) -> Option<Value> {
    if contact.channel != Channel::Email {
        return None;
    }
    let conv = contact.conversation_id?;
    http::conversation_json(state, conv).await.ok()
}
