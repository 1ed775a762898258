//! The call manager: one task owning every call — its SIP legs and media legs, its IVR or
//! queue experience, the agent it rings or is bridged to — driven by SIP events, media events,
//! the ACD's offers, agents' call-control requests and time.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use channel_media::{
    ConferenceId, Direction, LegConfig, LegId as MediaLeg, MediaEngine, MediaEvent, PlayItem,
    PlaySpec, Prompts, RecordingId, Role,
};
use channel_sip::{CallOrigin, Caller, LegId as SipLeg, SipEvent, SipHandle, Target};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::prompts::specs;
use super::Request;
use crate::acd::types::{ClosedHandling, ContactSpec, Millis, SkillSet};
use crate::config::Config;
use crate::domain::{now_ms, Channel, ContactState, Direction as ContactDirection, IdentityKind};
use crate::hub::{ContactOp, HubEvent, HubHandle};
use crate::ivr::{
    CallAttributes, CallerInfo, IvrAction, IvrConfig, IvrInput, IvrSession, Language, Playback,
    PromptRef, QueueAction, QueueExperience, QueueExperienceConfig, QueueInput,
};
use crate::push::AgentPush;
use crate::server::Routing;
use crate::store::{ContactEventRow, NewContact, NewInbound, Store};

/// What an agent may do with their call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOp {
    Hold,
    Unhold,
    Mute,
    Unmute,
    Dtmf(String),
    Hangup,
    /// Blind transfer.
    Transfer(TransferTarget),
    /// Attended transfer, step 1: the customer waits on hold while the agent talks to the target.
    Consult(TransferTarget),
    /// Attended transfer, step 2: the customer and the target are connected; the agent leaves.
    CompleteTransfer,
    /// Back to the customer; the target is hung up.
    CancelConsult,
    /// Customer, agent and the consulted party together.
    Conference,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    Queue(String),
    Agent(i64),
    Number(String),
}

pub(crate) struct Deps {
    pub store: Store,
    pub config: Arc<Config>,
    pub routing: Arc<Routing>,
    pub hub: HubHandle,
    pub push: Arc<AgentPush>,
    pub sip: SipHandle,
    pub media: MediaEngine,
    pub prompts: Prompts,
    pub recordings: PathBuf,
    pub ivr: Option<Arc<IvrConfig>>,
    /// The outbound trunk for calls to numbers (callbacks, transfers), if any.
    pub trunk: Option<String>,
}

/// The IVR flows in `<rules dir>/ivr/ivr.toml`; without them calls go straight to their queue.
pub(crate) fn load_ivr(routing: &Routing) -> Option<Arc<IvrConfig>> {
    let path = routing.dir.join("ivr").join("ivr.toml");
    if !path.is_file() {
        tracing::warn!(path = %path.display(), "no IVR flows: calls go straight to their queue");
        return None;
    }
    match IvrConfig::load_path(&path, &routing.rules()) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "the IVR flows are invalid: calls go straight to their queue");
            None
        }
    }
}

/// Recordings the previous run did not finish: their WAV is readable (its header is rewritten
/// every second), so the call record gets its duration from the file.
pub(crate) async fn finish_interrupted_recordings(store: &Store) {
    let Ok(list) = store.unfinished_recordings().await else {
        return;
    };
    for r in list {
        let bytes = std::fs::metadata(&r.path)
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        // 8 kHz, 16-bit, two channels, after a 44-byte header.
        let duration_ms = ((bytes - 44).max(0) * 1000) / (8000 * 2 * 2);
        if let Err(e) = store.finish_recording(r.id, duration_ms, bytes).await {
            tracing::error!(error = %e, "cannot complete an interrupted recording");
        }
    }
}

type CallId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegRole {
    Customer,
    Agent,
    /// An agent's phone ringing for an offer.
    Ringing,
    /// The other party of a consultation or a transfer to a number.
    Consult,
}

/// One side of a call: its media leg, and its SIP leg (none for a browser's WebRTC leg, and
/// none yet for a customer we have not dialled yet).
#[derive(Debug, Clone, Copy)]
struct Party {
    sip: Option<SipLeg>,
    media: MediaLeg,
}

#[derive(Debug, Clone)]
struct Consult {
    target: TransferTarget,
    party: Party,
    answered: bool,
    /// A blind transfer to a number: connect as soon as it answers.
    blind: bool,
}

enum Stage {
    Ivr(Box<IvrSession>),
    Queued(Box<QueueExperience>),
    Connected,
    /// Prompting, then recording a message until `until`.
    Voicemail {
        queue: String,
        recording: Option<(RecordingId, i64, PathBuf)>,
        until: Option<Millis>,
    },
    /// Connected to a number, no agent in the call any more.
    External,
    /// A last prompt plays; then the call is hung up.
    Leaving,
    /// Click-to-dial: the agent's leg first, then the customer's number.
    Dialing {
        number: String,
    },
}

struct Call {
    contact: i64,
    customer: Party,
    caller: String,
    called: String,
    language: Language,
    customer_id: Option<i64>,
    stage: Stage,
    /// The spec the ACD got (for transfers and callbacks that keep the place).
    spec: Option<ContactSpec>,
    ringing: Option<(i64, Party)>,
    agent: Option<(i64, Party)>,
    consult: Option<Consult>,
    held_since: Option<Millis>,
    hold_ms: i64,
    muted: bool,
    recording: Option<(RecordingId, i64)>,
    conference: bool,
    /// The agent's browser's last view of its media (RTCPeerConnection stats), for the record.
    browser_stats: Option<Value>,
}

pub(crate) struct Manager {
    d: Deps,
    calls: HashMap<CallId, Call>,
    next_id: CallId,
    sip_legs: HashMap<SipLeg, (CallId, LegRole)>,
    media_legs: HashMap<MediaLeg, CallId>,
    by_contact: HashMap<i64, CallId>,
    timers: BTreeSet<(Millis, CallId)>,
    deadlines: HashMap<CallId, Millis>,
    /// Agents' desk-phone usernames.
    phones: HashMap<i64, String>,
    /// The endpoint each agent chose, whose desk phone is registered, whose console is open.
    endpoints: HashMap<i64, Endpoint>,
    registered: std::collections::HashSet<i64>,
    online: std::collections::HashSet<i64>,
    /// WebRTC legs whose ICE and DTLS are up.
    webrtc_up: std::collections::HashSet<MediaLeg>,
    events: mpsc::UnboundedSender<ContactEventRow>,
}

/// Where an agent takes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// The registered desk phone rings.
    Phone,
    /// The console's softphone (WebRTC) rings.
    Browser,
}

async fn event_writer(store: Store, mut rx: mpsc::UnboundedReceiver<ContactEventRow>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 500).await > 0 {
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = store.append_contact_events(&batch).await {
            tracing::error!(error = %e, events = batch.len(), "storing call events failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        batch.clear();
    }
}

fn e164(raw: Option<&str>, region: &str) -> String {
    let raw = raw.unwrap_or("").trim();
    crate::identity::normalize_phone(raw, region).unwrap_or_else(|_| raw.to_string())
}

impl Manager {
    pub(crate) fn new(d: Deps) -> Manager {
        let (events, rx) = mpsc::unbounded_channel();
        tokio::spawn(event_writer(d.store.clone(), rx));
        Manager {
            d,
            calls: HashMap::new(),
            next_id: 1,
            sip_legs: HashMap::new(),
            media_legs: HashMap::new(),
            by_contact: HashMap::new(),
            timers: BTreeSet::new(),
            deadlines: HashMap::new(),
            phones: HashMap::new(),
            endpoints: HashMap::new(),
            registered: Default::default(),
            online: Default::default(),
            webrtc_up: Default::default(),
            events,
        }
    }

    fn event(&self, contact: i64, kind: &str, data: Value) {
        let _ = self.events.send(ContactEventRow {
            contact_id: contact,
            at: now_ms(),
            kind: kind.to_string(),
            data,
        });
    }

    pub(crate) async fn run(
        mut self,
        mut sip_rx: mpsc::Receiver<SipEvent>,
        mut media_rx: mpsc::UnboundedReceiver<MediaEvent>,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut hub_rx: broadcast::Receiver<HubEvent>,
    ) {
        self.load_phones().await;
        // The SIP stack must never wait on this task: its events go through an unbounded relay.
        let (sip_tx, mut sip_events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(e) = sip_rx.recv().await {
                if sip_tx.send(e).is_err() {
                    return;
                }
            }
        });
        let every = Duration::from_secs(self.d.config.voice.position_every_secs.max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                e = sip_events.recv() => match e {
                    Some(e) => self.on_sip(e).await,
                    None => return,
                },
                e = media_rx.recv() => match e {
                    Some(e) => self.on_media(e).await,
                    None => return,
                },
                r = requests.recv() => match r {
                    Some(r) => self.on_request(r).await,
                    None => return,
                },
                e = hub_rx.recv() => match e {
                    Ok(e) => self.on_hub(e).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the call manager fell behind the hub's events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => self.positions().await,
                _ = sleep => self.on_timers().await,
            }
        }
    }

    async fn load_phones(&mut self) {
        if let Ok(accounts) = self.d.store.sip_accounts().await {
            self.phones = accounts
                .into_iter()
                .map(|a| (a.user_id, a.username))
                .collect();
        }
    }

    // ---- timers ----------------------------------------------------------------------------

    fn rearm(&mut self, id: CallId) {
        let next = self.calls.get(&id).and_then(|c| match &c.stage {
            Stage::Ivr(s) => s.poll_timeout(),
            Stage::Queued(q) => q.poll_timeout(),
            Stage::Voicemail { until, .. } => *until,
            _ => None,
        });
        if let Some(old) = self.deadlines.remove(&id) {
            self.timers.remove(&(old, id));
        }
        if let Some(t) = next {
            self.timers.insert((t, id));
            self.deadlines.insert(id, t);
        }
    }

    async fn on_timers(&mut self) {
        let now = now_ms();
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            self.deadlines.remove(&id);
            let voicemail_over = match self.calls.get_mut(&id).map(|c| &mut c.stage) {
                Some(Stage::Ivr(s)) => {
                    s.handle_timeout(now);
                    false
                }
                Some(Stage::Queued(q)) => {
                    q.handle_timeout(now);
                    false
                }
                Some(Stage::Voicemail { until: Some(_), .. }) => true,
                _ => false,
            };
            if voicemail_over {
                self.finish_voicemail(id).await;
                self.hang_up_customer(id).await;
            } else {
                self.drive(id).await;
            }
        }
    }

    // ---- SIP ---------------------------------------------------------------------------------

    async fn on_sip(&mut self, e: SipEvent) {
        match e {
            SipEvent::IncomingCall {
                leg,
                from,
                to,
                origin,
                remote_sdp,
                ..
            } => self.incoming(leg, from, to, origin, remote_sdp).await,
            SipEvent::Answered { leg, remote_sdp } => self.answered(leg, remote_sdp).await,
            SipEvent::Failed { leg, code } => self.failed(leg, code).await,
            SipEvent::Ended { leg, by, cause } => self.ended(leg, by, cause).await,
            SipEvent::Dtmf { leg, digit, .. } => {
                if let Some(&(id, LegRole::Customer)) = self.sip_legs.get(&leg) {
                    self.digit(id, digit).await;
                }
            }
            SipEvent::RemoteOffer { leg, offer, sdp } => {
                let Some(&(id, _)) = self.sip_legs.get(&leg) else {
                    let _ = self.d.sip.reject_offer(offer, 481).await;
                    return;
                };
                let media = self.media_of(id, leg);
                match media {
                    Some(m) => match self.d.media.answer(m, sdp).await {
                        Ok(answer) => {
                            let _ = self.d.sip.answer_offer(offer, answer).await;
                        }
                        Err(_) => {
                            let _ = self.d.sip.reject_offer(offer, 488).await;
                        }
                    },
                    None => {
                        let _ = self.d.sip.reject_offer(offer, 481).await;
                    }
                }
            }
            SipEvent::Registered { agent_id, .. } => {
                if let Ok(a) = agent_id.parse::<i64>() {
                    self.registered.insert(a);
                    self.update_ready(a).await;
                }
            }
            SipEvent::Unregistered { agent_id, .. } => {
                if let Ok(a) = agent_id.parse::<i64>() {
                    self.registered.remove(&a);
                    self.update_ready(a).await;
                }
            }
            _ => {}
        }
    }

    fn media_of(&self, id: CallId, leg: SipLeg) -> Option<MediaLeg> {
        let c = self.calls.get(&id)?;
        if c.customer.sip == Some(leg) {
            return Some(c.customer.media);
        }
        for p in [
            c.agent.map(|a| a.1),
            c.ringing.map(|a| a.1),
            c.consult.as_ref().map(|x| x.party),
        ]
        .into_iter()
        .flatten()
        {
            if p.sip == Some(leg) {
                return Some(p.media);
            }
        }
        None
    }

    async fn incoming(
        &mut self,
        leg: SipLeg,
        from: channel_sip::NameAddr,
        to: channel_sip::NameAddr,
        origin: CallOrigin,
        remote_sdp: Option<String>,
    ) {
        if let CallOrigin::User { .. } = origin {
            // Agents place calls from the console (click-to-dial), not from the desk phone.
            let _ = self
                .d
                .sip
                .reject(
                    leg,
                    403,
                    Some("calls are placed from the Contact Hub console".into()),
                )
                .await;
            return;
        }
        let Some(offer) = remote_sdp else {
            let _ = self
                .d
                .sip
                .reject(leg, 488, Some("an SDP offer is required".into()))
                .await;
            return;
        };
        let media = match self.d.media.create_leg(LegConfig::default()).await {
            Ok((m, _)) => m,
            Err(e) => {
                tracing::error!(error = %e, "no media leg for a call");
                let _ = self
                    .d
                    .sip
                    .reject(leg, 503, Some("no media resources".into()))
                    .await;
                return;
            }
        };
        let answer = match self.d.media.answer(media, offer).await {
            Ok(a) => a,
            Err(e) => {
                let _ = self.d.media.remove_leg(media).await;
                let _ = self
                    .d
                    .sip
                    .reject(leg, 488, Some(format!("no common codec: {e}")))
                    .await;
                return;
            }
        };
        if self.d.sip.answer(leg, answer).await.is_err() {
            let _ = self.d.media.remove_leg(media).await;
            return;
        }
        let now = now_ms();
        let region = &self.d.config.archive.default_region;
        let caller = e164(from.user.as_deref(), region);
        let called = e164(to.user.as_deref(), region);
        let customer_id = self
            .d
            .store
            .customer_by_identity(IdentityKind::Phone, &caller)
            .await
            .ok()
            .flatten();
        let contact = match self
            .d
            .store
            .create_contact(
                &NewContact {
                    channel: Channel::Voice,
                    direction: ContactDirection::Inbound,
                    customer_id,
                    case_id: None,
                    queue: None,
                    state: ContactState::Queued,
                    priority: 0,
                    subject: None,
                    agent_id: None,
                    conversation_id: None,
                },
                now,
            )
            .await
        {
            Ok(c) => c.id,
            Err(e) => {
                tracing::error!(error = %e, "cannot store a call; hanging up");
                let _ = self.d.sip.hangup(leg).await;
                let _ = self.d.media.remove_leg(media).await;
                return;
            }
        };
        let trunk = match &origin {
            CallOrigin::Trunk { name } => name.clone(),
            CallOrigin::User { .. } => String::new(),
        };
        self.event(
            contact,
            "call_arrived",
            json!({"trunk": trunk, "caller": caller, "called": called, "known_customer": customer_id.is_some()}),
        );
        tracing::info!(contact_id = contact, trunk = %trunk, "call answered");
        let id = self.next_id;
        self.next_id += 1;
        let stage = match &self.d.ivr {
            Some(ivr) => Stage::Ivr(Box::new(IvrSession::new(
                ivr.clone(),
                &caller,
                &called,
                now,
            ))),
            None => Stage::Leaving,
        };
        self.calls.insert(
            id,
            Call {
                contact,
                customer: Party {
                    sip: Some(leg),
                    media,
                },
                caller: caller.clone(),
                called: called.clone(),
                language: Language::ZhCn,
                customer_id,
                stage,
                spec: None,
                ringing: None,
                agent: None,
                consult: None,
                held_since: None,
                hold_ms: 0,
                muted: false,
                browser_stats: None,
                recording: None,
                conference: false,
            },
        );
        self.sip_legs.insert(leg, (id, LegRole::Customer));
        self.media_legs.insert(media, id);
        self.by_contact.insert(contact, id);
        if self.d.ivr.is_none() {
            // No IVR: straight to the queue the routing rules give the number dialled.
            let attrs = CallAttributes {
                caller,
                called,
                language: Language::ZhCn,
                ivr_choice: None,
                product: None,
                tags: Vec::new(),
                priority_boost: 0,
                tier: None,
                customer_id,
            };
            self.enqueue(id, attrs).await;
        }
        self.drive(id).await;
    }

    /// Runs whatever the call's IVR or queue experience asks for, until it asks for nothing.
    async fn drive(&mut self, id: CallId) {
        for _ in 0..64 {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            match &mut call.stage {
                Stage::Ivr(s) => {
                    let actions: Vec<IvrAction> = std::iter::from_fn(|| s.poll_output()).collect();
                    if actions.is_empty() {
                        break;
                    }
                    for a in actions {
                        self.ivr_action(id, a).await;
                    }
                }
                Stage::Queued(q) => {
                    let actions: Vec<QueueAction> =
                        std::iter::from_fn(|| q.poll_output()).collect();
                    if actions.is_empty() {
                        break;
                    }
                    for a in actions {
                        self.queue_action(id, a).await;
                    }
                }
                _ => break,
            }
        }
        self.rearm(id);
    }

    async fn play(&mut self, id: CallId, p: &Playback) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.language = p.language;
        let list = specs(&self.d.prompts, p.language, &p.prompts);
        let _ = self.d.media.play(c.customer.media, list, p.looping).await;
    }

    async fn ivr_action(&mut self, id: CallId, a: IvrAction) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let contact = call.contact;
        let media = call.customer.media;
        match a {
            IvrAction::Play(p) => self.play(id, &p).await,
            IvrAction::StopPlayback => {
                let _ = self.d.media.stop(media).await;
            }
            IvrAction::Lookup { number } => {
                let info = self.lookup(&number).await;
                if let Some(c) = self.calls.get_mut(&id) {
                    if let Some(i) = &info {
                        c.customer_id = Some(i.customer_id);
                    }
                    if let Stage::Ivr(s) = &mut c.stage {
                        s.handle(now_ms(), IvrInput::LookupResult(info));
                    }
                }
            }
            IvrAction::Queue { attributes } => self.enqueue(id, attributes).await,
            IvrAction::Voicemail { queue, attributes } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.language = attributes.language;
                }
                self.close_contact(contact, json!({"outcome": "voicemail"}))
                    .await;
                self.start_voicemail(id, queue).await;
            }
            IvrAction::Callback { attributes } => {
                let queue = self.route_of(&attributes).queue;
                self.create_callback(id, &queue, None, None).await;
                self.close_contact(contact, json!({"outcome": "callback"}))
                    .await;
                self.leave_with(
                    id,
                    vec![
                        PromptRef::Prompt("callback_confirm".into()),
                        PromptRef::Prompt("goodbye".into()),
                    ],
                    attributes.language,
                )
                .await;
            }
            IvrAction::Transfer { number, .. } => {
                self.close_contact(contact, json!({"outcome": "transferred", "to": number}))
                    .await;
                if let Err(e) = self
                    .dial_out(id, TransferTarget::Number(number), true)
                    .await
                {
                    tracing::warn!(error = %e, "the IVR transfer cannot be dialled");
                    self.hang_up_customer(id).await;
                }
            }
            IvrAction::Hangup { contained } => {
                self.close_contact(contact, json!({"outcome": if contained { "contained" } else { "ended_in_ivr" }, "contained": contained}))
                    .await;
                self.hang_up_customer(id).await;
            }
            IvrAction::Event(e) => self.event(contact, e.kind(), e.data()),
        }
    }

    /// The caller's archive facts for the IVR.
    async fn lookup(&self, number: &str) -> Option<CallerInfo> {
        let store = &self.d.store;
        let id = store
            .customer_by_identity(IdentityKind::Phone, number)
            .await
            .ok()
            .flatten()?;
        let c = store.get_customer(id).await.ok()?;
        let records = store.records(id).await.ok().unwrap_or_default();
        let payments: Vec<_> = records
            .into_iter()
            .filter(|r| r.category == crate::domain::RecordCategory::Payment)
            .collect();
        let b = crate::archive::balance(&payments);
        let balance_fen =
            (b.currency.as_deref().unwrap_or("CNY") == "CNY").then_some(b.amount_minor);
        Some(CallerInfo {
            customer_id: id,
            name: c.name,
            tier: c.tier,
            language: c.language,
            balance_fen,
            tags: c.tags,
        })
    }

    fn route_of(&self, attrs: &CallAttributes) -> crate::acd::rules::RoutingDecision {
        let mut d = self
            .d
            .routing
            .rules()
            .route(&attrs.contact_attributes(), now_ms());
        d.priority += attrs.priority_boost;
        d
    }

    async fn enqueue(&mut self, id: CallId, attrs: CallAttributes) {
        let d = self.route_of(&attrs);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.language = attrs.language;
        if attrs.customer_id.is_some() {
            call.customer_id = attrs.customer_id;
        }
        let contact = call.contact;
        let customer_id = call.customer_id;
        let now = now_ms();
        let store = &self.d.store;
        if let Err(e) = store
            .set_contact_routing(
                contact,
                &d.queue,
                d.priority,
                &d.extra_skills,
                &d.rule,
                d.overflow.as_deref(),
            )
            .await
        {
            tracing::error!(error = %e, contact_id = contact, "cannot store the call's routing");
        }
        if let Some(c) = customer_id {
            let _ = store.set_contact_customer(contact, c).await;
        }
        let last_agent = match customer_id {
            Some(c) => store.last_agent(c).await.ok().flatten(),
            None => None,
        };
        let spec = ContactSpec {
            id: contact,
            channel: Channel::Voice,
            queue: d.queue.clone(),
            priority: d.priority,
            enqueued_at: now,
            extra_skills: d.extra_skills.clone(),
            last_agent,
        };
        self.event(contact, "queued", json!({"queue": d.queue, "rule": d.rule, "priority": d.priority, "ivr_choice": attrs.ivr_choice, "product": attrs.product}));
        let cfg = self
            .d
            .ivr
            .as_ref()
            .map(|i| i.queue_experience(&d.queue).clone())
            .unwrap_or_default();
        let qe = QueueExperience::new(&cfg, &d.queue, attrs.language, now);
        if let Some(call) = self.calls.get_mut(&id) {
            call.spec = Some(spec.clone());
            call.stage = Stage::Queued(Box::new(qe));
        }
        self.d.hub.route(spec, d.overflow).await;
        // (`drive` goes on with the queue experience: the stage is `Queued` now.)
    }

    async fn queue_action(&mut self, id: CallId, a: QueueAction) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let contact = call.contact;
        let media = call.customer.media;
        match a {
            QueueAction::Play(p) => self.play(id, &p).await,
            QueueAction::StopPlayback => {
                let _ = self.d.media.stop(media).await;
            }
            QueueAction::Callback => {
                // The callback keeps the caller's place: same queue, priority and wait so far.
                let spec = call.spec.clone();
                let language = call.language;
                if let Some(spec) = spec {
                    self.create_callback(
                        id,
                        &spec.queue,
                        Some(spec.enqueued_at),
                        Some(spec.priority),
                    )
                    .await;
                    self.d.hub.withdraw(contact).await;
                }
                self.leave_with(
                    id,
                    vec![
                        PromptRef::Prompt("callback_confirm".into()),
                        PromptRef::Prompt("goodbye".into()),
                    ],
                    language,
                )
                .await;
            }
            QueueAction::Voicemail { queue } => {
                // The ACD refused the call (closed, full) or it waited too long.
                self.d.hub.withdraw(contact).await;
                self.start_voicemail(id, queue).await;
            }
            QueueAction::Event(e) => {
                let data = serde_json::to_value(&e).unwrap_or_default();
                let kind = data
                    .get("kind")
                    .and_then(Value::as_str)
                    .map(|k| format!("queue_{k}"))
                    .unwrap_or_else(|| "queue".into());
                self.event(contact, &kind, data);
            }
        }
    }

    /// Plays a last prompt, then hangs up.
    async fn leave_with(&mut self, id: CallId, prompts: Vec<PromptRef>, language: Language) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.stage = Stage::Leaving;
        let list = specs(&self.d.prompts, language, &prompts);
        if self
            .d
            .media
            .play(c.customer.media, list, false)
            .await
            .is_err()
        {
            self.hang_up_customer(id).await;
        }
    }

    /// A callback contact for the caller: routed like a call, and when an agent takes it the
    /// hub calls the customer back.
    async fn create_callback(
        &mut self,
        id: CallId,
        queue: &str,
        enqueued_at: Option<Millis>,
        priority: Option<i64>,
    ) -> Option<i64> {
        let call = self.calls.get(&id)?;
        let now = now_ms();
        let rules = self.d.routing.rules();
        let mut attrs = crate::acd::rules::ContactAttributes::new(Channel::Callback);
        attrs.called = Some(call.called.clone());
        attrs.language = Some(call.language.tag().to_string());
        let d = rules.route(&attrs, now);
        let queue = if rules.queue(queue).is_some() {
            queue.to_string()
        } else {
            d.queue.clone()
        };
        let priority = priority.unwrap_or(d.priority);
        let created = self
            .d
            .store
            .create_inbound(
                &NewInbound {
                    channel: Channel::Callback,
                    customer_id: call.customer_id,
                    language: call.language.tag().into(),
                    subject: Some(format!("回电 Callback {}", call.caller)),
                    queue: queue.clone(),
                    priority,
                    skills: d.extra_skills.clone(),
                    routed_by: "callback".into(),
                    overflow: None,
                    body: String::new(),
                    meta: json!({"source": "voice", "phone": call.caller, "call_contact": call.contact}),
                },
                now,
            )
            .await;
        let (_, contact) = match created {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "cannot store a callback request");
                return None;
            }
        };
        self.event(
            call.contact,
            "callback_requested",
            json!({"callback_contact": contact.id}),
        );
        let last_agent = match call.customer_id {
            Some(c) => self.d.store.last_agent(c).await.ok().flatten(),
            None => None,
        };
        self.d
            .hub
            .route(
                ContactSpec {
                    id: contact.id,
                    channel: Channel::Callback,
                    queue,
                    priority,
                    enqueued_at: enqueued_at.unwrap_or(now),
                    extra_skills: SkillSet::default(),
                    last_agent,
                },
                None,
            )
            .await;
        Some(contact.id)
    }

    async fn start_voicemail(&mut self, id: CallId, queue: String) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.stage = Stage::Voicemail {
            queue,
            recording: None,
            until: None,
        };
        let list = specs(
            &self.d.prompts,
            c.language,
            &[PromptRef::Prompt("leave_message".into()), PromptRef::Beep],
        );
        let _ = self.d.media.play(c.customer.media, list, false).await;
    }

    /// The prompt ended: the message is recorded from now on.
    async fn record_voicemail(&mut self, id: CallId) {
        let max = self.d.config.voice.voicemail_max_secs.max(5) as i64 * 1000;
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let now = now_ms();
        let path = self
            .d
            .recordings
            .join(format!("voicemail-{}-{now}.wav", c.contact));
        let media = c.customer.media;
        let Ok(rec) = self.d.media.record(vec![media], vec![], path.clone()).await else {
            return;
        };
        let db = self
            .d
            .store
            .start_recording(None, "voicemail", &path.display().to_string(), now)
            .await
            .unwrap_or(0);
        if let Some(Call {
            stage: Stage::Voicemail {
                recording, until, ..
            },
            ..
        }) = self.calls.get_mut(&id)
        {
            *recording = Some((rec, db, path));
            *until = Some(now + max);
        }
        self.rearm(id);
    }

    /// The message is over (hang-up or time): stored as a callback contact with its recording.
    async fn finish_voicemail(&mut self, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Stage::Voicemail {
            queue,
            recording,
            until,
        } = &mut c.stage
        else {
            return;
        };
        let queue = queue.clone();
        *until = None;
        let Some((rec, db, _path)) = recording.take() else {
            return;
        };
        let info = self.d.media.stop_record(rec).await;
        let (duration_ms, bytes) = match &info {
            Ok(i) => (i.duration.as_millis() as i64, i.bytes as i64),
            Err(_) => (0, 0),
        };
        let _ = self.d.store.finish_recording(db, duration_ms, bytes).await;
        if let Some(cb) = self.create_callback(id, &queue, None, None).await {
            let _ = self.d.store.set_recording_contact(db, cb).await;
            self.event(
                cb,
                "voicemail",
                json!({"recording": db, "duration_ms": duration_ms}),
            );
        }
    }

    async fn close_contact(&self, contact: i64, data: Value) {
        if let Err(e) = self
            .d
            .store
            .set_contact_state(contact, ContactState::Closed, None, now_ms(), &data)
            .await
        {
            tracing::error!(error = %e, contact_id = contact, "cannot close a call's contact");
        }
    }

    // ---- outbound legs -------------------------------------------------------------------

    /// Calls a transfer target for call `id` (a consultation, or a blind transfer to a number).
    async fn dial_out(
        &mut self,
        id: CallId,
        target: TransferTarget,
        blind: bool,
    ) -> Result<(), String> {
        let Some(call) = self.calls.get(&id) else {
            return Err("no such call".into());
        };
        let sip_target = match &target {
            TransferTarget::Agent(a) if self.endpoint(*a) == Endpoint::Browser => {
                if !self.ready(*a) {
                    return Err("that agent's console is not online".into());
                }
                return self.consult_browser(id, *a, blind).await;
            }
            TransferTarget::Agent(a) => match self.phones.get(a) {
                Some(u) => Target::UserAll(u.clone()),
                None => return Err("that agent has no desk phone".into()),
            },
            TransferTarget::Number(n) => {
                let number =
                    crate::identity::normalize_phone(n, &self.d.config.archive.default_region)
                        .map_err(|_| format!("not a phone number: {n:?}"))?;
                match self.d.trunk.clone() {
                    Some(trunk) => Target::Trunk { trunk, number },
                    None => {
                        return Err("no outbound trunk is configured for calls to numbers".into())
                    }
                }
            }
            TransferTarget::Queue(_) => return Err("a queue is not dialled".into()),
        };
        let caller = Caller {
            display: None,
            user: call.caller.clone(),
        };
        let (media, _) = self
            .d
            .media
            .create_leg(LegConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        let offer = self
            .d
            .media
            .local_offer(media)
            .await
            .map_err(|e| e.to_string())?;
        let leg = match self.d.sip.originate(sip_target, caller, offer).await {
            Ok(l) => l,
            Err(e) => {
                let _ = self.d.media.remove_leg(media).await;
                return Err(format!("cannot call: {e}"));
            }
        };
        self.sip_legs.insert(leg, (id, LegRole::Consult));
        self.media_legs.insert(media, id);
        if let Some(c) = self.calls.get_mut(&id) {
            c.consult = Some(Consult {
                target,
                party: Party {
                    sip: Some(leg),
                    media,
                },
                answered: false,
                blind,
            });
        }
        Ok(())
    }

    /// Rings a colleague's browser for a consultation: a WebRTC leg of its own, offered to
    /// their console; it counts as answered once their media is up (webrtc_state).
    async fn consult_browser(
        &mut self,
        id: CallId,
        colleague: i64,
        blind: bool,
    ) -> Result<(), String> {
        let (media, _) = self
            .d
            .media
            .create_webrtc_leg(LegConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        self.media_legs.insert(media, id);
        let Some(c) = self.calls.get_mut(&id) else {
            return Err("no such call".into());
        };
        c.consult = Some(Consult {
            target: TransferTarget::Agent(colleague),
            party: Party { sip: None, media },
            answered: false,
            blind,
        });
        let frame = json!({
            "type": "call_state", "contact_id": c.contact, "state": "ringing", "consult": true,
            "from_agent": c.agent.map(|a| a.0), "caller": c.caller, "customer_id": c.customer_id,
        });
        self.d.push.send(colleague, frame);
        Ok(())
    }

    /// The consulted party answered (`media` is their leg): the agent talks to them while the
    /// customer waits with music; a blind transfer to a number connects the customer instead.
    async fn consult_answered(&mut self, id: CallId, media: MediaLeg) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(consult) = c.consult.as_mut() else {
            return;
        };
        consult.answered = true;
        let (blind, target) = (consult.blind, consult.target.clone());
        let (contact, agent) = (c.contact, c.agent);
        self.event(
            contact,
            "consult_answered",
            json!({"target": target_json(&target)}),
        );
        if blind {
            self.connect_customer_to_consult(id).await;
        } else if let Some((_, p)) = agent {
            let _ = self.d.media.bridge(p.media, media).await;
            self.push_state(id);
        }
    }

    /// The consulted party is gone — hung up, declined, never answered (`code`), or their
    /// browser's media failed. After an answer the agent is back with the held customer,
    /// bridged again so that unhold reconnects them; a transfer to a number that ends takes the
    /// customer along.
    async fn consult_left(&mut self, id: CallId, code: u16) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(consult) = c.consult.take() else {
            return;
        };
        let contact = c.contact;
        let agent = c.agent;
        let external = matches!(c.stage, Stage::External);
        let was_conference = std::mem::take(&mut c.conference);
        let customer = c.customer.media;
        // A SIP leg is already gone (its end brought us here); a browser leg is dropped now.
        self.media_legs.remove(&consult.party.media);
        let _ = self.d.media.remove_leg(consult.party.media).await;
        if let (TransferTarget::Agent(b), None) = (&consult.target, consult.party.sip) {
            self.d.push.send(
                *b,
                json!({"type": "call_state", "contact_id": contact, "state": "ended"}),
            );
        }
        if !consult.answered {
            self.event(
                contact,
                "consult_failed",
                json!({"code": code, "target": target_json(&consult.target)}),
            );
        }
        match agent {
            None if external && consult.answered => {
                self.event(contact, "ended", json!({"by": "transfer_target"}));
                self.hang_up_customer(id).await;
            }
            // A transfer to a number from the IVR that nobody answered.
            None if consult.blind => self.hang_up_customer(id).await,
            None => {}
            Some((_, p)) if consult.answered => {
                if was_conference {
                    let _ = self.d.media.unmix(customer).await;
                    let _ = self.d.media.unmix(p.media).await;
                }
                let _ = self.d.media.bridge(customer, p.media).await;
                self.event(contact, "consult_ended", json!({}));
                self.push_state(id);
            }
            Some((a, _)) => {
                self.d.push.send(
                    a,
                    json!({"type": "call_consult_failed", "contact_id": contact, "code": code}),
                );
                self.push_state(id);
            }
        }
    }

    // ---- the ACD's offers -----------------------------------------------------------------

    async fn on_hub(&mut self, e: HubEvent) {
        match e {
            HubEvent::Offer { contact, agent, .. } => {
                let Some(&id) = self.by_contact.get(&contact) else {
                    return;
                };
                self.ring_agent(id, contact, agent).await;
            }
            HubEvent::OfferCancelled { contact, agent, .. } => {
                let Some(&id) = self.by_contact.get(&contact) else {
                    return;
                };
                let ringing = self.calls.get_mut(&id).and_then(|c| {
                    if c.ringing.is_some_and(|(a, _)| a == agent) {
                        c.ringing.take()
                    } else {
                        None
                    }
                });
                if let Some((_, p)) = ringing {
                    self.event(contact, "agent_not_answered", json!({"agent": agent}));
                    self.drop_party(p).await;
                }
            }
            HubEvent::Refused {
                contact,
                handling,
                reason,
            } => {
                let Some(&id) = self.by_contact.get(&contact) else {
                    return;
                };
                self.event(
                    contact,
                    "queue_refused",
                    json!({"reason": reason, "handling": handling}),
                );
                if let Some(Call {
                    stage: Stage::Queued(q),
                    ..
                }) = self.calls.get_mut(&id)
                {
                    q.handle(now_ms(), QueueInput::Closed { handling });
                } else if let Some(c) = self.calls.get(&id) {
                    // Not in a queue experience (no IVR flows): a message, or goodbye.
                    let language = c.language;
                    match handling {
                        ClosedHandling::Callback => {
                            self.create_callback(id, "", None, None).await;
                            self.leave_with(
                                id,
                                vec![PromptRef::Prompt("callback_confirm".into())],
                                language,
                            )
                            .await;
                        }
                        _ => {
                            let queue =
                                c.spec.as_ref().map(|s| s.queue.clone()).unwrap_or_default();
                            self.start_voicemail(id, queue).await;
                        }
                    }
                }
                self.drive(id).await;
            }
            _ => {}
        }
    }

    async fn ring_agent(&mut self, id: CallId, contact: i64, agent: i64) {
        // The consulted agent of an attended transfer is already talking to us: connect.
        let consult_agent = self.calls.get(&id).and_then(|c| {
            c.consult
                .as_ref()
                .filter(|x| x.answered && x.target == TransferTarget::Agent(agent))
                .map(|x| x.party)
        });
        if let Some(p) = consult_agent {
            if let Some(c) = self.calls.get_mut(&id) {
                c.consult = None;
                c.agent = Some((agent, p));
            }
            if let Some(s) = p.sip {
                self.sip_legs.insert(s, (id, LegRole::Agent));
            }
            if let Ok(Ok(())) = self
                .d
                .hub
                .contact_op(agent, contact, ContactOp::Accept)
                .await
            {
                self.connect(id).await;
            }
            return;
        }
        if matches!(
            self.calls.get(&id).map(|c| &c.stage),
            Some(Stage::Dialing { .. })
        ) {
            self.dial_accepted(id, contact, agent).await;
            return;
        }
        if self.endpoint(agent) == Endpoint::Browser {
            self.ring_browser(id, contact, agent).await;
            return;
        }
        let Some(username) = self.phones.get(&agent).cloned() else {
            let _ = self
                .d
                .hub
                .contact_op(agent, contact, ContactOp::Reject)
                .await;
            return;
        };
        match self.ring_desk_phone(id, agent, username).await {
            Ok(()) => self.event(contact, "agent_ringing", json!({"agent": agent})),
            Err(e) => {
                tracing::info!(agent_id = agent, error = %e, "cannot ring the agent's phone");
                let _ = self
                    .d
                    .hub
                    .contact_op(agent, contact, ContactOp::Reject)
                    .await;
            }
        }
    }

    /// Rings `agent`'s desk phone (every registered contact of `username`) for call `id`,
    /// showing the customer's number; the leg is the call's `ringing` party until it answers.
    async fn ring_desk_phone(
        &mut self,
        id: CallId,
        agent: i64,
        username: String,
    ) -> Result<(), String> {
        let caller = Caller {
            display: None,
            user: self.calls.get(&id).ok_or("no such call")?.caller.clone(),
        };
        let (media, _) = self
            .d
            .media
            .create_leg(LegConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        let originated = match self.d.media.local_offer(media).await {
            Ok(offer) => self
                .d
                .sip
                .originate(Target::UserAll(username), caller, offer)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let leg = match originated {
            Ok(leg) => leg,
            Err(e) => {
                let _ = self.d.media.remove_leg(media).await;
                return Err(e);
            }
        };
        self.sip_legs.insert(leg, (id, LegRole::Ringing));
        self.media_legs.insert(media, id);
        if let Some(c) = self.calls.get_mut(&id) {
            c.ringing = Some((
                agent,
                Party {
                    sip: Some(leg),
                    media,
                },
            ));
        }
        Ok(())
    }

    async fn answered(&mut self, leg: SipLeg, remote_sdp: Option<String>) {
        let Some(&(id, role)) = self.sip_legs.get(&leg) else {
            return;
        };
        let Some(media) = self.media_of(id, leg) else {
            return;
        };
        if let Some(sdp) = remote_sdp {
            if self.d.media.apply_answer(media, sdp).await.is_err() {
                let _ = self.d.sip.hangup(leg).await;
                return;
            }
        }
        match role {
            LegRole::Customer => {
                // The customer we dialled answered.
                if matches!(
                    self.calls.get(&id).map(|c| &c.stage),
                    Some(Stage::Dialing { .. })
                ) {
                    self.connect(id).await;
                }
            }
            LegRole::Ringing
                if matches!(
                    self.calls.get(&id).map(|c| &c.stage),
                    Some(Stage::Dialing { .. })
                ) =>
            {
                // The agent's desk phone answered a click-to-dial: now the customer.
                if let Some(c) = self.calls.get_mut(&id) {
                    c.agent = c.ringing.take();
                }
                self.sip_legs.insert(leg, (id, LegRole::Agent));
                self.dial_customer(id).await;
            }
            LegRole::Ringing => {
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                let Some((agent, party)) = call.ringing.take() else {
                    return;
                };
                let contact = call.contact;
                match self
                    .d
                    .hub
                    .contact_op(agent, contact, ContactOp::Accept)
                    .await
                {
                    Ok(Ok(())) => {
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.agent = Some((agent, party));
                        }
                        self.sip_legs.insert(leg, (id, LegRole::Agent));
                        self.connect(id).await;
                    }
                    _ => {
                        // The offer ran out as the phone was picked up.
                        self.drop_party(party).await;
                    }
                }
            }
            LegRole::Consult => self.consult_answered(id, media).await,
            _ => {}
        }
    }

    /// The agent is on the line: stop the queue sounds, bridge, record.
    async fn connect(&mut self, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some((agent, p)) = c.agent else {
            return;
        };
        if let Stage::Queued(q) = &mut c.stage {
            q.handle(now_ms(), QueueInput::AgentConnected);
            let _: Vec<QueueAction> = std::iter::from_fn(|| q.poll_output()).collect();
        }
        c.stage = Stage::Connected;
        let customer = c.customer.media;
        let contact = c.contact;
        let _ = self.d.media.stop(customer).await;
        let _ = self.d.media.bridge(customer, p.media).await;
        if self.d.config.voice.record_calls {
            let now = now_ms();
            let path = self.d.recordings.join(format!("call-{contact}-{now}.wav"));
            if let Ok(rec) = self
                .d
                .media
                .record(vec![customer], vec![p.media], path.clone())
                .await
            {
                let db = self
                    .d
                    .store
                    .start_recording(Some(contact), "call", &path.display().to_string(), now)
                    .await
                    .unwrap_or(0);
                if let Some(c) = self.calls.get_mut(&id) {
                    c.recording = Some((rec, db));
                }
                self.event(contact, "recording_started", json!({"recording": db}));
            }
        }
        self.event(contact, "answered", json!({"agent": agent}));
        self.rearm(id);
        self.push_state(id);
    }

    async fn stop_recording(&mut self, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some((rec, db)) = c.recording.take() else {
            return;
        };
        let contact = c.contact;
        if let Ok(info) = self.d.media.stop_record(rec).await {
            let ms = info.duration.as_millis() as i64;
            let _ = self
                .d
                .store
                .finish_recording(db, ms, info.bytes as i64)
                .await;
            self.event(
                contact,
                "recording",
                json!({"recording": db, "duration_ms": ms}),
            );
        }
    }

    async fn failed(&mut self, leg: SipLeg, code: u16) {
        let Some((id, role)) = self.sip_legs.remove(&leg) else {
            return;
        };
        match role {
            LegRole::Customer => {
                // A click-to-dial nobody answered (busy, no answer, refused).
                let Some(c) = self.calls.get(&id) else {
                    return;
                };
                let contact = c.contact;
                let agent = c.agent.map(|a| a.0);
                self.event(contact, "customer_not_reached", json!({"code": code}));
                if let Some(agent) = agent {
                    self.complete(id, contact, agent, "not_reached").await;
                }
                self.forget(id).await;
            }
            LegRole::Ringing => {
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                let Some((agent, party)) = c.ringing.take() else {
                    return;
                };
                let contact = c.contact;
                self.media_legs.remove(&party.media);
                let _ = self.d.media.remove_leg(party.media).await;
                self.event(
                    contact,
                    "agent_phone_failed",
                    json!({"agent": agent, "code": code}),
                );
                // Busy or declined on the phone: the ACD offers the call to someone else.
                let _ = self
                    .d
                    .hub
                    .contact_op(agent, contact, ContactOp::Reject)
                    .await;
            }
            LegRole::Consult => self.consult_left(id, code).await,
            _ => {}
        }
    }

    async fn ended(&mut self, leg: SipLeg, by: channel_sip::Party, cause: channel_sip::EndCause) {
        let Some((id, role)) = self.sip_legs.remove(&leg) else {
            return;
        };
        let by_remote = by == channel_sip::Party::Remote;
        match role {
            LegRole::Customer => {
                if by_remote {
                    self.customer_left(id, cause).await;
                }
                self.forget(id).await;
            }
            LegRole::Agent if by_remote => {
                let Some(c) = self.calls.get(&id) else {
                    return;
                };
                let contact = c.contact;
                if let (Some(leg), Some(consult)) =
                    (c.agent, c.consult.clone().filter(|x| x.answered))
                {
                    // The agent left a consultation or conference: the customer stays with
                    // whom the agent consulted, as after the console's hang-up there.
                    if let Err(e) = self.complete_transfer(id, contact, leg, consult).await {
                        tracing::info!(contact_id = contact, error = %e, "handing over after the agent left");
                    }
                    self.push_state(id);
                    return;
                }
                let Some((agent, party)) = self.calls.get_mut(&id).and_then(|c| c.agent.take())
                else {
                    return;
                };
                self.media_legs.remove(&party.media);
                let _ = self.d.media.remove_leg(party.media).await;
                self.event(contact, "ended", json!({"by": "agent"}));
                self.complete(id, contact, agent, "agent").await;
                self.hang_up_customer(id).await;
            }
            // Its SIP leg has ended: the code only matters for one that never answered.
            LegRole::Consult if by_remote => self.consult_left(id, 200).await,
            _ => {}
        }
    }

    /// The customer hung up: what that means depends on where the call was.
    async fn customer_left(&mut self, id: CallId, cause: channel_sip::EndCause) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let contact = c.contact;
        let cause = format!("{cause:?}");
        match &mut c.stage {
            Stage::Ivr(s) => {
                s.handle(now_ms(), IvrInput::CallerHungUp);
                let actions: Vec<IvrAction> = std::iter::from_fn(|| s.poll_output()).collect();
                for a in actions {
                    if let IvrAction::Event(e) = a {
                        self.event(contact, e.kind(), e.data());
                    }
                }
                self.event(
                    contact,
                    "ended",
                    json!({"by": "customer", "in": "ivr", "cause": cause}),
                );
                self.close_contact(contact, json!({"outcome": "caller_hung_up_in_ivr"}))
                    .await;
            }
            Stage::Queued(_) => {
                self.event(
                    contact,
                    "ended",
                    json!({"by": "customer", "in": "queue", "cause": cause}),
                );
                // Counted as abandoned (ARCHITECTURE §7).
                self.d.hub.abandon(contact).await;
            }
            Stage::Connected => {
                if let Some((agent, _)) = c.agent {
                    self.event(contact, "ended", json!({"by": "customer", "cause": cause}));
                    self.complete(id, contact, agent, "customer").await;
                }
            }
            Stage::Voicemail { .. } => self.finish_voicemail(id).await,
            Stage::Dialing { .. } => {
                if let Some((agent, _)) = c.agent {
                    self.event(contact, "ended", json!({"by": "customer", "cause": cause}));
                    self.complete(id, contact, agent, "customer").await;
                }
            }
            Stage::External | Stage::Leaving => {
                self.event(contact, "ended", json!({"by": "customer", "cause": cause}));
            }
        }
    }

    /// The agent's part is over: wrap-up begins (with the time on hold).
    async fn complete(&mut self, id: CallId, contact: i64, agent: i64, ended_by: &str) {
        self.stop_recording(id).await;
        self.quality(id).await;
        let hold_ms = self.calls.get_mut(&id).map_or(0, |c| {
            if let Some(s) = c.held_since.take() {
                c.hold_ms += now_ms() - s;
            }
            c.hold_ms
        });
        let _ = self
            .d
            .hub
            .contact_op(agent, contact, ContactOp::Complete { hold_ms })
            .await;
        self.d.push.send(
            agent,
            json!({"type": "call_state", "contact_id": contact, "state": "ended", "ended_by": ended_by}),
        );
    }

    /// Media quality of the call's legs, for the call record.
    async fn quality(&self, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let mut q = serde_json::Map::new();
        for (name, leg) in [
            ("customer", Some(c.customer.media)),
            ("agent", c.agent.map(|a| a.1.media)),
        ] {
            if let Some(leg) = leg {
                if let Ok(s) = self.d.media.stats(leg).await {
                    q.insert(
                        name.into(),
                        json!({"packets_received": s.packets_received, "packets_lost": s.packets_lost,
                               "jitter_ms": s.jitter.as_secs_f64() * 1000.0,
                               "rtt_ms": s.rtt.map(|r| r.as_secs_f64() * 1000.0)}),
                    );
                }
            }
        }
        if let Some(b) = &c.browser_stats {
            q.insert("browser".into(), b.clone());
        }
        self.event(c.contact, "media_quality", Value::Object(q));
    }

    async fn drop_party(&mut self, p: Party) {
        self.media_legs.remove(&p.media);
        if let Some(sip) = p.sip {
            self.sip_legs.remove(&sip);
            let _ = self.d.sip.hangup(sip).await;
        }
        let _ = self.d.media.remove_leg(p.media).await;
    }

    async fn hang_up_customer(&mut self, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if let Some(leg) = c.customer.sip {
            let _ = self.d.sip.hangup(leg).await;
        }
    }

    /// The customer's leg is gone: drop every other leg and the call.
    async fn forget(&mut self, id: CallId) {
        self.stop_recording(id).await;
        let Some(c) = self.calls.remove(&id) else {
            return;
        };
        if let Some(t) = self.deadlines.remove(&id) {
            self.timers.remove(&(t, id));
        }
        self.by_contact.remove(&c.contact);
        self.media_legs.remove(&c.customer.media);
        let _ = self.d.media.remove_leg(c.customer.media).await;
        if let Some(x) = &c.consult {
            if let (TransferTarget::Agent(b), None) = (&x.target, x.party.sip) {
                self.d.push.send(
                    *b,
                    json!({"type": "call_state", "contact_id": c.contact, "state": "ended"}),
                );
            }
        }
        for p in [
            c.ringing.map(|a| a.1),
            c.agent.map(|a| a.1),
            c.consult.map(|x| x.party),
        ]
        .into_iter()
        .flatten()
        {
            self.drop_party(p).await;
        }
        if let Some((agent, _)) = c.agent {
            self.d.push.send(
                agent,
                json!({"type": "call_state", "contact_id": c.contact, "state": "ended"}),
            );
        }
    }

    // ---- media --------------------------------------------------------------------------

    async fn on_media(&mut self, e: MediaEvent) {
        match e {
            MediaEvent::Dtmf { leg, digit, .. } => {
                let Some(&id) = self.media_legs.get(&leg) else {
                    return;
                };
                if self.calls.get(&id).is_some_and(|c| c.customer.media == leg) {
                    self.digit(id, digit).await;
                }
            }
            MediaEvent::PlaybackDone { leg, completed } => {
                let Some(&id) = self.media_legs.get(&leg) else {
                    return;
                };
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                if c.customer.media != leg || !completed {
                    return;
                }
                match &mut c.stage {
                    Stage::Ivr(s) => s.handle(now_ms(), IvrInput::PlaybackDone),
                    Stage::Queued(q) => q.handle(now_ms(), QueueInput::PlaybackDone),
                    Stage::Voicemail {
                        recording: None, ..
                    } => {
                        self.record_voicemail(id).await;
                        return;
                    }
                    Stage::Leaving => {
                        self.hang_up_customer(id).await;
                        return;
                    }
                    _ => return,
                }
                self.drive(id).await;
            }
            // (An RTCP BYE only ends an RTP stream — phones send one when a re-INVITE restarts
            // their media — never the call.)
            MediaEvent::WebRtc { leg, state } => self.webrtc_state(leg, state).await,
            MediaEvent::Stats { leg, stats } => self.quality_frame(leg, &stats),
            MediaEvent::MediaTimeout { leg } => {
                // The peer vanished without a SIP BYE: end its leg as if it had hung up.
                let Some(&id) = self.media_legs.get(&leg) else {
                    return;
                };
                let sip = self.calls.get(&id).and_then(|c| {
                    [
                        Some(c.customer),
                        c.agent.map(|a| a.1),
                        c.consult.as_ref().map(|x| x.party),
                    ]
                    .into_iter()
                    .flatten()
                    .find(|p| p.media == leg)
                    .and_then(|p| p.sip)
                });
                if let Some(sip) = sip {
                    tracing::info!(leg = %sip, "no media from a call leg; hanging it up");
                    let _ = self.d.sip.hangup(sip).await;
                    self.ended(
                        sip,
                        channel_sip::Party::Remote,
                        channel_sip::EndCause::Normal,
                    )
                    .await;
                }
            }
            _ => {}
        }
    }

    /// Live media quality for the agent's console (loss, jitter, round trip).
    fn quality_frame(&self, leg: MediaLeg, stats: &channel_media::LegStats) {
        let Some(c) = self.media_legs.get(&leg).and_then(|id| self.calls.get(id)) else {
            return;
        };
        let Some((agent, p)) = c.agent else {
            return;
        };
        let which = if p.media == leg {
            "agent"
        } else if c.customer.media == leg {
            "customer"
        } else {
            return;
        };
        self.d.push.send(
            agent,
            json!({
                "type": "call_quality", "contact_id": c.contact, "leg": which,
                "packets_received": stats.packets_received, "packets_lost": stats.packets_lost,
                "fraction_lost": stats.fraction_lost, "jitter_ms": stats.jitter.as_secs_f64() * 1000.0,
                "rtt_ms": stats.rtt.map(|r| r.as_secs_f64() * 1000.0),
                "remote_fraction_lost": stats.remote_fraction_lost,
                "remote_jitter_ms": stats.remote_jitter.as_secs_f64() * 1000.0,
                "ice_restarts": stats.ice_restarts,
            }),
        );
    }

    // ---- the browser softphone and click-to-dial ----------------------------------------

    /// An offer to an agent whose console is their phone: a WebRTC leg waits for the
    /// browser's SDP offer; the console rings (it has the ACD's offer with the screen-pop).
    async fn ring_browser(&mut self, id: CallId, contact: i64, agent: i64) {
        let Ok((media, _)) = self.d.media.create_webrtc_leg(LegConfig::default()).await else {
            let _ = self
                .d
                .hub
                .contact_op(agent, contact, ContactOp::Reject)
                .await;
            return;
        };
        self.media_legs.insert(media, id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.ringing = Some((agent, Party { sip: None, media }));
        let caller = c.caller.clone();
        let customer_id = c.customer_id;
        self.event(
            contact,
            "agent_ringing",
            json!({"agent": agent, "endpoint": "browser"}),
        );
        self.d.push.send(
            agent,
            json!({"type": "call_state", "contact_id": contact, "state": "ringing", "caller": caller, "customer_id": customer_id}),
        );
    }

    /// The browser leg of `agent` in the call of `contact`: ringing, connected, consulted or
    /// dialling.
    fn browser_leg(&self, agent: i64, contact: i64) -> Option<MediaLeg> {
        let c = self.calls.get(self.by_contact.get(&contact)?)?;
        let mine = |p: &(i64, Party)| (p.0 == agent && p.1.sip.is_none()).then_some(p.1.media);
        c.ringing
            .as_ref()
            .and_then(mine)
            .or_else(|| c.agent.as_ref().and_then(mine))
            .or_else(|| {
                c.consult.as_ref().and_then(|x| {
                    (x.target == TransferTarget::Agent(agent) && x.party.sip.is_none())
                        .then_some(x.party.media)
                })
            })
    }

    /// The browser's SDP offer (first, or an ICE restart): our answer.
    async fn webrtc_offer(
        &mut self,
        agent: i64,
        contact: i64,
        sdp: String,
    ) -> Result<String, String> {
        let leg = self
            .browser_leg(agent, contact)
            .ok_or("this call is not ringing in your console")?;
        self.d
            .media
            .webrtc_answer(leg, sdp)
            .await
            .map_err(|e| e.to_string())
    }

    async fn webrtc_state(&mut self, leg: MediaLeg, state: channel_media::WebRtcState) {
        use channel_media::WebRtcState;
        let Some(&id) = self.media_legs.get(&leg) else {
            return;
        };
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let contact = c.contact;
        let ringing = c.ringing.filter(|r| r.1.media == leg);
        let connected = c.agent.filter(|a| a.1.media == leg);
        let consult = c.consult.as_ref().filter(|x| x.party.media == leg).cloned();
        let dialing = matches!(c.stage, Stage::Dialing { .. });
        match state {
            WebRtcState::Connected => {
                self.webrtc_up.insert(leg);
                if let Some((agent, party)) = ringing {
                    if dialing {
                        return;
                    }
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.ringing = None;
                    }
                    match self
                        .d
                        .hub
                        .contact_op(agent, contact, ContactOp::Accept)
                        .await
                    {
                        Ok(Ok(())) => {
                            if let Some(c) = self.calls.get_mut(&id) {
                                c.agent = Some((agent, party));
                            }
                            self.connect(id).await;
                        }
                        _ => self.drop_party(party).await,
                    }
                } else if consult.is_some() {
                    self.consult_answered(id, leg).await;
                } else if dialing && connected.is_some() {
                    self.dial_customer(id).await;
                } else if connected.is_some() {
                    // Back after an ICE restart.
                    self.push_state(id);
                }
            }
            WebRtcState::Disconnected => {
                if let Some((agent, _)) = connected.or(ringing) {
                    self.d.push.send(
                        agent,
                        json!({"type": "call_state", "contact_id": contact, "state": "reconnecting"}),
                    );
                }
            }
            WebRtcState::Failed => {
                self.webrtc_up.remove(&leg);
                if let Some((agent, party)) = ringing {
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.ringing = None;
                    }
                    self.drop_party(party).await;
                    if !dialing {
                        let _ = self
                            .d
                            .hub
                            .contact_op(agent, contact, ContactOp::Reject)
                            .await;
                    }
                } else if let Some((agent, _)) = connected {
                    // The agent's browser is gone for good: the customer is not dropped but
                    // goes back in line.
                    self.event(contact, "agent_media_failed", json!({"agent": agent}));
                    let queue = self
                        .calls
                        .get(&id)
                        .and_then(|c| c.spec.as_ref().map(|s| s.queue.clone()));
                    match queue {
                        Some(q) if !dialing => {
                            let _ = self
                                .blind_transfer(id, agent, TransferTarget::Queue(q))
                                .await;
                        }
                        _ => {
                            self.complete(id, contact, agent, "agent_media_failed")
                                .await;
                            self.hang_up_customer(id).await;
                            if dialing {
                                self.forget(id).await;
                            }
                        }
                    }
                } else if consult.is_some() {
                    // 480: the colleague's browser never got media up.
                    self.consult_left(id, 480).await;
                }
            }
        }
    }

    /// Click-to-dial: checks, a contact (outbound), the agent's leg (browser: answered here;
    /// desk phone: rung once the ACD gives the agent the contact), then the customer.
    async fn dial(
        &mut self,
        agent: i64,
        number: String,
        customer_id: Option<i64>,
        sdp: Option<String>,
    ) -> Result<Value, String> {
        if !self.ready(agent) {
            return Err(
                "your phone is not ready: choose the browser or register your desk phone".into(),
            );
        }
        let state = self
            .d
            .hub
            .agents()
            .await
            .map_err(|_| "the hub is stopping".to_string())?
            .into_iter()
            .find(|(a, _)| *a == agent)
            .map(|(_, v)| v.state);
        if state != Some(crate::acd::types::AgentStateKind::Available) {
            return Err("set yourself available to place a call".into());
        }
        let region = &self.d.config.archive.default_region;
        let e164 = crate::identity::normalize_phone(&number, region)
            .map_err(|_| format!("not a phone number: {number:?}"))?;
        let store = &self.d.store;
        let customer_id = match customer_id {
            Some(c) => Some(c),
            None => store
                .customer_by_identity(IdentityKind::Phone, &e164)
                .await
                .ok()
                .flatten(),
        };
        if let Some(c) = customer_id {
            let customer = store
                .get_customer(c)
                .await
                .map_err(|_| "no such customer".to_string())?;
            if customer.do_not_call {
                return Err(format!(
                    "{} asked not to be called (do-not-call): the call is not placed",
                    customer.name
                ));
            }
        }
        if self.d.trunk.is_none() {
            return Err("no outbound trunk is configured (sip.toml [[outbound_trunk]])".into());
        }
        let browser = self.endpoint(agent) == Endpoint::Browser;
        if browser && sdp.is_none() {
            return Err("sdp: the softphone's offer is required".into());
        }
        let now = now_ms();
        let rules = self.d.routing.rules();
        let d = rules.route(
            &crate::acd::rules::ContactAttributes::new(Channel::Outbound),
            now,
        );
        let contact = store
            .create_contact(
                &NewContact {
                    channel: Channel::Outbound,
                    direction: ContactDirection::Outbound,
                    customer_id,
                    case_id: None,
                    queue: Some(d.queue.clone()),
                    state: ContactState::Queued,
                    priority: d.priority,
                    subject: None,
                    agent_id: None,
                    conversation_id: None,
                },
                now,
            )
            .await
            .map_err(|e| e.to_string())?
            .id;
        let _ = store
            .set_contact_routing(
                contact,
                &d.queue,
                d.priority,
                &SkillSet::default(),
                "click_to_dial",
                None,
            )
            .await;
        let (customer_media, _) = self
            .d
            .media
            .create_leg(LegConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = None;
        let mut ringing = None;
        if let (true, Some(offer)) = (browser, sdp) {
            let (leg, _) = self
                .d
                .media
                .create_webrtc_leg(LegConfig::default())
                .await
                .map_err(|e| e.to_string())?;
            match self.d.media.webrtc_answer(leg, offer).await {
                Ok(a) => answer = Some(a),
                Err(e) => {
                    let _ = self.d.media.remove_leg(leg).await;
                    let _ = self.d.media.remove_leg(customer_media).await;
                    self.close_contact(contact, json!({"outcome": "softphone_refused"}))
                        .await;
                    return Err(e.to_string());
                }
            }
            ringing = Some((
                agent,
                Party {
                    sip: None,
                    media: leg,
                },
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        let spec = ContactSpec {
            id: contact,
            channel: Channel::Outbound,
            queue: d.queue.clone(),
            priority: d.priority,
            enqueued_at: now,
            extra_skills: SkillSet::default(),
            last_agent: None,
        };
        self.calls.insert(
            id,
            Call {
                contact,
                customer: Party {
                    sip: None,
                    media: customer_media,
                },
                caller: e164.clone(),
                called: e164.clone(),
                language: Language::ZhCn,
                customer_id,
                stage: Stage::Dialing {
                    number: e164.clone(),
                },
                spec: Some(spec.clone()),
                ringing,
                agent: None,
                consult: None,
                held_since: None,
                hold_ms: 0,
                muted: false,
                browser_stats: None,
                recording: None,
                conference: false,
            },
        );
        self.media_legs.insert(customer_media, id);
        if let Some((_, p)) = ringing {
            self.media_legs.insert(p.media, id);
        }
        self.by_contact.insert(contact, id);
        self.event(contact, "dial", json!({"number": e164, "agent": agent}));
        match self.d.hub.route_to_agent(spec, agent, 10).await {
            Ok(Ok(())) => {}
            _ => {
                self.forget(id).await;
                self.close_contact(contact, json!({"outcome": "not_placed"}))
                    .await;
                return Err("you cannot take a call now".into());
            }
        }
        Ok(json!({"contact_id": contact, "number": e164, "sdp": answer}))
    }

    /// The ACD gave the agent their own outbound contact: take it and go on dialling.
    async fn dial_accepted(&mut self, id: CallId, contact: i64, agent: i64) {
        if !matches!(
            self.d
                .hub
                .contact_op(agent, contact, ContactOp::Accept)
                .await,
            Ok(Ok(()))
        ) {
            self.forget(id).await;
            return;
        }
        let browser = self
            .calls
            .get(&id)
            .and_then(|c| c.ringing)
            .filter(|r| r.1.sip.is_none());
        match browser {
            Some((a, p)) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.ringing = None;
                    c.agent = Some((a, p));
                }
                self.push_dialing(id, agent);
                if self.webrtc_up.contains(&p.media) {
                    self.dial_customer(id).await;
                }
            }
            None => {
                // The desk phone rings first; the customer is dialled when it answers.
                let Some(username) = self.phones.get(&agent).cloned() else {
                    self.complete(id, contact, agent, "no_phone").await;
                    self.forget(id).await;
                    return;
                };
                match self.ring_desk_phone(id, agent, username).await {
                    Ok(()) => self.push_dialing(id, agent),
                    Err(_) => {
                        self.complete(id, contact, agent, "phone_failed").await;
                        self.forget(id).await;
                    }
                }
            }
        }
    }

    fn push_dialing(&self, id: CallId, agent: i64) {
        if let Some(c) = self.calls.get(&id) {
            self.d.push.send(
                agent,
                json!({"type": "call_state", "contact_id": c.contact, "state": "dialing", "number": c.caller}),
            );
        }
    }

    /// The agent's leg is up: call the customer's number through the trunk.
    async fn dial_customer(&mut self, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.customer.sip.is_some() {
            return;
        }
        let Stage::Dialing { number } = &c.stage else {
            return;
        };
        let (number, media, contact) = (number.clone(), c.customer.media, c.contact);
        let Some(trunk) = self.d.trunk.clone() else {
            return;
        };
        let Ok(offer) = self.d.media.local_offer(media).await else {
            return;
        };
        let caller = Caller {
            display: None,
            user: String::new(),
        };
        match self
            .d
            .sip
            .originate(Target::Trunk { trunk, number }, caller, offer)
            .await
        {
            Ok(leg) => {
                self.sip_legs.insert(leg, (id, LegRole::Customer));
                if let Some(c) = self.calls.get_mut(&id) {
                    c.customer.sip = Some(leg);
                }
                self.event(contact, "customer_dialled", json!({}));
            }
            Err(e) => {
                tracing::warn!(contact_id = contact, error = %e, "cannot dial the customer");
                if let Some((agent, _)) = self.calls.get(&id).and_then(|c| c.agent) {
                    self.complete(id, contact, agent, "not_reached").await;
                }
                self.forget(id).await;
            }
        }
    }

    async fn digit(&mut self, id: CallId, digit: char) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        match &mut c.stage {
            Stage::Ivr(s) => s.handle(now_ms(), IvrInput::Dtmf(digit)),
            Stage::Queued(q) => q.handle(now_ms(), QueueInput::Dtmf(digit)),
            _ => return,
        }
        self.drive(id).await;
    }

    async fn positions(&mut self) {
        let queued: Vec<(CallId, i64)> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.stage, Stage::Queued(_)))
            .map(|(id, c)| (*id, c.contact))
            .collect();
        if queued.is_empty() {
            return;
        }
        let Ok(positions) = self
            .d
            .hub
            .positions(queued.iter().map(|(_, c)| *c).collect())
            .await
        else {
            return;
        };
        for ((id, _), p) in queued.into_iter().zip(positions) {
            if let (
                Some((position, wait_ms)),
                Some(Call {
                    stage: Stage::Queued(q),
                    ..
                }),
            ) = (p, self.calls.get_mut(&id))
            {
                q.handle(
                    now_ms(),
                    QueueInput::Position {
                        position: position as u32,
                        expected_wait_secs: Some(((wait_ms + 999) / 1000) as u32),
                    },
                );
                self.drive(id).await;
            }
        }
    }

    // ---- call control ---------------------------------------------------------------------

    fn endpoint(&self, agent: i64) -> Endpoint {
        self.endpoints
            .get(&agent)
            .copied()
            .unwrap_or(Endpoint::Phone)
    }

    fn ready(&self, agent: i64) -> bool {
        match self.endpoint(agent) {
            Endpoint::Browser => self.online.contains(&agent),
            Endpoint::Phone => self.registered.contains(&agent),
        }
    }

    /// Tells the ACD whether calls can reach the agent now.
    async fn update_ready(&self, agent: i64) {
        self.d.hub.voice_endpoint(agent, self.ready(agent)).await;
    }

    async fn on_request(&mut self, r: Request) {
        match r {
            Request::Accounts => self.load_phones().await,
            Request::Endpoint {
                agent,
                endpoint,
                online,
                reply,
            } => {
                if let Some(e) = endpoint {
                    self.endpoints.insert(agent, e);
                }
                if online {
                    self.online.insert(agent);
                } else {
                    self.online.remove(&agent);
                }
                self.update_ready(agent).await;
                let _ = reply.send((self.endpoint(agent), self.ready(agent)));
            }
            Request::WebRtcOffer {
                agent,
                contact,
                sdp,
                reply,
            } => {
                let r = self.webrtc_offer(agent, contact, sdp).await;
                let _ = reply.send(r);
            }
            Request::BrowserStats {
                agent,
                contact,
                stats,
            } => {
                let id = self.by_contact.get(&contact).copied();
                if let Some(c) = id.and_then(|id| self.calls.get_mut(&id)) {
                    if c.agent.is_some_and(|a| a.0 == agent && a.1.sip.is_none()) {
                        c.browser_stats = Some(stats);
                    }
                }
            }
            Request::WebRtcCandidate {
                agent,
                contact,
                candidate,
                ufrag,
            } => {
                if let Some(leg) = self.browser_leg(agent, contact) {
                    let _ = self
                        .d
                        .media
                        .webrtc_add_candidate(leg, candidate, ufrag)
                        .await;
                }
            }
            Request::Dial {
                agent,
                number,
                customer_id,
                sdp,
                reply,
            } => {
                let r = self.dial(agent, number, customer_id, sdp).await;
                let _ = reply.send(r);
            }
            Request::Control {
                agent,
                contact,
                op,
                reply,
            } => {
                let result = self.control(agent, contact, op).await;
                let _ = reply.send(result);
            }
        }
    }

    async fn control(&mut self, agent: i64, contact: i64, op: CallOp) -> Result<Value, String> {
        let Some(&id) = self.by_contact.get(&contact) else {
            return Err("no call for this contact".into());
        };
        let c = self.calls.get(&id).ok_or("no call for this contact")?;
        let consulted_here = c.consult.as_ref().is_some_and(|x| {
            x.target == TransferTarget::Agent(agent)
                && x.party.sip.is_none()
                && c.agent.is_some_and(|a| a.0 != agent)
        });
        if consulted_here {
            if op != CallOp::Hangup {
                return Err("you are consulted on this call: only hang up is yours".into());
            }
            // 603 Decline while it rang, else the colleague simply left.
            let answered = c.consult.as_ref().is_some_and(|x| x.answered);
            self.consult_left(id, if answered { 200 } else { 603 })
                .await;
            return Ok(json!({}));
        }
        let Some((a, agent_party)) = c.agent else {
            return Err("the call is not connected to you".into());
        };
        if a != agent {
            return Err("the call is not connected to you".into());
        }
        let customer = c.customer;
        match op {
            CallOp::Hold => {
                if c.held_since.is_some() {
                    return Err("the call is on hold already".into());
                }
                self.hold_customer(id, true).await?;
                self.event(contact, "hold", json!({}));
            }
            CallOp::Unhold => {
                if c.held_since.is_none() {
                    return Err("the call is not on hold".into());
                }
                if c.consult.is_some() {
                    return Err("finish or cancel the consultation first".into());
                }
                self.hold_customer(id, false).await?;
                self.event(contact, "unhold", json!({}));
            }
            CallOp::Mute | CallOp::Unmute => {
                let mute = op == CallOp::Mute;
                if let Some(c) = self.calls.get_mut(&id) {
                    c.muted = mute;
                }
                if self.calls.get(&id).is_some_and(|c| c.held_since.is_none()) {
                    if mute {
                        let silence: Vec<PlaySpec> = vec![PlayItem::Silence { ms: 1000 }.into()];
                        let _ = self.d.media.play(customer.media, silence, true).await;
                    } else {
                        let _ = self.d.media.stop(customer.media).await;
                    }
                }
                self.event(contact, if mute { "mute" } else { "unmute" }, json!({}));
            }
            CallOp::Dtmf(digits) => {
                if digits.is_empty()
                    || digits.len() > 32
                    || !digits
                        .chars()
                        .all(|d| d.is_ascii_digit() || matches!(d, '*' | '#' | 'A'..='D'))
                {
                    return Err("digits: 0-9 * # A-D, at most 32".into());
                }
                self.d
                    .media
                    .send_dtmf(customer.media, digits)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            CallOp::Hangup => {
                if let Some(consult) = c.consult.clone().filter(|x| x.answered) {
                    // As when a desk phone hangs up there: the agent leaves a consultation or
                    // conference, the customer stays with whom the agent consulted.
                    self.complete_transfer(id, contact, (agent, agent_party), consult)
                        .await?;
                } else {
                    self.event(contact, "ended", json!({"by": "agent"}));
                    self.complete(id, contact, agent, "agent").await;
                    self.hang_up_customer(id).await;
                }
            }
            CallOp::Transfer(TransferTarget::Number(n)) => {
                self.dial_out(id, TransferTarget::Number(n.clone()), true)
                    .await?;
                self.event(contact, "transfer", json!({"to": n, "kind": "blind"}));
            }
            CallOp::Transfer(target) => self.blind_transfer(id, agent, target).await?,
            CallOp::Consult(target) => {
                if c.consult.is_some() {
                    return Err("a consultation is already going on".into());
                }
                if let TransferTarget::Queue(_) = target {
                    return Err("consult an agent or a number".into());
                }
                if c.held_since.is_none() {
                    self.hold_customer(id, true).await?;
                }
                self.dial_out(id, target.clone(), false).await?;
                self.event(contact, "consult", json!({"target": target_json(&target)}));
            }
            CallOp::CancelConsult => {
                let consult = self
                    .calls
                    .get_mut(&id)
                    .and_then(|c| c.consult.take())
                    .ok_or("no consultation")?;
                self.drop_party(consult.party).await;
                if let (TransferTarget::Agent(b), None) = (&consult.target, consult.party.sip) {
                    self.d.push.send(
                        *b,
                        json!({"type": "call_state", "contact_id": contact, "state": "ended"}),
                    );
                }
                let _ = self.d.media.bridge(customer.media, agent_party.media).await;
                self.hold_customer(id, false).await?;
                self.event(contact, "consult_cancelled", json!({}));
            }
            CallOp::CompleteTransfer => {
                let consult = c.consult.clone().ok_or("no consultation")?;
                if !consult.answered {
                    return Err("the consulted party has not answered yet".into());
                }
                self.complete_transfer(id, contact, (agent, agent_party), consult)
                    .await?;
            }
            CallOp::Conference => {
                let consult = c.consult.clone().ok_or("call someone first (consult)")?;
                if !consult.answered {
                    return Err("the consulted party has not answered yet".into());
                }
                let conf = ConferenceId(id);
                let _ = self.d.media.stop(customer.media).await;
                for leg in [customer.media, agent_party.media, consult.party.media] {
                    self.d
                        .media
                        .mix(conf, leg, Role::Normal)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                if let Some(c) = self.calls.get_mut(&id) {
                    c.conference = true;
                }
                self.unhold_signalling(id).await;
                self.event(
                    contact,
                    "conference",
                    json!({"with": target_json(&consult.target)}),
                );
            }
        }
        self.push_state(id);
        Ok(self.state_json(id))
    }

    /// Hands the call to the answered consulted party (attended transfer): a colleague gets it
    /// through the ACD as a follow-up contact, a number stays connected; out of a conference,
    /// the three are unmixed first. The transferring agent's contact is completed.
    async fn complete_transfer(
        &mut self,
        id: CallId,
        contact: i64,
        (agent, agent_party): (i64, Party),
        consult: Consult,
    ) -> Result<(), String> {
        self.quality(id).await; // the transferring agent's legs, for the call record
        let in_conference = self
            .calls
            .get_mut(&id)
            .and_then(|c| std::mem::take(&mut c.conference).then_some(c.customer.media));
        if let Some(customer) = in_conference {
            for leg in [customer, agent_party.media, consult.party.media] {
                let _ = self.d.media.unmix(leg).await;
            }
        }
        self.event(
            contact,
            "transfer",
            json!({"to": target_json(&consult.target), "kind": "attended"}),
        );
        match consult.target.clone() {
            TransferTarget::Agent(b) => {
                // The ACD hands the call to the colleague; our offer handler sees them
                // already on the line and connects at once.
                if let Some(c) = self.calls.get_mut(&id) {
                    c.agent = None;
                }
                self.drop_party(agent_party).await;
                self.stop_recording(id).await;
                // Off hold for the colleague (music plays on until they are bridged); the
                // consultation's hold time is the transferring agent's.
                self.unhold_signalling(id).await;
                self.complete_transferred(id, contact, agent).await;
                let spec = self
                    .follow_up_contact(id, None)
                    .await
                    .ok_or("cannot store the transfer")?;
                match self.d.hub.route_to_agent(spec.clone(), b, 30).await {
                    Ok(Ok(())) => {}
                    _ => self.d.hub.route(spec, None).await,
                }
            }
            // A number: it stays connected, and the agent's contact completes there.
            _ => self.connect_customer_to_consult(id).await,
        }
        Ok(())
    }

    /// Puts the customer on hold (sendonly + music) or back (sendrecv, the agent's voice).
    async fn hold_customer(&mut self, id: CallId, hold: bool) -> Result<(), String> {
        let c = self.calls.get_mut(&id).ok_or("no call")?;
        let customer = c.customer;
        let now = now_ms();
        if hold {
            c.held_since = Some(now);
        } else if let Some(s) = c.held_since.take() {
            c.hold_ms += now - s;
        }
        let muted = c.muted;
        let language = c.language;
        let dir = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        self.d
            .media
            .set_direction(customer.media, dir)
            .await
            .map_err(|e| e.to_string())?;
        let offer = self
            .d
            .media
            .local_offer(customer.media)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(sip) = customer.sip {
            let _ = self.d.sip.reinvite(sip, offer).await;
        }
        if hold {
            let music = specs(&self.d.prompts, language, &[PromptRef::MusicOnHold]);
            let _ = self.d.media.play(customer.media, music, true).await;
        } else if muted {
            let silence: Vec<PlaySpec> = vec![PlayItem::Silence { ms: 1000 }.into()];
            let _ = self.d.media.play(customer.media, silence, true).await;
        } else {
            let _ = self.d.media.stop(customer.media).await;
        }
        Ok(())
    }

    async fn unhold_signalling(&mut self, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(s) = c.held_since.take() {
            c.hold_ms += now_ms() - s;
        }
        let customer = c.customer;
        let _ = self
            .d
            .media
            .set_direction(customer.media, Direction::SendRecv)
            .await;
        if let Ok(offer) = self.d.media.local_offer(customer.media).await {
            if let Some(sip) = customer.sip {
                let _ = self.d.sip.reinvite(sip, offer).await;
            }
        }
    }

    /// The customer and the consulted party (or the number of a blind transfer) are bridged;
    /// the agent's leg goes.
    async fn connect_customer_to_consult(&mut self, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(consult) = c.consult.take() else {
            return;
        };
        let customer = c.customer;
        let agent = c.agent.take();
        let contact = c.contact;
        let was_conference = c.conference;
        c.conference = false;
        c.stage = Stage::External;
        if was_conference {
            let _ = self.d.media.unmix(customer.media).await;
            let _ = self.d.media.unmix(consult.party.media).await;
        }
        let _ = self.d.media.stop(customer.media).await;
        let _ = self
            .d
            .media
            .bridge(customer.media, consult.party.media)
            .await;
        self.unhold_signalling(id).await;
        // The consulted party stays as the call's other side.
        if let Some(c) = self.calls.get_mut(&id) {
            c.consult = Some(Consult {
                answered: true,
                blind: true,
                ..consult
            });
        }
        if let Some((a, p)) = agent {
            self.stop_recording(id).await;
            self.drop_party(p).await;
            if consult_is_number(self.calls.get(&id)) {
                self.complete_transferred(id, contact, a).await;
            }
        }
    }

    async fn complete_transferred(&mut self, id: CallId, contact: i64, agent: i64) {
        let hold_ms = self.calls.get(&id).map_or(0, |c| c.hold_ms);
        let _ = self
            .d
            .hub
            .contact_op(agent, contact, ContactOp::Complete { hold_ms })
            .await;
        self.d.push.send(
            agent,
            json!({"type": "call_state", "contact_id": contact, "state": "ended", "ended_by": "transfer"}),
        );
    }

    /// A new voice contact for the same call (a transfer), queued in `queue` (default: the
    /// current one). The call now belongs to it; returns its routing.
    async fn follow_up_contact(
        &mut self,
        id: CallId,
        queue: Option<String>,
    ) -> Option<ContactSpec> {
        let c = self.calls.get(&id)?;
        let old = c.spec.clone()?;
        let queue = queue.unwrap_or(old.queue.clone());
        let now = now_ms();
        let new = self
            .d
            .store
            .create_contact(
                &NewContact {
                    channel: Channel::Voice,
                    direction: ContactDirection::Inbound,
                    customer_id: c.customer_id,
                    case_id: None,
                    queue: Some(queue.clone()),
                    state: ContactState::Queued,
                    priority: old.priority,
                    subject: None,
                    agent_id: None,
                    conversation_id: None,
                },
                now,
            )
            .await
            .ok()?;
        let _ = self
            .d
            .store
            .set_contact_routing(
                new.id,
                &queue,
                old.priority,
                &old.extra_skills,
                "transfer",
                None,
            )
            .await;
        self.event(
            c.contact,
            "transferred",
            json!({"new_contact": new.id, "queue": queue}),
        );
        self.event(new.id, "transferred_from", json!({"contact": c.contact}));
        let old_contact = c.contact;
        self.by_contact.remove(&old_contact);
        self.by_contact.insert(new.id, id);
        let spec = ContactSpec {
            id: new.id,
            queue: queue.clone(),
            enqueued_at: now,
            last_agent: None,
            ..old
        };
        let c = self.calls.get_mut(&id)?;
        c.contact = new.id;
        c.spec = Some(spec.clone());
        // Time on hold so far was the previous contact's.
        c.hold_ms = 0;
        Some(spec)
    }

    async fn blind_transfer(
        &mut self,
        id: CallId,
        agent: i64,
        target: TransferTarget,
    ) -> Result<(), String> {
        let (queue, to_agent) = match &target {
            TransferTarget::Queue(q) => {
                if self.d.routing.rules().queue(q).is_none() {
                    return Err(format!("unknown queue {q:?}"));
                }
                (Some(q.clone()), None)
            }
            TransferTarget::Agent(b) if *b == agent => {
                return Err("you cannot transfer to yourself".into())
            }
            TransferTarget::Agent(b) => (None, Some(*b)),
            TransferTarget::Number(_) => return Err("dial numbers with a number transfer".into()),
        };
        let c = self.calls.get_mut(&id).ok_or("no call")?;
        let contact = c.contact;
        let Some((_, party)) = c.agent.take() else {
            return Err("the call is not connected to you".into());
        };
        let language = c.language;
        self.drop_party(party).await;
        self.event(
            contact,
            "transfer",
            json!({"to": target_json(&target), "kind": "blind"}),
        );
        self.complete_transferred(id, contact, agent).await;
        let spec = self
            .follow_up_contact(id, queue.clone())
            .await
            .ok_or("cannot store the transfer")?;
        let cfg: QueueExperienceConfig = self
            .d
            .ivr
            .as_ref()
            .map(|i| i.queue_experience(&spec.queue).clone())
            .unwrap_or_default();
        if let Some(c) = self.calls.get_mut(&id) {
            c.stage = Stage::Queued(Box::new(QueueExperience::new(
                &cfg,
                &spec.queue,
                language,
                now_ms(),
            )));
            c.held_since = None;
            c.muted = false;
        }
        match to_agent {
            Some(b) => match self.d.hub.route_to_agent(spec.clone(), b, 30).await {
                Ok(Ok(())) => {}
                _ => self.d.hub.route(spec, None).await,
            },
            None => self.d.hub.route(spec, None).await,
        }
        self.unhold_signalling(id).await;
        self.drive(id).await;
        Ok(())
    }

    fn state_json(&self, id: CallId) -> Value {
        let Some(c) = self.calls.get(&id) else {
            return json!({"state": "ended"});
        };
        let state = match (&c.stage, c.conference, &c.consult, c.held_since) {
            (_, true, _, _) => "conference",
            (_, _, Some(x), _) if !x.blind => {
                if x.answered {
                    "consulting"
                } else {
                    "consult_ringing"
                }
            }
            (_, _, _, Some(_)) => "held",
            (Stage::Connected, ..) => "connected",
            (Stage::Queued(_), ..) => "queued",
            (Stage::External, ..) => "transferred",
            _ => "ended",
        };
        json!({
            "contact_id": c.contact, "state": state, "held": c.held_since.is_some(), "muted": c.muted,
            "consult": c.consult.as_ref().map(|x| json!({"target": target_json(&x.target), "answered": x.answered})),
            "recording": c.recording.is_some(),
        })
    }

    /// The call's state, to the agent it is connected to. An agent who handed it on (a
    /// transfer) has had their `ended`: the new state, a colleague's contact, is not theirs.
    fn push_state(&self, id: CallId) {
        let Some((agent, _)) = self.calls.get(&id).and_then(|c| c.agent) else {
            return;
        };
        let mut s = self.state_json(id);
        s["type"] = json!("call_state");
        self.d.push.send(agent, s);
    }
}

fn consult_is_number(c: Option<&Call>) -> bool {
    c.and_then(|c| c.consult.as_ref())
        .is_some_and(|x| matches!(x.target, TransferTarget::Number(_)))
}

fn target_json(t: &TransferTarget) -> Value {
    match t {
        TransferTarget::Queue(q) => json!({"queue": q}),
        TransferTarget::Agent(a) => json!({"agent_id": a}),
        TransferTarget::Number(n) => json!({"number": n}),
    }
}
