//! Endpoint and trunk configuration, read from TOML (the hub's `[sip]` section or a file of
//! its own). Every field is documented in README.md with an example.

use crate::cidr::IpNet;
use crate::registrar::RegistrarConfig;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Everything the endpoint needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP listen address. The hub's default is `0.0.0.0:5060`; port 0 picks a free
    /// port (the same for UDP and TCP when possible; see `SipHandle::local_addr`).
    pub listen: SocketAddr,
    /// Listen on TCP as well as UDP.
    pub tcp: bool,
    /// TLS listener (SIPS), only when a certificate and key are given.
    pub tls: Option<TlsListenConfig>,
    /// Address to put in Via/Contact when the hub is behind NAT (`host` or `host:port`).
    pub external_address: Option<String>,
    /// User-Agent / Server header.
    pub user_agent: String,
    /// Largest message accepted (bytes); larger UDP requests get 513, larger TCP messages
    /// close the connection.
    pub max_message_size: usize,
    /// Seconds between in-dialog OPTIONS probes of established calls (0 = off): a peer that
    /// stops answering (or says 481) ends its leg, so a lost BYE cannot keep a call forever.
    pub dialog_probe_secs: u64,
    /// RFC 3261 T1 (ms): retransmission base; transactions linger 64*T1 after they end.
    pub t1_ms: u64,
    /// How long the hub has to answer a `RemoteOffer` before the re-INVITE/UPDATE gets 488.
    pub offer_timeout_secs: u64,
    /// Who may send INVITEs (see `InboundTrunk`): requests from elsewhere get 403 unless the
    /// sender authenticates as a desk phone.
    #[serde(rename = "inbound_trunk")]
    pub inbound_trunks: Vec<InboundTrunk>,
    #[serde(rename = "outbound_trunk")]
    pub outbound_trunks: Vec<OutboundTrunk>,
    pub registrar: RegistrarConfig,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "0.0.0.0:5060".parse().expect("literal"),
            tcp: true,
            tls: None,
            external_address: None,
            user_agent: "contact-hub".into(),
            max_message_size: 8192,
            offer_timeout_secs: 10,
            t1_ms: 500,
            dialog_probe_secs: 600,
            inbound_trunks: Vec::new(),
            outbound_trunks: Vec::new(),
            registrar: RegistrarConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A carrier or PBX that may send us calls. It is recognised by its source address (`allow`)
/// or, when it authenticates, by digest credentials (`username`/`password`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundTrunk {
    /// Name the hub sees in `CallOrigin::Trunk`.
    pub name: String,
    /// Source addresses or CIDR blocks, e.g. `["203.0.113.10", "198.51.100.0/28"]`.
    #[serde(default)]
    pub allow: Vec<IpNet>,
    /// Digest credentials the trunk answers our 407 challenge with (for PBXs on dynamic
    /// addresses).
    pub username: Option<String>,
    pub password: Option<String>,
}

impl InboundTrunk {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(ip))
    }
}

/// A carrier we send calls to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundTrunk {
    pub name: String,
    /// Where requests go: `host:port` (IP or name), e.g. `"sip.carrier.example:5060"`.
    pub proxy: String,
    /// `udp` (default), `tcp` or `tls`.
    #[serde(default)]
    pub transport: TrunkTransport,
    /// Domain for From and the Request-URI (`sip:+86...@from_domain`); defaults to the proxy
    /// host.
    pub from_domain: Option<String>,
    /// Digest credentials for 401/407 challenges (and registration).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Digest user when it differs from `username`.
    pub auth_username: Option<String>,
    /// Keep a registration with the carrier (REGISTER with digest, refreshed before expiry).
    #[serde(default)]
    pub register: bool,
    /// Requested registration lifetime.
    #[serde(default = "default_register_expires")]
    pub register_expires: u32,
    /// Caller number used when `originate` gives none.
    pub default_caller: Option<String>,
}

fn default_register_expires() -> u32 {
    3600
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid SIP configuration: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid SIP configuration: {0}")]
    Invalid(String),
}

impl SipConfig {
    /// Parse and check a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: SipConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let mut names = std::collections::HashSet::new();
        for t in &self.inbound_trunks {
            if !names.insert(("in", t.name.as_str())) {
                return bad(format!("inbound trunk {:?} defined twice", t.name));
            }
            if t.allow.is_empty() && t.username.is_none() {
                return bad(format!(
                    "inbound trunk {:?} needs `allow` addresses or `username`/`password`",
                    t.name
                ));
            }
            if t.username.is_some() != t.password.is_some() {
                return bad(format!(
                    "inbound trunk {:?}: username and password go together",
                    t.name
                ));
            }
        }
        for t in &self.outbound_trunks {
            if !names.insert(("out", t.name.as_str())) {
                return bad(format!("outbound trunk {:?} defined twice", t.name));
            }
            if t.proxy.trim().is_empty() {
                return bad(format!("outbound trunk {:?} has no proxy", t.name));
            }
            if t.register && (t.username.is_none() || t.password.is_none()) {
                return bad(format!(
                    "outbound trunk {:?} registers but has no credentials",
                    t.name
                ));
            }
            if t.register && t.register_expires < 60 {
                return bad(format!(
                    "outbound trunk {:?}: register_expires below 60",
                    t.name
                ));
            }
        }
        let r = &self.registrar;
        if r.min_expires == 0 || r.min_expires > r.max_expires || r.default_expires > r.max_expires
        {
            return bad("registrar: need 0 < min_expires <= default_expires <= max_expires".into());
        }
        if !(10..=5000).contains(&self.t1_ms) {
            return bad("t1_ms must be within 10..=5000".into());
        }
        if self.max_message_size < 1024 || self.max_message_size > 65_535 {
            return bad("max_message_size must be within 1024..=65535".into());
        }
        Ok(())
    }

    pub fn outbound_trunk(&self, name: &str) -> Option<&OutboundTrunk> {
        self.outbound_trunks.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let c = SipConfig::from_toml(
            r#"
listen = "127.0.0.1:0"
external_address = "198.51.100.1"

[registrar]
realm = "hub.example"
min_expires = 120

[[inbound_trunk]]
name = "carrier-a"
allow = ["203.0.113.10", "198.51.100.0/28"]

[[inbound_trunk]]
name = "branch-pbx"
username = "pbx"
password = "secret"

[[outbound_trunk]]
name = "carrier-a"
proxy = "sip.carrier.example:5060"
from_domain = "carrier.example"
username = "hub"
password = "pw"
register = true
register_expires = 600
"#,
        )
        .unwrap();
        assert_eq!(c.inbound_trunks.len(), 2);
        assert!(c.inbound_trunks[0].allows("198.51.100.7".parse().unwrap()));
        assert!(!c.inbound_trunks[0].allows("198.51.100.17".parse().unwrap()));
        assert_eq!(c.registrar.min_expires, 120);
        assert_eq!(c.registrar.max_expires, 3600);
        let t = c.outbound_trunk("carrier-a").unwrap();
        assert!(t.register);
        assert_eq!(t.transport, TrunkTransport::Udp);
    }

    #[test]
    fn mistakes_are_reported() {
        for (toml, what) in [
            ("[[inbound_trunk]]\nname = \"x\"\n", "needs `allow`"),
            (
                "[[inbound_trunk]]\nname = \"x\"\nallow = [\"10.0.0.0/99\"]\n",
                "CIDR",
            ),
            (
                "[[outbound_trunk]]\nname = \"x\"\nproxy = \"h:5060\"\nregister = true\n",
                "no credentials",
            ),
            (
                "listen = \"127.0.0.1:0\"\nlisten_typo = 1\n",
                "unknown field",
            ),
            ("[registrar]\nmin_expires = 7200\n", "min_expires"),
        ] {
            let err = SipConfig::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(what), "{toml}: {err}");
        }
    }
}
