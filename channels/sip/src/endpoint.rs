//! The tokio driver: sockets, the rsipstack endpoint and dialog layer, one task per
//! transaction or dialog watcher. Decisions are made by the sans-IO parts (`wire`,
//! `registrar`, `leg`, `schedule`); this module only moves messages and time.

use crate::config::{SipConfig, TrunkTransport};
use crate::events::*;
use crate::leg::{Action, Command, Direction, Leg, Outcome, Signal};
use crate::registrar::{
    AgentCredential, ContactParam, CredentialStore, RegisterOutcome, RegisterRequest, Registrar,
    RegistrarEvent, Transport,
};
use crate::schedule::RegistrationSchedule;
use crate::udp::{GuardedUdpSocket, WireStats};
use crate::wire;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::registration::Registration;
use rsipstack::dialog::DialogId;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Param, StatusCode, StatusCodeKind};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::{UdpConnection, UdpInner};
use rsipstack::transport::{SipAddr, TcpListenerConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

type CancellationToken = rsipstack::platform::CancellationToken;

/// Capacity of the event channel to the hub.
const EVENT_QUEUE: usize = 4096;

pub struct SipEndpoint;

/// Commands to the endpoint. Cheap to clone; every method is safe to call concurrently.
#[derive(Clone)]
pub struct SipHandle {
    core: Arc<Core>,
}

struct LegEntry {
    leg: Leg,
    /// Cancelled when the leg is forgotten: stops its helper tasks (the dialog probe).
    gone: CancellationToken,
    dialog: InviteDialog,
    call_id: String,
    local_sdp: Option<String>,
}

/// An outbound call ringing several phones at once; the hub knows only the parent id.
struct Fork {
    branches: Vec<LegId>,
    winner: Option<LegId>,
    failures: Vec<u16>,
    done: bool,
}

struct PendingOffer {
    leg: LegId,
    handle: rsipstack::dialog::dialog::TransactionHandle,
}

struct Core {
    config: SipConfig,
    endpoint: EndpointInnerRef,
    dialogs: Arc<DialogLayer>,
    registrar: Mutex<Registrar>,
    registrar_changed: Notify,
    credentials: Arc<dyn CredentialStore>,
    legs: Mutex<HashMap<LegId, LegEntry>>,
    offers: Mutex<HashMap<OfferId, PendingOffer>>,
    forks: Mutex<HashMap<LegId, Fork>>,
    /// Fork branch -> the parent leg the hub knows.
    parent_of: Mutex<HashMap<LegId, LegId>>,
    events: mpsc::Sender<SipEvent>,
    next_id: AtomicU64,
    cancel: CancellationToken,
    /// Stops the trunk registrations (they unregister on the way out).
    registrations_stop: CancellationToken,
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    contact_host: String,
    wire_stats: Arc<WireStats>,
    shutting_down: AtomicBool,
    /// Per-leg helper tasks alive (dialog probes); 0 once every call is over.
    leg_tasks: Arc<AtomicU64>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Counts a live task until dropped.
struct TaskCount(Arc<AtomicU64>);

impl TaskCount {
    fn new(counter: &Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        TaskCount(counter.clone())
    }
}

impl Drop for TaskCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the endpoint.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SipEndpoint {
    /// Bind the listeners and start serving. Events arrive on the returned receiver; drop it
    /// only after `shutdown`.
    pub async fn start(
        config: SipConfig,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<(SipHandle, mpsc::Receiver<SipEvent>), SipError> {
        config.validate()?;
        // rustls needs a process-wide provider; a second install (another endpoint, or the
        // hub's HTTP client) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        let wire_stats = Arc::new(WireStats::default());

        // UDP and TCP share one port. With port 0 the OS picks the UDP port, and another
        // process may hold that TCP port: pick again.
        let mut attempts = 0;
        let (udp, tcp_std) = loop {
            attempts += 1;
            let udp = tokio::net::UdpSocket::bind(config.listen)
                .await
                .map_err(|e| SipError::Bind {
                    addr: config.listen.to_string(),
                    reason: e.to_string(),
                })?;
            if !config.tcp {
                break (udp, None);
            }
            let port = udp
                .local_addr()
                .map_err(|e| SipError::Stack(e.to_string()))?
                .port();
            match std::net::TcpListener::bind(SocketAddr::new(config.listen.ip(), port)) {
                Ok(l) => break (udp, Some(l)),
                Err(_) if config.listen.port() == 0 && attempts < 50 => continue,
                Err(e) => {
                    return Err(SipError::Bind {
                        addr: SocketAddr::new(config.listen.ip(), port).to_string(),
                        reason: e.to_string(),
                    })
                }
            }
        };
        let udp_addr = udp
            .local_addr()
            .map_err(|e| SipError::Stack(e.to_string()))?;
        let advertised = advertised_addr(&config, udp_addr);
        let guarded: Arc<dyn rsipstack::platform::net::UdpSocket> = Arc::new(
            GuardedUdpSocket::new(udp, config.max_message_size, wire_stats.clone()),
        );
        let udp_conn = UdpConnection::attach(
            UdpInner {
                conn: guarded,
                addr: SipAddr {
                    r#type: Some(rsipstack::sip::Transport::Udp),
                    addr: advertised.into(),
                },
            },
            None,
            Some(cancel.child_token()),
        )
        .await;
        transport.add_transport(udp_conn.into());

        let mut tcp_addr = None;
        if let Some(probe) = tcp_std {
            // rsipstack binds the listener itself (with SO_REUSEADDR): release our hold on
            // the port just before.
            let addr = SocketAddr::new(config.listen.ip(), udp_addr.port());
            drop(probe);
            let tcp = TcpListenerConnection::new(addr, None).await?;
            transport.add_transport(tcp.into());
            tcp_addr = Some(addr);
        }
        if let Some(tls) = &config.tls {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| SipError::Bind {
                    addr: tls.listen.to_string(),
                    reason: format!("{}: {e}", p.display()),
                })
            };
            let tls_config = rsipstack::transport::tls::TlsConfig {
                cert: Some(read(&tls.cert)?),
                key: Some(read(&tls.key)?),
                ..Default::default()
            };
            let listener =
                rsipstack::transport::tls::TlsListenerConnection::new(tls.listen, None, tls_config)
                    .await?;
            transport.add_transport(listener.into());
        }

        let mut option = rsipstack::transaction::endpoint::EndpointOption::default();
        option.callid_suffix = Some("contact-hub".into());
        option.t1 = Duration::from_millis(config.t1_ms);
        option.t1x64 = option.t1 * 64;
        let endpoint = EndpointBuilder::new()
            .with_user_agent(&config.user_agent)
            .with_transport_layer(transport)
            .with_cancel_token(cancel.clone())
            .with_option(option)
            .with_allows(vec![
                Method::Invite,
                Method::Ack,
                Method::Cancel,
                Method::Bye,
                Method::Options,
                Method::Register,
                Method::Info,
                Method::Update,
                Method::PRack,
            ])
            .build();
        let incoming = endpoint.incoming_transactions()?;
        let inner = endpoint.inner.clone();
        let dialogs = Arc::new(DialogLayer::new(inner.clone()));
        let epoch = Instant::now();
        let secret = rsipstack::transaction::random_text(32);
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let core = Arc::new(Core {
            registrar: Mutex::new(Registrar::new(config.registrar.clone(), epoch, &secret)),
            contact_host: advertised.to_string(),
            config,
            endpoint: inner.clone(),
            dialogs,
            registrar_changed: Notify::new(),
            credentials,
            legs: Mutex::new(HashMap::new()),
            offers: Mutex::new(HashMap::new()),
            forks: Mutex::new(HashMap::new()),
            parent_of: Mutex::new(HashMap::new()),
            events,
            next_id: AtomicU64::new(1),
            registrations_stop: cancel.child_token(),
            cancel,
            udp_addr,
            tcp_addr,
            wire_stats,
            shutting_down: AtomicBool::new(false),
            leg_tasks: Arc::new(AtomicU64::new(0)),
            tasks: Mutex::new(Vec::new()),
        });

        let serve = tokio::spawn(async move { endpoint.serve().await });
        let accept = tokio::spawn(core.clone().accept_loop(incoming));
        let expiry = tokio::spawn(core.clone().registrar_timer());
        lock(&core.tasks).extend([serve, accept, expiry]);
        for trunk in core.config.outbound_trunks.iter().filter(|t| t.register) {
            let task = tokio::spawn(core.clone().trunk_registration(trunk.name.clone()));
            lock(&core.tasks).push(task);
        }
        info!(udp = %udp_addr, tcp = ?tcp_addr, "SIP endpoint listening");
        Ok((SipHandle { core }, events_rx))
    }
}

fn advertised_addr(config: &SipConfig, bound: SocketAddr) -> SocketAddr {
    if let Some(ext) = &config.external_address {
        if let Ok(addr) = ext.parse::<SocketAddr>() {
            return addr;
        }
        if let Ok(ip) = ext.parse::<IpAddr>() {
            return SocketAddr::new(ip, bound.port());
        }
    }
    if bound.ip().is_unspecified() {
        rsipstack::transport::SipConnection::resolve_bind_address(bound)
    } else {
        bound
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from(code)
}

fn body_text(body: &[u8]) -> Option<String> {
    (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

fn sdp_headers() -> Vec<Header> {
    vec![Header::ContentType("application/sdp".into())]
}

fn source_of(tx: &Transaction) -> Option<(SocketAddr, Transport)> {
    let conn = tx.connection.as_ref()?;
    let addr = conn.get_remote_addr()?.get_socketaddr().ok()?;
    let transport = match conn.transport() {
        rsipstack::sip::Transport::Tcp => Transport::Tcp,
        rsipstack::sip::Transport::Tls => Transport::Tls,
        _ => Transport::Udp,
    };
    Some((addr, transport))
}

fn name_addr_from(display: Option<String>, uri: &rsipstack::sip::Uri) -> NameAddr {
    NameAddr {
        display: display
            .map(|d| d.trim_matches('"').to_string())
            .filter(|d| !d.is_empty()),
        uri: uri.to_string(),
        user: uri.auth.as_ref().map(|a| a.user.clone()),
    }
}

fn header_value(req: &rsipstack::sip::Request, name: &str) -> Option<String> {
    req.headers.iter().find_map(|h| {
        let s = h.to_string();
        let (n, v) = s.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn has_token(req: &rsipstack::sip::Request, header: &str, token: &str) -> bool {
    req.headers.iter().any(|h| {
        let s = h.to_string();
        match s.split_once(':') {
            Some((n, v)) if n.trim().eq_ignore_ascii_case(header) => {
                v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
            }
            _ => false,
        }
    })
}

/// Credentials of inbound trunks, for the digest check of INVITEs from PBXs.
struct TrunkCredentials<'a>(&'a [crate::config::InboundTrunk]);

impl CredentialStore for TrunkCredentials<'_> {
    fn lookup(&self, username: &str) -> Option<AgentCredential> {
        self.0
            .iter()
            .find_map(|t| match (&t.username, &t.password) {
                (Some(u), Some(p)) if u == username => Some(AgentCredential {
                    agent_id: t.name.clone(),
                    secret: crate::digest::Secret::Password(p.clone()),
                }),
                _ => None,
            })
    }
}

/// Parse an INFO body carrying a DTMF digit.
pub(crate) fn parse_dtmf(content_type: &str, body: &str) -> Option<(char, Option<u32>)> {
    let ct = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let valid = |c: char| c.is_ascii_digit() || "*#ABCDabcd".contains(c);
    match ct.as_str() {
        "application/dtmf-relay" => {
            let mut digit = None;
            let mut duration = None;
            for line in body.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "signal" => digit = v.trim().chars().next().filter(|c| valid(*c)),
                    "duration" => duration = v.trim().parse().ok(),
                    _ => {}
                }
            }
            digit.map(|d| (d.to_ascii_uppercase(), duration))
        }
        "application/dtmf" => {
            let d = body.trim().chars().next().filter(|c| valid(*c))?;
            Some((d.to_ascii_uppercase(), None))
        }
        _ => None,
    }
}

impl Core {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn emit(&self, event: SipEvent) {
        // The hub dropping its receiver means it is going away: nothing to tell.
        let _ = self.events.send(event).await;
    }

    fn contact_uri(&self) -> rsipstack::sip::Uri {
        format!("sip:hub@{}", self.contact_host)
            .as_str()
            .try_into()
            .unwrap_or_default()
    }

    async fn accept_loop(
        self: Arc<Self>,
        mut incoming: rsipstack::transaction::TransactionReceiver,
    ) {
        while let Some(tx) = incoming.recv().await {
            let core = self.clone();
            tokio::spawn(async move {
                let method = tx.original.method;
                if let Err(e) = core.on_transaction(tx).await {
                    debug!(%method, error = %e, "transaction ended with an error");
                }
            });
        }
    }

    async fn on_transaction(self: Arc<Self>, mut tx: Transaction) -> Result<(), SipError> {
        let in_dialog = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        if in_dialog {
            return match self.dialogs.match_dialog(&tx) {
                Some(Dialog::Invite(mut dialog)) => {
                    let method = tx.original.method;
                    let early_ok = matches!(
                        method,
                        Method::Bye | Method::PRack | Method::Ack | Method::Cancel
                    );
                    if !early_ok && !dialog.state().is_confirmed() {
                        // rsipstack workaround: a request racing the ACK of our 200 (pjsua sends
                        // its codec-narrowing re-INVITE right behind the ACK) would be taken for
                        // the initial INVITE and never answered. Give the ACK a moment.
                        let deadline = Instant::now() + Duration::from_secs(1);
                        while !dialog.state().is_confirmed()
                            && !dialog.state().is_terminated()
                            && Instant::now() < deadline
                        {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if !dialog.state().is_confirmed() {
                            let code = match method {
                                Method::Invite | Method::Update => StatusCode::RequestPending,
                                _ => StatusCode::CallTransactionDoesNotExist,
                            };
                            return Ok(tx.reply(code).await?);
                        }
                    }
                    dialog.handle(&mut tx).await?;
                    // Never leave a request unanswered (its transaction would linger).
                    let answered = tx
                        .last_response
                        .as_ref()
                        .is_some_and(|r| r.status_code.kind() != StatusCodeKind::Provisional);
                    if !answered && method != Method::Ack && !tx.is_terminated() {
                        tx.reply(StatusCode::ServerInternalError).await.ok();
                    }
                    Ok(())
                }
                _ => match tx.original.method {
                    Method::Ack => Ok(()),
                    Method::Options => self.reply_options(&mut tx).await,
                    _ => Ok(tx.reply(StatusCode::CallTransactionDoesNotExist).await?),
                },
            };
        }
        match tx.original.method {
            Method::Invite => self.on_invite(tx).await,
            Method::Register => self.on_register(tx).await,
            Method::Options => self.reply_options(&mut tx).await,
            Method::Ack => Ok(()),
            Method::Bye | Method::Info | Method::Update | Method::PRack | Method::Cancel => {
                Ok(tx.reply(StatusCode::CallTransactionDoesNotExist).await?)
            }
            _ => {
                let allow = Header::Allow(wire::ALLOW.into());
                Ok(tx
                    .reply_with(StatusCode::MethodNotAllowed, vec![allow], None)
                    .await?)
            }
        }
    }

    async fn reply_options(&self, tx: &mut Transaction) -> Result<(), SipError> {
        let headers = vec![
            Header::Allow(wire::ALLOW.into()),
            Header::Accept(wire::ACCEPT.into()),
            Header::Supported("100rel".into()),
        ];
        Ok(tx.reply_with(StatusCode::OK, headers, None).await?)
    }

    async fn on_register(self: Arc<Self>, mut tx: Transaction) -> Result<(), SipError> {
        let req = &tx.original;
        let Some((source, transport)) = source_of(&tx) else {
            return Ok(tx.reply(StatusCode::BadRequest).await?);
        };
        let user = req
            .to_header()
            .ok()
            .and_then(|t| t.uri().ok())
            .and_then(|u| u.auth.map(|a| a.user));
        let Some(user) = user else {
            return Ok(tx.reply(StatusCode::BadRequest).await?);
        };
        let mut contacts = Vec::new();
        let mut wildcard = false;
        for c in req.contact_headers() {
            if c.value().trim() == "*" {
                wildcard = true;
                continue;
            }
            let Ok(typed) = c.typed() else {
                return Ok(tx.reply(StatusCode::BadRequest).await?);
            };
            let expires = typed.params.iter().find_map(|p| match p {
                Param::Expires(e) => e.value().parse().ok(),
                Param::Other(n, Some(v)) if n.value().eq_ignore_ascii_case("expires") => {
                    v.value().parse().ok()
                }
                _ => None,
            });
            contacts.push(ContactParam {
                uri: typed.uri.to_string(),
                expires,
            });
        }
        let request = RegisterRequest {
            user,
            call_id: req
                .call_id_header()
                .map(|c| c.value().to_string())
                .unwrap_or_default(),
            cseq: req.cseq_header().and_then(|c| c.seq()).unwrap_or(0),
            contacts,
            wildcard,
            expires: req
                .expires_header()
                .and_then(|e| e.value().trim().parse().ok()),
            authorization: req.authorization_header().map(|a| a.value().to_string()),
            source,
            transport,
        };
        let now = Instant::now();
        let (outcome, events) = {
            let mut reg = lock(&self.registrar);
            let outcome = reg.handle_register(now, &request, self.credentials.as_ref());
            let mut events = Vec::new();
            while let Some(e) = reg.poll_event() {
                events.push(e);
            }
            (outcome, events)
        };
        self.registrar_changed.notify_one();
        match outcome {
            RegisterOutcome::Challenge(challenges) => {
                let headers = challenges
                    .into_iter()
                    .map(|c| Header::WwwAuthenticate(c.into()))
                    .collect();
                tx.reply_with(StatusCode::Unauthorized, headers, None)
                    .await?;
            }
            RegisterOutcome::Ok(bindings) => {
                let headers = bindings
                    .into_iter()
                    .map(|(uri, left)| Header::Contact(format!("<{uri}>;expires={left}").into()))
                    .collect();
                tx.reply_with(StatusCode::OK, headers, None).await?;
            }
            RegisterOutcome::IntervalTooBrief(min) => {
                let headers = vec![Header::MinExpires(min.to_string().into())];
                tx.reply_with(StatusCode::IntervalTooBrief, headers, None)
                    .await?;
            }
            RegisterOutcome::Forbidden(reason) => {
                let headers = vec![Header::Warning(
                    format!("399 contact-hub \"{reason}\"").into(),
                )];
                tx.reply_with(StatusCode::Forbidden, headers, None).await?;
            }
            RegisterOutcome::BadRequest(reason) => {
                let headers = vec![Header::Warning(
                    format!("399 contact-hub \"{reason}\"").into(),
                )];
                tx.reply_with(StatusCode::BadRequest, headers, None).await?;
            }
        }
        for e in events {
            self.emit_registrar_event(e).await;
        }
        Ok(())
    }

    async fn emit_registrar_event(&self, e: RegistrarEvent) {
        let event = match e {
            RegistrarEvent::Registered {
                user,
                agent_id,
                contact,
            } => {
                info!(%agent_id, "desk phone registered");
                SipEvent::Registered {
                    user,
                    agent_id,
                    contact,
                }
            }
            RegistrarEvent::Unregistered { user, agent_id } => {
                info!(%agent_id, "desk phone unregistered");
                SipEvent::Unregistered { user, agent_id }
            }
        };
        self.emit(event).await;
    }

    /// Binding expiry on the real clock.
    async fn registrar_timer(self: Arc<Self>) {
        loop {
            let next = lock(&self.registrar).poll_timeout();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = self.registrar_changed.notified() => continue,
                _ = sleep => {}
            }
            let events: Vec<_> = {
                let mut reg = lock(&self.registrar);
                reg.handle_timeout(Instant::now());
                std::iter::from_fn(|| reg.poll_event()).collect()
            };
            for e in events {
                self.emit_registrar_event(e).await;
            }
        }
    }

    /// Who is calling: an allow-listed trunk, or a digest-authenticated trunk or desk phone.
    fn classify(
        &self,
        tx: &Transaction,
        now: Instant,
    ) -> Result<CallOrigin, (StatusCode, Vec<Header>)> {
        let forbidden = || {
            (
                StatusCode::Forbidden,
                vec![Header::Warning(
                    "399 contact-hub \"Source not allowed\"".into(),
                )],
            )
        };
        let Some((source, _)) = source_of(tx) else {
            return Err(forbidden());
        };
        if let Some(t) = self
            .config
            .inbound_trunks
            .iter()
            .find(|t| t.allows(source.ip()))
        {
            return Ok(CallOrigin::Trunk {
                name: t.name.clone(),
            });
        }
        let trunks = TrunkCredentials(&self.config.inbound_trunks);
        let authorization = header_value(&tx.original, "Proxy-Authorization");
        let claimed = match &authorization {
            Some(a) => crate::digest::parse_credentials(a).ok().map(|c| c.username),
            None => tx
                .original
                .from_header()
                .ok()
                .and_then(|f| f.uri().ok())
                .and_then(|u| u.auth.map(|a| a.user)),
        };
        let Some(claimed) = claimed else {
            return Err(forbidden());
        };
        let is_trunk = trunks.lookup(&claimed).is_some();
        if !is_trunk && self.credentials.lookup(&claimed).is_none() {
            // Nobody we could authenticate: refuse without a challenge.
            return Err(forbidden());
        }
        let store: &dyn CredentialStore = if is_trunk {
            &trunks
        } else {
            self.credentials.as_ref()
        };
        let reg = lock(&self.registrar);
        match reg.authenticate(now, "INVITE", authorization.as_deref(), store) {
            Ok((username, cred)) if is_trunk => {
                let _ = username;
                Ok(CallOrigin::Trunk {
                    name: cred.agent_id,
                })
            }
            Ok((username, cred)) => Ok(CallOrigin::User {
                username,
                agent_id: cred.agent_id,
            }),
            Err(RegisterOutcome::Challenge(ch)) => Err((
                StatusCode::ProxyAuthenticationRequired,
                ch.into_iter()
                    .map(|c| Header::ProxyAuthenticate(c.into()))
                    .collect(),
            )),
            Err(_) => Err(forbidden()),
        }
    }

    async fn on_invite(self: Arc<Self>, mut tx: Transaction) -> Result<(), SipError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Ok(tx.reply(StatusCode::ServiceUnavailable).await?);
        }
        // We send provisional responses unreliably only (RFC 3262 §4: refuse what we cannot do).
        if has_token(&tx.original, "Require", "100rel") {
            let headers = vec![Header::Unsupported("100rel".into())];
            return Ok(tx
                .reply_with(StatusCode::BadExtension, headers, None)
                .await?);
        }
        let origin = match self.classify(&tx, Instant::now()) {
            Ok(origin) => origin,
            Err((code, headers)) => {
                debug!(code = %code, "INVITE refused");
                return Ok(tx.reply_with(code, headers, None).await?);
            }
        };
        let req = tx.original.clone();
        let (from, to) = match (req.from_header(), req.to_header()) {
            (Ok(f), Ok(t)) => match (f.typed(), t.typed()) {
                (Ok(f), Ok(t)) => (
                    name_addr_from(f.display_name.clone(), &f.uri),
                    name_addr_from(t.display_name.clone(), &t.uri),
                ),
                _ => return Ok(tx.reply(StatusCode::BadRequest).await?),
            },
            _ => return Ok(tx.reply(StatusCode::BadRequest).await?),
        };
        let call_id = req
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let (state_tx, state_rx) = self.dialogs.new_dialog_state_channel();
        let dialog = match self.dialogs.get_or_create_server_invite(
            &tx,
            state_tx,
            None,
            Some(self.contact_uri()),
        ) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot create server dialog");
                return Ok(tx.reply(StatusCode::ServerInternalError).await?);
            }
        };
        let leg = LegId(self.next_id());
        lock(&self.legs).insert(
            leg,
            LegEntry {
                gone: CancellationToken::new(),
                leg: Leg::inbound(),
                dialog: dialog.clone(),
                call_id: call_id.clone(),
                local_sdp: None,
            },
        );
        tokio::spawn(self.clone().watch_dialog(leg, dialog.clone(), state_rx));
        info!(%leg, origin = ?origin_kind(&origin), "incoming call");
        self.emit(SipEvent::IncomingCall {
            leg,
            call_id,
            from,
            to,
            request_uri: req.uri.to_string(),
            origin,
            remote_sdp: body_text(&req.body),
        })
        .await;
        let mut driver = dialog;
        driver.handle(&mut tx).await?;
        Ok(())
    }

    /// Turn the dialog's state reports into leg signals and hub events, until it ends.
    async fn watch_dialog(
        self: Arc<Self>,
        leg: LegId,
        dialog: InviteDialog,
        mut states: DialogStateReceiver,
    ) {
        let direction = if dialog.role() == rsipstack::transaction::key::TransactionRole::Server {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        let mut probing = false;
        while let Some(state) = states.recv().await {
            match state {
                DialogState::Early(_, resp) if direction == Direction::Outbound => {
                    let code = u16::from(resp.status_code.clone());
                    let sdp = body_text(&resp.body);
                    self.signal(leg, Signal::Provisional(code), sdp).await;
                }
                DialogState::Confirmed(_, resp) => {
                    let sig = match direction {
                        Direction::Inbound => Signal::Acked,
                        Direction::Outbound => Signal::Answered,
                    };
                    self.signal(leg, sig, body_text(&resp.body)).await;
                    if !probing && self.leg_state(leg) == Some(crate::leg::LegState::Established) {
                        probing = true;
                        self.spawn_probe(leg, dialog.clone());
                    }
                }
                DialogState::Updated(_, req, handle) => {
                    self.on_remote_offer(leg, req, handle).await
                }
                DialogState::Info(_, req, handle) => {
                    let ct = req
                        .headers
                        .iter()
                        .find_map(|h| match h {
                            Header::ContentType(c) => Some(c.value().to_string()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    match parse_dtmf(&ct, &String::from_utf8_lossy(&req.body)) {
                        Some((digit, duration_ms)) => {
                            let _ = handle.reply(StatusCode::OK).await;
                            self.emit(SipEvent::Dtmf {
                                leg: self.public_id(leg),
                                digit,
                                duration_ms,
                            })
                            .await;
                        }
                        None => {
                            let _ = handle.reply(StatusCode::UnsupportedMediaType).await;
                        }
                    }
                }
                DialogState::Options(_, _, handle) => {
                    let _ = handle.reply(StatusCode::OK).await;
                }
                DialogState::Notify(_, _, handle)
                | DialogState::Refer(_, _, handle)
                | DialogState::Message(_, _, handle)
                | DialogState::Publish(_, _, handle) => {
                    let _ = handle.reply(StatusCode::MethodNotAllowed).await;
                }
                DialogState::Terminated(id, reason) => {
                    let sig = match (direction, reason) {
                        (Direction::Inbound, TerminatedReason::UacCancel) => Signal::RemoteCancel,
                        (Direction::Inbound, TerminatedReason::Timeout) => Signal::NoAck,
                        (_, TerminatedReason::UacBye | TerminatedReason::UasBye) => {
                            Signal::RemoteBye
                        }
                        (Direction::Outbound, TerminatedReason::UasOther(code))
                        | (Direction::Outbound, TerminatedReason::ProxyError(code))
                        | (Direction::Outbound, TerminatedReason::UacOther(code)) => {
                            Signal::FinalFailure(u16::from(code))
                        }
                        (Direction::Outbound, TerminatedReason::UasBusy) => {
                            Signal::FinalFailure(486)
                        }
                        (Direction::Outbound, TerminatedReason::UasDecline) => {
                            Signal::FinalFailure(603)
                        }
                        (Direction::Outbound, TerminatedReason::ProxyAuthRequired) => {
                            Signal::FinalFailure(407)
                        }
                        (Direction::Outbound, TerminatedReason::Timeout) => {
                            Signal::FinalFailure(408)
                        }
                        _ => Signal::DialogFailure,
                    };
                    self.signal(leg, sig, None).await;
                    self.finish(leg, Some(&id), &dialog);
                    return;
                }
                _ => {}
            }
        }
        self.finish(leg, None, &dialog);
    }

    fn leg_state(&self, leg: LegId) -> Option<crate::leg::LegState> {
        lock(&self.legs).get(&leg).map(|e| e.leg.state())
    }

    /// Without session timers a peer that vanishes without a BYE would keep its leg forever:
    /// ask it every `dialog_probe_secs` with an in-dialog OPTIONS; no answer (or 481) ends the
    /// leg with `Ended{by: Remote, cause: Failure}`.
    fn spawn_probe(self: &Arc<Self>, leg: LegId, dialog: InviteDialog) {
        let every = self.config.dialog_probe_secs;
        if every == 0 {
            return;
        }
        let Some(gone) = lock(&self.legs).get(&leg).map(|e| e.gone.clone()) else {
            return;
        };
        let core = self.clone();
        let alive = TaskCount::new(&self.leg_tasks);
        tokio::spawn(async move {
            let _alive = alive;
            loop {
                tokio::select! {
                    _ = gone.cancelled() => return,
                    _ = core.cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(every)) => {}
                }
                if core.leg_state(leg) != Some(crate::leg::LegState::Established) {
                    return;
                }
                let gone = match dialog.request(Method::Options, None, None).await {
                    Ok(Some(resp)) => matches!(u16::from(resp.status_code), 408 | 481),
                    Ok(None) => return,
                    Err(_) => true,
                };
                if gone {
                    debug!(%leg, "peer no longer answers in the dialog");
                    core.signal(leg, Signal::DialogFailure, None).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), dialog.bye()).await;
                    core.finish(leg, None, &dialog);
                    return;
                }
            }
        });
    }

    /// Apply a signal to the leg and emit what it produces.
    async fn signal(&self, leg: LegId, signal: Signal, sdp: Option<String>) -> Option<Outcome> {
        let outcome = {
            let mut legs = lock(&self.legs);
            let entry = legs.get_mut(&leg)?;
            entry.leg.signal(signal)
        }?;
        self.emit_outcome(leg, outcome, sdp).await;
        Some(outcome)
    }

    async fn emit_outcome(&self, leg: LegId, outcome: Outcome, sdp: Option<String>) {
        let parent = lock(&self.parent_of).get(&leg).copied();
        let (leg, outcome) = match parent {
            Some(parent) => match self.fork_outcome(parent, leg, outcome) {
                Some(o) => (parent, o),
                None => return,
            },
            None => (leg, outcome),
        };
        let event = match outcome {
            Outcome::Progress(code) => SipEvent::Progress {
                leg,
                code,
                early_sdp: sdp,
            },
            Outcome::Answered => SipEvent::Answered {
                leg,
                remote_sdp: sdp,
            },
            Outcome::Failed(code) => SipEvent::Failed { leg, code },
            Outcome::Ended { by, cause } => SipEvent::Ended { leg, by, cause },
            Outcome::ReinviteAnswered => SipEvent::ReinviteAnswered {
                leg,
                remote_sdp: sdp,
            },
            Outcome::ReinviteFailed => SipEvent::ReinviteFailed { leg, code: 0 },
        };
        if matches!(outcome, Outcome::Failed(_) | Outcome::Ended { .. }) {
            debug!(%leg, ?outcome, "leg ended");
        }
        self.emit(event).await;
    }

    /// What a fork branch's outcome means for the parent leg, if anything; cancels the
    /// losing branches when one answers.
    fn fork_outcome(&self, parent: LegId, branch: LegId, outcome: Outcome) -> Option<Outcome> {
        let mut losers = Vec::new();
        let result = {
            let mut forks = lock(&self.forks);
            let fork = forks.get_mut(&parent)?;
            match outcome {
                Outcome::Progress(_) if fork.winner.is_none() && !fork.done => Some(outcome),
                Outcome::Answered if fork.winner.is_none() && !fork.done => {
                    fork.winner = Some(branch);
                    losers.extend(fork.branches.iter().copied().filter(|b| *b != branch));
                    Some(outcome)
                }
                // A second phone answered too late: hang it up.
                Outcome::Answered => {
                    losers.push(branch);
                    None
                }
                Outcome::Failed(code) if fork.winner.is_none() => {
                    fork.failures.push(code);
                    if fork.failures.len() == fork.branches.len() && !fork.done {
                        fork.done = true;
                        Some(Outcome::Failed(best_failure(&fork.failures)))
                    } else {
                        None
                    }
                }
                Outcome::Ended { .. } if fork.winner == Some(branch) && !fork.done => {
                    fork.done = true;
                    Some(outcome)
                }
                Outcome::ReinviteAnswered | Outcome::ReinviteFailed
                    if fork.winner == Some(branch) =>
                {
                    Some(outcome)
                }
                _ => None,
            }
        };
        for loser in losers {
            self.drop_branch(loser);
        }
        result
    }

    /// End a fork branch quietly (CANCEL while ringing, BYE for a late answer).
    fn drop_branch(&self, branch: LegId) {
        let action = {
            let mut legs = lock(&self.legs);
            legs.get_mut(&branch).and_then(|e| {
                e.leg
                    .command(Command::Hangup)
                    .ok()
                    .map(|(a, _)| (a, e.dialog.clone()))
            })
        };
        match action {
            Some((Action::SendCancel, dialog)) => {
                tokio::spawn(async move {
                    let _ = dialog.cancel().await;
                });
            }
            Some((Action::SendBye, dialog)) => {
                tokio::spawn(async move {
                    let _ = dialog.bye().await;
                });
            }
            _ => {}
        }
    }

    /// The leg a hub command acts on: itself, or the answered branch of a fork.
    fn resolve(&self, leg: LegId, command: Command) -> Result<LegId, SipError> {
        match lock(&self.forks).get(&leg) {
            None => Ok(leg),
            Some(f) => f.winner.filter(|_| !f.done).ok_or(SipError::Leg(
                crate::leg::LegError::NotAllowed {
                    command,
                    direction: Direction::Outbound,
                    state: if f.done {
                        crate::leg::LegState::Ended
                    } else {
                        crate::leg::LegState::Calling
                    },
                },
            )),
        }
    }

    /// The id the hub knows for `leg` (the parent of a fork branch).
    fn public_id(&self, leg: LegId) -> LegId {
        lock(&self.parent_of).get(&leg).copied().unwrap_or(leg)
    }

    /// Hang up a fork that nobody answered yet: cancel every branch.
    async fn hangup_fork(&self, parent: LegId) -> Result<bool, SipError> {
        let branches = {
            let mut forks = lock(&self.forks);
            match forks.get_mut(&parent) {
                None => return Ok(false),
                Some(f) if f.winner.is_some() => return Ok(false),
                Some(f) if f.done => return Err(SipError::UnknownLeg(parent)),
                Some(f) => {
                    f.done = true;
                    f.branches.clone()
                }
            }
        };
        for b in branches {
            self.drop_branch(b);
        }
        self.emit(SipEvent::Ended {
            leg: parent,
            by: crate::leg::Party::Local,
            cause: crate::leg::EndCause::Cancelled,
        })
        .await;
        Ok(true)
    }

    /// Forget a dialog that is over: the leg entry, pending offers and the stack's dialog.
    fn finish(&self, leg: LegId, id: Option<&DialogId>, dialog: &InviteDialog) {
        let parent = lock(&self.parent_of).remove(&leg);
        if let Some(parent) = parent {
            let last_branch = !lock(&self.parent_of).values().any(|p| *p == parent);
            if last_branch {
                lock(&self.forks).remove(&parent);
            }
        }
        let removed = lock(&self.legs).remove(&leg);
        if let Some(entry) = &removed {
            entry.gone.cancel();
            if !entry.leg.is_ended() {
                debug!(%leg, "dialog gone before its leg ended");
            }
        }
        lock(&self.offers).retain(|_, o| o.leg != leg);
        if let Some(id) = id {
            self.dialogs.remove_dialog(id);
        }
        self.dialogs.remove_dialog(&dialog.id());
    }

    async fn on_remote_offer(
        self: &Arc<Self>,
        leg: LegId,
        req: rsipstack::sip::Request,
        handle: rsipstack::dialog::dialog::TransactionHandle,
    ) {
        let Some(sdp) = body_text(&req.body) else {
            // A re-INVITE without an offer: we offer what we have (the answer rides the ACK).
            let local = lock(&self.legs).get(&leg).and_then(|e| e.local_sdp.clone());
            match local {
                Some(sdp) => {
                    let _ = handle
                        .respond(StatusCode::OK, Some(sdp_headers()), Some(sdp.into_bytes()))
                        .await;
                }
                None => {
                    let _ = handle.reply(StatusCode::OK).await;
                }
            }
            return;
        };
        let offer = OfferId(self.next_id());
        lock(&self.offers).insert(
            offer,
            PendingOffer {
                leg,
                handle: handle.clone(),
            },
        );
        let core = self.clone();
        let timeout = Duration::from_secs(self.config.offer_timeout_secs);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let late = lock(&core.offers).remove(&offer);
            if let Some(p) = late {
                warn!(leg = %p.leg, "remote offer not answered in time: 488");
                let _ = p.handle.reply(StatusCode::NotAcceptableHere).await;
            }
        });
        let leg = self.public_id(leg);
        self.emit(SipEvent::RemoteOffer { leg, offer, sdp }).await;
    }

    /// Check a command against the leg state and record it; returns the dialog to act on.
    async fn command(
        &self,
        leg: LegId,
        command: Command,
    ) -> Result<(LegId, Action, InviteDialog), SipError> {
        let leg = self.resolve(leg, command)?;
        let (action, outcome, dialog) = {
            let mut legs = lock(&self.legs);
            let entry = legs.get_mut(&leg).ok_or(SipError::UnknownLeg(leg))?;
            let (action, outcome) = entry.leg.command(command)?;
            (action, outcome, entry.dialog.clone())
        };
        if let Some(outcome) = outcome {
            self.emit_outcome(leg, outcome, None).await;
        }
        Ok((leg, action, dialog))
    }

    async fn perform(
        self: &Arc<Self>,
        leg: LegId,
        action: Action,
        dialog: InviteDialog,
        reason: Option<String>,
    ) -> Result<(), SipError> {
        match action {
            Action::SendReject(code) => {
                let reason =
                    reason.map(|r| format!("SIP;cause={code};text=\"{}\"", r.replace('"', "'")));
                dialog.reject(Some(status(code)), reason)?;
            }
            Action::SendBye => {
                let core = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = dialog.bye().await {
                        debug!(%leg, error = %e, "BYE failed");
                    }
                    // Our BYE ends the dialog whatever the answer.
                    core.finish(leg, None, &dialog);
                });
            }
            Action::SendCancel => {
                tokio::spawn(async move {
                    if let Err(e) = dialog.cancel().await {
                        debug!(%leg, error = %e, "CANCEL failed");
                    }
                });
            }
            Action::SendProvisional | Action::SendAnswer | Action::SendReinvite => {}
        }
        Ok(())
    }

    async fn originate(
        self: &Arc<Self>,
        target: Target,
        caller: Caller,
        sdp: String,
    ) -> Result<LegId, SipError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(SipError::Shutdown);
        }
        let contact = self.contact_uri();
        let parse_uri = |s: &str| -> Result<rsipstack::sip::Uri, SipError> {
            s.try_into().map_err(|_| SipError::BadTarget(s.to_string()))
        };
        let mut opt = InviteOption {
            caller_display_name: caller.display.clone(),
            content_type: Some("application/sdp".into()),
            offer: Some(sdp.clone().into_bytes()),
            contact: contact.clone(),
            support_prack: true,
            ..Default::default()
        };
        let user = if caller.user.is_empty() {
            "hub".to_string()
        } else {
            caller.user.clone()
        };
        let mut branches = Vec::new();
        match &target {
            Target::User(username) | Target::UserAll(username) => {
                let mut bindings = lock(&self.registrar).lookup(username, Instant::now());
                if bindings.is_empty() {
                    return Err(SipError::NotRegistered(username.clone()));
                }
                if matches!(target, Target::User(_)) {
                    bindings.truncate(1);
                }
                opt.caller = parse_uri(&format!("sip:{user}@{}", self.contact_host))?;
                for binding in bindings {
                    let mut branch = opt.clone();
                    branch.callee = parse_uri(&binding.contact)?;
                    let transport = match binding.transport {
                        Transport::Udp => rsipstack::sip::Transport::Udp,
                        Transport::Tcp => rsipstack::sip::Transport::Tcp,
                        Transport::Tls => rsipstack::sip::Transport::Tls,
                    };
                    // The address the REGISTER came from: right behind NAT, unlike the Contact.
                    branch.destination = Some(SipAddr {
                        r#type: Some(transport),
                        addr: binding.source.into(),
                    });
                    branches.push(branch);
                }
            }
            Target::Uri(uri) => {
                opt.callee = parse_uri(uri)?;
                opt.caller = parse_uri(&format!("sip:{user}@{}", self.contact_host))?;
                branches.push(opt);
            }
            Target::Trunk { trunk, number } => {
                let t = self
                    .config
                    .outbound_trunk(trunk)
                    .ok_or_else(|| SipError::UnknownTrunk(trunk.clone()))?;
                let domain = t.from_domain.clone().unwrap_or_else(|| {
                    t.proxy
                        .rsplit_once(':')
                        .map(|(h, _)| h.to_string())
                        .unwrap_or(t.proxy.clone())
                });
                if number.is_empty()
                    || !number
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+*#-.".contains(c))
                {
                    return Err(SipError::BadTarget(number.clone()));
                }
                let user = if caller.user.is_empty() {
                    t.default_caller.clone().unwrap_or(user)
                } else {
                    user
                };
                opt.callee = parse_uri(&format!("sip:{number}@{domain}"))?;
                opt.caller = parse_uri(&format!("sip:{user}@{domain}"))?;
                opt.destination = Some(resolve_proxy(&t.proxy, t.transport).await?);
                if let (Some(u), Some(p)) = (&t.username, &t.password) {
                    opt.credential = Some(Credential {
                        username: u.clone(),
                        password: p.clone(),
                        realm: None,
                        auth_username: t.auth_username.clone(),
                    });
                }
                branches.push(opt);
            }
        }
        if branches.len() == 1 {
            let opt = branches.pop().expect("one branch");
            return self.start_invite(opt, sdp, None);
        }
        // Several phones: ring them all, the first answer wins (RFC 3261 §16.7 style forking
        // done by us, the B2BUA). The hub sees one leg, the parent.
        let parent = LegId(self.next_id());
        lock(&self.forks).insert(
            parent,
            Fork {
                branches: Vec::new(),
                winner: None,
                failures: Vec::new(),
                done: false,
            },
        );
        let mut started = Vec::new();
        for opt in branches {
            match self.start_invite(opt, sdp.clone(), Some(parent)) {
                Ok(b) => started.push(b),
                Err(e) => debug!(%parent, error = %e, "fork branch not started"),
            }
        }
        if started.is_empty() {
            lock(&self.forks).remove(&parent);
            return Err(SipError::Stack("no branch could be started".into()));
        }
        if let Some(f) = lock(&self.forks).get_mut(&parent) {
            f.branches = started;
        }
        Ok(parent)
    }

    /// Send one INVITE as its own leg (a branch of `parent` when forking).
    fn start_invite(
        self: &Arc<Self>,
        opt: InviteOption,
        sdp: String,
        parent: Option<LegId>,
    ) -> Result<LegId, SipError> {
        let (state_tx, state_rx) = self.dialogs.new_dialog_state_channel();
        let (dialog, invite) = self.dialogs.do_invite_async(opt, state_tx)?;
        let leg = LegId(self.next_id());
        if let Some(parent) = parent {
            lock(&self.parent_of).insert(leg, parent);
        }
        let call_id = dialog.id().call_id.clone();
        lock(&self.legs).insert(
            leg,
            LegEntry {
                gone: CancellationToken::new(),
                leg: Leg::outbound(),
                dialog: dialog.clone(),
                call_id,
                local_sdp: Some(sdp),
            },
        );
        info!(%leg, "outbound call");
        tokio::spawn(self.clone().watch_dialog(leg, dialog.clone(), state_rx));
        let core = self.clone();
        tokio::spawn(async move {
            // The INVITE's own outcome covers what the state channel does not report: no
            // answer at all (408) and transport errors (503).
            let signal = match invite.await {
                Ok(Ok((_, Some(resp))))
                    if resp.status_code.kind() == StatusCodeKind::Successful =>
                {
                    return
                }
                Ok(Ok((_, Some(resp)))) => Signal::FinalFailure(u16::from(resp.status_code)),
                Ok(Ok((_, None))) => Signal::FinalFailure(408),
                Ok(Err(e)) => {
                    debug!(%leg, error = %e, "INVITE failed");
                    Signal::FinalFailure(503)
                }
                Err(_) => Signal::FinalFailure(500),
            };
            core.signal(leg, signal, None).await;
            core.finish(leg, None, &dialog);
        });
        Ok(leg)
    }

    async fn trunk_registration(self: Arc<Self>, name: String) {
        let Some(t) = self.config.outbound_trunk(&name).cloned() else {
            return;
        };
        let domain = t.from_domain.clone().unwrap_or_else(|| {
            t.proxy
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or(t.proxy.clone())
        });
        let credential = Credential {
            username: t.username.clone().unwrap_or_default(),
            password: t.password.clone().unwrap_or_default(),
            realm: None,
            auth_username: t.auth_username.clone(),
        };
        let server: rsipstack::sip::Uri = match format!("sip:{domain}").as_str().try_into() {
            Ok(u) => u,
            Err(_) => {
                warn!(trunk = %name, "bad trunk domain; not registering");
                return;
            }
        };
        let mut schedule = RegistrationSchedule::new(Instant::now());
        let mut registration = Registration::new(self.endpoint.clone(), Some(credential));
        let mut registered = false;
        loop {
            tokio::select! {
                _ = self.registrations_stop.cancelled() => break,
                _ = tokio::time::sleep_until(schedule.poll_timeout().into()) => {}
            }
            match resolve_proxy(&t.proxy, t.transport).await.and_then(|a| {
                a.get_socketaddr()
                    .map_err(|e| SipError::Stack(e.to_string()))
            }) {
                Ok(addr) => registration.outbound_proxy = Some(addr),
                Err(e) => {
                    warn!(trunk = %name, error = %e, "trunk proxy does not resolve");
                    schedule.on_failure(Instant::now());
                    continue;
                }
            }
            let attempt = tokio::time::timeout(
                Duration::from_secs(40),
                registration.register(server.clone(), Some(t.register_expires)),
            )
            .await;
            let now = Instant::now();
            match attempt {
                Ok(Ok(resp)) if resp.status_code.kind() == StatusCodeKind::Successful => {
                    let granted = registration.expires().max(1);
                    schedule.on_success(now, granted);
                    registered = true;
                    info!(trunk = %name, expires = granted, "trunk registered");
                    self.emit(SipEvent::TrunkRegistered {
                        trunk: name.clone(),
                        expires: granted,
                    })
                    .await;
                }
                other => {
                    let code = match &other {
                        Ok(Ok(resp)) => Some(u16::from(resp.status_code.clone())),
                        _ => None,
                    };
                    schedule.on_failure(now);
                    warn!(trunk = %name, ?code, failures = schedule.failures(), "trunk registration failed");
                    self.emit(SipEvent::TrunkRegistrationFailed {
                        trunk: name.clone(),
                        code,
                    })
                    .await;
                }
            }
        }
        if registered {
            let _ = tokio::time::timeout(
                Duration::from_secs(3),
                registration.register(server, Some(0)),
            )
            .await;
        }
    }
}

/// The final status to report when every branch of a fork failed (RFC 3261 §16.7 step 6,
/// simplified): a 6xx wins, then busy, then the lowest class.
fn best_failure(codes: &[u16]) -> u16 {
    if let Some(c) = codes.iter().find(|c| **c >= 600) {
        return *c;
    }
    if codes.contains(&486) {
        return 486;
    }
    codes.iter().copied().min().unwrap_or(480)
}

fn origin_kind(o: &CallOrigin) -> &'static str {
    match o {
        CallOrigin::Trunk { .. } => "trunk",
        CallOrigin::User { .. } => "desk phone",
    }
}

async fn resolve_proxy(proxy: &str, transport: TrunkTransport) -> Result<SipAddr, SipError> {
    let with_port = if proxy.contains(':') {
        proxy.to_string()
    } else {
        format!("{proxy}:5060")
    };
    let addr = tokio::net::lookup_host(&with_port)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| SipError::BadTarget(proxy.to_string()))?;
    let t = match transport {
        TrunkTransport::Udp => rsipstack::sip::Transport::Udp,
        TrunkTransport::Tcp => rsipstack::sip::Transport::Tcp,
        TrunkTransport::Tls => rsipstack::sip::Transport::Tls,
    };
    Ok(SipAddr {
        r#type: Some(t),
        addr: addr.into(),
    })
}

impl SipHandle {
    /// The UDP address the endpoint listens on (TCP uses the same port when enabled).
    pub fn local_addr(&self) -> SocketAddr {
        self.core.udp_addr
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.core.tcp_addr
    }

    /// Send 180 Ringing, or 183 Session Progress with early media when `early_sdp` is given.
    pub async fn ringing(&self, leg: LegId, early_sdp: Option<String>) -> Result<(), SipError> {
        let (_, _, dialog) = self.core.command(leg, Command::Ringing).await?;
        let headers = early_sdp.as_ref().map(|_| sdp_headers());
        dialog.ringing(headers, early_sdp.map(String::into_bytes))?;
        Ok(())
    }

    /// Answer an inbound leg with 200 OK and our SDP; the stack retransmits it until the ACK.
    pub async fn answer(&self, leg: LegId, local_sdp: String) -> Result<(), SipError> {
        let (_, _, dialog) = self.core.command(leg, Command::Answer).await?;
        if let Some(e) = lock(&self.core.legs).get_mut(&leg) {
            e.local_sdp = Some(local_sdp.clone());
        }
        dialog.accept(Some(sdp_headers()), Some(local_sdp.into_bytes()))?;
        Ok(())
    }

    /// Refuse an inbound leg (`code` 300..=699, e.g. 486, 480, 603), with an optional Reason text.
    pub async fn reject(
        &self,
        leg: LegId,
        code: u16,
        reason: Option<String>,
    ) -> Result<(), SipError> {
        if !(300..700).contains(&code) {
            return Err(SipError::BadStatus(code));
        }
        let (leg, action, dialog) = self.core.command(leg, Command::Reject(code)).await?;
        self.core.perform(leg, action, dialog, reason).await
    }

    /// End a leg in whatever state: BYE when up, CANCEL when our INVITE is ringing, 480 when
    /// an inbound call was never answered. `Ended{by: Local}` is emitted at once.
    pub async fn hangup(&self, leg: LegId) -> Result<(), SipError> {
        if self.core.hangup_fork(leg).await? {
            return Ok(());
        }
        let (leg, action, dialog) = self.core.command(leg, Command::Hangup).await?;
        self.core.perform(leg, action, dialog, None).await
    }

    /// Call a registered phone, a URI or a number through a trunk. Progress arrives as events.
    pub async fn originate(
        &self,
        target: Target,
        caller: Caller,
        local_sdp: String,
    ) -> Result<LegId, SipError> {
        self.core.originate(target, caller, local_sdp).await
    }

    /// Re-INVITE an established leg with new SDP (hold: `a=sendonly`/`a=inactive`; unhold:
    /// `a=sendrecv`). The result comes as `ReinviteAnswered` or `ReinviteFailed`.
    pub async fn reinvite(&self, leg: LegId, sdp: String) -> Result<(), SipError> {
        let (branch, _, dialog) = self.core.command(leg, Command::Reinvite).await?;
        let core = self.core.clone();
        tokio::spawn(async move {
            let result = dialog
                .reinvite(Some(sdp_headers()), Some(sdp.clone().into_bytes()))
                .await;
            let (ok, code, remote) = match &result {
                Ok(Some(resp)) if resp.status_code.kind() == StatusCodeKind::Successful => {
                    (true, 200, body_text(&resp.body))
                }
                Ok(Some(resp)) => (false, u16::from(resp.status_code.clone()), None),
                Ok(None) => (false, 408, None),
                Err(_) => (false, 503, None),
            };
            let outcome = {
                let mut legs = lock(&core.legs);
                match legs.get_mut(&branch) {
                    Some(e) => {
                        if ok {
                            e.local_sdp = Some(sdp);
                        }
                        e.leg.signal(Signal::ReinviteResult { ok })
                    }
                    None => None,
                }
            };
            match outcome {
                Some(Outcome::ReinviteAnswered) => {
                    core.emit(SipEvent::ReinviteAnswered {
                        leg,
                        remote_sdp: remote,
                    })
                    .await
                }
                Some(Outcome::ReinviteFailed) => {
                    core.emit(SipEvent::ReinviteFailed { leg, code }).await
                }
                _ => {}
            }
        });
        Ok(())
    }

    /// Answer a `RemoteOffer` with our SDP (200 OK).
    pub async fn answer_offer(&self, offer: OfferId, sdp: String) -> Result<(), SipError> {
        let pending = lock(&self.core.offers)
            .remove(&offer)
            .ok_or(SipError::UnknownOffer)?;
        if let Some(e) = lock(&self.core.legs).get_mut(&pending.leg) {
            e.local_sdp = Some(sdp.clone());
        }
        pending
            .handle
            .respond(StatusCode::OK, Some(sdp_headers()), Some(sdp.into_bytes()))
            .await
            .map_err(|_| SipError::UnknownOffer)
    }

    /// Refuse a `RemoteOffer` (e.g. 488 Not Acceptable Here); the session stays as it was.
    pub async fn reject_offer(&self, offer: OfferId, code: u16) -> Result<(), SipError> {
        if !(400..700).contains(&code) {
            return Err(SipError::BadStatus(code));
        }
        let pending = lock(&self.core.offers)
            .remove(&offer)
            .ok_or(SipError::UnknownOffer)?;
        pending
            .handle
            .reply(status(code))
            .await
            .map_err(|_| SipError::UnknownOffer)
    }

    /// The registered contacts of a user, newest first.
    pub fn registered_contacts(&self, user: &str) -> Vec<String> {
        lock(&self.core.registrar)
            .lookup(user, Instant::now())
            .into_iter()
            .map(|b| b.contact)
            .collect()
    }

    pub fn leg_info(&self, leg: LegId) -> Option<LegInfo> {
        let inner = match lock(&self.core.forks).get(&leg) {
            Some(f) => f.winner.or_else(|| f.branches.first().copied())?,
            None => leg,
        };
        lock(&self.core.legs).get(&inner).map(|e| LegInfo {
            leg,
            state: e.leg.state(),
            call_id: e.call_id.clone(),
        })
    }

    /// Every leg the endpoint tracks (fork branches included), for diagnostics.
    pub fn legs(&self) -> Vec<LegInfo> {
        lock(&self.core.legs)
            .iter()
            .map(|(leg, e)| LegInfo {
                leg: *leg,
                state: e.leg.state(),
                call_id: e.call_id.clone(),
            })
            .collect()
    }

    /// Per-leg helper tasks still running (0 when every call is over).
    pub fn leg_tasks(&self) -> u64 {
        self.core.leg_tasks.load(Ordering::Relaxed)
    }

    /// Legs the endpoint still tracks.
    pub fn active_legs(&self) -> usize {
        lock(&self.core.legs).len()
    }

    /// Dialogs in rsipstack's dialog layer (0 when every call is cleaned up).
    pub fn active_dialogs(&self) -> usize {
        self.core.dialogs.len()
    }

    /// Transactions still running in the stack (they linger up to 64*T1 after the final
    /// response, by RFC 3261 timers).
    pub fn active_transactions(&self) -> usize {
        self.core.endpoint.get_stats().running_transactions
    }

    /// rsipstack's own table sizes: (running transactions, finished transactions kept for
    /// retransmission absorption, 2xx waiting for ACK).
    pub fn stack_stats(&self) -> (usize, usize, usize) {
        let s = self.core.endpoint.get_stats();
        (
            s.running_transactions,
            s.finished_transactions,
            s.waiting_ack,
        )
    }

    /// Keys of the running transactions (diagnostics).
    pub fn transaction_keys(&self) -> Vec<String> {
        self.core
            .endpoint
            .get_running_transactions()
            .unwrap_or_default()
            .iter()
            .map(|k| k.to_string())
            .collect()
    }

    /// Requests the boundary answered with 400/501/513, and datagrams it dropped.
    pub fn refused_messages(&self) -> (u64, u64) {
        (
            self.core.wire_stats.answered.load(Ordering::Relaxed),
            self.core.wire_stats.dropped.load(Ordering::Relaxed),
        )
    }

    /// Hang up every leg, unregister from carriers, stop listening. New INVITEs get 503 meanwhile.
    pub async fn shutdown(&self) {
        let core = &self.core;
        core.shutting_down.store(true, Ordering::Relaxed);
        let legs: Vec<LegId> = lock(&core.legs).keys().copied().collect();
        for leg in legs {
            let _ = self.hangup(leg).await;
        }
        core.registrations_stop.cancel();
        // Let BYEs/CANCELs and the un-REGISTERs go out.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline
            && (!core.dialogs.is_empty() || !lock(&core.legs).is_empty())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let registration_tasks: Vec<JoinHandle<()>> = {
            let mut tasks = lock(&core.tasks);
            tasks.drain(3..).collect()
        };
        for t in registration_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(4), t).await;
        }
        core.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> = lock(&core.tasks).drain(..).collect();
        for t in tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_bodies() {
        assert_eq!(
            parse_dtmf("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some(('5', Some(160)))
        );
        assert_eq!(
            parse_dtmf(
                "Application/DTMF-Relay; charset=x",
                "Signal= #\nDuration=abc"
            ),
            Some(('#', None))
        );
        assert_eq!(parse_dtmf("application/dtmf", "a"), Some(('A', None)));
        assert_eq!(parse_dtmf("application/dtmf-relay", "Signal=X"), None);
        assert_eq!(parse_dtmf("application/dtmf-relay", ""), None);
        assert_eq!(parse_dtmf("text/plain", "5"), None);
    }

    #[test]
    fn best_failure_of_a_fork() {
        assert_eq!(best_failure(&[480, 486]), 486);
        assert_eq!(best_failure(&[486, 603]), 603);
        assert_eq!(best_failure(&[503, 408]), 408);
        assert_eq!(best_failure(&[]), 480);
    }
}
