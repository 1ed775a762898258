//! The hub loop: the single owner of live state — the ACD engine (agents, queues, offers),
//! agent presence and the live statistics. IO tasks talk to it through a bounded channel; it
//! publishes changes on a broadcast channel and hands every change to the writer task, never
//! awaiting the database itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::acd::engine::{Acd, AcdError, AgentSpec, CancelReason, Input, Outlook, Output};
use crate::acd::stats::{Snapshot, Stats, StatsConfig};
use crate::acd::types::{AgentStateKind, ContactSpec, Millis, QueueConfig, SkillSet};
use crate::agents::{valid_reason, AgentStateView, Cause, Presence};
use crate::domain::{now_ms, rfc3339, Channel, ContactState, Role};
use crate::store::{parse_skills, AgentEventRow, AgentProfile, Store};

/// Statistics go to supervisors at most this often.
const STATS_EVERY: Duration = Duration::from_millis(250);

/// Where a contact stands in the ACD: its state, the agent holding it, and its deadline.
pub type ContactPhase = (ContactState, Option<i64>, Option<Millis>);

/// What an agent asks to do with a contact it holds.
#[derive(Debug, Clone)]
pub enum ContactOp {
    Accept,
    Reject,
    Complete {
        hold_ms: Millis,
    },
    WrapUp {
        disposition: Option<String>,
        notes: String,
    },
    Extend {
        secs: u32,
    },
}

/// The state an agent may choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Available,
    NotReady(String),
    LoggedOut,
}

/// What a console needs on (re)connect.
#[derive(Debug, Clone)]
pub struct AgentSession {
    pub state: AgentStateView,
    /// Contacts in hand: (id, state, deadline).
    pub contacts: Vec<(i64, ContactState, Option<Millis>)>,
}

enum HubInput {
    Connect {
        agent: i64,
        profile: AgentProfile,
        reply: oneshot::Sender<AgentSession>,
    },
    Disconnect {
        agent: i64,
    },
    SetState {
        agent: i64,
        wanted: Wanted,
        reply: oneshot::Sender<Result<(AgentStateView, bool), String>>,
    },
    Profile {
        agent: i64,
        profile: AgentProfile,
    },
    LogOut {
        agent: i64,
    },
    Contact {
        agent: i64,
        contact: i64,
        op: ContactOp,
        reply: oneshot::Sender<Result<(), AcdError>>,
    },
    Route {
        spec: ContactSpec,
        overflow: Option<Vec<crate::acd::types::OverflowStep>>,
    },
    RouteToAgent {
        spec: ContactSpec,
        agent: i64,
        wait_secs: u32,
        reply: oneshot::Sender<Result<(), AcdError>>,
    },
    Abandon {
        contact: i64,
    },
    Withdraw {
        contact: i64,
    },
    /// Voice is served (calls ring agents' endpoints): an agent takes calls only while one of
    /// their endpoints (desk phone, browser) is ready.
    VoiceGating,
    VoiceEndpoint {
        agent: i64,
        ready: bool,
    },
    Outlook {
        queue: String,
        channel: Channel,
        reply: oneshot::Sender<Option<Outlook>>,
    },
    Phase {
        contact: i64,
        reply: oneshot::Sender<Option<ContactPhase>>,
    },
    Positions {
        contacts: Vec<i64>,
        reply: oneshot::Sender<Vec<Option<(usize, Millis)>>>,
    },
    Queues {
        queues: Vec<QueueConfig>,
    },
    Agents {
        reply: oneshot::Sender<Vec<(i64, AgentStateView)>>,
    },
    Stats {
        reply: oneshot::Sender<Arc<Snapshot>>,
    },
    Position {
        contact: i64,
        reply: oneshot::Sender<Option<(usize, Millis)>>,
    },
}

/// What the hub publishes to sockets.
#[derive(Debug, Clone)]
pub enum HubEvent {
    AgentState {
        agent: i64,
        view: AgentStateView,
    },
    Offer {
        contact: i64,
        agent: i64,
        expires_at: Millis,
    },
    OfferCancelled {
        contact: i64,
        agent: i64,
        reason: CancelReason,
    },
    ContactState {
        contact: i64,
        agent: Option<i64>,
        state: ContactState,
        until: Option<Millis>,
    },
    Stats(Arc<Snapshot>),
    /// The queue cannot take a live contact (a call): closed, full or waited too long; the
    /// channel applies `handling` (voicemail, callback).
    Refused {
        contact: i64,
        reason: crate::acd::engine::RefuseReason,
        handling: crate::acd::types::ClosedHandling,
    },
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

    async fn tell(&self, input: HubInput) {
        let _ = self.tx.send(input).await;
    }

    pub async fn connect(
        &self,
        agent: i64,
        profile: AgentProfile,
    ) -> Result<AgentSession, HubStopped> {
        self.ask(|reply| HubInput::Connect {
            agent,
            profile,
            reply,
        })
        .await
    }

    pub async fn disconnect(&self, agent: i64) {
        self.tell(HubInput::Disconnect { agent }).await
    }

    /// Sets the agent's chosen state; `Ok((view, changed))` or a reason for refusing.
    pub async fn set_state(
        &self,
        agent: i64,
        wanted: Wanted,
    ) -> Result<Result<(AgentStateView, bool), String>, HubStopped> {
        self.ask(|reply| HubInput::SetState {
            agent,
            wanted,
            reply,
        })
        .await
    }

    pub async fn set_profile(&self, agent: i64, profile: AgentProfile) {
        self.tell(HubInput::Profile { agent, profile }).await
    }

    /// The user ended their session: they take no more work.
    pub async fn log_out(&self, agent: i64) {
        self.tell(HubInput::LogOut { agent }).await
    }

    pub async fn contact_op(
        &self,
        agent: i64,
        contact: i64,
        op: ContactOp,
    ) -> Result<Result<(), AcdError>, HubStopped> {
        self.ask(|reply| HubInput::Contact {
            agent,
            contact,
            op,
            reply,
        })
        .await
    }

    /// Hands a stored contact to the ACD, with its routing rule's own overflow steps if any.
    pub async fn route(
        &self,
        spec: ContactSpec,
        overflow: Option<Vec<crate::acd::types::OverflowStep>>,
    ) {
        self.tell(HubInput::Route { spec, overflow }).await
    }

    /// Offers a stored contact to one agent first (a transfer), then to its queue.
    pub async fn route_to_agent(
        &self,
        spec: ContactSpec,
        agent: i64,
        wait_secs: u32,
    ) -> Result<Result<(), AcdError>, HubStopped> {
        self.ask(|reply| HubInput::RouteToAgent {
            spec,
            agent,
            wait_secs,
            reply,
        })
        .await
    }

    /// Whether a new contact could be served in `queue` now, and how soon.
    pub async fn outlook(
        &self,
        queue: &str,
        channel: Channel,
    ) -> Result<Option<Outlook>, HubStopped> {
        let queue = queue.to_string();
        self.ask(|reply| HubInput::Outlook {
            queue,
            channel,
            reply,
        })
        .await
    }

    /// Where a contact stands in the ACD: state, agent holding it, deadline.
    pub async fn contact_phase(&self, contact: i64) -> Result<Option<ContactPhase>, HubStopped> {
        self.ask(|reply| HubInput::Phase { contact, reply }).await
    }

    /// Places in line and expected waits (ms) of several contacts at once.
    pub async fn positions(
        &self,
        contacts: Vec<i64>,
    ) -> Result<Vec<Option<(usize, Millis)>>, HubStopped> {
        self.ask(|reply| HubInput::Positions { contacts, reply })
            .await
    }

    /// The contact leaves its queue as another contact (a callback keeping the caller's place).
    pub async fn withdraw(&self, contact: i64) {
        self.tell(HubInput::Withdraw { contact }).await
    }

    /// From now on agents take calls only while an endpoint of theirs is ready.
    pub async fn gate_voice(&self) {
        self.tell(HubInput::VoiceGating).await
    }

    /// An agent's desk phone registered (or the browser softphone connected), or went away.
    pub async fn voice_endpoint(&self, agent: i64, ready: bool) {
        self.tell(HubInput::VoiceEndpoint { agent, ready }).await
    }

    pub async fn abandon(&self, contact: i64) {
        self.tell(HubInput::Abandon { contact }).await
    }

    pub async fn set_queues(&self, queues: Vec<QueueConfig>) {
        self.tell(HubInput::Queues { queues }).await
    }

    pub async fn agents(&self) -> Result<Vec<(i64, AgentStateView)>, HubStopped> {
        self.ask(|reply| HubInput::Agents { reply }).await
    }

    /// A waiting contact's place in line and expected wait (ms).
    pub async fn position(&self, contact: i64) -> Result<Option<(usize, Millis)>, HubStopped> {
        self.ask(|reply| HubInput::Position { contact, reply })
            .await
    }

    pub async fn stats(&self) -> Result<Arc<Snapshot>, HubStopped> {
        self.ask(|reply| HubInput::Stats { reply }).await
    }
}

/// A change for the writer task, applied in order.
#[derive(Debug)]
enum Write {
    Agent(AgentEventRow),
    ContactState {
        id: i64,
        state: ContactState,
        agent: Option<i64>,
        at: Millis,
        data: Value,
    },
    ContactEvent {
        id: i64,
        at: Millis,
        kind: &'static str,
        data: Value,
    },
}

/// Starts the hub loop and its writer task. Before it serves, agents a previous run left
/// logged in are logged out (with an event), and unfinished contacts are resumed: digital ones
/// go back to their queue with their original enqueue time and order, calls that died with the
/// previous run are closed as failed.
pub async fn start(
    store: Store,
    queues: Vec<QueueConfig>,
    disconnect_grace_secs: i64,
) -> anyhow::Result<HubHandle> {
    let now = now_ms();
    log_out_after_restart(&store, now).await?;
    let (tx, rx) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(4096);
    let (writer_tx, writer_rx) = mpsc::channel(65_536);
    let queues_by_name: HashMap<String, QueueConfig> =
        queues.iter().map(|q| (q.name.clone(), q.clone())).collect();
    let configs: HashMap<String, StatsConfig> = queues
        .iter()
        .map(|q| (q.name.clone(), StatsConfig::from(q)))
        .collect();
    let mut core = Core {
        acd: Acd::new(queues),
        presence: Presence::new(disconnect_grace_secs * 1000),
        stats: Stats::new(configs),
        profiles: HashMap::new(),
        since: HashMap::new(),
        dispositions: HashMap::new(),
        events: events.clone(),
        writes: Vec::new(),
        stats_dirty: true,
        queues: queues_by_name.clone(),
        routing: HashMap::new(),
        parked: std::collections::BTreeSet::new(),
        parked_specs: HashMap::new(),
        gate_voice: false,
        voice_ready: std::collections::HashSet::new(),
    };
    for c in store.unfinished_contacts().await? {
        core.resume(now, c);
    }
    let writes = std::mem::take(&mut core.writes);
    tokio::spawn(writer(store, writer_rx));
    for w in writes {
        let _ = writer_tx.send(w).await;
    }
    tokio::spawn(run(core, rx, writer_tx));
    Ok(HubHandle { tx, events })
}

async fn log_out_after_restart(store: &Store, now: Millis) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for user in store.list_users().await? {
        if user.role == Role::Admin {
            continue;
        }
        let last = store.agent_events(user.id, 1).await?;
        if let Some(e) = last.last() {
            if e.state.as_deref() != Some(AgentStateKind::LoggedOut.as_str()) {
                rows.push(agent_row(
                    user.id,
                    now,
                    AgentStateKind::LoggedOut,
                    None,
                    Cause::Restart,
                ));
            }
        }
    }
    if !rows.is_empty() {
        store.append_agent_events(&rows).await?;
    }
    Ok(())
}

fn agent_row(
    agent: i64,
    at: Millis,
    state: AgentStateKind,
    reason: Option<String>,
    cause: Cause,
) -> AgentEventRow {
    AgentEventRow {
        agent_id: agent,
        at,
        kind: "state".into(),
        state: Some(state.as_str().into()),
        reason,
        data: json!({ "cause": cause }),
    }
}

/// The hub's state, driven by the loop below; everything here is synchronous.
struct Core {
    acd: Acd,
    presence: Presence,
    stats: Stats,
    /// Skills and capacity of connected agents (loaded by their socket task).
    profiles: HashMap<i64, AgentProfile>,
    since: HashMap<i64, Millis>,
    /// Disposition and notes given at wrap-up, stored when the contact closes.
    dispositions: HashMap<i64, Value>,
    events: broadcast::Sender<HubEvent>,
    writes: Vec<Write>,
    stats_dirty: bool,
    /// Queue definitions by name (opening hours for parked contacts).
    queues: HashMap<String, QueueConfig>,
    /// Specs of digital contacts being routed in this input, in case their queue is closed.
    routing: HashMap<i64, (ContactSpec, Option<Vec<crate::acd::types::OverflowStep>>)>,
    /// Digital contacts waiting for their closed queue to open: (when, contact) and their specs.
    parked: std::collections::BTreeSet<(Millis, i64)>,
    parked_specs: HashMap<i64, (ContactSpec, Option<Vec<crate::acd::types::OverflowStep>>)>,
    /// Whether calls need a ready endpoint, and whose endpoints are ready.
    gate_voice: bool,
    voice_ready: std::collections::HashSet<i64>,
}

/// Channels whose contacts wait (stored) when their queue is closed, instead of being refused.
fn waits_for_opening(c: Channel) -> bool {
    matches!(c, Channel::Email | Channel::Fax | Channel::Callback)
}

impl Core {
    fn view(&self, agent: i64) -> AgentStateView {
        let (state, reason) = self
            .acd
            .agent_state(agent)
            .unwrap_or((AgentStateKind::LoggedOut, None));
        AgentStateView {
            state,
            reason,
            since: rfc3339(self.since.get(&agent).copied().unwrap_or_else(now_ms)),
        }
    }

    fn session(&self, agent: i64) -> AgentSession {
        AgentSession {
            state: self.view(agent),
            contacts: self
                .acd
                .agent_contacts(agent)
                .into_iter()
                .filter_map(|c| self.acd.contact_phase(c).map(|(s, _, d)| (c, s, d)))
                .collect(),
        }
    }

    fn resume(&mut self, now: Millis, c: crate::store::ResumableContact) {
        let digital = matches!(
            c.channel,
            Channel::Email | Channel::Chat | Channel::Fax | Channel::Callback
        );
        let cause = json!({ "cause": "hub_restart" });
        match (digital, c.state, c.queue) {
            (
                true,
                ContactState::Queued | ContactState::Offered | ContactState::Connected,
                Some(queue),
            ) => {
                if c.state != ContactState::Queued {
                    self.writes.push(Write::ContactState {
                        id: c.id,
                        state: ContactState::Queued,
                        agent: None,
                        at: now,
                        data: cause,
                    });
                }
                let spec = ContactSpec {
                    id: c.id,
                    channel: c.channel,
                    queue,
                    priority: c.priority,
                    enqueued_at: c.created_at,
                    extra_skills: SkillSet(parse_skills(&c.skills).unwrap_or_default()),
                    // A contact someone was handling goes back to them first if they return.
                    last_agent: c.agent_id,
                };
                let overflow = c.overflow;
                self.route_contact(now, spec, overflow);
            }
            (_, ContactState::WrapUp, _) => {
                self.writes.push(Write::ContactState {
                    id: c.id,
                    state: ContactState::Closed,
                    agent: None,
                    at: now,
                    data: cause,
                });
            }
            _ => {
                // The call (or a contact without a queue) died with the previous run.
                self.writes.push(Write::ContactState {
                    id: c.id,
                    state: ContactState::Failed,
                    agent: None,
                    at: now,
                    data: cause,
                });
            }
        }
        self.drain(now);
    }

    fn input(&mut self, now: Millis, input: HubInput) {
        match input {
            HubInput::Connect {
                agent,
                profile,
                reply,
            } => {
                self.presence.connect(agent);
                if self.acd.is_logged_in(agent) && self.profiles.get(&agent) != Some(&profile) {
                    let _ = self.acd.handle(
                        now,
                        Input::AgentCapacity {
                            agent,
                            capacity: self.capacity(agent, &profile),
                        },
                    );
                }
                self.profiles.insert(agent, profile);
                let _ = reply.send(self.session(agent));
            }
            HubInput::Disconnect { agent } => self.presence.disconnect(now, agent),
            HubInput::SetState {
                agent,
                wanted,
                reply,
            } => {
                let before = self.view(agent);
                let result = self.set_state(now, agent, wanted);
                self.drain_with_cause(now, Cause::Agent);
                let after = self.view(agent);
                let changed = after.state != before.state || after.reason != before.reason;
                let _ = reply.send(result.map(|_| (after, changed)));
            }
            HubInput::Profile { agent, profile } => {
                if self.acd.is_logged_in(agent) {
                    // Skills changed: log out and in again keeps the engine's qualification
                    // exact; only when nothing is in hand, else just the capacity.
                    if self.acd.agent_contacts(agent).is_empty() {
                        let state = self.acd.agent_state(agent);
                        let _ = self.acd.handle(now, Input::AgentLogout(agent));
                        let available = matches!(state, Some((AgentStateKind::Available, _)));
                        let _ = self.acd.handle(
                            now,
                            Input::AgentLogin {
                                agent: self.spec(agent, &profile),
                                available,
                            },
                        );
                        if let Some((AgentStateKind::NotReady, Some(r))) = state {
                            let _ = self.acd.handle(
                                now,
                                Input::AgentNotReady {
                                    agent,
                                    reason: Some(r),
                                },
                            );
                        }
                    } else {
                        let _ = self.acd.handle(
                            now,
                            Input::AgentCapacity {
                                agent,
                                capacity: self.capacity(agent, &profile),
                            },
                        );
                    }
                }
                self.profiles.insert(agent, profile);
            }
            HubInput::LogOut { agent } => {
                if self.acd.handle(now, Input::AgentLogout(agent)).is_err()
                    && self.acd.is_logged_in(agent)
                {
                    let _ = self.acd.handle(
                        now,
                        Input::AgentNotReady {
                            agent,
                            reason: Some("logged_out".into()),
                        },
                    );
                }
                self.drain_with_cause(now, Cause::Agent);
            }
            HubInput::Contact {
                agent,
                contact,
                op,
                reply,
            } => {
                let owner = self.acd.contact_phase(contact).and_then(|(_, a, _)| a);
                let result = if owner != Some(agent)
                    && !matches!(op, ContactOp::Accept | ContactOp::Reject)
                {
                    Err(AcdError::NotAllowed(format!(
                        "contact {contact} is not in your hands"
                    )))
                } else {
                    match op {
                        ContactOp::Accept => self
                            .acd
                            .handle(now, Input::OfferAccepted { contact, agent }),
                        ContactOp::Reject => self
                            .acd
                            .handle(now, Input::OfferRejected { contact, agent }),
                        ContactOp::Complete { hold_ms } => self
                            .acd
                            .handle(now, Input::ContactCompleted { contact, hold_ms }),
                        ContactOp::Extend { secs } => {
                            self.acd.handle(now, Input::WrapUpExtend { contact, secs })
                        }
                        ContactOp::WrapUp { disposition, notes } => {
                            let data = json!({ "disposition": disposition, "notes": notes });
                            self.dispositions.insert(contact, data);
                            let r = self.acd.handle(now, Input::WrapUpDone { contact });
                            if r.is_err() {
                                self.dispositions.remove(&contact);
                            }
                            r
                        }
                    }
                };
                let _ = reply.send(result);
            }
            HubInput::Route { spec, overflow } => self.route_contact(now, spec, overflow),
            HubInput::RouteToAgent {
                spec,
                agent,
                wait_secs,
                reply,
            } => {
                let r = self.acd.handle(
                    now,
                    Input::ContactForAgent {
                        spec,
                        agent,
                        wait_secs,
                    },
                );
                let _ = reply.send(r);
            }
            HubInput::Outlook {
                queue,
                channel,
                reply,
            } => {
                let _ = reply.send(self.acd.outlook(&queue, channel, now));
            }
            HubInput::Phase { contact, reply } => {
                let _ = reply.send(self.acd.contact_phase(contact));
            }
            HubInput::Positions { contacts, reply } => {
                let _ = reply.send(
                    contacts
                        .into_iter()
                        .map(|c| self.acd.expected_wait(c, now))
                        .collect(),
                );
            }
            HubInput::Withdraw { contact } => {
                let _ = self.acd.handle(now, Input::ContactWithdrawn(contact));
            }
            HubInput::VoiceGating => {
                self.gate_voice = true;
                for agent in self.acd.agent_ids() {
                    self.refresh_capacity(now, agent);
                }
            }
            HubInput::VoiceEndpoint { agent, ready } => {
                let changed = if ready {
                    self.voice_ready.insert(agent)
                } else {
                    self.voice_ready.remove(&agent)
                };
                if changed {
                    self.refresh_capacity(now, agent);
                }
            }
            HubInput::Abandon { contact } => {
                if self.parked_specs.remove(&contact).is_some() {
                    self.parked.retain(|(_, c)| *c != contact);
                    self.writes.push(Write::ContactState {
                        id: contact,
                        state: ContactState::Abandoned,
                        agent: None,
                        at: now,
                        data: json!({ "while": "waiting_for_opening" }),
                    });
                } else {
                    let _ = self.acd.handle(now, Input::ContactAbandoned(contact));
                }
            }
            HubInput::Queues { queues } => {
                for q in &queues {
                    self.stats.set_config(&q.name, StatsConfig::from(q));
                    self.queues.insert(q.name.clone(), q.clone());
                }
                let _ = self.acd.handle(now, Input::RulesReloaded(queues));
                // Opening hours may have changed: parked contacts try again (and park again
                // if their queue is still closed).
                let parked: Vec<i64> = self.parked.iter().map(|(_, c)| *c).collect();
                self.parked.clear();
                for c in parked {
                    if let Some((spec, overflow)) = self.parked_specs.remove(&c) {
                        self.route_contact(now, spec, overflow);
                    }
                }
            }
            HubInput::Agents { reply } => {
                let _ = reply.send(
                    self.acd
                        .agent_ids()
                        .into_iter()
                        .map(|a| (a, self.view(a)))
                        .collect(),
                );
            }
            HubInput::Position { contact, reply } => {
                let _ = reply.send(self.acd.expected_wait(contact, now));
            }
            HubInput::Stats { reply } => {
                let _ = reply.send(Arc::new(self.stats.snapshot(now)));
            }
        }
        self.drain(now);
    }

    /// The capacity an agent works with: their profile's, without voice while calls cannot
    /// reach them.
    fn capacity(&self, agent: i64, profile: &AgentProfile) -> crate::acd::types::Capacity {
        let mut c = profile.capacity.clone();
        if self.gate_voice && !self.voice_ready.contains(&agent) {
            c.voice = 0;
        }
        c
    }

    fn spec(&self, agent: i64, p: &AgentProfile) -> AgentSpec {
        AgentSpec {
            id: agent,
            skills: p.skills.clone(),
            capacity: self.capacity(agent, p),
        }
    }

    fn refresh_capacity(&mut self, now: Millis, agent: i64) {
        if !self.acd.is_logged_in(agent) {
            return;
        }
        let profile = self.profiles.get(&agent).cloned().unwrap_or_default();
        let capacity = self.capacity(agent, &profile);
        let _ = self
            .acd
            .handle(now, Input::AgentCapacity { agent, capacity });
    }

    /// Hands a contact to the ACD, remembering a digital one's spec while the engine decides,
    /// so that a closed queue parks it instead of refusing it.
    fn route_contact(
        &mut self,
        now: Millis,
        spec: ContactSpec,
        overflow: Option<Vec<crate::acd::types::OverflowStep>>,
    ) {
        if waits_for_opening(spec.channel) {
            self.routing
                .insert(spec.id, (spec.clone(), overflow.clone()));
        }
        let _ = self
            .acd
            .handle(now, Input::ContactRouted { spec, overflow });
        self.drain(now);
        self.routing.clear();
    }

    fn set_state(&mut self, now: Millis, agent: i64, wanted: Wanted) -> Result<(), String> {
        if !self.presence.is_connected(agent) {
            return Err("the agent console is not connected".into());
        }
        let logged_in = self.acd.is_logged_in(agent);
        let profile = self.profiles.get(&agent).cloned().unwrap_or_default();
        let r = match wanted {
            Wanted::Available if logged_in => self.acd.handle(
                now,
                Input::AgentNotReady {
                    agent,
                    reason: None,
                },
            ),
            Wanted::Available => self.acd.handle(
                now,
                Input::AgentLogin {
                    agent: self.spec(agent, &profile),
                    available: true,
                },
            ),
            Wanted::NotReady(reason) => {
                if !valid_reason(&reason) {
                    return Err(
                        "a not_ready state needs a reason code (letters, digits, _; at most 40)"
                            .into(),
                    );
                }
                if !logged_in {
                    self.acd
                        .handle(
                            now,
                            Input::AgentLogin {
                                agent: self.spec(agent, &profile),
                                available: false,
                            },
                        )
                        .map_err(|e| e.to_string())?;
                }
                self.acd.handle(
                    now,
                    Input::AgentNotReady {
                        agent,
                        reason: Some(reason),
                    },
                )
            }
            Wanted::LoggedOut if logged_in => self.acd.handle(now, Input::AgentLogout(agent)),
            Wanted::LoggedOut => Ok(()),
        };
        r.map_err(|e| e.to_string())
    }

    fn timeout(&mut self, now: Millis) {
        self.acd.handle_timeout(now);
        while let Some(&(at, contact)) = self.parked.first() {
            if at > now {
                break;
            }
            self.parked.remove(&(at, contact));
            if let Some((spec, overflow)) = self.parked_specs.remove(&contact) {
                self.route_contact(now, spec, overflow);
            }
        }
        for agent in self.presence.expired(now) {
            self.profiles.remove(&agent);
            if self.acd.handle(now, Input::AgentLogout(agent)).is_err()
                && self.acd.is_logged_in(agent)
            {
                // Contacts still in hand: stop new work; the supervisor sees why.
                let _ = self.acd.handle(
                    now,
                    Input::AgentNotReady {
                        agent,
                        reason: Some("disconnected".into()),
                    },
                );
            } else if !self.acd.is_logged_in(agent) {
                self.since.insert(agent, now);
            }
            self.drain_with_cause(now, Cause::Disconnected);
        }
        self.drain(now);
    }

    fn poll_timeout(&self) -> Option<Millis> {
        [
            self.acd.poll_timeout(),
            self.presence.poll_timeout(),
            self.parked.first().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn drain(&mut self, now: Millis) {
        self.drain_with_cause(now, Cause::Acd);
    }

    /// Turns engine outputs into events for sockets, rows for the writer, and statistics.
    fn drain_with_cause(&mut self, now: Millis, cause: Cause) {
        // Every state an agent passes through is told and logged, in order — except the
        // transient "login" not-ready of an agent logging straight into not ready with its own
        // reason: that is one change.
        let mut agent_states: Vec<(i64, AgentStateKind, Option<String>)> = Vec::new();
        while let Some(out) = self.acd.poll_output() {
            match out {
                Output::AgentState {
                    agent,
                    state,
                    reason,
                } => {
                    let transient = agent_states.iter().rposition(|(a, s, r)| {
                        *a == agent
                            && *s == AgentStateKind::NotReady
                            && r.as_deref() == Some("login")
                    });
                    if let Some(i) = transient.filter(|_| state == AgentStateKind::NotReady) {
                        agent_states.remove(i);
                    }
                    agent_states.push((agent, state, reason));
                }
                Output::Offer {
                    contact,
                    agent,
                    expires_at,
                } => {
                    let _ = self.events.send(HubEvent::Offer {
                        contact,
                        agent,
                        expires_at,
                    });
                }
                Output::OfferCancelled {
                    contact,
                    agent,
                    reason,
                } => {
                    self.writes.push(Write::ContactEvent {
                        id: contact,
                        at: now,
                        kind: "offer_cancelled",
                        data: json!({ "agent": agent, "reason": reason }),
                    });
                    let _ = self.events.send(HubEvent::OfferCancelled {
                        contact,
                        agent,
                        reason,
                    });
                }
                Output::ContactState {
                    contact,
                    state,
                    agent,
                } => {
                    let until = match state {
                        ContactState::WrapUp => self.acd.contact_phase(contact).and_then(|p| p.2),
                        _ => None,
                    };
                    let data = match state {
                        ContactState::Closed => self
                            .dispositions
                            .remove(&contact)
                            .unwrap_or_else(|| json!({ "wrap_up": "timed_out" })),
                        _ => json!({}),
                    };
                    self.writes.push(Write::ContactState {
                        id: contact,
                        state,
                        agent,
                        at: now,
                        data,
                    });
                    let _ = self.events.send(HubEvent::ContactState {
                        contact,
                        agent,
                        state,
                        until,
                    });
                }
                Output::Overflowed { contact, step } => {
                    self.writes.push(Write::ContactEvent {
                        id: contact,
                        at: now,
                        kind: "overflow",
                        data: json!({ "step": step }),
                    });
                }
                Output::Refused {
                    contact,
                    reason,
                    handling,
                } => {
                    // A digital contact in a closed queue waits (stored as queued) for the next
                    // opening instead of being closed.
                    let parked = match (reason, self.routing.get(&contact)) {
                        (crate::acd::engine::RefuseReason::Closed, Some((spec, overflow))) => self
                            .queues
                            .get(&spec.queue)
                            .and_then(|q| q.hours.next_open(now + 1))
                            .map(|at| (at, spec.clone(), overflow.clone())),
                        _ => None,
                    };
                    if let Some((at, spec, overflow)) = parked {
                        self.writes.push(Write::ContactEvent {
                            id: contact,
                            at: now,
                            kind: "waiting_for_opening",
                            data: json!({ "queue": spec.queue, "until": rfc3339(at), "handling": handling }),
                        });
                        self.parked.insert((at, contact));
                        self.parked_specs.insert(contact, (spec, overflow));
                        continue;
                    }
                    let _ = self.events.send(HubEvent::Refused {
                        contact,
                        reason,
                        handling,
                    });
                    self.writes.push(Write::ContactState {
                        id: contact,
                        state: ContactState::Closed,
                        agent: None,
                        at: now,
                        data: json!({ "refused": reason, "handling": handling }),
                    });
                    let _ = self.events.send(HubEvent::ContactState {
                        contact,
                        agent: None,
                        state: ContactState::Closed,
                        until: None,
                    });
                }
                Output::Stat(ev) => {
                    self.stats.apply(&ev);
                    self.stats_dirty = true;
                }
            }
        }
        for (agent, state, reason) in agent_states {
            self.since.insert(agent, now);
            let view = AgentStateView {
                state,
                reason: reason.clone(),
                since: rfc3339(now),
            };
            self.writes
                .push(Write::Agent(agent_row(agent, now, state, reason, cause)));
            let _ = self.events.send(HubEvent::AgentState { agent, view });
        }
    }
}

async fn run(mut core: Core, mut rx: mpsc::Receiver<HubInput>, writer: mpsc::Sender<Write>) {
    let mut stats_tick = tokio::time::interval(STATS_EVERY);
    stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_ticks = 0u32;
    loop {
        let deadline = core.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => {
                    tokio::time::sleep(Duration::from_millis((at - now_ms()).max(0) as u64)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { break };
                core.input(now_ms(), input);
            }
            _ = sleep => core.timeout(now_ms()),
            _ = stats_tick.tick() => {
                // Changes are coalesced to one frame per 250 ms; while contacts wait, a frame
                // every 5 s keeps longest-wait figures fresh without any event.
                idle_ticks += 1;
                if core.stats_dirty || (idle_ticks >= 20 && core.acd.waiting() > 0) {
                    core.stats_dirty = false;
                    idle_ticks = 0;
                    let snapshot = Arc::new(core.stats.snapshot(now_ms()));
                    let _ = core.events.send(HubEvent::Stats(snapshot));
                }
            }
        }
        for w in core.writes.drain(..) {
            if writer.send(w).await.is_err() {
                tracing::error!("event writer stopped; changes are not being stored");
            }
        }
    }
}

/// Applies changes in order, batching agent events; a failed write is retried, never dropped.
async fn writer(store: Store, mut rx: mpsc::Receiver<Write>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut agents = Vec::new();
        for w in batch.drain(..) {
            match w {
                Write::Agent(row) => agents.push(row),
                other => {
                    flush_agents(&store, &mut agents).await;
                    let mut backoff = Duration::from_millis(100);
                    loop {
                        let r = match &other {
                            Write::ContactState {
                                id,
                                state,
                                agent,
                                at,
                                data,
                            } => {
                                store
                                    .set_contact_state(*id, *state, *agent, *at, data)
                                    .await
                            }
                            Write::ContactEvent { id, at, kind, data } => {
                                store.append_contact_event(*id, *at, kind, data).await
                            }
                            Write::Agent(_) => Ok(()),
                        };
                        match r {
                            Ok(()) => break,
                            Err(crate::store::StoreError::NotFound) => {
                                tracing::warn!("a change for an unknown contact was dropped");
                                break;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "storing a contact change failed; retrying");
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(10));
                            }
                        }
                    }
                }
            }
        }
        flush_agents(&store, &mut agents).await;
    }
}

async fn flush_agents(store: &Store, rows: &mut Vec<AgentEventRow>) {
    if rows.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = store.append_agent_events(rows).await {
        tracing::error!(error = %e, events = rows.len(), "storing agent events failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    rows.clear();
}
