//! What a leg sends and receives through: plain RTP (trunks, desk phones) or WebRTC (the
//! browser console). Bridging, playback, mixing and recording see only frames and these calls.

use crate::codec::Codec;
use crate::leg::{OutStream, Port, RemoteReport, RtpTransport, TxFrame};
use crate::rtp::ReceiveStats;
use crate::switch::{LegId, Transmit};
use crate::webrtc::{Outputs, WebRtcTransport};
use std::collections::VecDeque;
use std::time::Instant;

// RTP legs stay inline: they are most legs and the relay path touches them per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Transport {
    Rtp(RtpTransport),
    WebRtc(Box<WebRtcTransport>),
}

impl Transport {
    pub fn codec(&self) -> Option<Codec> {
        match self {
            Transport::Rtp(r) => r.codec(),
            Transport::WebRtc(w) => w.codec(),
        }
    }

    pub fn telephone_event_pt(&self) -> Option<u8> {
        match self {
            Transport::Rtp(r) => r.telephone_event_pt(),
            Transport::WebRtc(w) => w.telephone_event_pt(),
        }
    }

    pub fn is_negotiated(&self) -> bool {
        match self {
            Transport::Rtp(r) => r.negotiated.is_some(),
            Transport::WebRtc(w) => w.is_negotiated(),
        }
    }

    pub fn out(&self) -> &OutStream {
        match self {
            Transport::Rtp(r) => &r.out,
            Transport::WebRtc(w) => &w.out,
        }
    }

    pub fn out_mut(&mut self) -> &mut OutStream {
        match self {
            Transport::Rtp(r) => &mut r.out,
            Transport::WebRtc(w) => &mut w.out,
        }
    }

    pub fn rx(&self) -> Option<&ReceiveStats> {
        match self {
            Transport::Rtp(r) => r.rx.as_ref(),
            Transport::WebRtc(w) => w.rx.as_ref(),
        }
    }

    pub fn rx_mut(&mut self) -> Option<&mut ReceiveStats> {
        match self {
            Transport::Rtp(r) => r.rx.as_mut(),
            Transport::WebRtc(w) => w.rx.as_mut(),
        }
    }

    pub fn last_rx(&self) -> Option<Instant> {
        match self {
            Transport::Rtp(r) => r.last_rx,
            Transport::WebRtc(w) => w.last_rx,
        }
    }

    pub fn remote(&self) -> RemoteReport {
        match self {
            Transport::Rtp(r) => r.remote,
            Transport::WebRtc(w) => w.remote,
        }
    }

    /// Whether the remote should be sending us media now (for the media timeout).
    pub fn expects_media(&self) -> bool {
        match self {
            Transport::Rtp(r) => r
                .negotiated
                .as_ref()
                .is_some_and(|n| n.remote_direction.sends() && n.direction.receives()),
            Transport::WebRtc(w) => w.connected,
        }
    }

    pub fn rtp(&self) -> Option<&RtpTransport> {
        match self {
            Transport::Rtp(r) => Some(r),
            Transport::WebRtc(_) => None,
        }
    }

    pub fn rtp_mut(&mut self) -> Option<&mut RtpTransport> {
        match self {
            Transport::Rtp(r) => Some(r),
            Transport::WebRtc(_) => None,
        }
    }

    pub fn webrtc_mut(&mut self) -> Option<&mut WebRtcTransport> {
        match self {
            Transport::Rtp(_) => None,
            Transport::WebRtc(w) => Some(w),
        }
    }

    /// Sends a frame; the datagrams go to `transmits`. False when nothing could be sent.
    /// A WebRTC leg's send advances str0m, which can change its state (ICE timing out, the
    /// session closing): those are left in `sink.states` for the caller to report. `sink` is
    /// the caller's reused scratch (no allocation per packet).
    pub fn send(
        &mut self,
        now: Instant,
        leg: LegId,
        frame: TxFrame<'_>,
        transmits: &mut VecDeque<Transmit>,
        sink: &mut Outputs,
    ) -> bool {
        match self {
            Transport::Rtp(r) => match r.send(now, frame) {
                Some((port, to, data)) => {
                    transmits.push_back(Transmit {
                        leg,
                        port,
                        to,
                        data,
                    });
                    true
                }
                None => false,
            },
            Transport::WebRtc(w) => {
                let sent = w.send(now, frame, sink);
                push_transmits(leg, sink, transmits);
                sent
            }
        }
    }
}

/// Moves a WebRTC call's datagrams to the core's queue (one socket: always the RTP port).
pub fn push_transmits(leg: LegId, sink: &mut Outputs, transmits: &mut VecDeque<Transmit>) {
    for (to, data) in sink.transmits.drain(..) {
        transmits.push_back(Transmit {
            leg,
            port: Port::Rtp,
            to,
            data,
        });
    }
}
