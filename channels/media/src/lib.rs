//! Media for Contact Hub: SDP offer/answer for audio, RTP/RTCP legs, G.711, DTMF (RFC 4733 and
//! in-band), a jitter buffer, the conference mixer with supervisor roles, prompt and music
//! playback, and call recording.
//!
//! The protocol logic is sans-IO ([`core::MediaCore`]: `handle_*(now, ..)`, `poll_*()`); the
//! tokio driver [`engine::MediaEngine`] owns the UDP sockets and runs the core on one thread.

pub mod codec;
pub mod dtmf;
pub mod jitter;
pub mod mixer;
pub mod playback;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod wav;

#[cfg(test)]
mod testutil;
