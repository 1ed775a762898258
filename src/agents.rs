//! Agent presence: who is logged in and in which state. Sans-IO: every call takes `now`
//! (unix ms); `poll_event` yields the changes to publish and store, `poll_timeout` when to call
//! `handle_timeout` next. The ACD's full agent state machine (reserved, busy, wrap-up) extends it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    LoggedOut,
    Available,
    NotReady,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::LoggedOut => "logged_out",
            AgentStatus::Available => "available",
            AgentStatus::NotReady => "not_ready",
        }
    }
}

/// An agent's state as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentStateView {
    pub state: AgentStatus,
    /// Reason code when `not_ready` (e.g. `break`, `lunch`, `no_answer`).
    pub reason: Option<String>,
    /// When this state began (RFC 3339).
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Presence {
    status: AgentStatus,
    reason: Option<String>,
    since: i64,
    connections: u32,
    /// Set while the agent has no socket; the agent is logged out when the grace ends.
    disconnected_at: Option<i64>,
}

impl Presence {
    fn view(&self) -> AgentStateView {
        AgentStateView {
            state: self.status,
            reason: self.reason.clone(),
            since: rfc3339(self.since),
        }
    }
}

/// Why a state changed, stored with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Agent,
    Disconnected,
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentChange {
    pub agent_id: i64,
    pub at: i64,
    pub view: AgentStateView,
    pub cause: Cause,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("a not_ready state needs a reason code (letters, digits, _; at most 40)")]
    BadReason,
    #[error("the agent is not connected")]
    NotConnected,
}

pub struct AgentBoard {
    agents: BTreeMap<i64, Presence>,
    grace_ms: i64,
    changes: VecDeque<AgentChange>,
}

impl AgentBoard {
    pub fn new(disconnect_grace_ms: i64) -> Self {
        AgentBoard {
            agents: BTreeMap::new(),
            grace_ms: disconnect_grace_ms,
            changes: VecDeque::new(),
        }
    }

    /// A socket of the agent opened; returns the state to bring the client back to.
    pub fn connect(&mut self, now: i64, agent_id: i64) -> AgentStateView {
        let p = self.agents.entry(agent_id).or_insert(Presence {
            status: AgentStatus::LoggedOut,
            reason: None,
            since: now,
            connections: 0,
            disconnected_at: None,
        });
        p.connections += 1;
        p.disconnected_at = None;
        p.view()
    }

    pub fn disconnect(&mut self, now: i64, agent_id: i64) {
        if let Some(p) = self.agents.get_mut(&agent_id) {
            p.connections = p.connections.saturating_sub(1);
            if p.connections == 0 {
                p.disconnected_at = Some(now);
            }
        }
    }

    /// Sets the agent's state; returns it and whether it changed (a change is also queued
    /// for `poll_change`).
    pub fn set_state(
        &mut self,
        now: i64,
        agent_id: i64,
        status: AgentStatus,
        reason: Option<String>,
    ) -> Result<(AgentStateView, bool), StateError> {
        let p = self
            .agents
            .get_mut(&agent_id)
            .filter(|p| p.connections > 0)
            .ok_or(StateError::NotConnected)?;
        let reason = match status {
            AgentStatus::NotReady => {
                let r = reason.unwrap_or_default();
                let valid = !r.is_empty()
                    && r.len() <= 40
                    && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(StateError::BadReason);
                }
                Some(r)
            }
            _ => None,
        };
        if p.status == status && p.reason == reason {
            return Ok((p.view(), false));
        }
        p.status = status;
        p.reason = reason;
        p.since = now;
        let view = p.view();
        self.changes.push_back(AgentChange {
            agent_id,
            at: now,
            view: view.clone(),
            cause: Cause::Agent,
        });
        Ok((view, true))
    }

    /// Logs the agent out whatever its connections (the user logged out of the console).
    pub fn log_out(&mut self, now: i64, agent_id: i64) {
        if let Some(p) = self.agents.get_mut(&agent_id) {
            if p.status != AgentStatus::LoggedOut {
                p.status = AgentStatus::LoggedOut;
                p.reason = None;
                p.since = now;
                self.changes.push_back(AgentChange {
                    agent_id,
                    at: now,
                    view: p.view(),
                    cause: Cause::Agent,
                });
            }
        }
    }

    /// Logs out agents whose socket has been gone longer than the grace period.
    pub fn handle_timeout(&mut self, now: i64) {
        for (&agent_id, p) in self.agents.iter_mut() {
            let expired = p.disconnected_at.is_some_and(|t| now - t >= self.grace_ms);
            if expired {
                p.disconnected_at = None;
                if p.status != AgentStatus::LoggedOut {
                    p.status = AgentStatus::LoggedOut;
                    p.reason = None;
                    p.since = now;
                    self.changes.push_back(AgentChange {
                        agent_id,
                        at: now,
                        view: p.view(),
                        cause: Cause::Disconnected,
                    });
                }
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<i64> {
        self.agents
            .values()
            .filter_map(|p| p.disconnected_at.map(|t| t + self.grace_ms))
            .min()
    }

    pub fn poll_change(&mut self) -> Option<AgentChange> {
        self.changes.pop_front()
    }

    pub fn state(&self, agent_id: i64) -> Option<AgentStateView> {
        self.agents.get(&agent_id).map(Presence::view)
    }

    pub fn snapshot(&self) -> Vec<(i64, AgentStateView)> {
        self.agents.iter().map(|(id, p)| (*id, p.view())).collect()
    }

    /// Agents per state, for metrics.
    pub fn count(&self, status: AgentStatus) -> usize {
        self.agents.values().filter(|p| p.status == status).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: i64 = 60_000;

    #[test]
    fn state_survives_a_reconnect_within_grace() {
        let mut b = AgentBoard::new(GRACE);
        assert_eq!(b.connect(0, 7).state, AgentStatus::LoggedOut);
        b.set_state(1_000, 7, AgentStatus::Available, None).unwrap();
        assert_eq!(b.poll_change().unwrap().view.state, AgentStatus::Available);
        b.disconnect(2_000, 7);
        assert_eq!(b.poll_timeout(), Some(2_000 + GRACE));
        b.handle_timeout(30_000);
        let back = b.connect(30_000, 7);
        assert_eq!(back.state, AgentStatus::Available);
        assert_eq!(b.poll_timeout(), None);
        assert!(b.poll_change().is_none(), "no change while reconnecting");
    }

    #[test]
    fn a_vanished_agent_is_logged_out_after_grace() {
        let mut b = AgentBoard::new(GRACE);
        b.connect(0, 7);
        b.set_state(0, 7, AgentStatus::NotReady, Some("break".into()))
            .unwrap();
        b.poll_change();
        b.disconnect(10_000, 7);
        b.handle_timeout(10_000 + GRACE - 1);
        assert!(b.poll_change().is_none());
        b.handle_timeout(10_000 + GRACE);
        let c = b.poll_change().unwrap();
        assert_eq!(c.view.state, AgentStatus::LoggedOut);
        assert_eq!(c.cause, Cause::Disconnected);
        assert_eq!(b.count(AgentStatus::LoggedOut), 1);
    }

    #[test]
    fn two_sockets_keep_the_agent_connected() {
        let mut b = AgentBoard::new(GRACE);
        b.connect(0, 1);
        b.connect(0, 1);
        b.set_state(0, 1, AgentStatus::Available, None).unwrap();
        b.disconnect(1, 1);
        b.handle_timeout(GRACE * 10);
        assert_eq!(b.state(1).unwrap().state, AgentStatus::Available);
    }

    #[test]
    fn bad_requests_change_nothing() {
        let mut b = AgentBoard::new(GRACE);
        assert_eq!(
            b.set_state(0, 1, AgentStatus::Available, None),
            Err(StateError::NotConnected)
        );
        b.connect(0, 1);
        for bad in [None, Some(String::new()), Some("<script>".to_string())] {
            assert_eq!(
                b.set_state(0, 1, AgentStatus::NotReady, bad),
                Err(StateError::BadReason)
            );
        }
        assert_eq!(b.state(1).unwrap().state, AgentStatus::LoggedOut);
        assert!(b.poll_change().is_none());
        b.set_state(5, 1, AgentStatus::LoggedOut, None).unwrap();
        assert!(b.poll_change().is_none(), "same state is not a change");
    }
}
