//! Inbound SMTP and LMTP: a sans-IO session ([`proto`]) and its tokio server ([`server`]).

pub mod proto;
pub mod server;

pub use proto::{Delivery, Output, Protocol, Session, SessionConfig};
pub use server::{SmtpServer, SmtpServerConfig, TlsMode};
