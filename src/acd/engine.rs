//! The routing engine. Sans-IO: `handle(now, input)`, `handle_timeout(now)`, `poll_output()`,
//! `poll_timeout()`. Nothing here reads a clock, spawns, or draws random numbers.
//!
//! Index: waiting contacts live in *lanes*, one per (queue, overflow step, channel, extra
//! skills). Each lane keeps its waiting contacts in queue order and the free agents qualified
//! for it in the queue's strategy order, so a contact arriving takes the head of the lane's free
//! agents, and an agent freeing up compares only the heads of the lanes it qualifies for — no
//! scan over all agents or all contacts.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::Serialize;

use super::types::{
    AgentId, AgentStateKind, Capacity, ClosedHandling, ContactId, ContactSpec, Millis,
    OverflowStep, QueueConfig, SkillSet, StatEvent, Strategy,
};
use crate::domain::{Channel, ContactState};

/// Every input the engine takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    ContactArrived(ContactSpec),
    /// A contact whose routing rule brings its own overflow steps (step 0 = the queue's own).
    ContactRouted {
        spec: ContactSpec,
        overflow: Option<Vec<OverflowStep>>,
    },
    /// A contact for one agent first (a transfer to a named agent): it waits up to
    /// `wait_secs` for that agent, then joins its queue like any other.
    ContactForAgent {
        spec: ContactSpec,
        agent: AgentId,
        wait_secs: u32,
    },
    /// The customer hung up or left while waiting or being offered.
    ContactAbandoned(ContactId),
    /// The contact leaves its queue without being abandoned: it goes on as another contact
    /// (a caller who asked for a callback that keeps their place). Counted as removed.
    ContactWithdrawn(ContactId),
    /// A waiting contact's priority changed (e.g. the customer turned out to be a VIP).
    ContactPriority {
        contact: ContactId,
        priority: i64,
    },
    AgentLogin {
        agent: AgentSpec,
        available: bool,
    },
    AgentLogout(AgentId),
    /// `None` = available; `Some(reason)` = not ready with a reason code.
    AgentNotReady {
        agent: AgentId,
        reason: Option<String>,
    },
    AgentCapacity {
        agent: AgentId,
        capacity: Capacity,
    },
    OfferAccepted {
        contact: ContactId,
        agent: AgentId,
    },
    OfferRejected {
        contact: ContactId,
        agent: AgentId,
    },
    /// Handling ended (hang-up, chat closed, email sent); wrap-up begins.
    ContactCompleted {
        contact: ContactId,
        hold_ms: Millis,
    },
    WrapUpExtend {
        contact: ContactId,
        secs: u32,
    },
    WrapUpDone {
        contact: ContactId,
    },
    RulesReloaded(Vec<QueueConfig>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub id: AgentId,
    /// Skill name → level.
    pub skills: HashMap<String, u8>,
    pub capacity: Capacity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    Rejected,
    /// Ring-no-answer: the offer timed out and the agent was set not ready.
    Timeout,
    Abandoned,
    AgentNotReady,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseReason {
    Closed,
    QueueFull,
    MaxWait,
    UnknownQueue,
}

/// What the engine asks the world to do or know. Stat events feed the statistics and the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Offer {
        contact: ContactId,
        agent: AgentId,
        expires_at: Millis,
    },
    OfferCancelled {
        contact: ContactId,
        agent: AgentId,
        reason: CancelReason,
    },
    ContactState {
        contact: ContactId,
        state: ContactState,
        agent: Option<AgentId>,
    },
    AgentState {
        agent: AgentId,
        state: AgentStateKind,
        reason: Option<String>,
    },
    /// The contact moved to a wider overflow step.
    Overflowed {
        contact: ContactId,
        step: usize,
    },
    /// The queue cannot take the contact; the channel applies `handling`.
    Refused {
        contact: ContactId,
        reason: RefuseReason,
        handling: ClosedHandling,
    },
    Stat(StatEvent),
}

/// See [`Acd::outlook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outlook {
    pub open: bool,
    pub agents: usize,
    pub available: usize,
    pub waiting: usize,
    pub expected_wait_ms: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    #[error("unknown contact {0}")]
    UnknownContact(ContactId),
    #[error("contact {0} is already known")]
    DuplicateContact(ContactId),
    #[error("agent {0} is already logged in")]
    AlreadyLoggedIn(AgentId),
    #[error("no offer of contact {contact} to agent {agent} is pending (it may have expired)")]
    NoSuchOffer { contact: ContactId, agent: AgentId },
    #[error("{0}")]
    NotAllowed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    Offer(ContactId),
    WrapUp(ContactId),
    Overflow(ContactId),
    Sticky(ContactId),
    MaxWait(ContactId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LaneKey {
    queue: usize,
    /// `Some(i)`: the contact's own overflow steps (`Acd::overrides[i]`), else the queue's.
    steps: Option<usize>,
    step: usize,
    channel: ChannelClass,
    extra: usize,
}

/// Capacity classes: callbacks and outbound calls occupy the agent like voice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ChannelClass {
    Voice,
    Chat,
    Email,
    Fax,
}

impl ChannelClass {
    fn of(c: Channel) -> Self {
        match c {
            Channel::Voice | Channel::Callback | Channel::Outbound => ChannelClass::Voice,
            Channel::Chat => ChannelClass::Chat,
            Channel::Email => ChannelClass::Email,
            Channel::Fax => ChannelClass::Fax,
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// How far down a lane `try_lane` looks for a contact its free agents have not declined.
const DECLINED_LOOKAHEAD: usize = 256;

/// Waiting order inside a lane: higher static priority first, then earlier arrival.
type WaitKey = (Reverse<i64>, Millis, ContactId);
/// Free-agent order inside a lane: agents with the queue's preferred skills first, then by the
/// queue's strategy.
type FreeKey = (i64, i64, i64, AgentId);

struct Lane {
    key: LaneKey,
    waiting: BTreeSet<WaitKey>,
    free: BTreeSet<FreeKey>,
    /// Logged-in agents qualified for this lane.
    qualified: Vec<AgentId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Available,
    NotReady(String),
}

struct Agent {
    spec: AgentSpec,
    status: Status,
    offer: Option<ContactId>,
    /// Contacts offered, connected or in wrap-up, per channel class.
    load: [u8; 4],
    in_hand: Vec<ContactId>,
    /// Contacts in hand per queue, for queues that cap them (`max_per_agent`).
    per_queue: HashMap<usize, u8>,
    /// Contacts in hand that are connected, and in wrap-up (the state shown follows them).
    connected: u8,
    wrapping: u8,
    idle_since: Millis,
    last_offer_seq: u64,
    lanes: Vec<usize>,
    /// (lane, key) entries currently in lanes' free sets.
    free_entries: Vec<(usize, FreeKey)>,
    /// Returning customers waiting for this agent.
    sticky: Vec<ContactId>,
    shown: (AgentStateKind, Option<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Waiting { lane: usize },
    Sticky { agent: AgentId, until: Millis },
    Offered { agent: AgentId, expires: Millis },
    Connected { agent: AgentId },
    WrapUp { agent: AgentId, until: Millis },
}

struct Contact {
    spec: ContactSpec,
    /// When the current (or last) offer was made: handle time runs from there.
    offered_at: Millis,
    queue: usize,
    steps: Option<usize>,
    extra: usize,
    step: usize,
    phase: Phase,
    declined: Vec<AgentId>,
}

pub struct Acd {
    queues: Vec<QueueConfig>,
    queue_index: HashMap<String, usize>,
    /// Recent handle time per queue (ms; 0 = none yet), for expected-wait estimates.
    aht_ms: Vec<Millis>,
    /// Lanes of each queue, and contacts waiting for a sticky agent per queue: queue lengths
    /// without scanning contacts.
    queue_lanes: Vec<Vec<usize>>,
    sticky_waiting: Vec<u32>,
    /// Contacts that some agent declined; while there are none, lane heads need no lookup.
    declined_total: usize,
    extras: Vec<SkillSet>,
    /// Overflow step lists that routing rules gave individual contacts (interned).
    overrides: Vec<Vec<OverflowStep>>,
    lanes: Vec<Lane>,
    lane_index: HashMap<LaneKey, usize>,
    agents: HashMap<AgentId, Agent>,
    contacts: HashMap<ContactId, Contact>,
    timers: BTreeSet<(Millis, Timer)>,
    outputs: VecDeque<Output>,
    offer_seq: u64,
}

/// Aging is priority per minute; keys work in priority-milliseconds so that a contact's
/// effective priority at `now` is `priority * 60_000 + aging * waited_ms`.
fn static_key(priority: i64, aging_per_minute: i64, enqueued_at: Millis) -> i64 {
    priority
        .saturating_mul(60_000)
        .saturating_sub(aging_per_minute.saturating_mul(enqueued_at))
}

impl Acd {
    pub fn new(queues: Vec<QueueConfig>) -> Acd {
        let mut acd = Acd {
            queues: Vec::new(),
            queue_index: HashMap::new(),
            aht_ms: Vec::new(),
            queue_lanes: Vec::new(),
            sticky_waiting: Vec::new(),
            declined_total: 0,
            extras: vec![SkillSet::default()],
            overrides: Vec::new(),
            lanes: Vec::new(),
            lane_index: HashMap::new(),
            agents: HashMap::new(),
            contacts: HashMap::new(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            offer_seq: 0,
        };
        acd.set_queues(queues);
        acd
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Contacts waiting (in a lane or for their sticky agent).
    pub fn waiting(&self) -> usize {
        self.lanes.iter().map(|l| l.waiting.len()).sum::<usize>()
            + self
                .sticky_waiting
                .iter()
                .map(|n| *n as usize)
                .sum::<usize>()
    }

    fn queue_waiting(&self, queue: usize) -> usize {
        self.queue_lanes[queue]
            .iter()
            .map(|l| self.lanes[*l].waiting.len())
            .sum::<usize>()
            + self.sticky_waiting[queue] as usize
    }

    pub fn agent_state(&self, agent: AgentId) -> Option<(AgentStateKind, Option<String>)> {
        self.agents.get(&agent).map(|a| a.shown.clone())
    }

    /// The agent holding (offered, connected or in wrap-up) a contact.
    pub fn contact_agent(&self, contact: ContactId) -> Option<AgentId> {
        match self.contacts.get(&contact)?.phase {
            Phase::Offered { agent, .. }
            | Phase::Connected { agent }
            | Phase::WrapUp { agent, .. } => Some(agent),
            _ => None,
        }
    }

    /// A waiting contact's place (1 = next) and expected wait: its place times the queue's
    /// recent handle time, shared among the logged-in agents who may take it (180 s per
    /// contact until the queue has handled one).
    pub fn expected_wait(&self, contact: ContactId, now: Millis) -> Option<(usize, Millis)> {
        let c = self.contacts.get(&contact)?;
        let position = match c.phase {
            Phase::Sticky { until, .. } => return Some((1, (until - now).max(0))),
            _ => self.position(contact)?,
        };
        let Phase::Waiting { lane } = c.phase else {
            return None;
        };
        let aht = match self.aht_ms[c.queue] {
            0 => 180_000,
            a => a,
        };
        let agents = self.lanes[lane].qualified.len().max(1) as i64;
        Some((position, position as i64 * aht / agents))
    }

    /// What a new contact on `channel` would find in `queue` now: whether the queue is open,
    /// how many logged-in agents could take it (and how many of them are available), how many
    /// wait, and the expected wait of one more. `None` for an unknown queue. Scans the agents:
    /// for status pages, not for the routing path.
    pub fn outlook(&self, queue: &str, channel: Channel, now: Millis) -> Option<Outlook> {
        let &q = self.queue_index.get(queue)?;
        let key = LaneKey {
            queue: q,
            steps: None,
            step: self.queues[q].steps.len().saturating_sub(1),
            channel: ChannelClass::of(channel),
            extra: 0,
        };
        let mut agents = 0;
        let mut available = 0;
        for a in self.agents.values() {
            if self.qualifies(&a.spec, key) {
                agents += 1;
                if a.status == Status::Available && Self::free_for(a, key.channel) {
                    available += 1;
                }
            }
        }
        let waiting = self.queue_waiting(q);
        let aht = match self.aht_ms[q] {
            0 => 180_000,
            a => a,
        };
        let expected_wait_ms = if available > 0 && waiting == 0 {
            0
        } else {
            (waiting as i64 + 1) * aht / (agents.max(1) as i64)
        };
        Some(Outlook {
            open: self.queues[q].hours.is_open(now),
            agents,
            available,
            waiting,
            expected_wait_ms,
        })
    }

    pub fn is_logged_in(&self, agent: AgentId) -> bool {
        self.agents.contains_key(&agent)
    }

    /// Where a contact stands: its state, agent, and deadline (offer expiry or wrap-up end).
    pub fn contact_phase(
        &self,
        contact: ContactId,
    ) -> Option<(ContactState, Option<AgentId>, Option<Millis>)> {
        Some(match self.contacts.get(&contact)?.phase {
            Phase::Waiting { .. } | Phase::Sticky { .. } => (ContactState::Queued, None, None),
            Phase::Offered { agent, expires } => {
                (ContactState::Offered, Some(agent), Some(expires))
            }
            Phase::Connected { agent } => (ContactState::Connected, Some(agent), None),
            Phase::WrapUp { agent, until } => (ContactState::WrapUp, Some(agent), Some(until)),
        })
    }

    /// The contacts an agent holds (offered, connected, in wrap-up).
    pub fn agent_contacts(&self, agent: AgentId) -> Vec<ContactId> {
        self.agents
            .get(&agent)
            .map(|a| a.in_hand.clone())
            .unwrap_or_default()
    }

    /// Logged-in agents.
    pub fn agent_ids(&self) -> Vec<AgentId> {
        let mut ids: Vec<AgentId> = self.agents.keys().copied().collect();
        ids.sort();
        ids
    }

    /// A waiting contact's place in its lane (1 = next).
    pub fn position(&self, contact: ContactId) -> Option<usize> {
        let c = self.contacts.get(&contact)?;
        let Phase::Waiting { lane } = c.phase else {
            return None;
        };
        let key = self.wait_key(c);
        Some(self.lanes[lane].waiting.range(..key).count() + 1)
    }

    pub fn handle(&mut self, now: Millis, input: Input) -> Result<(), AcdError> {
        // Deadlines that passed first: an offer that expired cannot be accepted.
        self.handle_timeout(now);
        match input {
            Input::ContactArrived(spec) => self.arrive(now, spec, None),
            Input::ContactRouted { spec, overflow } => self.arrive(now, spec, overflow),
            Input::ContactForAgent {
                spec,
                agent,
                wait_secs,
            } => {
                if !self.agents.contains_key(&agent) {
                    return Err(AcdError::UnknownAgent(agent));
                }
                self.arrive_for(now, spec, None, Some((agent, wait_secs)))
            }
            Input::ContactAbandoned(id) => self.abandon(now, id),
            Input::ContactWithdrawn(id) => self.withdraw(now, id),
            Input::ContactPriority { contact, priority } => {
                self.reprioritize(now, contact, priority)
            }
            Input::AgentLogin { agent, available } => self.login(now, agent, available),
            Input::AgentLogout(id) => self.logout(now, id),
            Input::AgentNotReady { agent, reason } => self.set_status(now, agent, reason),
            Input::AgentCapacity { agent, capacity } => {
                let a = self
                    .agents
                    .get_mut(&agent)
                    .ok_or(AcdError::UnknownAgent(agent))?;
                a.spec.capacity = capacity;
                self.requalify(agent);
                self.after_agent_change(now, agent);
                Ok(())
            }
            Input::OfferAccepted { contact, agent } => self.accept(now, contact, agent),
            Input::OfferRejected { contact, agent } => self.reject(now, contact, agent),
            Input::ContactCompleted { contact, hold_ms } => self.complete(now, contact, hold_ms),
            Input::WrapUpExtend { contact, secs } => {
                let c = self
                    .contacts
                    .get_mut(&contact)
                    .ok_or(AcdError::UnknownContact(contact))?;
                let Phase::WrapUp { until, .. } = &mut c.phase else {
                    return Err(AcdError::NotAllowed(format!(
                        "contact {contact} is not in wrap-up"
                    )));
                };
                *until += secs as i64 * 1000;
                let until = *until;
                self.timers.insert((until, Timer::WrapUp(contact)));
                // Tell the world the new end, so consoles count down to it.
                let agent = self.contact_agent(contact);
                self.outputs.push_back(Output::ContactState {
                    contact,
                    state: ContactState::WrapUp,
                    agent,
                });
                Ok(())
            }
            Input::WrapUpDone { contact } => self.wrap_up_done(now, contact),
            Input::RulesReloaded(queues) => {
                self.reload(now, queues);
                Ok(())
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.fire(at, timer);
        }
    }

    // ---- queues and lanes ---------------------------------------------------------------

    fn set_queues(&mut self, queues: Vec<QueueConfig>) {
        for q in queues {
            match self.queue_index.get(&q.name) {
                Some(&i) => self.queues[i] = q,
                None => {
                    self.queue_index.insert(q.name.clone(), self.queues.len());
                    self.queues.push(q);
                    self.aht_ms.push(0);
                    self.queue_lanes.push(Vec::new());
                    self.sticky_waiting.push(0);
                }
            }
        }
    }

    fn extra_index(&mut self, s: &SkillSet) -> usize {
        match self.extras.iter().position(|e| e == s) {
            Some(i) => i,
            None => {
                self.extras.push(s.clone());
                self.extras.len() - 1
            }
        }
    }

    fn qualifies(&self, a: &AgentSpec, key: LaneKey) -> bool {
        let cap = &a.capacity;
        let has_capacity = match key.channel {
            ChannelClass::Voice => cap.voice > 0,
            ChannelClass::Chat => cap.chat > 0,
            ChannelClass::Email => cap.email > 0,
            ChannelClass::Fax => cap.fax > 0,
        };
        let steps = self.steps_of(key.queue, key.steps);
        has_capacity
            && self.extras[key.extra].met_by(&a.skills)
            && steps[..=key.step.min(steps.len().saturating_sub(1))]
                .iter()
                .any(|s| s.targets.iter().any(|t| t.met_by(&a.skills)))
    }

    /// The overflow steps a lane or contact follows: its own, or its queue's.
    fn steps_of(&self, queue: usize, own: Option<usize>) -> &[OverflowStep] {
        match own {
            Some(i) => &self.overrides[i],
            None => &self.queues[queue].steps,
        }
    }

    /// The step a contact has reached after `waited_ms` in the queue.
    fn step_after(steps: &[OverflowStep], waited_ms: Millis) -> usize {
        steps
            .iter()
            .rposition(|s| s.after_secs as i64 * 1000 <= waited_ms)
            .unwrap_or(0)
    }

    fn lane(&mut self, key: LaneKey) -> usize {
        if let Some(&i) = self.lane_index.get(&key) {
            return i;
        }
        let id = self.lanes.len();
        let qualified: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| self.qualifies(&a.spec, key))
            .map(|a| a.spec.id)
            .collect();
        self.lanes.push(Lane {
            key,
            waiting: BTreeSet::new(),
            free: BTreeSet::new(),
            qualified: qualified.clone(),
        });
        self.lane_index.insert(key, id);
        self.queue_lanes[key.queue].push(id);
        for agent in qualified {
            if let Some(a) = self.agents.get_mut(&agent) {
                a.lanes.push(id);
            }
            self.refresh_free(agent);
        }
        id
    }

    fn wait_key(&self, c: &Contact) -> WaitKey {
        let aging = self.queues[c.queue].aging_per_minute;
        (
            Reverse(static_key(c.spec.priority, aging, c.spec.enqueued_at)),
            c.spec.enqueued_at,
            c.spec.id,
        )
    }

    // ---- agents -------------------------------------------------------------------------

    fn free_for(a: &Agent, class: ChannelClass) -> bool {
        if a.status != Status::Available || a.offer.is_some() {
            return false;
        }
        let cap = &a.spec.capacity;
        let voice = a.load[ChannelClass::Voice.index()];
        let digital: u8 = a.load[1..].iter().sum();
        match class {
            ChannelClass::Voice => {
                voice < cap.voice && (digital == 0 || cap.voice_interrupts_digital)
            }
            ChannelClass::Chat => voice == 0 && a.load[1] < cap.chat,
            ChannelClass::Email => voice == 0 && a.load[2] < cap.email,
            ChannelClass::Fax => voice == 0 && a.load[3] < cap.fax,
        }
    }

    fn free_key(&self, a: &Agent, lane: &Lane) -> FreeKey {
        let id = a.spec.id;
        let q = &self.queues[lane.key.queue];
        let preferred = if q.preferred_skills.0.is_empty() {
            0
        } else {
            -(q.preferred_skills.score(&a.spec.skills) as i64)
        };
        let (k1, k2) = match q.strategy {
            Strategy::LongestIdle => (a.idle_since, 0),
            Strategy::LeastOccupied => (a.load.iter().map(|l| *l as i64).sum(), a.idle_since),
            Strategy::RoundRobin => (a.last_offer_seq as i64, 0),
            Strategy::BestSkill => {
                let q = &self.queues[lane.key.queue];
                let score: u32 = q.steps[0]
                    .targets
                    .iter()
                    .map(|t| t.score(&a.spec.skills))
                    .max()
                    .unwrap_or(0)
                    + self.extras[lane.key.extra].score(&a.spec.skills);
                (-(score as i64), a.idle_since)
            }
        };
        (preferred, k1, k2, id)
    }

    /// Puts the agent in (or takes it out of) the free sets of its lanes.
    fn refresh_free(&mut self, agent: AgentId) {
        let Some(a) = self.agents.get_mut(&agent) else {
            return;
        };
        let old = std::mem::take(&mut a.free_entries);
        for (lane, key) in old {
            self.lanes[lane].free.remove(&key);
        }
        let Some(a) = self.agents.get(&agent) else {
            return;
        };
        let mut entries = Vec::new();
        for &lane in &a.lanes {
            if self.lane_open_for(a, lane) {
                entries.push((lane, self.free_key(a, &self.lanes[lane])));
            }
        }
        for (lane, key) in &entries {
            self.lanes[*lane].free.insert(*key);
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            a.free_entries = entries;
        }
    }

    /// Recomputes which lanes an agent qualifies for (login, capacity or rules change).
    fn requalify(&mut self, agent: AgentId) {
        let Some(a) = self.agents.get(&agent) else {
            return;
        };
        let lanes: Vec<usize> = (0..self.lanes.len())
            .filter(|&l| self.qualifies(&a.spec, self.lanes[l].key))
            .collect();
        for lane in &mut self.lanes {
            lane.qualified.retain(|x| *x != agent);
        }
        for &l in &lanes {
            self.lanes[l].qualified.push(agent);
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            a.lanes = lanes;
        }
        self.refresh_free(agent);
    }

    fn show_agent(&mut self, agent: AgentId, now: Millis) {
        let Some(a) = self.agents.get_mut(&agent) else {
            return;
        };
        let kind = if a.offer.is_some() {
            AgentStateKind::Reserved
        } else if a.connected > 0 {
            AgentStateKind::Busy
        } else if a.wrapping > 0 {
            AgentStateKind::WrapUp
        } else {
            match &a.status {
                Status::Available => AgentStateKind::Available,
                Status::NotReady(_) => AgentStateKind::NotReady,
            }
        };
        let reason = match (&a.status, kind) {
            (Status::NotReady(r), AgentStateKind::NotReady) => Some(r.as_str()),
            _ => None,
        };
        if kind == a.shown.0 && reason == a.shown.1.as_deref() {
            return;
        }
        let shown = (kind, reason.map(String::from));
        if shown != a.shown {
            a.shown = shown.clone();
            self.outputs.push_back(Output::AgentState {
                agent,
                state: shown.0,
                reason: shown.1,
            });
            self.outputs.push_back(Output::Stat(StatEvent::AgentState {
                agent,
                state: shown.0,
                at: now,
            }));
        }
    }

    /// After an agent's state or load changed: offer it work if it can take some, else (re)file
    /// it among the lanes' free agents. Trying first saves re-filing an agent that an offer is
    /// about to take out again.
    fn after_agent_change(&mut self, now: Millis, agent: AgentId) {
        self.show_agent(agent, now);
        self.try_agent(now, agent);
        self.refresh_free(agent);
    }

    /// Whether the agent may take a contact of this lane now (free for its channel, and under
    /// the queue's per-agent cap).
    fn lane_open_for(&self, a: &Agent, lane: usize) -> bool {
        let l = &self.lanes[lane];
        let capped = self.queues[l.key.queue]
            .max_per_agent
            .is_some_and(|max| a.per_queue.get(&l.key.queue).copied().unwrap_or(0) >= max);
        !capped && Self::free_for(a, l.key.channel)
    }

    fn login(&mut self, now: Millis, spec: AgentSpec, available: bool) -> Result<(), AcdError> {
        if self.agents.contains_key(&spec.id) {
            return Err(AcdError::AlreadyLoggedIn(spec.id));
        }
        let id = spec.id;
        self.agents.insert(
            id,
            Agent {
                spec,
                status: if available {
                    Status::Available
                } else {
                    Status::NotReady("login".into())
                },
                offer: None,
                load: [0; 4],
                in_hand: Vec::new(),
                per_queue: HashMap::new(),
                connected: 0,
                wrapping: 0,
                idle_since: now,
                last_offer_seq: 0,
                lanes: Vec::new(),
                free_entries: Vec::new(),
                sticky: Vec::new(),
                shown: (AgentStateKind::LoggedOut, None),
            },
        );
        self.requalify(id);
        self.after_agent_change(now, id);
        Ok(())
    }

    fn logout(&mut self, now: Millis, id: AgentId) -> Result<(), AcdError> {
        let a = self.agents.get(&id).ok_or(AcdError::UnknownAgent(id))?;
        if a.in_hand.iter().any(|c| Some(*c) != a.offer) {
            return Err(AcdError::NotAllowed(format!(
                "agent {id} still has contacts in hand; finish them first"
            )));
        }
        let offer = a.offer;
        // Take the agent out of routing first, so nothing it hands back comes back to it.
        if let Some(a) = self.agents.get_mut(&id) {
            a.status = Status::NotReady("logout".into());
        }
        self.refresh_free(id);
        if let Some(c) = offer {
            self.cancel_offer(now, c, CancelReason::AgentNotReady);
        }
        let sticky = self
            .agents
            .get(&id)
            .map(|a| a.sticky.clone())
            .unwrap_or_default();
        for c in sticky {
            self.unstick(now, c);
        }
        let entries = self
            .agents
            .get_mut(&id)
            .map(|a| std::mem::take(&mut a.free_entries));
        for (lane, key) in entries.unwrap_or_default() {
            self.lanes[lane].free.remove(&key);
        }
        for lane in &mut self.lanes {
            lane.qualified.retain(|x| *x != id);
        }
        self.agents.remove(&id);
        self.outputs.push_back(Output::AgentState {
            agent: id,
            state: AgentStateKind::LoggedOut,
            reason: None,
        });
        self.outputs.push_back(Output::Stat(StatEvent::AgentState {
            agent: id,
            state: AgentStateKind::LoggedOut,
            at: now,
        }));
        Ok(())
    }

    fn set_status(
        &mut self,
        now: Millis,
        id: AgentId,
        reason: Option<String>,
    ) -> Result<(), AcdError> {
        let a = self.agents.get_mut(&id).ok_or(AcdError::UnknownAgent(id))?;
        let was_available = a.status == Status::Available;
        a.status = match reason {
            None => Status::Available,
            Some(r) => Status::NotReady(r),
        };
        if a.status == Status::Available && !was_available {
            a.idle_since = now;
        }
        if let (Status::NotReady(_), Some(c)) = (&a.status, a.offer) {
            self.cancel_offer(now, c, CancelReason::AgentNotReady);
        }
        self.after_agent_change(now, id);
        Ok(())
    }

    // ---- contacts -----------------------------------------------------------------------

    fn arrive(
        &mut self,
        now: Millis,
        spec: ContactSpec,
        overflow: Option<Vec<OverflowStep>>,
    ) -> Result<(), AcdError> {
        self.arrive_for(now, spec, overflow, None)
    }

    /// `target`: wait for this agent (and how long) instead of the queue's sticky rule.
    fn arrive_for(
        &mut self,
        now: Millis,
        spec: ContactSpec,
        overflow: Option<Vec<OverflowStep>>,
        target: Option<(AgentId, u32)>,
    ) -> Result<(), AcdError> {
        if self.contacts.contains_key(&spec.id) {
            return Err(AcdError::DuplicateContact(spec.id));
        }
        let id = spec.id;
        let Some(&queue) = self.queue_index.get(&spec.queue) else {
            self.outputs.push_back(Output::Refused {
                contact: id,
                reason: RefuseReason::UnknownQueue,
                handling: ClosedHandling::Voicemail,
            });
            return Ok(());
        };
        let q = &self.queues[queue];
        let handling = q.closed_handling;
        let refuse = if !q.hours.is_open(now) {
            Some(RefuseReason::Closed)
        } else if q
            .max_queue_length
            .is_some_and(|max| self.queue_waiting(queue) >= max as usize)
        {
            Some(RefuseReason::QueueFull)
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.outputs.push_back(Output::Refused {
                contact: id,
                reason,
                handling,
            });
            return Ok(());
        }
        let extra = self.extra_index(&spec.extra_skills);
        let own_steps = overflow.filter(|o| !o.is_empty()).map(|o| {
            match self.overrides.iter().position(|x| *x == o) {
                Some(i) => i,
                None => {
                    self.overrides.push(o);
                    self.overrides.len() - 1
                }
            }
        });
        // A contact restored after a restart resumes at the step its wait has reached.
        let waited = (now - spec.enqueued_at).max(0);
        let step = Self::step_after(self.steps_of(queue, own_steps), waited);
        let q = &self.queues[queue];
        if let Some(max) = q.max_wait_secs {
            self.timers
                .insert((spec.enqueued_at + max as i64 * 1000, Timer::MaxWait(id)));
        }
        let sticky_secs = q.sticky_secs;
        self.outputs.push_back(Output::Stat(StatEvent::Queued {
            contact: id,
            queue: spec.queue.clone(),
            channel: spec.channel,
            at: now,
        }));
        // No `Queued` state output here: whoever hands the contact over stored it as queued.
        let last_agent = spec.last_agent;
        self.contacts.insert(
            id,
            Contact {
                spec,
                offered_at: now,
                queue,
                steps: own_steps,
                extra,
                step,
                phase: Phase::Waiting { lane: usize::MAX },
                declined: Vec::new(),
            },
        );
        // Sticky: wait a little for the customer's last agent if that agent is logged in (or
        // for the agent a transfer names).
        let wait_for = match target {
            Some((agent, secs)) => Some((agent, secs)),
            None => last_agent
                .filter(|_| sticky_secs > 0)
                .map(|a| (a, sticky_secs)),
        };
        if let Some((agent, wait_secs)) = wait_for.filter(|(_, secs)| *secs > 0) {
            if self.agents.contains_key(&agent) {
                let until = now + wait_secs as i64 * 1000;
                if let Some(c) = self.contacts.get_mut(&id) {
                    c.phase = Phase::Sticky { agent, until };
                    self.sticky_waiting[queue] += 1;
                }
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.sticky.push(id);
                }
                self.timers.insert((until, Timer::Sticky(id)));
                self.try_agent(now, agent);
                return Ok(());
            }
        }
        self.enter_lane(now, id);
        Ok(())
    }

    /// Puts a contact in the lane of its current step and offers it if an agent is free.
    fn enter_lane(&mut self, now: Millis, id: ContactId) {
        let Some(c) = self.contacts.get(&id) else {
            return;
        };
        let channel = ChannelClass::of(c.spec.channel);
        let key = LaneKey {
            queue: c.queue,
            steps: c.steps,
            step: c.step,
            channel,
            extra: c.extra,
        };
        let next_step = self
            .steps_of(c.queue, c.steps)
            .get(c.step + 1)
            .map(|s| c.spec.enqueued_at + s.after_secs as i64 * 1000);
        let lane = self.lane(key);
        let Some(c) = self.contacts.get_mut(&id) else {
            return;
        };
        c.phase = Phase::Waiting { lane };
        let wk = self.wait_key(&self.contacts[&id]);
        self.lanes[lane].waiting.insert(wk);
        if let Some(at) = next_step {
            self.timers.insert((at.max(now), Timer::Overflow(id)));
        }
        self.try_lane(now, lane);
    }

    fn leave_lane(&mut self, id: ContactId) {
        let Some(c) = self.contacts.get(&id) else {
            return;
        };
        if let Phase::Waiting { lane } = c.phase {
            if lane != usize::MAX {
                let wk = self.wait_key(c);
                self.lanes[lane].waiting.remove(&wk);
            }
        }
    }

    /// Offers waiting contacts of a lane to its free agents, best first.
    fn try_lane(&mut self, now: Millis, lane: usize) {
        loop {
            let l = &self.lanes[lane];
            if l.free.is_empty() {
                return;
            }
            let pick = if self.declined_total == 0 {
                match (l.waiting.first(), l.free.first()) {
                    (Some(c), Some(a)) => Some((c.2, a.3)),
                    _ => None,
                }
            } else {
                // Every free agent may have declined the head: then the next contact in line
                // that one of them may take goes first (a bounded look-ahead), rather than the
                // whole lane waiting behind it.
                l.waiting.iter().take(DECLINED_LOOKAHEAD).find_map(|k| {
                    let declined = &self.contacts[&k.2].declined;
                    l.free
                        .iter()
                        .find(|f| !declined.contains(&f.3))
                        .map(|f| (k.2, f.3))
                })
            };
            let Some((contact, agent)) = pick else { return };
            self.offer(now, contact, agent);
        }
    }

    /// Gives a newly free agent the best contact it may take: its sticky customers first,
    /// then the best head among its lanes.
    fn try_agent(&mut self, now: Millis, agent: AgentId) {
        loop {
            let Some(a) = self.agents.get(&agent) else {
                return;
            };
            if a.status != Status::Available || a.offer.is_some() {
                return;
            }
            let sticky = a.sticky.iter().copied().find(|c| {
                self.contacts
                    .get(c)
                    .is_some_and(|c| Self::free_for(a, ChannelClass::of(c.spec.channel)))
            });
            if let Some(c) = sticky {
                self.offer(now, c, agent);
                continue;
            }
            let mut best: Option<(i64, Millis, ContactId)> = None;
            for &lane in &a.lanes {
                if !self.lane_open_for(a, lane) {
                    continue;
                }
                let l = &self.lanes[lane];
                // The wait key holds all the ranking needs; the contact itself is looked up only
                // while some contact has been declined by someone.
                let head = if self.declined_total == 0 {
                    l.waiting.first()
                } else {
                    l.waiting
                        .iter()
                        .find(|k| !self.contacts[&k.2].declined.contains(&agent))
                };
                let Some(&(Reverse(static_key), enqueued_at, id)) = head else {
                    continue;
                };
                let aging = self.queues[l.key.queue].aging_per_minute;
                let cand = (
                    static_key.saturating_add(aging.saturating_mul(now)),
                    enqueued_at,
                    id,
                );
                let better = match best {
                    None => true,
                    Some(b) => cand.0 > b.0 || (cand.0 == b.0 && (cand.1, cand.2) < (b.1, b.2)),
                };
                if better {
                    best = Some(cand);
                }
            }
            match best {
                Some((_, _, c)) => self.offer(now, c, agent),
                None => return,
            }
        }
    }

    fn offer(&mut self, now: Millis, contact: ContactId, agent: AgentId) {
        self.leave_lane(contact);
        let Some(c) = self.contacts.get_mut(&contact) else {
            return;
        };
        if let Phase::Sticky {
            agent: sticky_agent,
            ..
        } = c.phase
        {
            self.sticky_waiting[c.queue] = self.sticky_waiting[c.queue].saturating_sub(1);
            if let Some(a) = self.agents.get_mut(&sticky_agent) {
                a.sticky.retain(|x| *x != contact);
            }
        }
        let Some(c) = self.contacts.get_mut(&contact) else {
            return;
        };
        let timeout = self.queues[c.queue].offer_timeout_secs as i64 * 1000;
        let expires = now + timeout;
        c.phase = Phase::Offered { agent, expires };
        c.offered_at = now;
        let class = ChannelClass::of(c.spec.channel);
        let queue = c.queue;
        self.offer_seq += 1;
        let Some(a) = self.agents.get_mut(&agent) else {
            return;
        };
        a.offer = Some(contact);
        a.load[class.index()] += 1;
        *a.per_queue.entry(queue).or_default() += 1;
        a.in_hand.push(contact);
        a.last_offer_seq = self.offer_seq;
        self.timers.insert((expires, Timer::Offer(contact)));
        self.outputs.push_back(Output::Offer {
            contact,
            agent,
            expires_at: expires,
        });
        self.outputs.push_back(Output::ContactState {
            contact,
            state: ContactState::Offered,
            agent: Some(agent),
        });
        self.refresh_free(agent);
        self.show_agent(agent, now);
    }

    /// Takes an offer back: the contact returns to its place, the agent's slot is freed.
    fn cancel_offer(&mut self, now: Millis, contact: ContactId, reason: CancelReason) {
        let Some(c) = self.contacts.get_mut(&contact) else {
            return;
        };
        let Phase::Offered { agent, .. } = c.phase else {
            return;
        };
        let class = ChannelClass::of(c.spec.channel);
        let queue = c.queue;
        if reason == CancelReason::Rejected {
            if c.declined.is_empty() {
                self.declined_total += 1;
            }
            c.declined.push(agent);
        }
        c.phase = Phase::Waiting { lane: usize::MAX };
        if let Some(a) = self.agents.get_mut(&agent) {
            a.offer = None;
            a.load[class.index()] = a.load[class.index()].saturating_sub(1);
            a.in_hand.retain(|x| *x != contact);
            if let Some(n) = a.per_queue.get_mut(&queue) {
                *n = n.saturating_sub(1);
            }
        }
        self.outputs.push_back(Output::OfferCancelled {
            contact,
            agent,
            reason,
        });
        if reason != CancelReason::Abandoned {
            self.outputs.push_back(Output::ContactState {
                contact,
                state: ContactState::Queued,
                agent: None,
            });
        }
        if reason == CancelReason::Timeout {
            if let Some(a) = self.agents.get_mut(&agent) {
                a.status = Status::NotReady("no_answer".into());
            }
        }
        self.refresh_free(agent);
        self.show_agent(agent, now);
        if reason != CancelReason::Abandoned {
            // Back to its original place: the wait key keeps priority and enqueue time.
            self.enter_lane(now, contact);
        }
    }

    fn abandon(&mut self, now: Millis, id: ContactId) -> Result<(), AcdError> {
        self.leave(now, id, false)
    }

    fn withdraw(&mut self, now: Millis, id: ContactId) -> Result<(), AcdError> {
        self.leave(now, id, true)
    }

    /// The contact leaves before being answered: abandoned, or withdrawn (closed, removed).
    fn leave(&mut self, now: Millis, id: ContactId, withdrawn: bool) -> Result<(), AcdError> {
        let c = self.contacts.get(&id).ok_or(AcdError::UnknownContact(id))?;
        let agent = match c.phase {
            Phase::Waiting { .. } => {
                self.leave_lane(id);
                None
            }
            Phase::Sticky { .. } => {
                self.unstick_remove(id);
                None
            }
            Phase::Offered { agent, .. } => {
                self.cancel_offer(now, id, CancelReason::Abandoned);
                Some(agent)
            }
            Phase::Connected { .. } | Phase::WrapUp { .. } => {
                return Err(AcdError::NotAllowed(format!(
                    "contact {id} is already answered; complete it instead"
                )))
            }
        };
        self.forget(id);
        self.outputs.push_back(Output::ContactState {
            contact: id,
            state: if withdrawn {
                ContactState::Closed
            } else {
                ContactState::Abandoned
            },
            agent: None,
        });
        self.outputs.push_back(Output::Stat(if withdrawn {
            StatEvent::Removed {
                contact: id,
                at: now,
            }
        } else {
            StatEvent::Abandoned {
                contact: id,
                at: now,
            }
        }));
        if let Some(agent) = agent {
            self.try_agent(now, agent);
        }
        Ok(())
    }

    fn reprioritize(&mut self, now: Millis, id: ContactId, priority: i64) -> Result<(), AcdError> {
        let c = self.contacts.get(&id).ok_or(AcdError::UnknownContact(id))?;
        let waiting_lane = match c.phase {
            Phase::Waiting { lane } => Some(lane),
            _ => None,
        };
        self.leave_lane(id);
        if let Some(c) = self.contacts.get_mut(&id) {
            c.spec.priority = priority;
        }
        if let Some(lane) = waiting_lane {
            let wk = self.wait_key(&self.contacts[&id]);
            self.lanes[lane].waiting.insert(wk);
            self.try_lane(now, lane);
        }
        Ok(())
    }

    fn accept(&mut self, now: Millis, contact: ContactId, agent: AgentId) -> Result<(), AcdError> {
        let c = self
            .contacts
            .get_mut(&contact)
            .ok_or(AcdError::UnknownContact(contact))?;
        match c.phase {
            Phase::Offered { agent: a, .. } if a == agent => {}
            _ => return Err(AcdError::NoSuchOffer { contact, agent }),
        }
        c.phase = Phase::Connected { agent };
        if let Some(a) = self.agents.get_mut(&agent) {
            a.offer = None;
            a.connected += 1;
        }
        self.outputs.push_back(Output::ContactState {
            contact,
            state: ContactState::Connected,
            agent: Some(agent),
        });
        self.outputs.push_back(Output::Stat(StatEvent::Answered {
            contact,
            agent,
            at: now,
        }));
        self.after_agent_change(now, agent);
        Ok(())
    }

    fn reject(&mut self, now: Millis, contact: ContactId, agent: AgentId) -> Result<(), AcdError> {
        let c = self
            .contacts
            .get(&contact)
            .ok_or(AcdError::UnknownContact(contact))?;
        match c.phase {
            Phase::Offered { agent: a, .. } if a == agent => {}
            _ => return Err(AcdError::NoSuchOffer { contact, agent }),
        }
        self.cancel_offer(now, contact, CancelReason::Rejected);
        self.try_agent(now, agent);
        Ok(())
    }

    fn complete(
        &mut self,
        now: Millis,
        contact: ContactId,
        hold_ms: Millis,
    ) -> Result<(), AcdError> {
        let c = self
            .contacts
            .get_mut(&contact)
            .ok_or(AcdError::UnknownContact(contact))?;
        let Phase::Connected { agent } = c.phase else {
            return Err(AcdError::NotAllowed(format!(
                "contact {contact} is not connected"
            )));
        };
        let wrap = self.queues[c.queue].wrap_up_secs as i64 * 1000;
        let until = now + wrap;
        c.phase = Phase::WrapUp { agent, until };
        if let Some(a) = self.agents.get_mut(&agent) {
            a.connected = a.connected.saturating_sub(1);
            a.wrapping += 1;
        }
        self.outputs.push_back(Output::Stat(StatEvent::Completed {
            contact,
            at: now,
            hold_ms,
        }));
        self.outputs.push_back(Output::ContactState {
            contact,
            state: ContactState::WrapUp,
            agent: Some(agent),
        });
        if wrap == 0 {
            return self.wrap_up_done(now, contact);
        }
        self.timers.insert((until, Timer::WrapUp(contact)));
        self.show_agent(agent, now);
        Ok(())
    }

    fn wrap_up_done(&mut self, now: Millis, contact: ContactId) -> Result<(), AcdError> {
        let c = self
            .contacts
            .get(&contact)
            .ok_or(AcdError::UnknownContact(contact))?;
        let Phase::WrapUp { agent, .. } = c.phase else {
            return Err(AcdError::NotAllowed(format!(
                "contact {contact} is not in wrap-up"
            )));
        };
        let class = ChannelClass::of(c.spec.channel);
        let queue = c.queue;
        let handled_ms = now - c.offered_at;
        self.forget(contact);
        if let Some(a) = self.agents.get_mut(&agent) {
            a.load[class.index()] = a.load[class.index()].saturating_sub(1);
            a.in_hand.retain(|x| *x != contact);
            if let Some(n) = a.per_queue.get_mut(&queue) {
                *n = n.saturating_sub(1);
            }
            a.wrapping = a.wrapping.saturating_sub(1);
            a.idle_since = now;
        }
        // Handle-time estimate per queue (exponential moving average), for expected waits.
        let aht = &mut self.aht_ms[queue];
        *aht = if *aht == 0 {
            handled_ms
        } else {
            (*aht * 9 + handled_ms) / 10
        };
        self.outputs.push_back(Output::ContactState {
            contact,
            state: ContactState::Closed,
            agent: Some(agent),
        });
        self.outputs
            .push_back(Output::Stat(StatEvent::WrappedUp { contact, at: now }));
        self.after_agent_change(now, agent);
        Ok(())
    }

    /// Drops a finished contact.
    fn forget(&mut self, id: ContactId) {
        if let Some(c) = self.contacts.remove(&id) {
            if !c.declined.is_empty() {
                self.declined_total -= 1;
            }
        }
    }

    /// The contact stops waiting for its sticky agent (its phase is the caller's to change).
    fn unstick_remove(&mut self, id: ContactId) {
        let Some(c) = self.contacts.get(&id) else {
            return;
        };
        if let Phase::Sticky { agent, .. } = c.phase {
            self.sticky_waiting[c.queue] = self.sticky_waiting[c.queue].saturating_sub(1);
            if let Some(a) = self.agents.get_mut(&agent) {
                a.sticky.retain(|x| *x != id);
            }
        }
    }

    /// The sticky wait is over (or the agent left): the contact joins its lane.
    fn unstick(&mut self, now: Millis, id: ContactId) {
        self.unstick_remove(id);
        if matches!(
            self.contacts.get(&id).map(|c| &c.phase),
            Some(Phase::Sticky { .. })
        ) {
            if let Some(c) = self.contacts.get_mut(&id) {
                c.phase = Phase::Waiting { lane: usize::MAX };
            }
            self.enter_lane(now, id);
        }
    }

    fn fire(&mut self, at: Millis, timer: Timer) {
        match timer {
            Timer::Offer(c) => {
                if matches!(self.contacts.get(&c).map(|c| &c.phase), Some(Phase::Offered { expires, .. }) if *expires == at)
                {
                    self.cancel_offer(at, c, CancelReason::Timeout);
                }
            }
            Timer::WrapUp(c) => {
                if matches!(self.contacts.get(&c).map(|c| &c.phase), Some(Phase::WrapUp { until, .. }) if *until == at)
                {
                    let _ = self.wrap_up_done(at, c);
                }
            }
            Timer::Sticky(c) => {
                if matches!(self.contacts.get(&c).map(|c| &c.phase), Some(Phase::Sticky { until, .. }) if *until == at)
                {
                    self.unstick(at, c);
                }
            }
            Timer::Overflow(c) => {
                let Some(contact) = self.contacts.get(&c) else {
                    return;
                };
                let Phase::Waiting { .. } = contact.phase else {
                    return;
                };
                let steps = self.steps_of(contact.queue, contact.steps);
                let Some(next) = steps.get(contact.step + 1) else {
                    return;
                };
                if contact.spec.enqueued_at + next.after_secs as i64 * 1000 > at {
                    return;
                }
                self.leave_lane(c);
                let step = {
                    let contact = self.contacts.get_mut(&c).expect("checked above");
                    contact.step += 1;
                    contact.step
                };
                self.outputs
                    .push_back(Output::Overflowed { contact: c, step });
                self.enter_lane(at, c);
            }
            Timer::MaxWait(c) => {
                let Some(contact) = self.contacts.get(&c) else {
                    return;
                };
                let max =
                    self.queues[contact.queue].max_wait_secs.unwrap_or(u32::MAX) as i64 * 1000;
                let waiting = matches!(contact.phase, Phase::Waiting { .. } | Phase::Sticky { .. });
                if !waiting || contact.spec.enqueued_at + max > at {
                    return;
                }
                let handling = self.queues[contact.queue].closed_handling;
                if matches!(contact.phase, Phase::Sticky { .. }) {
                    self.unstick_remove(c);
                } else {
                    self.leave_lane(c);
                }
                self.forget(c);
                self.outputs.push_back(Output::Refused {
                    contact: c,
                    reason: RefuseReason::MaxWait,
                    handling,
                });
                self.outputs
                    .push_back(Output::Stat(StatEvent::Removed { contact: c, at }));
            }
        }
    }

    /// New rules: queues are replaced by name (a queue no longer listed keeps its last
    /// settings until its contacts are gone); lanes and agents' qualifications are rebuilt and
    /// waiting contacts keep their place (same priority and enqueue time).
    fn reload(&mut self, now: Millis, queues: Vec<QueueConfig>) {
        self.set_queues(queues);
        let waiting: Vec<ContactId> = self
            .contacts
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Waiting { .. }))
            .map(|(id, _)| *id)
            .collect();
        let mut waiting: Vec<(Millis, ContactId)> = waiting
            .into_iter()
            .map(|id| (self.contacts[&id].spec.enqueued_at, id))
            .collect();
        waiting.sort();
        self.lanes.clear();
        self.lane_index.clear();
        for l in &mut self.queue_lanes {
            l.clear();
        }
        let agents: Vec<AgentId> = self.agents.keys().copied().collect();
        for a in &agents {
            if let Some(a) = self.agents.get_mut(a) {
                a.lanes.clear();
                a.free_entries.clear();
            }
        }
        for (_, id) in waiting {
            if let Some(c) = self.contacts.get(&id) {
                let step =
                    Self::step_after(self.steps_of(c.queue, c.steps), now - c.spec.enqueued_at);
                if let Some(c) = self.contacts.get_mut(&id) {
                    c.phase = Phase::Waiting { lane: usize::MAX };
                    c.step = step;
                }
            }
            self.enter_lane(now, id);
        }
        for a in agents {
            self.requalify(a);
            self.try_agent(now, a);
        }
    }

    /// Checks the engine's internal consistency (used by the property tests).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut offered: HashMap<ContactId, AgentId> = HashMap::new();
        for a in self.agents.values() {
            let mut load = [0u8; 4];
            for c in &a.in_hand {
                let contact = self
                    .contacts
                    .get(c)
                    .ok_or(format!("agent {} holds unknown contact {c}", a.spec.id))?;
                load[ChannelClass::of(contact.spec.channel).index()] += 1;
                if self.contact_agent(*c) != Some(a.spec.id) {
                    return Err(format!(
                        "contact {c} in agent {}'s hand belongs elsewhere",
                        a.spec.id
                    ));
                }
            }
            let connected = a
                .in_hand
                .iter()
                .filter(|c| matches!(self.contacts[c].phase, Phase::Connected { .. }))
                .count();
            let wrapping = a
                .in_hand
                .iter()
                .filter(|c| matches!(self.contacts[c].phase, Phase::WrapUp { .. }))
                .count();
            if (connected, wrapping) != (a.connected as usize, a.wrapping as usize) {
                return Err(format!(
                    "agent {} connected/wrap-up counts drifted",
                    a.spec.id
                ));
            }
            let mut per_queue: HashMap<usize, u8> = HashMap::new();
            for c in &a.in_hand {
                *per_queue.entry(self.contacts[c].queue).or_default() += 1;
            }
            for (q, n) in &per_queue {
                if a.per_queue.get(q).copied().unwrap_or(0) != *n {
                    return Err(format!(
                        "agent {} per-queue load of queue {q} drifted",
                        a.spec.id
                    ));
                }
                if self.queues[*q].max_per_agent.is_some_and(|max| *n > max) {
                    return Err(format!(
                        "agent {} holds {n} of queue {q}, over its cap",
                        a.spec.id
                    ));
                }
            }
            if load != a.load {
                return Err(format!(
                    "agent {} load {:?} != {:?}",
                    a.spec.id, a.load, load
                ));
            }
            let cap = &a.spec.capacity;
            let voice = load[0];
            let digital: u8 = load[1..].iter().sum();
            if voice > cap.voice || load[1] > cap.chat || load[2] > cap.email || load[3] > cap.fax {
                return Err(format!(
                    "agent {} over capacity: {load:?} {cap:?}",
                    a.spec.id
                ));
            }
            if voice > 0 && digital > 0 && !cap.voice_interrupts_digital {
                return Err(format!("agent {} mixes voice and digital", a.spec.id));
            }
            if let Some(c) = a.offer {
                if offered.insert(c, a.spec.id).is_some() {
                    return Err(format!("contact {c} offered twice"));
                }
            }
        }
        for (id, c) in &self.contacts {
            match c.phase {
                Phase::Offered { agent, .. } if offered.get(id) != Some(&agent) => {
                    return Err(format!(
                        "contact {id} offered to {agent} who does not know it"
                    ));
                }
                Phase::Waiting { lane }
                    if !self.lanes[lane].waiting.contains(&self.wait_key(c)) =>
                {
                    return Err(format!("waiting contact {id} missing from its lane"));
                }
                _ => {}
            }
        }
        for (q, n) in self.sticky_waiting.iter().enumerate() {
            let actual = self
                .contacts
                .values()
                .filter(|c| c.queue == q && matches!(c.phase, Phase::Sticky { .. }))
                .count();
            if actual != *n as usize {
                return Err(format!(
                    "queue {q}: {n} sticky waits counted, {actual} real"
                ));
            }
        }
        let declined = self
            .contacts
            .values()
            .filter(|c| !c.declined.is_empty())
            .count();
        if declined != self.declined_total {
            return Err(format!(
                "{} declined contacts counted, {declined} real",
                self.declined_total
            ));
        }
        let in_lanes: usize = self.lanes.iter().map(|l| l.waiting.len()).sum();
        let waiting = self
            .contacts
            .values()
            .filter(|c| matches!(c.phase, Phase::Waiting { .. }))
            .count();
        if in_lanes != waiting {
            return Err(format!(
                "{in_lanes} contacts in lanes but {waiting} waiting"
            ));
        }
        // A free agent and a contact it may take never coexist in one lane.
        for l in &self.lanes {
            if let Some(head) = l.waiting.first() {
                let declined = &self.contacts[&head.2].declined;
                if l.free.iter().any(|k| !declined.contains(&k.3)) {
                    return Err(format!(
                        "lane {:?} has a waiting contact and a free agent",
                        l.key
                    ));
                }
            }
        }
        Ok(())
    }
}
