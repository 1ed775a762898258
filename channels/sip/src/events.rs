//! The types the hub sees: leg ids, events, call targets and errors. No rsipstack type leaks
//! out of the crate.

use crate::leg::{EndCause, LegError, LegState, Party};
use std::fmt;

/// One call leg (one INVITE dialog, either side). Unique per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg-{}", self.0)
    }
}

/// A pending remote offer (re-INVITE or UPDATE) waiting for `answer_offer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OfferId(pub u64);

/// A From/To party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    /// The full URI, e.g. `sip:+8613800138000@carrier.example`.
    pub uri: String,
    /// The URI's user part: the number or extension.
    pub user: Option<String>,
}

/// Who sent an inbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOrigin {
    /// A configured inbound trunk (matched by source address or digest).
    Trunk { name: String },
    /// A desk phone that authenticated as `username` (the agent's own phone dialling out).
    User { username: String, agent_id: String },
}

/// Everything the endpoint tells the hub. Each leg ends with exactly one `Ended` or (for an
/// outbound leg never answered) one `Failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipEvent {
    IncomingCall {
        leg: LegId,
        call_id: String,
        from: NameAddr,
        to: NameAddr,
        request_uri: String,
        origin: CallOrigin,
        /// The caller's SDP offer (absent for a late-offer INVITE).
        remote_sdp: Option<String>,
    },
    /// An outbound leg got a provisional response (180/183), maybe with early media SDP.
    Progress {
        leg: LegId,
        code: u16,
        early_sdp: Option<String>,
    },
    /// An outbound leg was answered (ACK already sent).
    Answered {
        leg: LegId,
        remote_sdp: Option<String>,
    },
    /// An outbound leg failed before an answer: 486 busy, 480, 408 timeout, 603, 503 ...
    Failed {
        leg: LegId,
        code: u16,
    },
    Ended {
        leg: LegId,
        by: Party,
        cause: EndCause,
    },
    ReinviteAnswered {
        leg: LegId,
        remote_sdp: Option<String>,
    },
    ReinviteFailed {
        leg: LegId,
        code: u16,
    },
    /// The remote sent a re-INVITE or UPDATE with an SDP offer: answer it with
    /// `SipHandle::answer_offer` (or `reject_offer`) within `offer_timeout_secs`, else 488.
    RemoteOffer {
        leg: LegId,
        offer: OfferId,
        sdp: String,
    },
    /// A DTMF digit sent as SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    Dtmf {
        leg: LegId,
        digit: char,
        duration_ms: Option<u32>,
    },
    /// A desk phone registered a (new) contact for `user`.
    Registered {
        user: String,
        agent_id: String,
        contact: String,
    },
    /// `user` has no registered contact any more.
    Unregistered {
        user: String,
        agent_id: String,
    },
    TrunkRegistered {
        trunk: String,
        expires: u32,
    },
    TrunkRegistrationFailed {
        trunk: String,
        code: Option<u16>,
    },
}

/// Where `originate` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A registered desk phone (the user's most recently registered contact).
    User(String),
    /// Every registered contact of the user at once; the first to answer wins and the
    /// others are cancelled. The hub sees one leg.
    UserAll(String),
    /// Any SIP URI, sent where the URI points.
    Uri(String),
    /// A number through a configured outbound trunk.
    Trunk { trunk: String, number: String },
}

/// The calling party of an outbound leg.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    pub display: Option<String>,
    /// User part of From (a number or `hub`); a trunk's `default_caller` when empty.
    pub user: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("no such leg {0}")]
    UnknownLeg(LegId),
    #[error("no such pending offer")]
    UnknownOffer,
    #[error(transparent)]
    Leg(#[from] LegError),
    #[error("user {0:?} has no registered phone")]
    NotRegistered(String),
    #[error("no outbound trunk named {0:?}")]
    UnknownTrunk(String),
    #[error("invalid target {0:?}")]
    BadTarget(String),
    #[error("invalid status code {0}")]
    BadStatus(u16),
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("SIP stack: {0}")]
    Stack(String),
    #[error("the endpoint is shut down")]
    Shutdown,
}

impl From<rsipstack::Error> for SipError {
    fn from(e: rsipstack::Error) -> Self {
        SipError::Stack(e.to_string())
    }
}

/// A leg's state as the hub may query it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegInfo {
    pub leg: LegId,
    pub state: LegState,
    pub call_id: String,
}
