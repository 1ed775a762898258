//! Outbound mail: composing replies, forwards and acknowledgements ([`compose`]), and
//! sending them through a relay with retries ([`send`]).

pub mod compose;
pub mod send;

pub use compose::{
    ack_email, compose, forward, new_message_id, references_after, reply, ComposeError,
    ComposedEmail, OutgoingAttachment, OutgoingEmail,
};
pub use send::{AttemptOutcome, AttemptReport, RelayConfig, RelaySecurity, Sender, SenderError};
