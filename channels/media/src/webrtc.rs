//! The WebRTC side of a leg, for agents on the browser console: str0m (ICE-lite, DTLS-SRTP,
//! RTP mode) behind the same frame interface as [`crate::leg::RtpTransport`]. G.711 payloads
//! pass untouched; only SRTP and the RTP header (our SSRC, sequence, timestamps from
//! [`OutStream`]) change, so a bridge to a trunk leg does not transcode.
//!
//! str0m is sans-IO like the core: every call here takes `now`, and after every mutation the
//! `Rtc` is drained to its next timeout (str0m's single-mutation rule). It draws its own
//! randomness for ICE credentials and DTLS keys, which must be unpredictable.

use crate::codec::{Codec, SAMPLE_RATE};
use crate::leg::{FrameKind, OutStream, RemoteReport, RxFrame, TxFrame};
use crate::rtp::{ReceiveStats, SeqVerdict};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::{Codec as WireCodec, FormatParams};
use str0m::media::{Direction as WireDirection, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};

/// Why an offer, answer or candidate was refused. The leg is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebRtcError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("the offer has no audio")]
    NoAudio,
    #[error("no common audio codec: offered {offered}; this leg takes {accepted}")]
    NoCommonCodec { offered: String, accepted: String },
    #[error("the SDP has no ICE credentials (a=ice-ufrag/a=ice-pwd)")]
    NoIceCredentials,
    #[error("the SDP has no DTLS fingerprint")]
    NoFingerprint,
    #[error("the DTLS fingerprint differs from the one this leg was set up with")]
    FingerprintChanged,
    #[error("the candidate belongs to ICE credentials that are not current ({0})")]
    StaleCandidate(String),
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    #[error("no offer of ours is waiting for an answer")]
    NoPendingOffer,
    #[error("no offer or answer has been exchanged yet")]
    NotNegotiated,
    #[error("refused by the WebRTC stack: {0}")]
    Refused(String),
    #[error("the WebRTC session has failed: {0}")]
    Failed(String),
}

/// What the browser side looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebRtcState {
    /// ICE and DTLS are up: media flows.
    Connected,
    /// ICE lost the browser (network change): it should restart ICE with a new offer.
    Disconnected,
    /// DTLS failed (e.g. a certificate not matching the SDP fingerprint) or the session ended.
    Failed,
}

/// A received RTP packet, owned (str0m hands out decrypted packets, not borrowed slices).
#[derive(Debug, Clone)]
pub struct RxPacket {
    pub kind: FrameKind,
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
}

impl RxPacket {
    pub fn frame(&self) -> RxFrame<'_> {
        RxFrame {
            kind: self.kind,
            ssrc: self.ssrc,
            sequence: self.sequence,
            timestamp: self.timestamp,
            marker: self.marker,
            payload: &self.payload,
        }
    }
}

/// What one call into the transport produced.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Datagrams to send from the leg's socket.
    pub transmits: Vec<(SocketAddr, Vec<u8>)>,
    pub packets: Vec<RxPacket>,
    pub states: Vec<WebRtcState>,
    /// str0m's next timeout after the call (None: no timer, or the session failed).
    pub timeout: Option<Instant>,
}

/// Settings that come from the engine and the leg's config.
#[derive(Debug, Clone)]
pub struct WebRtcSetup {
    /// Codecs in our order of preference (PCMU/PCMA).
    pub codecs: Vec<Codec>,
    /// Negotiate telephone-event/8000 for the console keypad.
    pub telephone_event: bool,
    /// The host candidate we advertise (the socket's port on the advertised address).
    pub candidate: SocketAddr,
    /// The engine's DTLS certificate (one per engine: generating one per call costs a key pair).
    pub certificate: DtlsCert,
    /// RTCP and stats interval.
    pub report_interval: Duration,
}

pub struct WebRtcTransport {
    rtc: Rtc,
    candidate: SocketAddr,
    codecs: Vec<Codec>,
    mid: Option<Mid>,
    codec: Option<Codec>,
    payload_type: Option<u8>,
    telephone_event_pt: Option<u8>,
    /// The fingerprint of the first offer/answer: DTLS cannot change identity mid-call.
    remote_fingerprint: Option<(String, Vec<u8>)>,
    remote_creds: Option<IceCreds>,
    pending: Option<SdpPendingOffer>,
    pending_restart: bool,
    pub connected: bool,
    pub failed: Option<String>,
    pub ice_restarts: u32,
    pub out: OutStream,
    /// Extended (ROC, sequence) of our newest packet: SRTP needs the rollover counter.
    tx_ext_seq: Option<u64>,
    pub rx: Option<ReceiveStats>,
    pub last_rx: Option<Instant>,
    pub remote: RemoteReport,
    pub malformed: u64,
    timeout: Option<Instant>,
    /// Start of the core's clock, for jitter arrival times.
    clock_base: Instant,
}

impl std::fmt::Debug for WebRtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcTransport")
            .field("candidate", &self.candidate)
            .field("mid", &self.mid)
            .field("codec", &self.codec)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

/// The first value of `a=<name>:` (session or media level: browsers differ).
fn sdp_attribute<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix("a=")?
            .strip_prefix(name)?
            .strip_prefix(':')
            .map(str::trim)
    })
}

fn ice_credentials(sdp: &str) -> Option<IceCreds> {
    Some(IceCreds {
        ufrag: sdp_attribute(sdp, "ice-ufrag")?.to_string(),
        pass: sdp_attribute(sdp, "ice-pwd")?.to_string(),
    })
}

/// `a=fingerprint:sha-256 AB:CD:..` as (hash, digest bytes).
fn fingerprint(sdp: &str) -> Option<(String, Vec<u8>)> {
    let (hash, hex) = sdp_attribute(sdp, "fingerprint")?.split_once(' ')?;
    let bytes = hex
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((hash.to_ascii_lowercase(), bytes))
}

fn refused(e: impl std::fmt::Display) -> WebRtcError {
    WebRtcError::Refused(e.to_string())
}

fn wire_codec(c: Codec) -> WireCodec {
    match c {
        Codec::Pcmu => WireCodec::PCMU,
        Codec::Pcma => WireCodec::PCMA,
    }
}

/// Puts `pt` first in the audio m-line's format list: the browser sends with the first codec
/// of the answer, so this is how our preference (the trunk's codec) wins over its order.
fn prefer_payload_type(sdp: &str, pt: u8) -> String {
    let pt = pt.to_string();
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        if let Some(rest) = body.strip_prefix("m=audio ") {
            let mut parts: Vec<&str> = rest.split(' ').collect();
            // port, proto, then formats.
            if parts.len() > 3 {
                if let Some(i) = parts[2..].iter().position(|p| *p == pt) {
                    let f = parts.remove(2 + i);
                    parts.insert(2, f);
                }
            }
            out.push_str("m=audio ");
            out.push_str(&parts.join(" "));
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

impl WebRtcTransport {
    pub fn new(now: Instant, setup: WebRtcSetup, out: OutStream, clock_base: Instant) -> Self {
        let mut config = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(setup.certificate)
            .set_stats_interval(Some(setup.report_interval))
            .set_rtcp_report_interval_audio(setup.report_interval)
            // Only the MID (BUNDLE demux). No transport-cc: TWCC feeds bandwidth estimation,
            // which a 64 kbit/s G.711 leg has no use for, and costs a feedback datagram each
            // way every ~100 ms plus per-packet bookkeeping (≈ 20 % of this leg's datagrams).
            // No audio-level or abs-send-time: nothing here reads them.
            .clear_extension_map()
            .set_extension(4, Extension::RtpMid)
            .clear_codecs();
        for c in &setup.codecs {
            match c {
                Codec::Pcmu => config = config.enable_pcmu(true, false),
                Codec::Pcma => config = config.enable_pcma(true, false),
            }
        }
        if setup.telephone_event {
            config.codec_config().add_config(
                101.into(),
                None,
                WireCodec::Tele,
                Frequency::EIGHT_KHZ,
                None,
                FormatParams::parse_line("0-16"),
            );
        }
        let mut rtc = config.build(now);
        if let Ok(c) = Candidate::host(setup.candidate, "udp") {
            rtc.add_local_candidate(c);
        }
        let mut t = WebRtcTransport {
            rtc,
            candidate: setup.candidate,
            codecs: setup.codecs,
            mid: None,
            codec: None,
            payload_type: None,
            telephone_event_pt: None,
            remote_fingerprint: None,
            remote_creds: None,
            pending: None,
            pending_restart: false,
            connected: false,
            failed: None,
            ice_restarts: 0,
            out,
            tx_ext_seq: None,
            rx: None,
            last_rx: None,
            remote: RemoteReport::default(),
            malformed: 0,
            timeout: None,
            clock_base,
        };
        let mut sink = Outputs::default();
        t.drain(&mut sink);
        t
    }

    pub fn codec(&self) -> Option<Codec> {
        self.codec
    }

    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.telephone_event_pt
    }

    pub fn is_negotiated(&self) -> bool {
        self.codec.is_some()
    }

    /// When str0m wants `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() {
            return None;
        }
        self.timeout
    }

    fn alive(&self) -> Result<(), WebRtcError> {
        match &self.failed {
            Some(f) => Err(WebRtcError::Failed(f.clone())),
            None => Ok(()),
        }
    }

    /// Checks what must hold before str0m may see a remote description, so that a refusal
    /// leaves the session untouched: audio with a codec we take, ICE credentials, and the same
    /// DTLS fingerprint as before.
    fn check_remote(&self, sdp: &str) -> Result<(SdpOffer, Mid), WebRtcError> {
        let parsed =
            SdpOffer::from_sdp_string(sdp).map_err(|e| WebRtcError::Malformed(e.to_string()))?;
        let audio = parsed
            .media_lines
            .iter()
            .filter(|m| !m.disabled)
            .find(|m| m.rtp_params().iter().any(|p| p.spec().codec.is_audio()))
            .ok_or(WebRtcError::NoAudio)?;
        let params = audio.rtp_params();
        let ours = |c: &Codec| params.iter().any(|p| p.spec().codec == wire_codec(*c));
        if !self.codecs.iter().any(ours) {
            let mut offered: Vec<String> = params
                .iter()
                .filter(|p| p.spec().codec.is_audio())
                .map(|p| p.spec().codec.to_string())
                .collect();
            offered.dedup();
            return Err(WebRtcError::NoCommonCodec {
                offered: offered.join(", "),
                accepted: self
                    .codecs
                    .iter()
                    .map(|c| c.encoding_name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mid = audio.mid();
        if ice_credentials(sdp).is_none() {
            return Err(WebRtcError::NoIceCredentials);
        }
        let fingerprint = fingerprint(sdp).ok_or(WebRtcError::NoFingerprint)?;
        if self
            .remote_fingerprint
            .as_ref()
            .is_some_and(|f| *f != fingerprint)
        {
            return Err(WebRtcError::FingerprintChanged);
        }
        Ok((parsed, mid))
    }

    /// Answers the browser's offer (first call, ICE restart or any re-offer).
    pub fn accept_offer(
        &mut self,
        now: Instant,
        sdp: &str,
        sink: &mut Outputs,
    ) -> Result<String, WebRtcError> {
        self.alive()?;
        let (offer, mid) = self.check_remote(sdp)?;
        if self.mid.is_some_and(|m| m != mid) {
            return Err(WebRtcError::Refused(format!(
                "the audio section changed from mid {:?} to {:?}",
                self.mid.map(|m| m.to_string()),
                mid.to_string()
            )));
        }
        let creds = ice_credentials(sdp);
        let fingerprint = fingerprint(sdp);
        // A pending offer of ours is abandoned by the browser's own offer (glare: it wins).
        self.pending = None;
        let answer = self.rtc.sdp_api().accept_offer(offer).map_err(refused);
        self.settle(now, sink);
        let answer = answer?;
        self.learn(mid, creds, fingerprint);
        let sdp = answer.to_sdp_string();
        Ok(match self.payload_type {
            Some(pt) => prefer_payload_type(&sdp, pt),
            None => sdp,
        })
    }

    /// Our offer: the first one (when we call the browser) or an ICE restart from our side.
    pub fn create_offer(
        &mut self,
        now: Instant,
        ice_restart: bool,
        sink: &mut Outputs,
    ) -> Result<String, WebRtcError> {
        self.alive()?;
        let mut change = self.rtc.sdp_api();
        if self.mid.is_none() {
            change.add_media(MediaKind::Audio, WireDirection::SendRecv, None, None, None);
        }
        if ice_restart {
            change.ice_restart(true);
        }
        let applied = change.apply();
        self.settle(now, sink);
        let (offer, pending) = applied.ok_or_else(|| {
            WebRtcError::Refused("nothing to offer: no change since the last offer".into())
        })?;
        self.pending = Some(pending);
        self.pending_restart = ice_restart;
        Ok(offer.to_sdp_string())
    }

    /// The browser's answer to our offer.
    pub fn accept_answer(
        &mut self,
        now: Instant,
        sdp: &str,
        sink: &mut Outputs,
    ) -> Result<(), WebRtcError> {
        self.alive()?;
        if self.pending.is_none() {
            return Err(WebRtcError::NoPendingOffer);
        }
        let (parsed, mid) = self.check_remote(sdp)?;
        drop(parsed);
        let creds = ice_credentials(sdp);
        if !self.pending_restart && self.remote_creds.is_some() && self.remote_creds != creds {
            return Err(WebRtcError::Refused(
                "the answer changes ICE credentials without an ICE restart".into(),
            ));
        }
        let fingerprint = fingerprint(sdp);
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| WebRtcError::Malformed(e.to_string()))?;
        let Some(pending) = self.pending.take() else {
            return Err(WebRtcError::NoPendingOffer);
        };
        let r = self.rtc.sdp_api().accept_answer(pending, answer);
        self.settle(now, sink);
        r.map_err(refused)?;
        self.learn(mid, creds, fingerprint);
        Ok(())
    }

    /// After a successful negotiation: which codec we send, the event payload type, the
    /// credentials and fingerprint later descriptions are checked against.
    fn learn(&mut self, mid: Mid, creds: Option<IceCreds>, fingerprint: Option<(String, Vec<u8>)>) {
        if self.remote_creds.is_some() && self.remote_creds != creds {
            self.ice_restarts += 1;
        }
        self.remote_creds = creds;
        self.remote_fingerprint = self.remote_fingerprint.take().or(fingerprint);
        self.mid = Some(mid);
        let Some(media) = self.rtc.media(mid) else {
            return;
        };
        let remote = media.remote_pts().to_vec();
        self.codec = self
            .codecs
            .iter()
            .copied()
            .find(|c| remote.contains(&c.static_payload_type().into()));
        self.payload_type = self.codec.map(|c| c.static_payload_type());
        self.telephone_event_pt = self
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| {
                p.spec().codec == WireCodec::Tele
                    && p.spec().clock_rate == Frequency::EIGHT_KHZ
                    && remote.contains(&p.pt())
            })
            .map(|p| *p.pt());
    }

    /// A trickled candidate from the browser. `ufrag` is the candidate's usernameFragment
    /// (or the one written in the candidate line).
    pub fn add_candidate(
        &mut self,
        now: Instant,
        candidate: &str,
        ufrag: Option<&str>,
        sink: &mut Outputs,
    ) -> Result<(), WebRtcError> {
        self.alive()?;
        let Some(creds) = self.remote_creds.as_ref() else {
            return Err(WebRtcError::NotNegotiated);
        };
        let line = candidate.trim().trim_start_matches("a=");
        let c = Candidate::from_sdp_string(line)
            .map_err(|e| WebRtcError::BadCandidate(e.to_string()))?;
        if let Some(u) = ufrag.or(c.ufrag()) {
            if u != creds.ufrag {
                return Err(WebRtcError::StaleCandidate(u.to_string()));
            }
        }
        self.rtc.add_remote_candidate(c);
        self.settle(now, sink);
        Ok(())
    }

    /// A datagram from the leg's socket: STUN, DTLS or SRTP/SRTCP.
    pub fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8], sink: &mut Outputs) {
        if self.failed.is_some() {
            return;
        }
        let Ok(contents) = data.try_into() else {
            self.malformed += 1;
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.candidate,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            // Bad input from the network is logged by str0m and costs nothing; an error here
            // means the session is unusable.
            tracing::debug!(error = %e, "WebRTC input rejected");
            self.malformed += 1;
        }
        // Only this datagram's packets: the sink is the caller's, possibly not empty.
        let first = sink.packets.len();
        self.drain(sink);
        for p in &sink.packets[first..] {
            self.count_received(now, p);
        }
    }

    fn count_received(&mut self, now: Instant, p: &RxPacket) {
        self.last_rx = Some(now);
        let rx = match &mut self.rx {
            Some(rx) if rx.ssrc == p.ssrc => rx,
            slot => slot.insert(ReceiveStats::new(p.ssrc, p.sequence)),
        };
        // str0m has already dropped SRTP replays; this keeps the RFC 3550 figures.
        if rx.update_seq(p.sequence) == SeqVerdict::Discard {
            return;
        }
        if matches!(p.kind, FrameKind::Audio(_)) {
            let arrival = (now.saturating_duration_since(self.clock_base).as_micros() as u64
                * SAMPLE_RATE as u64
                / 1_000_000) as u32;
            rx.update_jitter(arrival, p.timestamp);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, sink: &mut Outputs) {
        if self.failed.is_some() {
            return;
        }
        self.settle(now, sink);
    }

    /// Sends one frame as SRTP. Dropped (as the network would) until DTLS is up.
    pub fn send(&mut self, now: Instant, frame: TxFrame<'_>, sink: &mut Outputs) -> bool {
        if !self.connected || self.failed.is_some() {
            return false;
        }
        let (Some(mid), Some(audio_pt)) = (self.mid, self.payload_type) else {
            return false;
        };
        let pt = match frame.kind {
            FrameKind::Audio(_) => audio_pt,
            FrameKind::TelephoneEvent => match self.telephone_event_pt {
                Some(pt) => pt,
                None => return false,
            },
        };
        let (marker, sequence, timestamp) = self.out.stamp(now, frame.timing, frame.marker);
        let ext = self.extend_sequence(sequence);
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        tx.write_rtp(
            RtpWrite::new(pt.into(), ext.into(), timestamp, now, frame.payload).marker(marker),
        );
        self.out.packets = self.out.packets.wrapping_add(1);
        self.out.octets = self.out.octets.wrapping_add(frame.payload.len() as u32);
        // Let the send queue release the packet now rather than at the next timer.
        self.settle(now, sink);
        true
    }

    /// Our 16-bit sequence extended with the SRTP rollover counter.
    fn extend_sequence(&mut self, seq: u16) -> u64 {
        let ext = match self.tx_ext_seq {
            None => seq as u64,
            Some(last) => {
                let delta = seq.wrapping_sub(last as u16) as i16 as i64;
                (last as i64 + delta).max(0) as u64
            }
        };
        if self.tx_ext_seq.is_none_or(|l| ext > l) {
            self.tx_ext_seq = Some(ext);
        }
        ext
    }

    /// Ends the session: RTCP BYE and DTLS close_notify go out.
    pub fn close(&mut self, now: Instant, sink: &mut Outputs) {
        if self.failed.is_none() && self.rtc.close().is_ok() {
            self.settle(now, sink);
        }
    }

    /// Advances str0m to `now` and drains it.
    fn settle(&mut self, now: Instant, sink: &mut Outputs) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(e.to_string(), sink);
            return;
        }
        self.drain(sink);
    }

    fn fail(&mut self, reason: String, sink: &mut Outputs) {
        if self.failed.is_none() {
            tracing::info!(reason = %reason, "WebRTC session failed");
            self.failed = Some(reason);
            self.connected = false;
            sink.states.push(WebRtcState::Failed);
        }
    }

    /// Polls str0m until it only has a timeout left.
    fn drain(&mut self, sink: &mut Outputs) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = Some(t);
                    if !self.rtc.is_alive() {
                        self.fail("closed".into(), sink);
                    }
                    sink.timeout = self.poll_timeout();
                    return;
                }
                Ok(Output::Transmit(t)) => sink.transmits.push((t.destination, t.contents.into())),
                Ok(Output::Event(e)) => self.event(e, sink),
                Err(e) => {
                    self.fail(e.to_string(), sink);
                    return;
                }
            }
        }
    }

    fn event(&mut self, e: Event, sink: &mut Outputs) {
        match e {
            Event::Connected => {
                self.connected = true;
                sink.states.push(WebRtcState::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                sink.states.push(WebRtcState::Disconnected);
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self.connected => sink.states.push(WebRtcState::Connected),
            Event::RtpPacket(p) => {
                let pt = *p.header.payload_type;
                let kind = if Some(pt) == self.telephone_event_pt {
                    FrameKind::TelephoneEvent
                } else if let Some(c) = self
                    .codecs
                    .iter()
                    .copied()
                    .find(|c| c.static_payload_type() == pt)
                {
                    FrameKind::Audio(c)
                } else {
                    return;
                };
                sink.packets.push(RxPacket {
                    kind,
                    ssrc: *p.header.ssrc,
                    sequence: p.header.sequence_number,
                    timestamp: p.header.timestamp,
                    marker: p.header.marker,
                    payload: p.payload,
                });
            }
            Event::MediaEgressStats(s) => {
                if let Some(rtt) = s.rtt {
                    self.remote.rtt = Some(rtt);
                }
                if let Some(loss) = s.loss {
                    self.remote.fraction_lost = loss;
                }
                if let Some(r) = s.remote {
                    self.remote.jitter =
                        Duration::from_micros(r.jitter as u64 * 1_000_000 / SAMPLE_RATE as u64);
                }
            }
            Event::MediaIngressStats(s) if self.remote.rtt.is_none() => self.remote.rtt = s.rtt,
            Event::Closed => self.fail("closed by the browser".into(), sink),
            _ => {}
        }
    }

    /// The fingerprint we put in our SDP (tests and diagnostics).
    pub fn local_fingerprint(&mut self) -> String {
        self.rtc.direct_api().local_dtls_fingerprint().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_payload_type_moves_first_and_keeps_line_endings() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8 126\r\na=x\r\n";
        assert_eq!(
            prefer_payload_type(sdp, 8),
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8 0 126\r\na=x\r\n"
        );
        assert_eq!(prefer_payload_type(sdp, 0), sdp);
        assert_eq!(prefer_payload_type(sdp, 9), sdp);
    }
}
