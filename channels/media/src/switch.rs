//! The sans-IO media core: legs, bridges, playback, conferences and recordings, driven by
//! `handle_datagram(now, ..)` and `handle_timeout(now)`, drained with `poll_transmit()`,
//! `poll_event()`, `poll_recording()`; `poll_timeout()` says when to call again.

use crate::codec::{Codec, Frame, FRAME_DURATION, FRAME_SAMPLES};
use crate::dtmf::{Digit, EventReceiver, EventSender, EventSlot, InbandDetector};
use crate::jitter::{FrameKind as JbKind, JitterBuffer, JitterConfig};
use crate::leg::{FrameKind, OutStream, Port, Rejected, RtpTransport, RxFrame, Timing, TxFrame};
use crate::mixer::{Mixer, Role};
use crate::playback::{AudioSource, PlayItem, Playlist};
use crate::sdp::{self, Direction, LocalMedia, SdpError, SessionDescription};
use crate::transport::{push_transmits, Transport};
use crate::webrtc::{Outputs, WebRtcError, WebRtcSetup, WebRtcState, WebRtcTransport};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A leg: one RTP endpoint (customer, agent, supervisor...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u32);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg-{}", self.0)
    }
}

/// A conference room, named by the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConferenceId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(pub u32);

/// Where a digit was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    Rfc4733,
    Inband,
}

/// Per-leg figures, sent periodically and on request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegStats {
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Cumulative lost packets of the received stream (RFC 3550).
    pub packets_lost: i64,
    /// Fraction lost in the last report interval (0.0..=1.0).
    pub fraction_lost: f32,
    /// Interarrival jitter of the received stream.
    pub jitter: Duration,
    /// Round-trip time from RTCP, once the remote has reported on our SR.
    pub rtt: Option<Duration>,
    /// What the remote reports about our stream.
    pub remote_fraction_lost: f32,
    pub remote_jitter: Duration,
    /// Datagrams dropped because they came from an unlatched address.
    pub foreign_dropped: u64,
    pub malformed: u64,
    /// WebRTC legs: ICE restarts so far.
    pub ice_restarts: u32,
}

/// Events for the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    Dtmf {
        leg: LegId,
        digit: Digit,
        source: DtmfSource,
    },
    /// A `play` finished (`completed`) or was stopped or replaced.
    PlaybackDone {
        leg: LegId,
        completed: bool,
    },
    /// No RTP for the configured time although the remote should be sending.
    MediaTimeout {
        leg: LegId,
    },
    /// The remote put us on hold (sendonly/inactive) or took us off.
    RemoteHold {
        leg: LegId,
        held: bool,
    },
    /// The remote sent RTCP BYE.
    RemoteBye {
        leg: LegId,
    },
    Stats {
        leg: LegId,
        stats: LegStats,
    },
    /// A WebRTC leg connected (ICE + DTLS up), lost the browser (it should restart ICE), or
    /// failed (DTLS refused, closed).
    WebRtc {
        leg: LegId,
        state: WebRtcState,
    },
}

/// A datagram to send from one of a leg's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub leg: LegId,
    pub port: Port,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// 20 ms of stereo recording (customer left, agent right), interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFrame {
    pub recording: RecordingId,
    pub samples: Vec<i16>,
}

/// When to run the in-band DTMF detector on a leg's received audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InbandDtmf {
    /// Only when no telephone-event was negotiated.
    #[default]
    Auto,
    Always,
    Off,
}

#[derive(Debug, Clone)]
pub struct LegConfig {
    /// Codecs in our order of preference.
    pub codecs: Vec<Codec>,
    /// Telephone-event payload type in our offers; None disables RFC 4733.
    pub telephone_event_pt: Option<u8>,
    /// Offer/accept rtcp-mux.
    pub rtcp_mux: bool,
    /// Raise `MediaTimeout` after this long without RTP (None: never).
    pub media_timeout: Option<Duration>,
    pub inband_dtmf: InbandDtmf,
    pub jitter: JitterConfig,
    /// Address written in SDP (the engine's advertised address when None).
    pub advertise: Option<IpAddr>,
}

impl Default for LegConfig {
    fn default() -> Self {
        LegConfig {
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event_pt: Some(101),
            rtcp_mux: false,
            media_timeout: Some(Duration::from_secs(30)),
            inband_dtmf: InbandDtmf::Auto,
            jitter: JitterConfig::default(),
            advertise: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("unknown {0}")]
    UnknownLeg(LegId),
    #[error("unknown recording {0:?}")]
    UnknownRecording(RecordingId),
    #[error("{0} has no negotiated media yet")]
    NotNegotiated(LegId),
    #[error("cannot bridge a leg with itself")]
    SelfBridge,
    #[error(transparent)]
    Sdp(#[from] SdpError),
    #[error(transparent)]
    WebRtc(#[from] WebRtcError),
    #[error("{0} is not a WebRTC leg")]
    NotWebRtc(LegId),
    #[error("{0} is a WebRTC leg: use the webrtc_* calls")]
    NotRtp(LegId),
    #[error("no free RTP port pair in the configured range")]
    NoPorts,
    #[error("{0}")]
    Io(String),
    #[error("media engine stopped")]
    Stopped,
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Seeds SSRCs, initial sequence numbers and timestamps, SDP session ids.
    pub seed: u64,
    /// Seconds between RTCP reports and Stats events.
    pub report_interval: Duration,
    /// Wall clock at `start`, for RTCP NTP timestamps.
    pub unix_time_at_start: Duration,
    pub cname: String,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            seed: 1,
            report_interval: Duration::from_secs(5),
            unix_time_at_start: Duration::ZERO,
            cname: "contact-hub".into(),
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

struct Leg {
    config: LegConfig,
    media: Transport,
    peer: Option<LegId>,
    conference: Option<ConferenceId>,
    playback: Option<Box<dyn AudioSource>>,
    /// In-band DTMF we send, or RFC 4733 digits converted for a peer without events.
    tones: Option<Playlist>,
    events_tx: EventSender,
    events_rx: EventReceiver,
    inband: Option<InbandDetector>,
    jitter: Option<JitterBuffer>,
    recorded_by: u32,
    /// This tick's received audio (for mixer and recorder).
    tick_input: Option<Frame>,
    /// This tick's mixer output.
    mix_out: Option<Frame>,
    created: Instant,
    timeout_reported: bool,
    remote_held: bool,
    next_report: Instant,
    packets_received: u64,
    bye_reported: bool,
    decode_buf: Vec<i16>,
}

impl Leg {
    /// Whether locally generated audio replaces relayed packets this tick.
    fn overriding(&self) -> bool {
        self.playback.is_some()
            || self.tones.is_some()
            || !self.events_tx.is_idle()
            || self.conference.is_some()
    }

    fn needs_pcm(&self) -> bool {
        self.conference.is_some() || self.recorded_by > 0
    }

    fn inband_enabled(&self) -> bool {
        match self.config.inband_dtmf {
            InbandDtmf::Always => true,
            InbandDtmf::Off => false,
            InbandDtmf::Auto => self.media.telephone_event_pt().is_none(),
        }
    }
}

struct Recording {
    customer: Vec<LegId>,
    agent: Vec<LegId>,
}

/// The media core. One per engine; every method takes the current time where it matters.
pub struct MediaCore {
    config: CoreConfig,
    start: Instant,
    legs: BTreeMap<LegId, Leg>,
    next_leg: u32,
    conferences: HashMap<ConferenceId, Mixer<LegId>>,
    recordings: BTreeMap<RecordingId, Recording>,
    next_recording: u32,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    record_frames: VecDeque<RecordFrame>,
    next_tick: Option<Instant>,
    /// Reused scratch for what a WebRTC leg produces: one for its input (datagrams, timers,
    /// signalling), one for frames sent to it, which can happen while the first is in use.
    webrtc_in: Outputs,
    webrtc_out: Outputs,
    /// A lower bound of every WebRTC leg's str0m timeout: exact after a scan, then lowered by
    /// each call into a leg. Spares a scan of every leg per poll and per timer run; when it
    /// is stale (a leg's timer moved later), the cost is one early wake-up and a scan.
    webrtc_due: Option<Instant>,
    due_scratch: Vec<LegId>,
    /// Datagrams relayed without decoding (for benchmarks and metrics).
    pub relayed: u64,
}

impl MediaCore {
    pub fn new(config: CoreConfig, now: Instant) -> Self {
        MediaCore {
            config,
            start: now,
            legs: BTreeMap::new(),
            next_leg: 1,
            conferences: HashMap::new(),
            recordings: BTreeMap::new(),
            next_recording: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            record_frames: VecDeque::new(),
            next_tick: None,
            webrtc_in: Outputs::default(),
            webrtc_out: Outputs::default(),
            webrtc_due: None,
            due_scratch: Vec::new(),
            relayed: 0,
        }
    }

    fn leg(&self, id: LegId) -> Result<&Leg, MediaError> {
        self.legs.get(&id).ok_or(MediaError::UnknownLeg(id))
    }

    fn leg_mut(&mut self, id: LegId) -> Result<&mut Leg, MediaError> {
        self.legs.get_mut(&id).ok_or(MediaError::UnknownLeg(id))
    }

    pub fn leg_ids(&self) -> impl Iterator<Item = LegId> + '_ {
        self.legs.keys().copied()
    }

    /// Registers a leg whose sockets the driver has bound.
    pub fn add_leg(
        &mut self,
        now: Instant,
        config: LegConfig,
        local_rtp: SocketAddr,
        local_rtcp: SocketAddr,
        advertise: IpAddr,
    ) -> LegId {
        let (id, r, r2) = self.next_id();
        let local = LocalMedia {
            addr: config.advertise.unwrap_or(advertise),
            rtp_port: local_rtp.port(),
            rtcp_port: local_rtcp.port(),
            codecs: config.codecs.clone(),
            telephone_event_pt: config.telephone_event_pt,
            ptime: 20,
            offer_rtcp_mux: config.rtcp_mux,
            session_id: r2 >> 2,
            session_version: 1,
            direction: Direction::SendRecv,
        };
        let ntp_base = (
            self.start,
            crate::rtcp::to_ntp64(
                self.config.unix_time_at_start + Duration::from_secs(2_208_988_800),
            ),
        );
        let rtp = RtpTransport::new(
            local,
            local_rtp,
            local_rtcp,
            Self::out_stream(r),
            ntp_base,
            self.config.cname.clone(),
        );
        self.insert_leg(now, id, r2, config, Transport::Rtp(rtp));
        id
    }

    /// Registers a WebRTC leg (browser agent) on one socket bound by the driver. `advertise`
    /// is the host candidate's address (the leg config's `advertise` wins); `certificate` is
    /// the engine's DTLS certificate.
    pub fn add_webrtc_leg(
        &mut self,
        now: Instant,
        config: LegConfig,
        local: SocketAddr,
        advertise: IpAddr,
        certificate: str0m::config::DtlsCert,
    ) -> LegId {
        let (id, r, r2) = self.next_id();
        let setup = WebRtcSetup {
            codecs: config.codecs.clone(),
            telephone_event: config.telephone_event_pt.is_some(),
            candidate: SocketAddr::new(config.advertise.unwrap_or(advertise), local.port()),
            certificate,
            report_interval: self.config.report_interval,
        };
        let w = WebRtcTransport::new(now, setup, Self::out_stream(r), self.start);
        self.webrtc_due = earliest(self.webrtc_due, w.poll_timeout());
        self.insert_leg(now, id, r2, config, Transport::WebRtc(Box::new(w)));
        id
    }

    fn next_id(&mut self) -> (LegId, u64, u64) {
        let id = LegId(self.next_leg);
        self.next_leg += 1;
        let r = splitmix(self.config.seed ^ (id.0 as u64) << 20);
        (id, r, splitmix(r))
    }

    fn out_stream(r: u64) -> OutStream {
        OutStream::new(r as u32, (r >> 32) as u16, (r >> 48) as u32 * 7919)
    }

    fn insert_leg(
        &mut self,
        now: Instant,
        id: LegId,
        r2: u64,
        config: LegConfig,
        media: Transport,
    ) {
        // Spread reports of legs created together over the interval.
        let spread = Duration::from_millis(r2 % 1000);
        self.legs.insert(
            id,
            Leg {
                config,
                media,
                peer: None,
                conference: None,
                playback: None,
                tones: None,
                events_tx: EventSender::default(),
                events_rx: EventReceiver::new(),
                inband: None,
                jitter: None,
                recorded_by: 0,
                tick_input: None,
                mix_out: None,
                created: now,
                timeout_reported: false,
                remote_held: false,
                next_report: now + self.config.report_interval + spread,
                packets_received: 0,
                bye_reported: false,
                decode_buf: Vec::with_capacity(FRAME_SAMPLES),
            },
        );
        self.next_tick.get_or_insert(now + FRAME_DURATION);
    }

    fn rtp_leg(&mut self, leg: LegId) -> Result<&mut RtpTransport, MediaError> {
        self.leg_mut(leg)?
            .media
            .rtp_mut()
            .ok_or(MediaError::NotRtp(leg))
    }

    fn webrtc_leg(&mut self, leg: LegId) -> Result<&mut WebRtcTransport, MediaError> {
        self.leg_mut(leg)?
            .media
            .webrtc_mut()
            .ok_or(MediaError::NotWebRtc(leg))
    }

    /// Our SDP offer for the leg (initial or re-INVITE).
    pub fn local_offer(&mut self, leg: LegId) -> Result<String, MediaError> {
        Ok(self.rtp_leg(leg)?.version_sdp(sdp::build_offer))
    }

    /// Answers the remote's offer. Errors with `SdpError::NoCommonCodec` for a 488.
    pub fn answer(&mut self, now: Instant, leg: LegId, remote: &str) -> Result<String, MediaError> {
        let offer = SessionDescription::parse(remote)?;
        let rtp = self.rtp_leg(leg)?;
        // Check before versioning so a failed offer leaves the state alone.
        sdp::answer_offer(&rtp.local, &offer)?;
        let answer = rtp.version_sdp(|local| {
            sdp::answer_offer(local, &offer)
                .map(|(a, _)| a)
                .unwrap_or_default()
        });
        let (_, neg) = sdp::answer_offer(&rtp.local, &offer)?;
        self.install(now, leg, neg);
        Ok(answer)
    }

    /// Applies the remote's answer to our offer.
    pub fn apply_answer(
        &mut self,
        now: Instant,
        leg: LegId,
        remote: &str,
    ) -> Result<(), MediaError> {
        let answer = SessionDescription::parse(remote)?;
        let rtp = self.rtp_leg(leg)?;
        let neg = sdp::apply_answer(&rtp.local, &answer)?;
        self.install(now, leg, neg);
        Ok(())
    }

    fn install(&mut self, now: Instant, leg: LegId, neg: sdp::Negotiated) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        let held = neg.remote_holds();
        if let Some(rtp) = l.media.rtp_mut() {
            rtp.set_negotiated(neg);
        }
        self.renegotiated(now, leg);
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if held != l.remote_held {
            l.remote_held = held;
            self.events.push_back(MediaEvent::RemoteHold { leg, held });
        }
    }

    /// After any (re)negotiation: the media timeout counts from now, DTMF detection follows
    /// what was negotiated.
    fn renegotiated(&mut self, now: Instant, leg: LegId) {
        if let Some(l) = self.legs.get_mut(&leg) {
            l.created = now;
            l.timeout_reported = false;
            l.inband = l.inband_enabled().then(InbandDetector::default);
        }
    }

    /// Runs a call into a WebRTC leg and queues what it produced.
    fn with_webrtc<R>(
        &mut self,
        now: Instant,
        leg: LegId,
        f: impl FnOnce(&mut WebRtcTransport, &mut Outputs) -> Result<R, WebRtcError>,
    ) -> Result<R, MediaError> {
        let mut sink = std::mem::take(&mut self.webrtc_in);
        let r = match self.webrtc_leg(leg) {
            Ok(w) => f(w, &mut sink),
            Err(e) => {
                self.webrtc_in = sink;
                return Err(e);
            }
        };
        self.absorb(now, leg, &mut sink);
        self.webrtc_in = sink;
        Ok(r?)
    }

    /// Answers the browser's offer: the first one, an ICE restart (new ufrag/pwd: the call
    /// goes on) or any re-offer. A refused offer leaves the leg as it was.
    pub fn webrtc_answer(
        &mut self,
        now: Instant,
        leg: LegId,
        offer: &str,
    ) -> Result<String, MediaError> {
        let answer = self.with_webrtc(now, leg, |w, sink| w.accept_offer(now, offer, sink))?;
        self.renegotiated(now, leg);
        Ok(answer)
    }

    /// Our offer to the browser (first, or an ICE restart from our side).
    pub fn webrtc_offer(
        &mut self,
        now: Instant,
        leg: LegId,
        ice_restart: bool,
    ) -> Result<String, MediaError> {
        self.with_webrtc(now, leg, |w, sink| w.create_offer(now, ice_restart, sink))
    }

    /// The browser's answer to `webrtc_offer`.
    pub fn webrtc_apply_answer(
        &mut self,
        now: Instant,
        leg: LegId,
        answer: &str,
    ) -> Result<(), MediaError> {
        self.with_webrtc(now, leg, |w, sink| w.accept_answer(now, answer, sink))?;
        self.renegotiated(now, leg);
        Ok(())
    }

    /// A trickled ICE candidate (`candidate:...` line, optional usernameFragment).
    pub fn webrtc_add_candidate(
        &mut self,
        now: Instant,
        leg: LegId,
        candidate: &str,
        ufrag: Option<&str>,
    ) -> Result<(), MediaError> {
        self.with_webrtc(now, leg, |w, sink| {
            w.add_candidate(now, candidate, ufrag, sink)
        })
    }

    /// Queues a WebRTC leg's datagrams and state changes, and routes the packets it received.
    /// Leaves `sink` empty for reuse.
    fn absorb(&mut self, now: Instant, leg: LegId, sink: &mut Outputs) {
        note_webrtc(leg, sink, &mut self.events, &mut self.webrtc_due);
        push_transmits(leg, sink, &mut self.transmits);
        for p in sink.packets.drain(..) {
            self.route(now, leg, p.frame());
        }
    }

    /// Sets what we want to do: `SendOnly` to hold the remote (then send a re-offer with
    /// `local_offer`), `SendRecv` to resume. Takes effect at once for what we send.
    pub fn set_direction(&mut self, leg: LegId, direction: Direction) -> Result<(), MediaError> {
        let rtp = self.rtp_leg(leg)?;
        rtp.local.direction = direction;
        if let Some(n) = rtp.negotiated.as_mut() {
            n.direction = direction.intersect_with_remote(n.remote_direction);
        }
        Ok(())
    }

    pub fn negotiated(&self, leg: LegId) -> Result<Option<&sdp::Negotiated>, MediaError> {
        Ok(self
            .leg(leg)?
            .media
            .rtp()
            .and_then(|r| r.negotiated.as_ref()))
    }

    /// Relays media between two legs (transcoding μ-law/A-law when they differ). Each leg
    /// leaves any previous bridge or conference.
    pub fn bridge(&mut self, a: LegId, b: LegId) -> Result<(), MediaError> {
        if a == b {
            return Err(MediaError::SelfBridge);
        }
        self.leg(a)?;
        self.leg(b)?;
        for id in [a, b] {
            self.unbridge(id)?;
            self.unmix(id)?;
        }
        for (x, y) in [(a, b), (b, a)] {
            let l = self.leg_mut(x)?;
            l.peer = Some(y);
            l.media.out_mut().reanchor();
        }
        Ok(())
    }

    /// Ends the leg's bridge (both directions).
    pub fn unbridge(&mut self, leg: LegId) -> Result<(), MediaError> {
        let peer = self.leg_mut(leg)?.peer.take();
        if let Some(p) = peer {
            if let Some(pl) = self.legs.get_mut(&p) {
                if pl.peer == Some(leg) {
                    pl.peer = None;
                }
            }
        }
        Ok(())
    }

    pub fn peer(&self, leg: LegId) -> Option<LegId> {
        self.legs.get(&leg).and_then(|l| l.peer)
    }

    /// Plays items into the leg, replacing what it would hear (a relayed peer or the mix)
    /// until done. A previous playback is replaced (and reported as not completed).
    pub fn play(
        &mut self,
        leg: LegId,
        items: Vec<PlayItem>,
        looping: bool,
    ) -> Result<(), MediaError> {
        self.play_source(leg, Box::new(Playlist::new(items, looping)))
    }

    pub fn play_source(
        &mut self,
        leg: LegId,
        source: Box<dyn AudioSource>,
    ) -> Result<(), MediaError> {
        let l = self.leg_mut(leg)?;
        if l.playback.replace(source).is_some() {
            self.events.push_back(MediaEvent::PlaybackDone {
                leg,
                completed: false,
            });
        }
        Ok(())
    }

    /// Stops playback; the leg hears its bridge or conference again.
    pub fn stop(&mut self, leg: LegId) -> Result<(), MediaError> {
        let l = self.leg_mut(leg)?;
        if l.playback.take().is_some() {
            self.events.push_back(MediaEvent::PlaybackDone {
                leg,
                completed: false,
            });
        }
        Ok(())
    }

    pub fn is_playing(&self, leg: LegId) -> bool {
        self.legs.get(&leg).is_some_and(|l| l.playback.is_some())
    }

    /// Adds the leg to a conference (created on first use) with a role, or changes its role.
    /// The leg leaves any bridge.
    pub fn mix(
        &mut self,
        conference: ConferenceId,
        leg: LegId,
        role: Role<LegId>,
    ) -> Result<(), MediaError> {
        self.leg(leg)?;
        if let Role::Whisper { to } = role {
            self.leg(to)?;
        }
        let current = self.leg(leg)?.conference;
        if current.is_some_and(|c| c != conference) {
            self.unmix(leg)?;
        }
        self.unbridge(leg)?;
        self.conferences
            .entry(conference)
            .or_default()
            .set(leg, role);
        let l = self.leg_mut(leg)?;
        l.conference = Some(conference);
        let cfg = l.config.jitter;
        l.jitter.get_or_insert_with(|| JitterBuffer::new(cfg));
        Ok(())
    }

    /// Removes the leg from its conference; the conference goes when empty.
    pub fn unmix(&mut self, leg: LegId) -> Result<(), MediaError> {
        let l = self.leg_mut(leg)?;
        let Some(c) = l.conference.take() else {
            return Ok(());
        };
        l.mix_out = None;
        if !l.needs_pcm() {
            l.jitter = None;
        }
        if let Some(m) = self.conferences.get_mut(&c) {
            m.remove(leg);
            if m.is_empty() {
                self.conferences.remove(&c);
            }
        }
        Ok(())
    }

    /// Puts a conference participant on hold with music (it hears `items`, nobody hears it),
    /// or takes it off hold with `None`.
    pub fn conference_hold(
        &mut self,
        leg: LegId,
        items: Option<Vec<PlayItem>>,
    ) -> Result<(), MediaError> {
        let c = self.leg(leg)?.conference;
        if let Some(m) = c.and_then(|c| self.conferences.get_mut(&c)) {
            m.set_hold(
                leg,
                items.map(|i| Box::new(Playlist::new(i, true)) as Box<dyn AudioSource>),
            );
        }
        Ok(())
    }

    pub fn role(&self, leg: LegId) -> Option<(ConferenceId, Role<LegId>)> {
        let c = self.legs.get(&leg)?.conference?;
        Some((c, self.conferences.get(&c)?.role(leg)?))
    }

    /// Starts a stereo recording: the customer legs' received audio on the left, the agent
    /// legs' on the right. Frames come out of `poll_recording` every 20 ms.
    pub fn record(
        &mut self,
        customer: Vec<LegId>,
        agent: Vec<LegId>,
    ) -> Result<RecordingId, MediaError> {
        for id in customer.iter().chain(&agent) {
            self.leg(*id)?;
        }
        for id in customer.iter().chain(&agent) {
            let l = self.leg_mut(*id)?;
            l.recorded_by += 1;
            let cfg = l.config.jitter;
            l.jitter.get_or_insert_with(|| JitterBuffer::new(cfg));
        }
        let id = RecordingId(self.next_recording);
        self.next_recording += 1;
        self.recordings.insert(id, Recording { customer, agent });
        Ok(id)
    }

    pub fn stop_record(&mut self, id: RecordingId) -> Result<(), MediaError> {
        let r = self
            .recordings
            .remove(&id)
            .ok_or(MediaError::UnknownRecording(id))?;
        for leg in r.customer.iter().chain(&r.agent) {
            if let Some(l) = self.legs.get_mut(leg) {
                l.recorded_by = l.recorded_by.saturating_sub(1);
                if !l.needs_pcm() {
                    l.jitter = None;
                }
            }
        }
        Ok(())
    }

    /// Sends digits: RFC 4733 events when negotiated, else in-band tones.
    pub fn send_dtmf(&mut self, leg: LegId, digits: &str) -> Result<(), MediaError> {
        let l = self.leg_mut(leg)?;
        if !l.media.is_negotiated() {
            return Err(MediaError::NotNegotiated(leg));
        }
        if l.media.telephone_event_pt().is_some() {
            l.events_tx.queue(digits);
        } else {
            queue_tones(l, digits);
        }
        Ok(())
    }

    /// Ends a leg: RTCP BYE, leaves bridge, conference and recordings.
    pub fn remove_leg(&mut self, now: Instant, leg: LegId) -> Result<(), MediaError> {
        self.unbridge(leg)?;
        self.unmix(leg)?;
        let mut l = self.legs.remove(&leg).ok_or(MediaError::UnknownLeg(leg))?;
        match &mut l.media {
            Transport::Rtp(rtp) => {
                if let Some((port, to, data)) = rtp.build_bye() {
                    self.transmits.push_back(Transmit {
                        leg,
                        port,
                        to,
                        data,
                    });
                }
            }
            Transport::WebRtc(w) => {
                let mut sink = Outputs::default();
                w.close(now, &mut sink);
                push_transmits(leg, &mut sink, &mut self.transmits);
            }
        }
        for r in self.recordings.values_mut() {
            r.customer.retain(|&x| x != leg);
            r.agent.retain(|&x| x != leg);
        }
        if self.legs.is_empty() {
            self.next_tick = None;
        }
        Ok(())
    }

    pub fn stats(&self, leg: LegId) -> Result<LegStats, MediaError> {
        Ok(stats_of(self.leg(leg)?))
    }

    /// Feeds a datagram received on one of the leg's sockets.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        leg: LegId,
        port: Port,
        from: SocketAddr,
        data: &[u8],
    ) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        let rtp = match &mut l.media {
            Transport::Rtp(rtp) => rtp,
            Transport::WebRtc(w) => {
                let mut sink = std::mem::take(&mut self.webrtc_in);
                w.receive(now, from, data, &mut sink);
                self.absorb(now, leg, &mut sink);
                self.webrtc_in = sink;
                return;
            }
        };
        if port == Port::Rtcp || crate::rtp::is_rtcp(data) {
            rtp.receive_rtcp(now, from, data, port);
            if rtp.remote_bye && !l.bye_reported {
                l.bye_reported = true;
                self.events.push_back(MediaEvent::RemoteBye { leg });
            }
            return;
        }
        let frame = match rtp.receive_rtp(now, from, data) {
            Ok(f) => f,
            Err(Rejected::Malformed) => {
                tracing::debug!(%leg, "malformed RTP dropped");
                return;
            }
            Err(_) => return,
        };
        self.route(now, leg, frame);
    }

    /// A received frame: DTMF detection, jitter buffer (mixing, recording), relay to the peer.
    fn route(&mut self, now: Instant, leg: LegId, frame: RxFrame<'_>) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        l.packets_received += 1;
        l.timeout_reported = false;
        let peer = l.peer;
        match frame.kind {
            FrameKind::TelephoneEvent => {
                if let Some(d) = l.events_rx.handle(frame.timestamp, frame.payload) {
                    self.events.push_back(MediaEvent::Dtmf {
                        leg,
                        digit: d,
                        source: DtmfSource::Rfc4733,
                    });
                    if let Some(p) = peer {
                        self.convert_digit_for_peer(p, d);
                    }
                }
                if let Some(p) = peer {
                    self.relay(now, p, &frame);
                }
            }
            FrameKind::Audio(codec) => {
                if l.inband.is_some() || l.jitter.is_some() {
                    let mut pcm = std::mem::take(&mut l.decode_buf);
                    pcm.clear();
                    codec.decode(frame.payload, &mut pcm);
                    if let Some(det) = l.inband.as_mut() {
                        if let Some(d) = det.process(&pcm) {
                            self.events.push_back(MediaEvent::Dtmf {
                                leg,
                                digit: d,
                                source: DtmfSource::Inband,
                            });
                        }
                    }
                    if let Some(jb) = l.jitter.as_mut() {
                        jb.push(frame.timestamp, &pcm);
                    }
                    l.decode_buf = pcm;
                }
                if let Some(p) = peer {
                    self.relay(now, p, &frame);
                }
            }
        }
    }

    /// An RFC 4733 digit from a leg whose peer has no telephone-event: play it in-band.
    fn convert_digit_for_peer(&mut self, peer: LegId, digit: Digit) {
        if let Some(p) = self.legs.get_mut(&peer) {
            if p.media.is_negotiated() && p.media.telephone_event_pt().is_none() {
                queue_tones(p, &digit.to_string());
            }
        }
    }

    fn relay(&mut self, now: Instant, to: LegId, frame: &RxFrame<'_>) {
        let Some(dst) = self.legs.get_mut(&to) else {
            return;
        };
        if dst.overriding() {
            return;
        }
        let mut transcoded;
        let (kind, payload) = match (frame.kind, dst.media.codec()) {
            (FrameKind::Audio(src), Some(dst_codec)) if src != dst_codec => {
                transcoded = frame.payload.to_vec();
                src.transcode_in_place(dst_codec, &mut transcoded);
                (FrameKind::Audio(dst_codec), &transcoded[..])
            }
            (FrameKind::Audio(_), Some(dst_codec)) => (FrameKind::Audio(dst_codec), frame.payload),
            (FrameKind::TelephoneEvent, _) if dst.media.telephone_event_pt().is_some() => {
                (FrameKind::TelephoneEvent, frame.payload)
            }
            _ => return,
        };
        let tx = TxFrame {
            kind,
            timing: Timing::Relay {
                ssrc: frame.ssrc,
                sequence: frame.sequence,
                timestamp: frame.timestamp,
            },
            marker: frame.marker,
            payload,
        };
        let sent = dst
            .media
            .send(now, to, tx, &mut self.transmits, &mut self.webrtc_out);
        absorb_sent(
            to,
            &mut self.webrtc_out,
            &mut self.events,
            &mut self.webrtc_due,
        );
        if sent {
            self.relayed += 1;
        }
    }

    /// When `handle_timeout` should run next: the next 20 ms tick, or earlier when a WebRTC
    /// leg's timer (ICE keepalive, DTLS retransmission, RTCP) is due first.
    /// Cheap (no scan): may be early when a WebRTC timer has moved later since.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(self.next_tick, self.webrtc_due)
    }

    /// Runs due WebRTC timers, then due 20 ms ticks: playback, mixing, recording, DTMF
    /// sending, timeouts, RTCP.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.webrtc_due.is_some_and(|t| t <= now) {
            // One scan: the due legs, and the exact next timeout of the others (the due
            // ones add theirs as they run).
            let mut due = std::mem::take(&mut self.due_scratch);
            let mut next = None;
            for (id, l) in &self.legs {
                if let Transport::WebRtc(w) = &l.media {
                    match w.poll_timeout() {
                        Some(t) if t <= now => due.push(*id),
                        t => next = earliest(next, t),
                    }
                }
            }
            self.webrtc_due = next;
            for id in due.drain(..) {
                let _ = self.with_webrtc(now, id, |w, sink| {
                    w.handle_timeout(now, sink);
                    Ok(())
                });
            }
            self.due_scratch = due;
        }
        let Some(mut next) = self.next_tick else {
            return;
        };
        if next > now {
            return;
        }
        // After a stall, run one tick and resynchronise rather than bursting.
        if now.saturating_duration_since(next) > FRAME_DURATION * 10 {
            next = now;
        }
        while next <= now {
            self.tick(now);
            next += FRAME_DURATION;
        }
        self.next_tick = if self.legs.is_empty() {
            None
        } else {
            Some(next)
        };
    }

    fn tick(&mut self, now: Instant) {
        // 1. Received audio for this tick, for the mixer and recorders.
        for l in self.legs.values_mut() {
            // Relayed legs have no jitter buffer: leave their (empty) slot untouched rather
            // than rewriting 320 bytes per leg per tick.
            if l.jitter.is_none() && l.tick_input.is_none() {
                continue;
            }
            l.tick_input = match l.jitter.as_mut() {
                Some(jb) => match jb.pop() {
                    (_, JbKind::Silence) => None,
                    (f, _) => Some(f),
                },
                None => None,
            };
        }
        // 2. Conferences.
        let legs = &mut self.legs;
        for mixer in self.conferences.values_mut() {
            let inputs: HashMap<LegId, Frame> = mixer
                .keys()
                .filter_map(|k| legs.get(&k).and_then(|l| l.tick_input).map(|f| (k, f)))
                .collect();
            mixer.mix(
                |k| inputs.get(&k).copied(),
                |k, f| {
                    if let Some(l) = legs.get_mut(&k) {
                        l.mix_out = Some(*f);
                    }
                },
            );
        }
        // 3. Recordings.
        for (&id, r) in &self.recordings {
            let side = |ids: &[LegId]| -> Frame {
                let mut acc = [0i32; FRAME_SAMPLES];
                for f in ids
                    .iter()
                    .filter_map(|i| legs.get(i).and_then(|l| l.tick_input))
                {
                    for (a, s) in acc.iter_mut().zip(f.iter()) {
                        *a += *s as i32;
                    }
                }
                acc.map(|a| a.clamp(i16::MIN as i32, i16::MAX as i32) as i16)
            };
            let (left, right) = (side(&r.customer), side(&r.agent));
            let mut samples = Vec::with_capacity(FRAME_SAMPLES * 2);
            for i in 0..FRAME_SAMPLES {
                samples.push(left[i]);
                samples.push(right[i]);
            }
            self.record_frames.push_back(RecordFrame {
                recording: id,
                samples,
            });
        }
        // 4. What each leg sends.
        let ids: Vec<LegId> = self.legs.keys().copied().collect();
        for id in ids {
            self.tick_leg(now, id);
        }
    }

    fn tick_leg(&mut self, now: Instant, id: LegId) {
        let report_interval = self.config.report_interval;
        let Some(l) = self.legs.get_mut(&id) else {
            return;
        };
        // This tick's mix is used or dropped now (only mixed legs have one).
        let mix_out = if l.mix_out.is_some() {
            l.mix_out.take()
        } else {
            None
        };
        let Some(codec) = l.media.codec() else {
            return;
        };
        // Telephone events take the slot first (audio is muted while a digit is sent).
        let mut out: Option<(FrameKind, Timing, Vec<u8>)> = None;
        if !l.events_tx.is_idle() {
            if let EventSlot::Event { payload, start } = l.events_tx.next_slot() {
                out = Some((
                    FrameKind::TelephoneEvent,
                    Timing::Event { start },
                    payload.to_vec(),
                ));
            }
        }
        let mut pcm: Option<Frame> = None;
        if out.is_none() {
            if let Some(t) = l.tones.as_mut() {
                match t.next_frame() {
                    Some(f) => pcm = Some(f),
                    None => l.tones = None,
                }
            }
        }
        if out.is_none() && pcm.is_none() {
            if let Some(p) = l.playback.as_mut() {
                match p.next_frame() {
                    Some(f) => pcm = Some(f),
                    None => {
                        l.playback = None;
                        self.events.push_back(MediaEvent::PlaybackDone {
                            leg: id,
                            completed: true,
                        });
                    }
                }
            }
        }
        if out.is_none() && pcm.is_none() {
            pcm = mix_out;
        }
        if let Some(f) = pcm {
            let mut payload = Vec::with_capacity(FRAME_SAMPLES);
            codec.encode(&f, &mut payload);
            out = Some((
                FrameKind::Audio(codec),
                Timing::Local {
                    samples: FRAME_SAMPLES as u32,
                },
                payload,
            ));
        }
        if let Some((kind, timing, payload)) = out {
            let tx = TxFrame {
                kind,
                timing,
                marker: false,
                payload: &payload,
            };
            l.media
                .send(now, id, tx, &mut self.transmits, &mut self.webrtc_out);
            absorb_sent(
                id,
                &mut self.webrtc_out,
                &mut self.events,
                &mut self.webrtc_due,
            );
        }
        // Media timeout: only while the remote is supposed to send to us.
        if let Some(limit) = l.config.media_timeout {
            let expecting = l.media.expects_media();
            let since = l.media.last_rx().map_or(l.created, |t| t.max(l.created));
            if expecting && !l.timeout_reported && now.saturating_duration_since(since) >= limit {
                l.timeout_reported = true;
                self.events.push_back(MediaEvent::MediaTimeout { leg: id });
            }
        }
        if now >= l.next_report {
            l.next_report = now + report_interval;
            match &mut l.media {
                Transport::Rtp(rtp) => {
                    if let Some((port, to, data, fraction)) = rtp.build_report(now) {
                        self.transmits.push_back(Transmit {
                            leg: id,
                            port,
                            to,
                            data,
                        });
                        let mut stats = stats_of(l);
                        stats.fraction_lost = fraction;
                        self.events.push_back(MediaEvent::Stats { leg: id, stats });
                    }
                }
                // str0m sends the RTCP; the interval's loss is ours to compute.
                Transport::WebRtc(w) if w.is_negotiated() => {
                    let fraction =
                        w.rx.as_mut()
                            .map_or(0.0, |rx| rx.take_fraction_lost() as f32 / 256.0);
                    let mut stats = stats_of(l);
                    stats.fraction_lost = fraction;
                    self.events.push_back(MediaEvent::Stats { leg: id, stats });
                }
                Transport::WebRtc(_) => {}
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    pub fn poll_recording(&mut self) -> Option<RecordFrame> {
        self.record_frames.pop_front()
    }
}

fn queue_tones(l: &mut Leg, digits: &str) {
    let mut items = Vec::new();
    for d in digits.chars() {
        if let Some((r, c)) = crate::dtmf::digit_frequencies(d) {
            items.push(PlayItem::Tone {
                freq: r,
                second: Some(c),
                amplitude: 6000.0,
                ms: 100,
            });
            items.push(PlayItem::Silence { ms: 60 });
        }
    }
    if items.is_empty() {
        return;
    }
    // Appending to tones already playing keeps digits in order.
    let mut all = Vec::new();
    if let Some(mut t) = l.tones.take() {
        while let Some(f) = t.next_frame() {
            all.extend_from_slice(&f);
        }
    }
    let mut list = Vec::new();
    if !all.is_empty() {
        list.push(PlayItem::Clip(crate::playback::Clip::new(all)));
    }
    list.extend(items);
    l.tones = Some(Playlist::new(list, false));
}

/// After a frame was sent to a WebRTC leg: its state changes (str0m ran its timers) become
/// events and its next timeout lowers `due`. Packets only come out of a receive, so there
/// are none to route here.
fn absorb_sent(
    leg: LegId,
    sink: &mut Outputs,
    events: &mut VecDeque<MediaEvent>,
    due: &mut Option<Instant>,
) {
    note_webrtc(leg, sink, events, due);
    sink.packets.clear();
}

/// A WebRTC leg's state changes become events; its next timeout lowers `due`.
fn note_webrtc(
    leg: LegId,
    sink: &mut Outputs,
    events: &mut VecDeque<MediaEvent>,
    due: &mut Option<Instant>,
) {
    *due = earliest(*due, sink.timeout.take());
    for state in sink.states.drain(..) {
        events.push_back(MediaEvent::WebRtc { leg, state });
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn stats_of(l: &Leg) -> LegStats {
    let rx = l.media.rx();
    let remote = l.media.remote();
    let (foreign_dropped, malformed, ice_restarts) = match &l.media {
        Transport::Rtp(r) => (r.foreign_dropped, r.malformed, 0),
        Transport::WebRtc(w) => (0, w.malformed, w.ice_restarts),
    };
    LegStats {
        packets_received: l.packets_received,
        packets_sent: l.media.out().packets as u64,
        packets_lost: rx.map_or(0, |r| r.cumulative_lost() as i64),
        fraction_lost: 0.0,
        jitter: rx.map_or(Duration::ZERO, |r| {
            Duration::from_micros(r.jitter() as u64 * 1_000_000 / crate::codec::SAMPLE_RATE as u64)
        }),
        rtt: remote.rtt,
        remote_fraction_lost: remote.fraction_lost,
        remote_jitter: remote.jitter,
        foreign_dropped,
        malformed,
        ice_restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{RtpHeader, RtpPacket};

    struct Sim {
        core: MediaCore,
        now: Instant,
    }

    fn offer(port: u16, te: bool) -> String {
        let te_fmt = if te { " 101" } else { "" };
        let te_map = if te {
            "a=rtpmap:101 telephone-event/8000\r\n"
        } else {
            ""
        };
        format!("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio {port} RTP/AVP 0{te_fmt}\r\n{te_map}")
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new("192.0.2.1".parse().unwrap(), port)
    }

    impl Sim {
        fn new() -> Self {
            let now = Instant::now();
            Sim {
                core: MediaCore::new(CoreConfig::default(), now),
                now,
            }
        }

        fn leg(&mut self, remote_port: u16, config: LegConfig) -> LegId {
            let local = SocketAddr::new("10.0.0.1".parse().unwrap(), 4000 + remote_port);
            let rtcp = SocketAddr::new(local.ip(), local.port() + 1);
            let id = self.core.add_leg(self.now, config, local, rtcp, local.ip());
            self.core
                .answer(self.now, id, &offer(remote_port, true))
                .unwrap();
            id
        }

        fn advance(&mut self, d: Duration) {
            let end = self.now + d;
            while let Some(t) = self.core.poll_timeout().filter(|&t| t <= end) {
                self.now = t;
                self.core.handle_timeout(t);
            }
            self.now = end;
        }

        fn rtp(&mut self, leg: LegId, from: SocketAddr, seq: u16, pt: u8, payload: &[u8]) {
            let mut d = Vec::new();
            RtpHeader {
                marker: false,
                payload_type: pt,
                sequence: seq,
                timestamp: seq as u32 * 160,
                ssrc: 0xAAAA,
            }
            .write(payload, &mut d);
            self.core
                .handle_datagram(self.now, leg, Port::Rtp, from, &d);
        }

        fn transmits(&mut self) -> Vec<Transmit> {
            std::iter::from_fn(|| self.core.poll_transmit()).collect()
        }

        fn events(&mut self) -> Vec<MediaEvent> {
            std::iter::from_fn(|| self.core.poll_event()).collect()
        }
    }

    #[test]
    fn relays_with_our_ssrc_to_the_latched_address_and_drops_strangers() {
        let mut s = Sim::new();
        let a = s.leg(5000, LegConfig::default());
        let b = s.leg(6000, LegConfig::default());
        s.core.bridge(a, b).unwrap();
        s.rtp(a, addr(5000), 1, 0, &[1; 160]);
        let t = s.transmits();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].leg, t[0].to), (b, addr(6000)));
        let p = RtpPacket::parse(&t[0].data).unwrap();
        assert_ne!(p.ssrc, 0xAAAA, "our own SSRC towards B");
        assert_eq!(p.payload, &[1; 160]);
        // B's real source differs from its SDP: it becomes the destination.
        s.rtp(b, addr(6002), 1, 0, &[2; 160]);
        s.rtp(a, addr(5000), 2, 0, &[3; 160]);
        let t = s.transmits();
        assert_eq!(t[0].to, addr(5000));
        assert_eq!(t[1].to, addr(6002));
        // Someone else sending to A is dropped.
        s.rtp(a, addr(7777), 3, 0, &[4; 160]);
        assert!(s.transmits().is_empty());
        assert_eq!(s.core.stats(a).unwrap().foreign_dropped, 1);
        // An unknown payload type is not relayed.
        s.rtp(a, addr(5000), 4, 18, &[5; 20]);
        assert!(s.transmits().is_empty());
    }

    #[test]
    fn playback_interrupts_relay_and_reports_done_on_time() {
        let mut s = Sim::new();
        let a = s.leg(5000, LegConfig::default());
        let b = s.leg(6000, LegConfig::default());
        s.core.bridge(a, b).unwrap();
        let tone = PlayItem::Tone {
            freq: 500.0,
            second: None,
            amplitude: 5000.0,
            ms: 100,
        };
        s.core.play(a, vec![tone], false).unwrap();
        s.rtp(b, addr(6000), 1, 0, &[9; 160]);
        assert!(s.transmits().is_empty(), "A hears the prompt, not B");
        s.advance(Duration::from_millis(99));
        assert_eq!(s.transmits().iter().filter(|t| t.leg == a).count(), 4);
        assert!(s.events().is_empty());
        s.advance(Duration::from_millis(40));
        let sent = s.transmits().iter().filter(|t| t.leg == a).count();
        assert_eq!(sent, 1, "five 20 ms frames in all");
        assert_eq!(
            s.events(),
            vec![MediaEvent::PlaybackDone {
                leg: a,
                completed: true
            }]
        );
        s.rtp(b, addr(6000), 2, 0, &[9; 160]);
        assert_eq!(s.transmits().len(), 1, "relay resumes");
    }

    #[test]
    fn digits_and_timeouts_on_a_simulated_clock() {
        let mut s = Sim::new();
        let a = s.leg(
            5000,
            LegConfig {
                media_timeout: Some(Duration::from_secs(10)),
                ..LegConfig::default()
            },
        );
        let ev = crate::dtmf::TelephoneEvent {
            event: 7,
            end: false,
            volume: 10,
            duration: 160,
        };
        for seq in 1..5 {
            // Same event timestamp: one digit.
            let mut d = Vec::new();
            RtpHeader {
                marker: seq == 1,
                payload_type: 101,
                sequence: seq,
                timestamp: 8000,
                ssrc: 1,
            }
            .write(&ev.to_bytes(), &mut d);
            s.core.handle_datagram(s.now, a, Port::Rtp, addr(5000), &d);
        }
        assert_eq!(
            s.events(),
            vec![MediaEvent::Dtmf {
                leg: a,
                digit: '7',
                source: DtmfSource::Rfc4733
            }]
        );
        s.advance(Duration::from_secs(9));
        let early = s.events();
        assert!(!early
            .iter()
            .any(|e| matches!(e, MediaEvent::MediaTimeout { .. })));
        s.advance(Duration::from_millis(1100));
        let mut ev = s.events();
        ev.extend(early);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, MediaEvent::MediaTimeout { .. }))
                .count(),
            1
        );
        // Stats went out with the RTCP reports meanwhile.
        assert!(ev.iter().any(|e| matches!(e, MediaEvent::Stats { .. })));
        // An 8-hour idle leg costs ticks, not events: one timeout only.
        s.advance(Duration::from_secs(60));
        assert!(!s
            .events()
            .iter()
            .any(|e| matches!(e, MediaEvent::MediaTimeout { .. })));
    }

    #[test]
    fn remove_leg_sends_bye_and_unbridges() {
        let mut s = Sim::new();
        let a = s.leg(5000, LegConfig::default());
        let b = s.leg(6000, LegConfig::default());
        s.core.bridge(a, b).unwrap();
        s.core.remove_leg(s.now, a).unwrap();
        let t = s.transmits();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].port, Port::Rtcp);
        assert_eq!(t[0].to, addr(5001));
        assert!(crate::rtcp::parse_compound(&t[0].data)
            .unwrap()
            .iter()
            .any(|p| matches!(p, crate::rtcp::RtcpPacket::Bye { .. })));
        assert_eq!(s.core.peer(b), None);
        assert_eq!(s.core.bridge(a, b), Err(MediaError::UnknownLeg(a)));
    }

    #[test]
    fn fuzzed_datagrams_never_panic_the_core() {
        let mut s = Sim::new();
        let a = s.leg(5000, LegConfig::default());
        let b = s.leg(6000, LegConfig::default());
        s.core.mix(ConferenceId(1), a, Role::Normal).unwrap();
        s.core.mix(ConferenceId(1), b, Role::Normal).unwrap();
        s.core.record(vec![a], vec![b]).unwrap();
        let mut rng = crate::testutil::Rng::new(17);
        let mut base = Vec::new();
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: 1,
            timestamp: 0,
            ssrc: 3,
        }
        .write(&[0u8; 160], &mut base);
        for i in 0..20_000u32 {
            let mut d = base.clone();
            for _ in 0..rng.below(6) {
                let at = rng.below(d.len() as u32) as usize;
                d[at] = rng.next() as u8;
            }
            d.truncate(rng.below(d.len() as u32 + 1) as usize);
            let port = if i % 7 == 0 { Port::Rtcp } else { Port::Rtp };
            s.core.handle_datagram(s.now, a, port, addr(5000), &d);
            if i % 50 == 0 {
                s.advance(Duration::from_millis(20));
                s.transmits();
                s.events();
                while s.core.poll_recording().is_some() {}
            }
        }
    }
}
