//! Media for Contact Hub: SDP offer/answer for audio, RTP/RTCP legs, G.711, DTMF (RFC 4733 and
//! in-band), a jitter buffer, the conference mixer with supervisor roles, prompt and music
//! playback, and call recording.
//!
//! The protocol logic is sans-IO ([`switch::MediaCore`]: `handle_*(now, ..)`, `poll_*()`); the
//! driver [`engine::MediaEngine`] owns the UDP sockets and runs the core on one thread (an epoll
//! loop, no async runtime; the handle is async and works from any tokio runtime).

pub mod codec;
pub mod dtmf;
pub mod engine;
pub mod jitter;
pub mod leg;
pub mod mixer;
pub mod playback;
mod poll;
pub mod prompts;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod switch;
pub mod transport;
pub mod wav;
pub mod webrtc;

#[cfg(test)]
mod testutil;

pub use codec::Codec;
pub use engine::{EngineConfig, MediaEngine, PlaySpec};
pub use mixer::Role;
pub use playback::{Clip, PlayItem};
pub use prompts::{Language, Prompts};
pub use sdp::{Direction, SdpError};
pub use switch::{
    ConferenceId, DtmfSource, InbandDtmf, LegConfig, LegId, LegStats, MediaCore, MediaError,
    MediaEvent, RecordingId,
};
pub use wav::RecordingInfo;
pub use webrtc::{WebRtcError, WebRtcState};
