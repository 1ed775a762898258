//! Prometheus text exposition, hand-written: a few counters and gauges need no extra crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::acd::types::AgentStateKind;

#[derive(Default)]
pub struct Metrics {
    /// (method, matched route, status) → count. Routes are templates, so the label set is small.
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub agent_sockets: AtomicI64,
    pub supervisor_sockets: AtomicI64,
    pub logins_ok: AtomicU64,
    pub logins_failed: AtomicU64,
    pub logins_locked: AtomicU64,
}

impl Metrics {
    pub fn record_http(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
    }

    /// Renders all metrics; `agents` is the live count per state from the hub.
    pub fn render(&self, agents: &[(AgentStateKind, usize)], customers: i64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP contact_hub_build_info Contact Hub version.\n# TYPE contact_hub_build_info gauge\n\
             contact_hub_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP contact_hub_http_requests_total HTTP requests by method, route and status.\n\
             # TYPE contact_hub_http_requests_total counter"
        );
        if let Ok(m) = self.http.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "contact_hub_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    route.replace('\\', "\\\\").replace('"', "\\\"")
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP contact_hub_agents Agents by state.\n# TYPE contact_hub_agents gauge"
        );
        for (status, n) in agents {
            let _ = writeln!(
                out,
                "contact_hub_agents{{state=\"{}\"}} {n}",
                status.as_str()
            );
        }
        let gauges = [
            (
                "contact_hub_agent_sockets",
                "Open agent sockets.",
                self.agent_sockets.load(Ordering::Relaxed),
            ),
            (
                "contact_hub_supervisor_sockets",
                "Open supervisor sockets.",
                self.supervisor_sockets.load(Ordering::Relaxed),
            ),
            (
                "contact_hub_customers",
                "Customers in the archive.",
                customers,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let counters = [
            ("ok", self.logins_ok.load(Ordering::Relaxed)),
            ("failed", self.logins_failed.load(Ordering::Relaxed)),
            ("locked", self.logins_locked.load(Ordering::Relaxed)),
        ];
        let _ = writeln!(
            out,
            "# HELP contact_hub_logins_total Login attempts by outcome.\n# TYPE contact_hub_logins_total counter"
        );
        for (outcome, n) in counters {
            let _ = writeln!(out, "contact_hub_logins_total{{outcome=\"{outcome}\"}} {n}");
        }
        out
    }
}
