//! The RTP side of a leg: negotiated SDP state, symmetric RTP latching, receive statistics,
//! RTCP, and the outgoing stream whose SSRC, sequence and timestamps stay continuous across
//! relayed sources, prompts and re-bridges.
//!
//! The core routes *frames* ([`RxFrame`] in, [`TxFrame`] out), not packets, so a WebRTC leg
//! (str0m: it takes `(pt, rtp_time, payload)` and yields `MediaData`) can implement the same
//! two calls beside [`RtpTransport`] without changes to bridging or mixing.

use crate::codec::{Codec, FRAME_SAMPLES, SAMPLE_RATE};
use crate::rtcp::{self, ReportBlock, RtcpPacket, SenderInfo};
use crate::rtp::{ReceiveStats, RtpHeader, RtpPacket, SeqVerdict};
use crate::sdp::{Direction, LocalMedia, Negotiated};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Which of a leg's sockets a datagram came in on or goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    Rtp,
    Rtcp,
}

/// What a received packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Audio(Codec),
    TelephoneEvent,
}

/// A received media frame, borrowed from the datagram.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    pub kind: FrameKind,
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// Where an outgoing frame's timing comes from.
#[derive(Debug, Clone, Copy)]
pub enum Timing {
    /// Generated here (prompt, mix, tone): continue our own timeline.
    Local { samples: u32 },
    /// Relayed from another leg's source: keep its spacing, gaps and reordering.
    Relay {
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
    },
    /// A telephone-event packet: `start` opens a new event at the current stream time; later
    /// packets of the event repeat that timestamp.
    Event { start: bool },
}

#[derive(Debug, Clone, Copy)]
pub struct TxFrame<'a> {
    pub kind: FrameKind,
    pub timing: Timing,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// Why a datagram was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Malformed,
    /// From an address other than the latched one.
    Foreign,
    NotNegotiated,
    /// Duplicate, far out of order, or a direction in which we do not receive.
    Discarded,
    UnknownPayloadType,
}

#[derive(Debug, Clone, Copy)]
struct SourceMap {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// Our outgoing stream.
#[derive(Debug)]
pub struct OutStream {
    pub ssrc: u32,
    seq: u16,
    ts: u32,
    last_len: u32,
    last_at: Option<Instant>,
    source: Option<SourceMap>,
    event_ts: u32,
    pub packets: u32,
    pub octets: u32,
}

impl OutStream {
    pub fn new(ssrc: u32, seq: u16, ts: u32) -> Self {
        OutStream {
            ssrc,
            seq: seq.wrapping_sub(1),
            ts,
            last_len: 0,
            last_at: None,
            source: None,
            event_ts: ts,
            packets: 0,
            octets: 0,
        }
    }

    /// Forgets the relayed source's mapping: the next relayed packet starts a new talk spurt
    /// (marker, next sequence number) instead of exposing the packets skipped while unbridged.
    pub fn reanchor(&mut self) {
        self.source = None;
    }

    /// The timestamp that continues our stream at `now`: the previous packet's end, or the
    /// elapsed wall time rounded to whole frames after a pause.
    fn continue_ts(&self, now: Instant) -> u32 {
        match self.last_at {
            None => self.ts,
            Some(at) => {
                let elapsed = now.saturating_duration_since(at);
                let samples = (elapsed.as_micros() as u64 * SAMPLE_RATE as u64 / 1_000_000) as u32;
                let frame = FRAME_SAMPLES as u32;
                let rounded = (samples + frame / 2) / frame * frame;
                self.ts.wrapping_add(rounded.max(self.last_len))
            }
        }
    }

    /// Assigns (marker, seq, ts) to a frame.
    pub fn stamp(&mut self, now: Instant, timing: Timing, marker: bool) -> (bool, u16, u32) {
        match timing {
            Timing::Local { samples } => {
                let switched = self.source.take().is_some() || self.last_at.is_none();
                let ts = self.continue_ts(now);
                self.seq = self.seq.wrapping_add(1);
                self.ts = ts;
                self.last_len = samples;
                self.last_at = Some(now);
                (marker || switched, self.seq, ts)
            }
            Timing::Event { start } => {
                // The event packets repeat the start timestamp while the audio timeline under
                // them keeps moving, so audio after the digit continues at the right time.
                self.source = None;
                let audio_ts = self.continue_ts(now);
                if start {
                    self.event_ts = audio_ts;
                }
                self.seq = self.seq.wrapping_add(1);
                self.ts = audio_ts;
                self.last_len = FRAME_SAMPLES as u32;
                self.last_at = Some(now);
                (start, self.seq, self.event_ts)
            }
            Timing::Relay {
                ssrc,
                sequence,
                timestamp,
            } => {
                let mut switched = false;
                let map = match self.source {
                    Some(m) if m.ssrc == ssrc => m,
                    _ => {
                        switched = true;
                        let ts = self.continue_ts(now);
                        let m = SourceMap {
                            ssrc,
                            seq_offset: self.seq.wrapping_add(1).wrapping_sub(sequence),
                            ts_offset: ts.wrapping_sub(timestamp),
                        };
                        self.source = Some(m);
                        m
                    }
                };
                let seq = sequence.wrapping_add(map.seq_offset);
                let ts = timestamp.wrapping_add(map.ts_offset);
                // Track the newest packet so a later switch continues after it.
                if (seq.wrapping_sub(self.seq) as i16) > 0 || switched {
                    self.seq = seq;
                    self.ts = ts;
                    self.last_at = Some(now);
                    self.last_len = FRAME_SAMPLES as u32;
                }
                (marker || switched, seq, ts)
            }
        }
    }
}

/// What we learned from RTCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteReport {
    pub rtt: Option<Duration>,
    pub fraction_lost: f32,
    pub jitter: Duration,
}

/// One RTP/RTCP endpoint of a leg.
#[derive(Debug)]
pub struct RtpTransport {
    pub local: LocalMedia,
    pub local_rtp: SocketAddr,
    pub local_rtcp: SocketAddr,
    pub negotiated: Option<Negotiated>,
    last_sdp_body: Option<String>,
    pub latched_rtp: Option<SocketAddr>,
    pub latched_rtcp: Option<SocketAddr>,
    pub rx: Option<ReceiveStats>,
    pub last_rx: Option<Instant>,
    pub out: OutStream,
    /// (LSR, arrival) of the last SR received.
    last_sr: Option<(u32, Instant)>,
    /// Our clock: (instant, NTP time) at the core's start.
    ntp_base: (Instant, u64),
    pub remote: RemoteReport,
    pub foreign_dropped: u64,
    pub malformed: u64,
    pub remote_bye: bool,
    cname: String,
}

impl RtpTransport {
    pub fn new(
        local: LocalMedia,
        local_rtp: SocketAddr,
        local_rtcp: SocketAddr,
        out: OutStream,
        ntp_base: (Instant, u64),
        cname: String,
    ) -> Self {
        RtpTransport {
            local,
            local_rtp,
            local_rtcp,
            negotiated: None,
            last_sdp_body: None,
            latched_rtp: None,
            latched_rtcp: None,
            rx: None,
            last_rx: None,
            out,
            last_sr: None,
            ntp_base,
            remote: RemoteReport::default(),
            foreign_dropped: 0,
            malformed: 0,
            remote_bye: false,
            cname,
        }
    }

    /// Bumps the o= version only when the description really changed (RFC 3264 §8).
    pub fn version_sdp(&mut self, build: impl Fn(&LocalMedia) -> String) -> String {
        let sdp = build(&self.local);
        let body: String = sdp.lines().filter(|l| !l.starts_with("o=")).collect();
        if self.last_sdp_body.as_deref().is_some_and(|b| b != body) {
            self.local.session_version += 1;
            self.last_sdp_body = Some(body);
            return build(&self.local);
        }
        self.last_sdp_body = Some(body);
        sdp
    }

    /// Installs a new negotiation; a new remote address drops the latch.
    pub fn set_negotiated(&mut self, n: Negotiated) {
        if self
            .negotiated
            .as_ref()
            .is_none_or(|old| old.remote_rtp != n.remote_rtp || old.remote_rtcp != n.remote_rtcp)
        {
            self.latched_rtp = None;
            self.latched_rtcp = None;
        }
        self.negotiated = Some(n);
    }

    pub fn direction(&self) -> Direction {
        self.negotiated
            .as_ref()
            .map(|n| n.direction)
            .unwrap_or(Direction::Inactive)
    }

    pub fn codec(&self) -> Option<Codec> {
        self.negotiated.as_ref().map(|n| n.codec)
    }

    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.negotiated.as_ref().and_then(|n| n.telephone_event_pt)
    }

    fn rtp_destination(&self) -> Option<SocketAddr> {
        self.latched_rtp
            .or_else(|| self.negotiated.as_ref().map(|n| n.remote_rtp))
    }

    fn rtcp_destination(&self) -> Option<(Port, SocketAddr)> {
        let n = self.negotiated.as_ref()?;
        if n.rtcp_mux {
            Some((Port::Rtp, self.latched_rtp.unwrap_or(n.remote_rtp)))
        } else {
            Some((Port::Rtcp, self.latched_rtcp.unwrap_or(n.remote_rtcp)))
        }
    }

    fn ntp_at(&self, now: Instant) -> u64 {
        self.ntp_base.1.wrapping_add(rtcp::to_ntp64(
            now.saturating_duration_since(self.ntp_base.0),
        ))
    }

    /// Latching (symmetric RTP): the first packet fixes where the remote really is.
    fn latch(slot: &mut Option<SocketAddr>, from: SocketAddr) -> bool {
        match slot {
            Some(a) => *a == from,
            None => {
                *slot = Some(from);
                true
            }
        }
    }

    /// Takes an RTP datagram; returns the frame to route.
    pub fn receive_rtp<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &'a [u8],
    ) -> Result<RxFrame<'a>, Rejected> {
        let Some(neg) = self.negotiated.as_ref() else {
            return Err(Rejected::NotNegotiated);
        };
        let pkt = match RtpPacket::parse(data) {
            Ok(p) => p,
            Err(_) => {
                self.malformed += 1;
                return Err(Rejected::Malformed);
            }
        };
        let kind = if pkt.payload_type == neg.payload_type {
            FrameKind::Audio(neg.codec)
        } else if Some(pkt.payload_type) == neg.telephone_event_pt {
            FrameKind::TelephoneEvent
        } else {
            return Err(Rejected::UnknownPayloadType);
        };
        let receives = neg.direction.receives();
        if !Self::latch(&mut self.latched_rtp, from) {
            self.foreign_dropped += 1;
            tracing::debug!(local = %self.local_rtp, %from, "RTP from an unlatched address dropped");
            return Err(Rejected::Foreign);
        }
        if !receives {
            return Err(Rejected::Discarded);
        }
        let rx = match &mut self.rx {
            Some(rx) if rx.ssrc == pkt.ssrc => rx,
            slot => slot.insert(ReceiveStats::new(pkt.ssrc, pkt.sequence)),
        };
        if rx.update_seq(pkt.sequence) == SeqVerdict::Discard {
            return Err(Rejected::Discarded);
        }
        if matches!(kind, FrameKind::Audio(_)) {
            let arrival = (now.saturating_duration_since(self.ntp_base.0).as_micros() as u64
                * SAMPLE_RATE as u64
                / 1_000_000) as u32;
            rx.update_jitter(arrival, pkt.timestamp);
        }
        self.last_rx = Some(now);
        Ok(RxFrame {
            kind,
            ssrc: pkt.ssrc,
            sequence: pkt.sequence,
            timestamp: pkt.timestamp,
            marker: pkt.marker,
            payload: pkt.payload,
        })
    }

    /// Builds the packet for an outgoing frame, or None when we may not send.
    pub fn send(
        &mut self,
        now: Instant,
        frame: TxFrame<'_>,
    ) -> Option<(Port, SocketAddr, Vec<u8>)> {
        let neg = self.negotiated.as_ref()?;
        if !neg.direction.sends() {
            return None;
        }
        let pt = match frame.kind {
            FrameKind::Audio(_) => neg.payload_type,
            FrameKind::TelephoneEvent => neg.telephone_event_pt?,
        };
        let to = self.rtp_destination()?;
        let (marker, sequence, timestamp) = self.out.stamp(now, frame.timing, frame.marker);
        let mut buf = Vec::with_capacity(12 + frame.payload.len());
        RtpHeader {
            marker,
            payload_type: pt,
            sequence,
            timestamp,
            ssrc: self.out.ssrc,
        }
        .write(frame.payload, &mut buf);
        self.out.packets = self.out.packets.wrapping_add(1);
        self.out.octets = self.out.octets.wrapping_add(frame.payload.len() as u32);
        Some((Port::Rtp, to, buf))
    }

    /// Takes an RTCP datagram (on the RTCP port or muxed).
    pub fn receive_rtcp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        port: Port,
    ) -> bool {
        let slot = match port {
            Port::Rtp => &mut self.latched_rtp,
            Port::Rtcp => &mut self.latched_rtcp,
        };
        if !Self::latch(slot, from) {
            self.foreign_dropped += 1;
            tracing::debug!(local = %self.local_rtp, %from, "RTCP from an unlatched address dropped");
            return false;
        }
        let Ok(pkts) = rtcp::parse_compound(data) else {
            self.malformed += 1;
            return false;
        };
        let arrival = rtcp::ntp_middle(self.ntp_at(now));
        for p in pkts {
            let blocks = match p {
                RtcpPacket::SenderReport { ntp, reports, .. } => {
                    self.last_sr = Some((rtcp::ntp_middle(ntp), now));
                    reports
                }
                RtcpPacket::ReceiverReport { reports, .. } => reports,
                RtcpPacket::Bye { .. } => {
                    self.remote_bye = true;
                    continue;
                }
                RtcpPacket::Other { .. } => continue,
            };
            for b in blocks.iter().filter(|b| b.ssrc == self.out.ssrc) {
                if let Some(rtt) = rtcp::round_trip_time(arrival, b) {
                    self.remote.rtt = Some(rtt);
                }
                self.remote.fraction_lost = b.fraction_lost as f32 / 256.0;
                self.remote.jitter =
                    Duration::from_micros(b.jitter as u64 * 1_000_000 / SAMPLE_RATE as u64);
            }
        }
        true
    }

    fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let rx = self.rx.as_mut()?;
        let (last_sr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, rtcp::to_compact(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: rx.ssrc,
            fraction_lost: rx.take_fraction_lost(),
            cumulative_lost: rx.cumulative_lost(),
            extended_max_seq: rx.extended_max(),
            jitter: rx.jitter(),
            last_sr,
            delay_since_last_sr: dlsr,
        })
    }

    /// A periodic RTCP report (SR if we have sent, else RR), with the loss of the interval.
    pub fn build_report(&mut self, now: Instant) -> Option<(Port, SocketAddr, Vec<u8>, f32)> {
        let (port, to) = self.rtcp_destination()?;
        let block = self.report_block(now);
        let fraction = block.map(|b| b.fraction_lost as f32 / 256.0).unwrap_or(0.0);
        let sender = (self.out.packets > 0).then(|| SenderInfo {
            ntp: self.ntp_at(now),
            rtp_timestamp: self.out.continue_ts(now),
            packet_count: self.out.packets,
            octet_count: self.out.octets,
        });
        let blocks: Vec<ReportBlock> = block.into_iter().collect();
        let data = rtcp::build_report(self.out.ssrc, sender, &blocks, &self.cname);
        Some((port, to, data, fraction))
    }

    pub fn build_bye(&self) -> Option<(Port, SocketAddr, Vec<u8>)> {
        let (port, to) = self.rtcp_destination()?;
        Some((port, to, rtcp::build_bye(self.out.ssrc, &self.cname)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn local_frames_advance_by_frame_and_pauses_by_wall_time() {
        let base = t0();
        let mut o = OutStream::new(1, 100, 1000);
        let l = Timing::Local { samples: 160 };
        assert_eq!(o.stamp(base, l, false), (true, 100, 1000));
        let at = |ms| base + Duration::from_millis(ms);
        assert_eq!(o.stamp(at(21), l, false), (false, 101, 1160));
        // 200 ms pause: timestamp jumps by 1600 (rounded to frames), seq does not skip.
        assert_eq!(o.stamp(at(221), l, false), (false, 102, 2760));
    }

    #[test]
    fn relay_keeps_source_spacing_and_switches_continue_the_stream() {
        let base = t0();
        let at = |ms| base + Duration::from_millis(ms);
        let mut o = OutStream::new(9, 500, 0);
        let l = Timing::Local { samples: 160 };
        o.stamp(base, l, false); // seq 500, ts 0
        let r = |seq: u16, ts: u32| Timing::Relay {
            ssrc: 77,
            sequence: seq,
            timestamp: ts,
        };
        // First relayed packet: marker, next seq, ts continuing 20 ms later.
        assert_eq!(
            o.stamp(at(20), r(40000, 9_000_000), false),
            (true, 501, 160)
        );
        assert_eq!(
            o.stamp(at(40), r(40001, 9_000_160), false),
            (false, 502, 320)
        );
        // A source gap (lost packet) stays visible to the far end.
        assert_eq!(
            o.stamp(at(80), r(40003, 9_000_480), false),
            (false, 504, 640)
        );
        // Back to a prompt and then the same source again: still one continuous stream.
        assert_eq!(o.stamp(at(100), l, false), (true, 505, 800));
        let (m, s, ts) = o.stamp(at(120), r(40005, 9_000_800), false);
        assert_eq!((m, s, ts), (true, 506, 960));
        // A new source (re-bridge to someone else).
        let other = Timing::Relay {
            ssrc: 88,
            sequence: 3,
            timestamp: 5,
        };
        assert_eq!(o.stamp(at(140), other, false), (true, 507, 1120));
    }

    #[test]
    fn events_share_one_timestamp() {
        let base = t0();
        let at = |ms| base + Duration::from_millis(ms);
        let mut o = OutStream::new(9, 0, 0);
        o.stamp(base, Timing::Local { samples: 160 }, false);
        let s = o.stamp(at(20), Timing::Event { start: true }, false);
        let u = o.stamp(at(40), Timing::Event { start: false }, false);
        let e = o.stamp(at(60), Timing::Event { start: false }, false);
        assert_eq!(s, (true, 1, 160));
        assert_eq!(u, (false, 2, 160));
        assert_eq!(e, (false, 3, 160));
        // Audio after the event continues past its duration.
        let (_, seq, ts) = o.stamp(at(80), Timing::Local { samples: 160 }, false);
        assert_eq!((seq, ts), (4, 640));
    }
}
