//! The ACD's vocabulary, shared by the engine, the routing rules and the statistics.

use serde::{Deserialize, Serialize};

use crate::domain::Channel;

/// Unix milliseconds: the engine's only notion of time.
pub type Millis = i64;
pub type AgentId = i64;
pub type ContactId = i64;

/// A skill with a level (1 = basic … 10 = expert).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Skill {
    pub name: String,
    pub level: u8,
}

/// An agent qualifies when it has every skill at least at its level (an AND of requirements).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillSet(pub Vec<Skill>);

/// How a queue picks among several free, qualified agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent idle for the longest time (default).
    #[default]
    LongestIdle,
    /// The agent with the fewest contacts in hand, then longest idle.
    LeastOccupied,
    /// Agents in turn, by when they were last offered a contact.
    RoundRobin,
    /// The highest level in the contact's skills, then longest idle.
    BestSkill,
}

/// One step of a contact's overflow ("bullseye"): after `after_secs` of waiting, agents matching
/// any of `targets` may take it. Step 0 is the queue's own requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverflowStep {
    pub after_secs: u32,
    /// Alternatives (OR); each is a set of required skills (AND). Widening skills, lowering
    /// levels and adding another queue's agents are all a new alternative here.
    pub targets: Vec<SkillSet>,
}

/// What happens to a contact a queue cannot take (closed, full, or waited too long).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedHandling {
    /// Voice: leave a message; digital: keep it as a message for later.
    #[default]
    Voicemail,
    /// Offer a callback contact.
    Callback,
    /// Acknowledge (e.g. an auto-reply) and keep it for the next opening.
    Acknowledge,
}

/// Opening hours in the queue's fixed UTC offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessHours {
    /// Offset of local time from UTC, in minutes (e.g. 480 for China).
    pub utc_offset_minutes: i32,
    /// For each weekday (0 = Monday), the open intervals in minutes since local midnight.
    /// An empty week means always open.
    pub week: [Vec<(u16, u16)>; 7],
    /// Local dates (YYYY-MM-DD) when the queue is closed all day.
    pub holidays: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub name: String,
    pub strategy: Strategy,
    /// Step 0 = the queue's own requirement; later steps widen it.
    pub steps: Vec<OverflowStep>,
    /// Priority added per minute waited (aging); 0 = none.
    pub aging_per_minute: i64,
    /// Seconds an offer waits for the agent before RONA.
    pub offer_timeout_secs: u32,
    /// Seconds of wrap-up after a contact (extendable, can end early).
    pub wrap_up_secs: u32,
    /// Seconds a returning customer waits for their last agent (0 = no sticky routing).
    pub sticky_secs: u32,
    pub max_queue_length: Option<u32>,
    pub max_wait_secs: Option<u32>,
    pub hours: BusinessHours,
    pub closed_handling: ClosedHandling,
    /// Skills an agent need not have but that win the offer when several agents are free.
    pub preferred_skills: SkillSet,
    /// At most this many of the queue's contacts in one agent's hands at once (on top of the
    /// agent's own per-channel capacity); `None` = only the agent's capacity counts.
    pub max_per_agent: Option<u8>,
    /// Service-level threshold T of ARCHITECTURE §7 (default 20 s).
    pub service_level_secs: u32,
    /// Short-abandon threshold Ts (default 5 s).
    pub short_abandon_secs: u32,
}

/// A contact as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactSpec {
    pub id: ContactId,
    pub channel: Channel,
    pub queue: String,
    /// Higher first. Customer tier and routing rules set it; aging adds to it while waiting.
    pub priority: i64,
    /// When the contact entered the queue (kept across restarts so order and waits survive).
    pub enqueued_at: Millis,
    /// Skills the contact itself needs on top of the queue's (e.g. language).
    pub extra_skills: SkillSet,
    /// The agent who last served this customer, for sticky routing.
    pub last_agent: Option<AgentId>,
}

/// Concurrent contacts an agent may hold per channel; voice is exclusive of everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub voice: u8,
    pub chat: u8,
    pub email: u8,
    pub fax: u8,
    /// Whether a voice offer may arrive while the agent holds digital contacts.
    pub voice_interrupts_digital: bool,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            voice: 1,
            chat: 3,
            email: 2,
            fax: 2,
            voice_interrupts_digital: false,
        }
    }
}

/// Engine events consumed by the statistics (and stored as contact/agent events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StatEvent {
    /// A contact entered a queue (counted as offered to the queue).
    Queued {
        contact: ContactId,
        queue: String,
        channel: Channel,
        at: Millis,
    },
    /// An agent accepted it: the wait ends.
    Answered {
        contact: ContactId,
        agent: AgentId,
        at: Millis,
    },
    /// The customer left while waiting.
    Abandoned { contact: ContactId, at: Millis },
    /// Left the queue another way (overflowed to another queue, closed handling, timeout).
    Removed { contact: ContactId, at: Millis },
    /// Handling ended; wrap-up begins. `hold_ms` is the part of the talk spent on hold.
    Completed {
        contact: ContactId,
        at: Millis,
        hold_ms: Millis,
    },
    /// Wrap-up ended: the contact is handled.
    WrappedUp { contact: ContactId, at: Millis },
    /// An agent's state changed (for occupancy and agents-by-state).
    AgentState {
        agent: AgentId,
        state: AgentStateKind,
        at: Millis,
    },
}

/// An agent's state (ARCHITECTURE §4). The agent chooses available / not ready / logged out;
/// the ACD sets reserved (an offer is pending), busy and wrap-up.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AgentStateKind {
    LoggedOut,
    Available,
    NotReady,
    Reserved,
    Busy,
    WrapUp,
}

impl BusinessHours {
    /// The first minute at or after `now` when the queue is open, within two weeks (`None`:
    /// closed all that time, e.g. no opening hours at all).
    pub fn next_open(&self, now: Millis) -> Option<Millis> {
        if self.is_open(now) {
            return Some(now);
        }
        let first = (now / 60_000 + 1) * 60_000;
        (0..14 * 24 * 60)
            .map(|m| first + m * 60_000)
            .find(|t| self.is_open(*t))
    }

    /// Whether the queue is open at `now` (unix ms), in its own UTC offset.
    pub fn is_open(&self, now: Millis) -> bool {
        if self.week.iter().all(|d| d.is_empty()) && self.holidays.is_empty() {
            return true;
        }
        let local_ms = now + self.utc_offset_minutes as i64 * 60_000;
        let Some(local) = chrono::DateTime::from_timestamp_millis(local_ms) else {
            return false;
        };
        let local = local.naive_utc();
        let date = local.date().format("%Y-%m-%d").to_string();
        if self.holidays.contains(&date) {
            return false;
        }
        use chrono::{Datelike, Timelike};
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = (local.hour() * 60 + local.minute()) as u16;
        if self.week.iter().all(|d| d.is_empty()) {
            return true;
        }
        self.week[day]
            .iter()
            .any(|(from, to)| minute >= *from && minute < *to)
    }
}

impl SkillSet {
    /// Whether an agent with `skills` (name → level) meets every requirement.
    pub fn met_by(&self, skills: &std::collections::HashMap<String, u8>) -> bool {
        self.0
            .iter()
            .all(|req| skills.get(&req.name).is_some_and(|l| *l >= req.level))
    }

    /// The agent's level in these skills (sum), for best-skill-first routing.
    pub fn score(&self, skills: &std::collections::HashMap<String, u8>) -> u32 {
        self.0
            .iter()
            .map(|req| skills.get(&req.name).copied().unwrap_or(0) as u32)
            .sum()
    }
}

impl QueueConfig {
    /// A queue with defaults: longest-idle, no skills required, 20 s offers, 30 s wrap-up.
    pub fn simple(name: &str) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            strategy: Strategy::LongestIdle,
            steps: vec![OverflowStep {
                after_secs: 0,
                targets: vec![SkillSet::default()],
            }],
            aging_per_minute: 0,
            offer_timeout_secs: 20,
            wrap_up_secs: 30,
            sticky_secs: 0,
            max_queue_length: None,
            max_wait_secs: None,
            hours: BusinessHours::default(),
            closed_handling: ClosedHandling::Voicemail,
            preferred_skills: SkillSet::default(),
            max_per_agent: None,
            service_level_secs: 20,
            short_abandon_secs: 5,
        }
    }
}

impl AgentStateKind {
    pub const ALL: [AgentStateKind; 6] = [
        AgentStateKind::LoggedOut,
        AgentStateKind::Available,
        AgentStateKind::NotReady,
        AgentStateKind::Reserved,
        AgentStateKind::Busy,
        AgentStateKind::WrapUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentStateKind::LoggedOut => "logged_out",
            AgentStateKind::Available => "available",
            AgentStateKind::NotReady => "not_ready",
            AgentStateKind::Reserved => "reserved",
            AgentStateKind::Busy => "busy",
            AgentStateKind::WrapUp => "wrap_up",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_opening_is_found_across_nights_weekends_and_holidays() {
        // Beijing time, Monday to Friday 09:00–18:00; 2026-12-04 is a Friday.
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for d in week.iter_mut().take(5) {
            d.push((9 * 60, 18 * 60));
        }
        let h = BusinessHours {
            utc_offset_minutes: 480,
            week,
            holidays: vec!["2026-12-07".into()],
        };
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        // Friday 20:00 local: closed until Tuesday 09:00 (Monday is a holiday).
        let open = h.next_open(at("2026-12-04T20:00:00+08:00")).unwrap();
        assert_eq!(open, at("2026-12-08T09:00:00+08:00"));
        assert!(h.is_open(open) && !h.is_open(open - 60_000));
        // Already open: now.
        let t = at("2026-12-08T10:30:15+08:00");
        assert_eq!(h.next_open(t), Some(t));
        // Never open: none.
        let never = BusinessHours {
            utc_offset_minutes: 0,
            week: Default::default(),
            holidays: (0..30).map(|d| format!("2026-12-{:02}", d + 1)).collect(),
        };
        assert_eq!(never.next_open(at("2026-12-01T00:00:00Z")), None);
    }
}
