//! Agent presence: which agents have a console open. Sans-IO (time is an input). An agent
//! whose last socket closed keeps its state for a grace period — a reload or a network blip
//! changes nothing — and is logged out by the hub when the grace ends. The agent's *state*
//! itself lives in the ACD engine, the single source of truth.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::acd::types::{AgentStateKind, Millis};

/// An agent's state as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentStateView {
    pub state: AgentStateKind,
    /// Reason code when `not_ready` (e.g. `break`, `lunch`, `no_answer`).
    pub reason: Option<String>,
    /// When this state began (RFC 3339).
    pub since: String,
}

/// Why a state changed, stored with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Agent,
    Acd,
    Disconnected,
    Restart,
}

/// Checks a not-ready reason code: letters, digits and `_`, at most 40.
pub fn valid_reason(r: &str) -> bool {
    !r.is_empty() && r.len() <= 40 && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Default)]
pub struct Presence {
    /// Open sockets per agent, and since when an agent has none.
    agents: BTreeMap<i64, (u32, Option<Millis>)>,
    grace_ms: Millis,
}

impl Presence {
    pub fn new(grace_ms: Millis) -> Self {
        Presence {
            agents: BTreeMap::new(),
            grace_ms,
        }
    }

    pub fn connect(&mut self, agent: i64) {
        let e = self.agents.entry(agent).or_insert((0, None));
        e.0 += 1;
        e.1 = None;
    }

    pub fn disconnect(&mut self, now: Millis, agent: i64) {
        if let Some(e) = self.agents.get_mut(&agent) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                e.1 = Some(now);
            }
        }
    }

    pub fn is_connected(&self, agent: i64) -> bool {
        self.agents.get(&agent).is_some_and(|e| e.0 > 0)
    }

    /// Agents whose grace ended at `now`; they are forgotten.
    pub fn expired(&mut self, now: Millis) -> Vec<i64> {
        let gone: Vec<i64> = self
            .agents
            .iter()
            .filter(|(_, e)| e.1.is_some_and(|t| now - t >= self.grace_ms))
            .map(|(a, _)| *a)
            .collect();
        for a in &gone {
            self.agents.remove(a);
        }
        gone
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.agents
            .values()
            .filter_map(|e| e.1.map(|t| t + self.grace_ms))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_within_grace_keeps_the_agent_and_a_vanished_one_expires() {
        let mut p = Presence::new(60_000);
        p.connect(7);
        p.disconnect(1_000, 7);
        assert_eq!(p.poll_timeout(), Some(61_000));
        assert!(p.expired(30_000).is_empty());
        p.connect(7);
        assert_eq!(p.poll_timeout(), None);
        assert!(p.is_connected(7));
        p.disconnect(40_000, 7);
        assert!(p.expired(99_999).is_empty());
        assert_eq!(p.expired(100_000), vec![7]);
        assert!(!p.is_connected(7));
    }

    #[test]
    fn two_sockets_keep_the_agent_connected() {
        let mut p = Presence::new(1_000);
        p.connect(1);
        p.connect(1);
        p.disconnect(0, 1);
        assert!(p.expired(10_000).is_empty());
        assert!(p.is_connected(1));
    }

    #[test]
    fn reason_codes_are_checked() {
        assert!(valid_reason("lunch"));
        assert!(valid_reason("no_answer"));
        assert!(!valid_reason(""));
        assert!(!valid_reason("<b>"));
        assert!(!valid_reason(&"x".repeat(41)));
    }
}
