//! What the hub implements to take inbound mail: one async call that stores a message.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an inbound message came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Smtp {
        peer: Option<SocketAddr>,
        tls: bool,
    },
    Lmtp {
        peer: Option<SocketAddr>,
    },
    Imap {
        account: String,
        mailbox: String,
        uid: u32,
    },
}

/// One accepted recipient: the address as given and the configured local address it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The RCPT TO address, lower-cased.
    pub address: String,
    /// The key the operator configured for the matched local address (e.g. `service`), which
    /// the hub maps to routing attributes.
    pub key: String,
}

/// The SMTP envelope (or its IMAP equivalent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// MAIL FROM; empty for the null sender `<>` (bounces).
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
    /// The EHLO/HELO/LHLO name the client gave (empty for IMAP).
    pub helo: String,
    pub source: Source,
}

/// A message handed to the sink: the envelope and the message exactly as received.
#[derive(Debug, Clone)]
pub struct InboundMail {
    pub envelope: Envelope,
    pub raw: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

/// The sink's receipt: the message is durably stored under `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
}

/// Why the sink did not store a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Try again later (SMTP 451; the IMAP message stays unseen). Nothing is lost: the
    /// sending MTA keeps the message and retries.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Refused for good (SMTP 554); the text goes back to the sender.
    #[error("refused: {0}")]
    Permanent(String),
}

/// Implemented by the hub: store the message durably, then return. The protocol side
/// acknowledges (SMTP 250, IMAP `\Seen`) only after `Ok`.
///
/// The future runs on the connection's task, so heavy work (parsing) done inside it does not
/// block other connections or the hub loop.
pub trait MailSink: Send + Sync + 'static {
    fn deliver(&self, mail: InboundMail) -> impl Future<Output = Result<Stored, SinkError>> + Send;
}

/// The local addresses the server accepts mail for, each with the operator's key.
///
/// Matching is case-insensitive and ignores a `+tag` sub-address, so
/// `Service+Order123@Example.com` matches `service@example.com`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalAddresses {
    by_address: HashMap<String, String>,
}

impl LocalAddresses {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept mail for `address`, reporting it with `key`.
    pub fn with(mut self, address: &str, key: &str) -> Self {
        self.insert(address, key);
        self
    }

    pub fn insert(&mut self, address: &str, key: &str) {
        self.by_address
            .insert(normalize_local(address), key.to_string());
    }

    /// The key of the local address `address` is for, if any.
    pub fn lookup(&self, address: &str) -> Option<&str> {
        self.by_address
            .get(&normalize_local(address))
            .map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// Whether `address` is one of ours (for loop detection).
    pub fn contains(&self, address: &str) -> bool {
        self.lookup(address).is_some()
    }
}

fn normalize_local(address: &str) -> String {
    let address = address.trim().to_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(base, _)| base);
            format!("{local}@{domain}")
        }
        None => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_match_case_insensitively_and_ignore_subaddress() {
        let local = LocalAddresses::new()
            .with("service@example.com", "service")
            .with("Sales@Example.com", "sales");
        assert_eq!(local.lookup("SERVICE@example.COM"), Some("service"));
        assert_eq!(local.lookup("service+order-7@example.com"), Some("service"));
        assert_eq!(local.lookup("sales@example.com"), Some("sales"));
        assert_eq!(local.lookup("other@example.com"), None);
        assert_eq!(local.lookup("service@example.org"), None);
    }
}
