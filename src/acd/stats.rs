//! The metric definitions of ARCHITECTURE §7, computed from engine events — one implementation
//! for the live supervisor view, `GET /api/v1/queues` and the historical reports.
//!
//! Pure: no IO and no clock. [`Stats::apply`] takes [`StatEvent`]s in time order (each carries
//! its own `at`), [`Stats::snapshot`] takes `now`. Reports feed stored events through
//! [`replay`], which is the same code.
//!
//! **Interval.** Every figure is cumulative since the [`Stats`] was created (or since the first
//! event given to [`replay`]); there is no interval reset. A report for an interval replays that
//! interval's events into a fresh [`Stats`].
//!
//! **Units.** Every duration is in milliseconds (`*_ms`); ratios (`service_level`,
//! `abandonment_rate`, `occupancy`) are fractions in 0..=1, not percentages. A ratio whose
//! denominator is zero is `None` (`null` in JSON), never 0 or NaN.
//!
//! ## Definitions, per (queue, channel)
//!
//! With the queue's thresholds T ([`StatsConfig::service_level_ms`]) and Ts
//! ([`StatsConfig::short_abandon_ms`]), and *wait* = time from `Queued` in this queue to
//! `Answered` / `Abandoned`:
//!
//! - **offered**: `Queued` into this queue.
//! - **answered**: `Answered` while waiting here; **answered_within_sl**: those with wait ≤ T.
//! - **abandoned**: `Abandoned` while waiting here (the customer left), short ones included;
//!   **short_abandoned**: those with wait < Ts.
//! - **service_level** = answered_within_sl ÷ (answered + (abandoned − short_abandoned)).
//! - **asa_ms** = Σ wait of answered ÷ answered.
//! - **abandonment_rate** = abandoned ÷ offered (short abandons included, as in §7).
//! - **handled**: contacts answered here whose wrap-up ended (`WrappedUp`);
//!   **aht_ms** = Σ (talk + hold + wrap-up) ÷ handled, where talk + hold = `Answered` →
//!   `Completed` (`hold_ms` is the on-hold part of it) and wrap-up = `Completed` → `WrappedUp`.
//! - **waiting**: contacts in the queue now; **longest_wait_ms**: the oldest of them at `now`.
//!
//! A contact `Removed` from a queue (overflow, closed handling, max wait) is neither answered nor
//! abandoned there; `Queued` again elsewhere, it is offered there and its wait there starts anew.
//! A `Queued` for a contact already waiting in the same queue is ignored (re-announcing it after
//! a restart or a RONA does not offer it twice); `Queued` while it waits in another queue is a
//! move (as `Removed` + `Queued`).
//!
//! Events that do not fit the contact's state (unknown contact, `Answered` twice, `Completed`
//! before `Answered`, …) are ignored; negative durations (clock skew) count as 0.
//!
//! ## Agents
//!
//! - **agents_by_state**: the latest `AgentState` of every agent seen (logged-out included).
//! - **occupancy** = handling ÷ (handling + available idle), summed over agents; handling = time
//!   in `reserved`, `busy`, `wrap_up`; available idle = time in `available`. `not_ready` and
//!   `logged_out` count in neither. Time accrues from an agent's first `AgentState` event, between
//!   its events, and up to `now` for its current state.
//!
//! ## Memory
//!
//! Per-contact state lives only while the contact waits or is handled: it is dropped at
//! `WrappedUp`, `Abandoned` and `Removed`. Per-queue and per-agent totals are a few words each.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::types::{AgentId, AgentStateKind, ContactId, Millis, QueueConfig, StatEvent};
use crate::domain::Channel;

/// A queue's thresholds for the §7 figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsConfig {
    /// Service-level threshold T in ms: answered with a wait ≤ T counts as within (default 20 s).
    pub service_level_ms: Millis,
    /// Short-abandon threshold Ts in ms: abandoned with a wait < Ts is a short abandon, left out
    /// of the service level (default 5 s).
    pub short_abandon_ms: Millis,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            service_level_ms: 20_000,
            short_abandon_ms: 5_000,
        }
    }
}

impl From<&QueueConfig> for StatsConfig {
    fn from(q: &QueueConfig) -> Self {
        StatsConfig {
            service_level_ms: q.service_level_secs as Millis * 1000,
            short_abandon_ms: q.short_abandon_secs as Millis * 1000,
        }
    }
}

/// The §7 figures of one queue on one channel. Durations in ms, ratios as fractions 0..=1,
/// `null` when the denominator is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueFigures {
    pub queue: String,
    pub channel: Channel,
    /// Threshold T of the service level, ms.
    pub service_level_threshold_ms: Millis,
    /// Threshold Ts of short abandons, ms.
    pub short_abandon_threshold_ms: Millis,
    /// Contacts that entered the queue.
    pub offered: u64,
    /// Contacts an agent accepted while they waited here.
    pub answered: u64,
    /// Contacts whose customer left while waiting here, short abandons included.
    pub abandoned: u64,
    /// Abandoned with a wait < Ts (part of `abandoned`, excluded from the service level).
    pub short_abandoned: u64,
    /// Answered with a wait ≤ T.
    pub answered_within_sl: u64,
    /// answered_within_sl ÷ (answered + abandoned − short_abandoned).
    pub service_level: Option<f64>,
    /// Average speed of answer: Σ wait of answered ÷ answered, ms.
    pub asa_ms: Option<f64>,
    /// abandoned ÷ offered; short abandons **are** counted (see `short_abandoned`).
    pub abandonment_rate: Option<f64>,
    /// Contacts answered here whose wrap-up has ended.
    pub handled: u64,
    /// Average handle time: Σ (talk + hold + wrap-up) ÷ handled, ms.
    pub aht_ms: Option<f64>,
    /// Contacts waiting in the queue now.
    pub waiting: u64,
    /// Wait so far of the oldest contact waiting now, ms (0 when none waits).
    pub longest_wait_ms: Millis,
}

/// Agent figures over every agent seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentFigures {
    /// Agents per current state (every state present, 0 when none).
    #[schema(value_type = BTreeMap<String, u32>)]
    pub agents_by_state: BTreeMap<AgentStateKind, u32>,
    /// handling_ms ÷ (handling_ms + available_ms) over all agents.
    pub occupancy: Option<f64>,
    /// Σ time agents spent reserved, busy or in wrap-up, ms.
    pub handling_ms: Millis,
    /// Σ time agents spent available (idle, ready), ms.
    pub available_ms: Millis,
    /// Occupancy of each agent, by agent id: `[[agent_id, occupancy], …]`.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub agent_occupancy: Vec<(AgentId, Option<f64>)>,
}

/// Everything at one instant: queues sorted by (queue name, channel), then agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    /// The `now` the snapshot was taken at (unix ms).
    pub at: Millis,
    pub queues: Vec<QueueFigures>,
    pub agents: AgentFigures,
}

/// Where a contact is, for the statistics.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Waiting {
        key: u32,
        since: Millis,
    },
    Talking {
        key: u32,
        answered_at: Millis,
    },
    WrappingUp {
        key: u32,
        completed_at: Millis,
        talk_and_hold_ms: Millis,
    },
}

#[derive(Debug, Clone, Default)]
struct QueueAcc {
    offered: u64,
    answered: u64,
    answered_within_sl: u64,
    answer_wait_ms: Millis,
    abandoned: u64,
    short_abandoned: u64,
    handled: u64,
    handle_ms: Millis,
    /// Waiting now, oldest first.
    waiting: BTreeSet<(Millis, ContactId)>,
}

#[derive(Debug, Clone)]
struct AgentAcc {
    state: AgentStateKind,
    since: Millis,
    handling_ms: Millis,
    available_ms: Millis,
}

fn is_handling(s: AgentStateKind) -> bool {
    matches!(
        s,
        AgentStateKind::Reserved | AgentStateKind::Busy | AgentStateKind::WrapUp
    )
}

impl AgentAcc {
    /// (handling, available) including the current state up to `now`.
    fn totals(&self, now: Millis) -> (Millis, Millis) {
        let current = (now - self.since).max(0);
        let (mut h, mut a) = (self.handling_ms, self.available_ms);
        if is_handling(self.state) {
            h += current;
        } else if self.state == AgentStateKind::Available {
            a += current;
        }
        (h, a)
    }
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// Live statistics, fed with engine events. See the module documentation for the definitions.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    configs: HashMap<String, StatsConfig>,
    keys: Vec<(String, Channel)>,
    key_index: HashMap<(String, Channel), u32>,
    queues: Vec<QueueAcc>,
    contacts: HashMap<ContactId, Phase>,
    agents: HashMap<AgentId, AgentAcc>,
}

impl Stats {
    /// Statistics with per-queue thresholds; queues not in `configs` use [`StatsConfig::default`].
    pub fn new(configs: HashMap<String, StatsConfig>) -> Stats {
        Stats {
            configs,
            ..Stats::default()
        }
    }

    /// Set (or replace) a queue's thresholds, e.g. after a rules reload. Applies to answers and
    /// abandons from now on; what was already counted stays counted.
    pub fn set_config(&mut self, queue: &str, cfg: StatsConfig) {
        self.configs.insert(queue.to_string(), cfg);
    }

    /// The thresholds in force for `queue`.
    pub fn config(&self, queue: &str) -> StatsConfig {
        self.configs.get(queue).copied().unwrap_or_default()
    }

    /// Make a (queue, channel) appear in snapshots with zero figures before any traffic.
    pub fn ensure_queue(&mut self, queue: &str, channel: Channel) {
        self.key(queue, channel);
    }

    /// Contacts currently tracked (waiting or being handled).
    pub fn contacts_in_progress(&self) -> usize {
        self.contacts.len()
    }

    fn key(&mut self, queue: &str, channel: Channel) -> u32 {
        if let Some(k) = self.key_index.get(&(queue.to_string(), channel)) {
            return *k;
        }
        let k = self.keys.len() as u32;
        self.keys.push((queue.to_string(), channel));
        self.key_index.insert((queue.to_string(), channel), k);
        self.queues.push(QueueAcc::default());
        k
    }

    fn config_of(&self, key: u32) -> StatsConfig {
        self.config(&self.keys[key as usize].0)
    }

    /// Take a contact out of its queue's waiting set (it stays tracked by the caller's choice).
    fn leave_queue(&mut self, contact: ContactId, key: u32, since: Millis) {
        self.queues[key as usize].waiting.remove(&(since, contact));
    }

    /// Feed one event. Events must come in time order; ones that do not fit are ignored.
    pub fn apply(&mut self, ev: &StatEvent) {
        match ev {
            StatEvent::Queued {
                contact,
                queue,
                channel,
                at,
            } => {
                let key = self.key(queue, *channel);
                match self.contacts.get(contact).copied() {
                    // Already waiting here: a re-announcement, not a new offer.
                    Some(Phase::Waiting { key: k, .. }) if k == key => return,
                    // Moved from another queue without a `Removed`: same as Removed + Queued.
                    Some(Phase::Waiting { key: k, since }) => self.leave_queue(*contact, k, since),
                    // Re-queued during handling (a transfer): the unfinished handling is not
                    // counted as handled; the contact waits anew.
                    Some(_) | None => {}
                }
                let q = &mut self.queues[key as usize];
                q.offered += 1;
                q.waiting.insert((*at, *contact));
                self.contacts
                    .insert(*contact, Phase::Waiting { key, since: *at });
            }
            StatEvent::Answered { contact, at, .. } => {
                let Some(Phase::Waiting { key, since }) = self.contacts.get(contact).copied()
                else {
                    return;
                };
                self.leave_queue(*contact, key, since);
                let wait = (at - since).max(0);
                let sl = self.config_of(key).service_level_ms;
                let q = &mut self.queues[key as usize];
                q.answered += 1;
                q.answer_wait_ms += wait;
                if wait <= sl {
                    q.answered_within_sl += 1;
                }
                self.contacts.insert(
                    *contact,
                    Phase::Talking {
                        key,
                        answered_at: *at,
                    },
                );
            }
            StatEvent::Abandoned { contact, at } => {
                let Some(Phase::Waiting { key, since }) = self.contacts.get(contact).copied()
                else {
                    return;
                };
                self.leave_queue(*contact, key, since);
                self.contacts.remove(contact);
                let wait = (at - since).max(0);
                let short = self.config_of(key).short_abandon_ms;
                let q = &mut self.queues[key as usize];
                q.abandoned += 1;
                if wait < short {
                    q.short_abandoned += 1;
                }
            }
            StatEvent::Removed { contact, .. } => {
                // Neither answered nor abandoned here. Removed during handling (closed without
                // wrap-up): the unfinished handling is not counted.
                if let Some(Phase::Waiting { key, since }) = self.contacts.remove(contact) {
                    self.leave_queue(*contact, key, since);
                }
            }
            StatEvent::Completed {
                contact,
                at,
                hold_ms: _,
            } => {
                // talk + hold is the whole Answered → Completed span; `hold_ms` is a part of it,
                // so it needs no separate term here.
                let Some(Phase::Talking { key, answered_at }) = self.contacts.get(contact).copied()
                else {
                    return;
                };
                self.contacts.insert(
                    *contact,
                    Phase::WrappingUp {
                        key,
                        completed_at: *at,
                        talk_and_hold_ms: (at - answered_at).max(0),
                    },
                );
            }
            StatEvent::WrappedUp { contact, at } => {
                let (key, handle) = match self.contacts.get(contact).copied() {
                    Some(Phase::WrappingUp {
                        key,
                        completed_at,
                        talk_and_hold_ms,
                    }) => (key, talk_and_hold_ms + (at - completed_at).max(0)),
                    // Wrapped up without a `Completed`: talk until now, no wrap-up.
                    Some(Phase::Talking { key, answered_at }) => (key, (at - answered_at).max(0)),
                    _ => return,
                };
                self.contacts.remove(contact);
                let q = &mut self.queues[key as usize];
                q.handled += 1;
                q.handle_ms += handle;
            }
            StatEvent::AgentState { agent, state, at } => match self.agents.get_mut(agent) {
                Some(a) => {
                    let spent = (at - a.since).max(0);
                    if is_handling(a.state) {
                        a.handling_ms += spent;
                    } else if a.state == AgentStateKind::Available {
                        a.available_ms += spent;
                    }
                    a.state = *state;
                    a.since = a.since.max(*at);
                }
                None => {
                    self.agents.insert(
                        *agent,
                        AgentAcc {
                            state: *state,
                            since: *at,
                            handling_ms: 0,
                            available_ms: 0,
                        },
                    );
                }
            },
        }
    }

    /// The figures of one (queue, channel) at `now`, if it has been seen.
    pub fn queue_figures(
        &self,
        queue: &str,
        channel: Channel,
        now: Millis,
    ) -> Option<QueueFigures> {
        let k = self.key_index.get(&(queue.to_string(), channel))?;
        Some(self.figures(*k, now))
    }

    fn figures(&self, key: u32, now: Millis) -> QueueFigures {
        let (queue, channel) = &self.keys[key as usize];
        let q = &self.queues[key as usize];
        let cfg = self.config(queue);
        let long_abandons = q.abandoned - q.short_abandoned;
        QueueFigures {
            queue: queue.clone(),
            channel: *channel,
            service_level_threshold_ms: cfg.service_level_ms,
            short_abandon_threshold_ms: cfg.short_abandon_ms,
            offered: q.offered,
            answered: q.answered,
            abandoned: q.abandoned,
            short_abandoned: q.short_abandoned,
            answered_within_sl: q.answered_within_sl,
            service_level: ratio(
                q.answered_within_sl as f64,
                (q.answered + long_abandons) as f64,
            ),
            asa_ms: ratio(q.answer_wait_ms as f64, q.answered as f64),
            abandonment_rate: ratio(q.abandoned as f64, q.offered as f64),
            handled: q.handled,
            aht_ms: ratio(q.handle_ms as f64, q.handled as f64),
            waiting: q.waiting.len() as u64,
            longest_wait_ms: q
                .waiting
                .first()
                .map_or(0, |(since, _)| (now - since).max(0)),
        }
    }

    /// The agent figures at `now`.
    pub fn agent_figures(&self, now: Millis) -> AgentFigures {
        let mut by_state: BTreeMap<AgentStateKind, u32> = [
            AgentStateKind::LoggedOut,
            AgentStateKind::Available,
            AgentStateKind::NotReady,
            AgentStateKind::Reserved,
            AgentStateKind::Busy,
            AgentStateKind::WrapUp,
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        let (mut handling, mut available) = (0, 0);
        let mut per_agent = Vec::with_capacity(self.agents.len());
        for (id, a) in &self.agents {
            *by_state.entry(a.state).or_default() += 1;
            let (h, av) = a.totals(now);
            handling += h;
            available += av;
            per_agent.push((*id, ratio(h as f64, (h + av) as f64)));
        }
        per_agent.sort_by_key(|(id, _)| *id);
        AgentFigures {
            agents_by_state: by_state,
            occupancy: ratio(handling as f64, (handling + available) as f64),
            handling_ms: handling,
            available_ms: available,
            agent_occupancy: per_agent,
        }
    }

    /// Every figure at `now`.
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        let mut order: Vec<u32> = (0..self.keys.len() as u32).collect();
        let channel_rank = |c: Channel| Channel::ALL.iter().position(|x| *x == c);
        order.sort_by(|a, b| {
            let (qa, ca) = &self.keys[*a as usize];
            let (qb, cb) = &self.keys[*b as usize];
            qa.cmp(qb)
                .then_with(|| channel_rank(*ca).cmp(&channel_rank(*cb)))
        });
        Snapshot {
            at: now,
            queues: order.into_iter().map(|k| self.figures(k, now)).collect(),
            agents: self.agent_figures(now),
        }
    }
}

/// Replay stored events (in time order) through the same definitions: the report path.
pub fn replay(
    events: impl IntoIterator<Item = StatEvent>,
    configs: &HashMap<String, StatsConfig>,
    now: Millis,
) -> Snapshot {
    let mut stats = Stats::new(configs.clone());
    for ev in events {
        stats.apply(&ev);
    }
    stats.snapshot(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated clock: unix ms of `s` seconds into the test.
    const T0: Millis = 1_700_000_000_000;
    fn s(secs: f64) -> Millis {
        T0 + (secs * 1000.0).round() as Millis
    }

    fn queued(contact: ContactId, queue: &str, at: f64) -> StatEvent {
        StatEvent::Queued {
            contact,
            queue: queue.into(),
            channel: Channel::Voice,
            at: s(at),
        }
    }
    fn answered(contact: ContactId, at: f64) -> StatEvent {
        StatEvent::Answered {
            contact,
            agent: 1,
            at: s(at),
        }
    }
    fn abandoned(contact: ContactId, at: f64) -> StatEvent {
        StatEvent::Abandoned { contact, at: s(at) }
    }
    fn removed(contact: ContactId, at: f64) -> StatEvent {
        StatEvent::Removed { contact, at: s(at) }
    }
    fn completed(contact: ContactId, at: f64, hold_secs: f64) -> StatEvent {
        StatEvent::Completed {
            contact,
            at: s(at),
            hold_ms: (hold_secs * 1000.0) as Millis,
        }
    }
    fn wrapped(contact: ContactId, at: f64) -> StatEvent {
        StatEvent::WrappedUp { contact, at: s(at) }
    }
    fn agent(agent: AgentId, state: AgentStateKind, at: f64) -> StatEvent {
        StatEvent::AgentState {
            agent,
            state,
            at: s(at),
        }
    }

    fn feed(events: &[StatEvent]) -> Stats {
        let mut st = Stats::default();
        for e in events {
            st.apply(e);
        }
        st
    }

    fn voice(st: &Stats, queue: &str, now: f64) -> QueueFigures {
        st.queue_figures(queue, Channel::Voice, s(now))
            .expect("queue seen")
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn service_level_excludes_short_abandons() {
        // T = 20 s, Ts = 5 s (defaults). Everyone queued at 0.
        let mut ev: Vec<_> = (1..=6).map(|c| queued(c, "sales", 0.0)).collect();
        ev.extend([
            answered(1, 10.0),  // within T
            answered(2, 25.0),  // outside T
            answered(3, 20.0),  // exactly T: within (wait ≤ T)
            abandoned(4, 3.0),  // short abandon: out of the SL
            abandoned(5, 30.0), // abandoned after Ts: counts against the SL
            abandoned(6, 5.0),  // exactly Ts: not short (short is < Ts)
        ]);
        let f = voice(&feed(&ev), "sales", 40.0);
        assert_eq!(
            (f.offered, f.answered, f.answered_within_sl),
            (6, 3, 2),
            "{f:?}"
        );
        assert_eq!((f.abandoned, f.short_abandoned), (3, 1));
        // 2 within ÷ (3 answered + 2 long abandons)
        assert!(close(f.service_level, 2.0 / 5.0), "{f:?}");
        assert_eq!(f.service_level_threshold_ms, 20_000);
    }

    #[test]
    fn service_level_is_none_without_answers_or_long_abandons() {
        let f = voice(
            &feed(&[queued(1, "q", 0.0), abandoned(1, 2.0), queued(2, "q", 3.0)]),
            "q",
            4.0,
        );
        assert_eq!(f.service_level, None, "only a short abandon: 0 ÷ 0");
        assert_eq!(f.asa_ms, None);
        assert_eq!(f.aht_ms, None);
        assert!(close(f.abandonment_rate, 0.5));
    }

    #[test]
    fn per_queue_thresholds_apply() {
        let mut cfg = HashMap::new();
        cfg.insert(
            "vip".to_string(),
            StatsConfig {
                service_level_ms: 10_000,
                short_abandon_ms: 2_000,
            },
        );
        let snap = replay(
            [
                queued(1, "vip", 0.0),
                answered(1, 15.0), // outside vip's 10 s
                queued(2, "vip", 0.0),
                abandoned(2, 3.0), // not short for vip (≥ 2 s)
                queued(3, "std", 0.0),
                answered(3, 15.0), // within std's default 20 s
                queued(4, "std", 0.0),
                abandoned(4, 3.0), // short for std (< 5 s)
            ],
            &cfg,
            s(20.0),
        );
        let vip = &snap.queues[1];
        let std = &snap.queues[0];
        assert_eq!((std.queue.as_str(), vip.queue.as_str()), ("std", "vip"));
        assert_eq!(vip.service_level, Some(0.0));
        assert_eq!(
            (vip.short_abandoned, vip.service_level_threshold_ms),
            (0, 10_000)
        );
        assert_eq!(std.service_level, Some(1.0));
        assert_eq!(std.short_abandoned, 1);
        let q = QueueConfig {
            service_level_secs: 30,
            short_abandon_secs: 7,
            ..QueueConfig::simple("x")
        };
        assert_eq!(
            StatsConfig::from(&q),
            StatsConfig {
                service_level_ms: 30_000,
                short_abandon_ms: 7_000
            }
        );
    }

    #[test]
    fn asa_is_mean_wait_of_answered_contacts() {
        let st = feed(&[
            queued(1, "q", 0.0),
            queued(2, "q", 2.0),
            queued(3, "q", 10.0),
            queued(4, "q", 0.0),
            answered(1, 4.0),    // 4 s
            answered(2, 10.0),   // 8 s
            answered(3, 40.0),   // 30 s
            abandoned(4, 100.0), // abandons do not enter the ASA
        ]);
        let f = voice(&st, "q", 100.0);
        assert!(close(f.asa_ms, 14_000.0), "(4 + 8 + 30) / 3 s: {f:?}");
    }

    #[test]
    fn abandonment_rate_counts_short_abandons() {
        let st = feed(&[
            queued(1, "q", 0.0),
            queued(2, "q", 0.0),
            queued(3, "q", 0.0),
            queued(4, "q", 0.0),
            abandoned(1, 1.0),  // short
            abandoned(2, 60.0), // long
            answered(3, 5.0),
            answered(4, 6.0),
        ]);
        let f = voice(&st, "q", 60.0);
        assert_eq!((f.offered, f.abandoned, f.short_abandoned), (4, 2, 1));
        assert!(close(f.abandonment_rate, 2.0 / 4.0), "{f:?}");
        assert!(close(f.service_level, 2.0 / 3.0), "{f:?}");
    }

    #[test]
    fn aht_includes_talk_hold_and_wrap_up() {
        let st = feed(&[
            queued(1, "q", 0.0),
            queued(2, "q", 0.0),
            queued(3, "q", 0.0),
            answered(1, 5.0),
            answered(2, 10.0),
            answered(3, 12.0),
            // c1: 120 s answered→completed of which 30 s on hold, then 30 s wrap-up = 150 s.
            completed(1, 125.0, 30.0),
            wrapped(1, 155.0),
            // c2: 60 s talk, no hold, 10 s wrap-up = 70 s.
            completed(2, 70.0, 0.0),
            wrapped(2, 80.0),
            // c3: completed but still in wrap-up: not handled yet.
            completed(3, 100.0, 5.0),
        ]);
        let f = voice(&st, "q", 200.0);
        assert_eq!(f.handled, 2);
        assert!(close(f.aht_ms, (150_000.0 + 70_000.0) / 2.0), "{f:?}");
        assert_eq!(st.contacts_in_progress(), 1);

        // Wrapped up without a `Completed`: talk to the end, no wrap-up.
        let st = feed(&[queued(1, "q", 0.0), answered(1, 1.0), wrapped(1, 41.0)]);
        let f = voice(&st, "q", 50.0);
        assert_eq!(f.handled, 1);
        assert!(close(f.aht_ms, 40_000.0));
    }

    #[test]
    fn occupancy_accrues_across_state_changes() {
        use AgentStateKind::*;
        let st = feed(&[
            agent(1, Available, 0.0),
            agent(2, Available, 0.0),
            agent(3, LoggedOut, 0.0),
            agent(1, Reserved, 10.0),  // 10 s available
            agent(1, Busy, 15.0),      // 5 s reserved
            agent(1, WrapUp, 75.0),    // 60 s busy
            agent(1, Available, 90.0), // 15 s wrap-up
            agent(1, NotReady, 100.0), // 10 s available
        ]);
        // At 130 s: agent 1 has 80 s handling, 20 s available (30 s not ready is in neither);
        // agent 2 has been available 130 s; agent 3 logged out all along.
        let a = st.agent_figures(s(130.0));
        assert_eq!((a.handling_ms, a.available_ms), (80_000, 150_000));
        assert!(close(a.occupancy, 80.0 / 230.0), "{a:?}");
        assert_eq!(a.agent_occupancy.len(), 3);
        assert_eq!(a.agent_occupancy[0].0, 1);
        assert!(close(a.agent_occupancy[0].1, 0.8));
        assert_eq!(a.agent_occupancy[1], (2, Some(0.0)));
        assert_eq!(a.agent_occupancy[2], (3, None));
        assert_eq!(a.agents_by_state[&NotReady], 1);
        assert_eq!(a.agents_by_state[&Available], 1);
        assert_eq!(a.agents_by_state[&LoggedOut], 1);
        assert_eq!(a.agents_by_state[&Busy], 0);
        assert_eq!(a.agents_by_state.len(), 6);

        // The current state accrues up to `now`: agent 2 turns busy at 130 s; at 160 s it has
        // 30 s handling over 160 s ready.
        let mut st = st;
        st.apply(&agent(2, Busy, 130.0));
        let a = st.agent_figures(s(160.0));
        assert!(close(a.agent_occupancy[1].1, 30.0 / 160.0), "{a:?}");
        assert_eq!(a.agents_by_state[&Busy], 1);
        assert_eq!(a.agents_by_state[&Available], 0);
        // Logged out again: the state counts, time stops accruing.
        st.apply(&agent(2, LoggedOut, 160.0));
        let later = st.agent_figures(s(1000.0));
        assert!(close(later.agent_occupancy[1].1, 30.0 / 160.0));
        assert_eq!(later.agents_by_state[&LoggedOut], 2);
    }

    #[test]
    fn longest_wait_and_waiting_count() {
        let mut st = feed(&[
            queued(1, "q", 0.0),
            queued(2, "q", 10.0),
            queued(3, "q", 20.0),
            StatEvent::Queued {
                contact: 9,
                queue: "q".into(),
                channel: Channel::Chat,
                at: s(5.0),
            },
        ]);
        let f = voice(&st, "q", 50.0);
        assert_eq!((f.waiting, f.longest_wait_ms), (3, 50_000));
        let chat = st.queue_figures("q", Channel::Chat, s(50.0)).unwrap();
        assert_eq!((chat.waiting, chat.longest_wait_ms), (1, 45_000));

        st.apply(&answered(1, 55.0));
        let f = voice(&st, "q", 60.0);
        assert_eq!((f.waiting, f.longest_wait_ms), (2, 50_000), "c2 since 10 s");
        st.apply(&abandoned(2, 61.0));
        let f = voice(&st, "q", 70.0);
        assert_eq!((f.waiting, f.longest_wait_ms), (1, 50_000), "c3 since 20 s");
        st.apply(&removed(3, 71.0));
        let f = voice(&st, "q", 80.0);
        assert_eq!((f.waiting, f.longest_wait_ms), (0, 0));
    }

    #[test]
    fn removed_contact_is_offered_again_in_the_overflow_queue() {
        let st = feed(&[
            queued(1, "sales", 0.0),
            removed(1, 30.0),
            queued(1, "support", 30.0),
            answered(1, 40.0),
            completed(1, 100.0, 0.0),
            wrapped(1, 110.0),
            // A move without `Removed` counts the same.
            queued(2, "sales", 0.0),
            queued(2, "support", 50.0),
            abandoned(2, 60.0),
        ]);
        let sales = voice(&st, "sales", 120.0);
        assert_eq!(
            (
                sales.offered,
                sales.answered,
                sales.abandoned,
                sales.handled,
                sales.waiting
            ),
            (2, 0, 0, 0, 0)
        );
        assert_eq!(sales.service_level, None);
        assert_eq!(sales.abandonment_rate, Some(0.0));
        let support = voice(&st, "support", 120.0);
        assert_eq!(
            (
                support.offered,
                support.answered,
                support.abandoned,
                support.handled
            ),
            (2, 1, 1, 1)
        );
        // Wait counted in the queue it was answered from: 30 s → 40 s.
        assert!(close(support.asa_ms, 10_000.0));
        assert!(close(support.service_level, 1.0 / 2.0));
        assert!(close(support.aht_ms, 70_000.0));
        assert_eq!(st.contacts_in_progress(), 0);
    }

    #[test]
    fn requeue_in_the_same_queue_is_not_a_new_offer() {
        let st = feed(&[
            queued(1, "q", 0.0),
            queued(1, "q", 30.0), // e.g. re-announced after a RONA or a restart
            answered(1, 40.0),
        ]);
        let f = voice(&st, "q", 40.0);
        assert_eq!((f.offered, f.answered), (1, 1));
        assert!(close(f.asa_ms, 40_000.0), "wait from the first Queued");
    }

    #[test]
    fn unknown_contact_ids_and_out_of_order_events_are_ignored() {
        let mut st = feed(&[
            answered(999, 1.0),
            abandoned(999, 1.0),
            removed(999, 1.0),
            completed(999, 1.0, 10.0),
            wrapped(999, 1.0),
        ]);
        assert!(st.snapshot(s(2.0)).queues.is_empty());
        assert_eq!(st.contacts_in_progress(), 0);

        for e in [
            queued(1, "q", 10.0),
            completed(1, 11.0, 0.0),     // before Answered
            wrapped(1, 11.0),            // before Answered
            answered(1, 5.0),            // clock skew: a negative wait counts as 0
            answered(1, 12.0),           // twice
            abandoned(1, 13.0),          // after answer: not an abandon
            completed(1, 20.0, 1_000.0), // hold longer than the talk
            wrapped(1, 25.0),
            wrapped(1, 26.0), // twice
        ] {
            st.apply(&e);
        }
        let f = voice(&st, "q", 30.0);
        assert_eq!(
            (f.offered, f.answered, f.abandoned, f.handled, f.waiting),
            (1, 1, 0, 1, 0)
        );
        assert_eq!(f.asa_ms, Some(0.0));
        assert!(close(f.aht_ms, 20_000.0), "5 s → 25 s: {f:?}");
    }

    #[test]
    fn events_for_unknown_agents() {
        use AgentStateKind::*;
        // Answered by an agent never seen in an AgentState: the contact still counts.
        let mut st = feed(&[queued(1, "q", 0.0)]);
        st.apply(&StatEvent::Answered {
            contact: 1,
            agent: 42,
            at: s(3.0),
        });
        assert_eq!(voice(&st, "q", 3.0).answered, 1);
        let a = st.agent_figures(s(3.0));
        assert_eq!(a.occupancy, None);
        assert!(a.agent_occupancy.is_empty());
        assert!(a.agents_by_state.values().all(|n| *n == 0));
        // First seen already busy: counted from its first event, nothing before.
        st.apply(&agent(7, Busy, 10.0));
        st.apply(&agent(7, Available, 40.0));
        let a = st.agent_figures(s(50.0));
        assert_eq!((a.handling_ms, a.available_ms), (30_000, 10_000));
        assert!(close(a.occupancy, 0.75));
        assert_eq!(a.agents_by_state[&Available], 1);
    }

    #[test]
    fn finished_contacts_are_dropped() {
        let mut st = Stats::default();
        for c in 0..1000 {
            let t = c as f64;
            st.apply(&queued(c, "q", t));
            match c % 4 {
                0 => {
                    st.apply(&answered(c, t + 1.0));
                    st.apply(&completed(c, t + 2.0, 0.0));
                    st.apply(&wrapped(c, t + 3.0));
                }
                1 => st.apply(&abandoned(c, t + 1.0)),
                2 => st.apply(&removed(c, t + 1.0)),
                _ => {}
            }
        }
        assert_eq!(
            st.contacts_in_progress(),
            250,
            "only the still-waiting ones"
        );
        let f = voice(&st, "q", 1000.0);
        assert_eq!(
            (f.offered, f.handled, f.abandoned, f.waiting),
            (1000, 250, 250, 250)
        );
    }

    #[test]
    fn replay_equals_live_and_snapshot_is_ordered() {
        let events = vec![
            queued(1, "b", 0.0),
            queued(2, "a", 1.0),
            StatEvent::Queued {
                contact: 3,
                queue: "a".into(),
                channel: Channel::Email,
                at: s(1.0),
            },
            answered(2, 4.0),
            agent(1, AgentStateKind::Busy, 4.0),
        ];
        let mut live = Stats::default();
        live.ensure_queue("c", Channel::Chat);
        for e in &events {
            live.apply(e);
        }
        let mut snap = replay(events, &HashMap::new(), s(9.0));
        let live_snap = live.snapshot(s(9.0));
        let names: Vec<_> = live_snap
            .queues
            .iter()
            .map(|q| format!("{}/{}", q.queue, q.channel))
            .collect();
        assert_eq!(names, ["a/voice", "a/email", "b/voice", "c/chat"]);
        // The live one additionally declared c/chat, with zero figures.
        let c = live_snap.queues[3].clone();
        assert_eq!((c.offered, c.waiting, c.service_level), (0, 0, None));
        snap.queues.push(c);
        assert_eq!(snap, live_snap);
    }

    #[test]
    fn json_uses_the_metric_names() {
        let st = feed(&[
            queued(1, "q", 0.0),
            answered(1, 2.0),
            agent(5, AgentStateKind::WrapUp, 0.0),
        ]);
        let v = serde_json::to_value(st.snapshot(s(10.0))).unwrap();
        let q = &v["queues"][0];
        for k in [
            "queue",
            "channel",
            "offered",
            "answered",
            "abandoned",
            "short_abandoned",
            "answered_within_sl",
            "service_level",
            "asa_ms",
            "abandonment_rate",
            "handled",
            "aht_ms",
            "waiting",
            "longest_wait_ms",
        ] {
            assert!(q.get(k).is_some(), "missing {k} in {q}");
        }
        assert_eq!(q["channel"], "voice");
        assert_eq!(q["aht_ms"], serde_json::Value::Null);
        assert_eq!(q["asa_ms"], 2000.0);
        let a = &v["agents"];
        assert_eq!(a["agents_by_state"]["wrap_up"], 1);
        assert_eq!(a["agents_by_state"]["logged_out"], 0);
        assert_eq!(a["occupancy"], 1.0);
        assert_eq!(a["agent_occupancy"][0][0], 5);
        let back: Snapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back, st.snapshot(s(10.0)));
    }
}
