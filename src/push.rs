//! Frames for particular agents' sockets (chat messages, email and call events), delivered to
//! every open socket of that agent without waking anyone else's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use serde_json::Value;
use tokio::sync::mpsc;

/// Frames queued for one socket; beyond that (a console that stopped reading) frames are
/// dropped with a warning, and the console reads the conversations again when it reconnects.
const QUEUE: usize = 4096;

/// Each agent's open sockets: (socket id, its frames).
type Sockets = HashMap<i64, Vec<(u64, mpsc::Sender<Value>)>>;

#[derive(Default)]
pub struct AgentPush {
    sockets: RwLock<Sockets>,
    next: AtomicU64,
}

impl AgentPush {
    /// A new socket of `agent`: its id and the frames for it.
    pub fn register(&self, agent: i64) -> (u64, mpsc::Receiver<Value>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        if let Ok(mut m) = self.sockets.write() {
            m.entry(agent).or_default().push((id, tx));
        }
        (id, rx)
    }

    pub fn unregister(&self, agent: i64, id: u64) {
        if let Ok(mut m) = self.sockets.write() {
            if let Some(list) = m.get_mut(&agent) {
                list.retain(|(i, _)| *i != id);
                if list.is_empty() {
                    m.remove(&agent);
                }
            }
        }
    }

    /// Sends a frame to every socket of the agent; `false` if none is open.
    pub fn send(&self, agent: i64, frame: Value) -> bool {
        let Ok(m) = self.sockets.read() else {
            return false;
        };
        let Some(list) = m.get(&agent) else {
            return false;
        };
        for (id, tx) in list {
            if tx.try_send(frame.clone()).is_err() {
                tracing::warn!(
                    agent_id = agent,
                    socket = id,
                    "agent socket too slow; a frame was dropped"
                );
            }
        }
        !list.is_empty()
    }

    pub fn is_connected(&self, agent: i64) -> bool {
        self.sockets
            .read()
            .map(|m| m.contains_key(&agent))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_reach_every_socket_of_their_agent_only() {
        let push = AgentPush::default();
        let (a1, mut rx1) = push.register(1);
        let (_, mut rx2) = push.register(1);
        let (_, mut rx3) = push.register(2);
        assert!(push.send(1, serde_json::json!({"type": "x"})));
        assert_eq!(rx1.recv().await.unwrap()["type"], "x");
        assert_eq!(rx2.recv().await.unwrap()["type"], "x");
        assert!(rx3.try_recv().is_err());
        push.unregister(1, a1);
        assert!(push.is_connected(1));
        assert!(!push.send(3, serde_json::json!({})));
    }
}
