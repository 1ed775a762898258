//! Email channel: inbound SMTP/LMTP and IMAP, MIME parsing, threading, auto-acknowledgement
//! policy and outbound sending.
//!
//! The hub plugs in through [`MailSink`] (inbound: store a message, then the protocol side
//! acknowledges it), [`thread::ThreadLookup`] (facts for the threading decision) and the
//! outbound [`outbound::Sender`]. Protocol cores are sans-IO (time is an input); the tokio
//! drivers are thin.

pub mod autoack;
pub mod backoff;
pub mod imap;
mod io;
pub mod outbound;
pub mod parse;
mod sink;
pub mod smtp;
#[doc(hidden)]
pub mod testing;
pub mod thread;
pub mod tls;

pub use sink::{
    Envelope, InboundMail, LocalAddresses, MailSink, Recipient, SinkError, Source, Stored,
};
