//! SIP signalling for Contact Hub: transports, trunks, the registrar for desk phones and the
//! call legs the hub's B2BUA joins. See README.md for the API and the trunk TOML.
//!
//! Sans-IO parts (time is an input, no sockets): [`wire`] (the untrusted-bytes boundary),
//! [`registrar`], [`leg`], [`schedule`], [`digest`]. The tokio driver is [`SipEndpoint`].

pub mod cidr;
pub mod config;
pub mod digest;
mod endpoint;
mod events;
pub mod leg;
pub mod registrar;
pub mod schedule;
mod udp;
pub mod wire;

pub use config::{InboundTrunk, OutboundTrunk, SipConfig, TlsListenConfig, TrunkTransport};
pub use digest::Secret;
pub use endpoint::{SipEndpoint, SipHandle};
pub use events::{
    CallOrigin, Caller, LegId, LegInfo, NameAddr, OfferId, SipError, SipEvent, Target,
};
pub use leg::{EndCause, LegState, Party};
pub use registrar::{AgentCredential, CredentialStore, RegistrarConfig, SharedCredentials};
