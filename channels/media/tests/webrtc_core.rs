//! The WebRTC leg through the sans-IO core on a simulated clock and network, against a
//! browser-like str0m peer: ICE-lite + DTLS-SRTP setup, G.711 relayed to an RTP leg without
//! transcoding, DTMF both ways, ICE restart, refusals that change nothing, stats, fuzzing.

mod common;

use channel_media::leg::Port;
use channel_media::rtp::{RtpHeader, RtpPacket};
use channel_media::switch::{CoreConfig, Transmit};
use channel_media::{
    LegConfig, LegId, MediaCore, MediaError, MediaEvent, WebRtcError, WebRtcState,
};
use common::str0m_peer::{BrowserPeer, Codecs};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LEG_ADDR: &str = "127.0.0.1:40000";
const PEER_ADDR: &str = "127.0.0.1:50000";
const PHONE_ADDR: &str = "127.0.0.1:6000";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cert() -> str0m::config::DtlsCert {
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .expect("certificate")
}

fn phone_offer() -> String {
    "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n".into()
}

struct Sim {
    core: MediaCore,
    now: Instant,
    peer: BrowserPeer,
    web: LegId,
    trunk: LegId,
    to_core: VecDeque<Vec<u8>>,
    phone_heard: Vec<Transmit>,
    events: Vec<MediaEvent>,
    phone_seq: u16,
    last_offer: String,
    /// The browser vanished (network gone): nothing reaches it, it sends nothing.
    peer_gone: bool,
}

impl Sim {
    fn new(codecs: Codecs) -> Sim {
        let now = Instant::now();
        let mut core = MediaCore::new(
            CoreConfig {
                report_interval: Duration::from_millis(500),
                ..CoreConfig::default()
            },
            now,
        );
        let web = core.add_webrtc_leg(
            now,
            LegConfig::default(),
            a(LEG_ADDR),
            a(LEG_ADDR).ip(),
            cert(),
        );
        let trunk = core.add_leg(
            now,
            LegConfig::default(),
            a("127.0.0.1:41000"),
            a("127.0.0.1:41001"),
            a(LEG_ADDR).ip(),
        );
        core.answer(now, trunk, &phone_offer()).unwrap();
        Sim {
            core,
            now,
            peer: BrowserPeer::new(now, a(PEER_ADDR), codecs),
            web,
            trunk,
            to_core: VecDeque::new(),
            phone_heard: Vec::new(),
            events: Vec::new(),
            phone_seq: 0,
            last_offer: String::new(),
            peer_gone: false,
        }
    }

    /// Offer from the peer, answer from the core, answer applied: then ICE and DTLS run.
    fn negotiate(&mut self, ice_restart: bool) -> Result<String, MediaError> {
        let offer = self.peer.offer(ice_restart);
        self.last_offer = offer.clone();
        let answer = self.core.webrtc_answer(self.now, self.web, &offer)?;
        let out = self.peer.accept_answer(self.now, &answer);
        self.to_core.extend(out.into_iter().map(|(_, d)| d));
        self.pump();
        Ok(answer)
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(t) = self.core.poll_transmit() {
                moved = true;
                if t.leg == self.web {
                    if self.peer_gone {
                        continue;
                    }
                    assert_eq!(t.to, a(PEER_ADDR), "sent to the peer's ICE address");
                    let out = self.peer.receive(self.now, a(LEG_ADDR), &t.data);
                    self.to_core.extend(out.into_iter().map(|(_, d)| d));
                } else {
                    self.phone_heard.push(t);
                }
            }
            while let Some(d) = self.to_core.pop_front() {
                moved = true;
                self.core
                    .handle_datagram(self.now, self.web, Port::Rtp, a(PEER_ADDR), &d);
            }
            while let Some(e) = self.core.poll_event() {
                self.events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the simulated network never settled");
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1_000_000 {
            let peer_at = (!self.peer_gone).then_some(self.peer.timeout);
            let next = match (self.core.poll_timeout(), peer_at) {
                (Some(c), Some(p)) => c.min(p),
                (c, p) => match c.or(p) {
                    Some(t) => t,
                    None => break,
                },
            }
            .max(self.now);
            if next > end {
                break;
            }
            self.now = next;
            self.core.handle_timeout(self.now);
            if !self.peer_gone {
                let out = self.peer.timeout(self.now);
                self.to_core.extend(out.into_iter().map(|(_, d)| d));
            }
            self.pump();
            if self.core.poll_timeout().is_some_and(|t| t <= self.now)
                && (self.peer_gone || self.peer.timeout <= self.now)
            {
                // Both want the same instant again: step a millisecond.
                self.now += Duration::from_millis(1);
            }
        }
        self.now = end;
    }

    fn connect(&mut self) -> String {
        let answer = self.negotiate(false).expect("answer");
        for _ in 0..100 {
            if self.peer.connected && self.connected_event() {
                return answer;
            }
            self.advance(Duration::from_millis(10));
        }
        panic!("ICE/DTLS did not connect; events {:?}", self.events);
    }

    fn connected_event(&self) -> bool {
        self.events.iter().any(|e| {
            matches!(e, MediaEvent::WebRtc { leg, state: WebRtcState::Connected } if *leg == self.web)
        })
    }

    /// The trunk phone sends one RTP packet to the RTP leg.
    fn phone_sends(&mut self, pt: u8, payload: &[u8], ts: u32, marker: bool) {
        self.phone_seq = self.phone_seq.wrapping_add(1);
        let mut d = Vec::new();
        RtpHeader {
            marker,
            payload_type: pt,
            sequence: self.phone_seq,
            timestamp: ts,
            ssrc: 0xABCD,
        }
        .write(payload, &mut d);
        self.core
            .handle_datagram(self.now, self.trunk, Port::Rtp, a(PHONE_ADDR), &d);
        self.pump();
    }

    fn peer_sends(&mut self, pt: u8, payload: &[u8], marker: bool) {
        let out = self.peer.send(self.now, pt, payload, marker);
        self.to_core.extend(out.into_iter().map(|(_, d)| d));
        self.pump();
    }

    /// 20 ms of audio both ways.
    fn talk(&mut self, frames: u32, peer_payload: u8, phone_payload: u8) {
        for i in 0..frames {
            self.phone_sends(0, &[phone_payload; 160], 8000 + i * 160, i == 0);
            self.peer_sends(0, &[peer_payload; 160], false);
            self.advance(Duration::from_millis(20));
        }
    }

    fn phone_audio(&self) -> Vec<RtpPacket<'_>> {
        self.phone_heard
            .iter()
            .filter(|t| t.port == Port::Rtp)
            .filter_map(|t| RtpPacket::parse(&t.data).ok())
            .filter(|p| p.payload_type == 0)
            .collect()
    }
}

#[test]
fn browser_offer_connects_and_g711_is_relayed_untouched_both_ways() {
    let mut s = Sim::new(Codecs::G711);
    let answer = s.connect();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=setup:passive"), "{answer}");
    assert!(
        answer.contains(" 40000 typ host"),
        "host candidate: {answer}"
    );
    assert!(
        answer.contains("PCMU/8000") && !answer.contains("opus"),
        "{answer}"
    );
    s.core.bridge(s.web, s.trunk).unwrap();
    s.talk(25, 0x33, 0x55);
    let heard: Vec<_> = s.peer.heard.iter().filter(|h| h.pt == 0).collect();
    assert!(heard.len() >= 24, "browser heard {} frames", heard.len());
    assert!(
        heard.iter().all(|h| h.payload == vec![0x55; 160]),
        "PCMU bytes unchanged"
    );
    // One continuous stream: sequence +1, timestamps +160.
    for w in heard.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160));
    }
    let phone = s.phone_audio();
    assert!(phone.len() >= 24, "phone heard {} frames", phone.len());
    assert!(phone.iter().all(|p| p.payload == [0x33; 160]));
    assert!(phone.iter().all(|p| p.ssrc != 0xABCD));
    // Relayed, not transcoded or mixed.
    assert!(s.core.relayed >= 48);
}

#[test]
fn trunk_codec_preference_decides_what_the_browser_sends() {
    let mut s = Sim::new(Codecs::G711);
    s.core.remove_leg(s.now, s.web).unwrap();
    s.web = s.core.add_webrtc_leg(
        s.now,
        LegConfig {
            codecs: vec![channel_media::Codec::Pcma, channel_media::Codec::Pcmu],
            ..LegConfig::default()
        },
        a(LEG_ADDR),
        a(LEG_ADDR).ip(),
        cert(),
    );
    let answer = s.connect();
    let mline = answer.lines().find(|l| l.starts_with("m=audio")).unwrap();
    assert!(mline.contains("SAVPF 8 0"), "PCMA first: {mline}");
    s.core.bridge(s.web, s.trunk).unwrap();
    s.talk(5, 0x33, 0x55);
    assert!(
        s.peer.heard.iter().any(|h| h.pt == 8),
        "we send PCMA to the browser"
    );
}

#[test]
fn dtmf_from_the_console_reaches_the_trunk_and_trunk_digits_reach_the_browser() {
    let mut s = Sim::new(Codecs::G711);
    s.connect();
    s.core.bridge(s.web, s.trunk).unwrap();
    s.talk(3, 0x33, 0x55);
    // Console keypad '5': RFC 4733 start, updates, three ends (as RTCDTMFSender sends).
    for k in 0..8u16 {
        let end = k >= 5;
        let ev = channel_media::dtmf::TelephoneEvent {
            event: 5,
            end,
            volume: 10,
            duration: 160 * (k.min(5) + 1),
        };
        s.peer_sends(126, &ev.to_bytes(), k == 0);
        s.advance(Duration::from_millis(20));
    }
    let digits: Vec<_> = s
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf { leg, digit, .. } if *leg == s.web => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec!['5']);
    let te: Vec<_> = s
        .phone_heard
        .iter()
        .filter_map(|t| RtpPacket::parse(&t.data).ok())
        .filter(|p| p.payload_type == 101)
        .collect();
    assert!(te.len() >= 5, "trunk got RFC 4733 with its payload type");
    assert_eq!(te[0].payload[0], 5);
    // A digit from the trunk goes to the browser as telephone-event 126.
    s.peer.heard.clear();
    for k in 0..6u16 {
        let ev = channel_media::dtmf::TelephoneEvent {
            event: 9,
            end: k >= 3,
            volume: 10,
            duration: 160 * (k.min(3) + 1),
        };
        s.phone_sends(101, &ev.to_bytes(), 90_000, k == 0);
        s.advance(Duration::from_millis(20));
    }
    let got: Vec<_> = s.peer.heard.iter().filter(|h| h.pt == 126).collect();
    assert!(got.len() >= 4, "browser got {} event packets", got.len());
    assert_eq!(got[0].payload[0], 9);
    assert!(
        got.iter().all(|h| h.ts == got[0].ts),
        "one event, one timestamp"
    );
}

#[test]
fn ice_restart_keeps_the_call() {
    let mut s = Sim::new(Codecs::G711);
    let first = s.connect();
    s.core.bridge(s.web, s.trunk).unwrap();
    s.talk(5, 0x33, 0x55);
    let before = s.peer.heard.len();
    let second = s.negotiate(true).expect("ICE restart answered");
    let ufrag = |sdp: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .unwrap()
            .to_string()
    };
    assert_ne!(ufrag(&first), ufrag(&second), "new local credentials");
    s.advance(Duration::from_millis(200));
    s.phone_heard.clear();
    s.talk(10, 0x66, 0x77);
    let after: Vec<_> = s.peer.heard[before..]
        .iter()
        .filter(|h| h.payload == vec![0x77; 160])
        .collect();
    assert!(
        after.len() >= 9,
        "browser hears the trunk after the restart"
    );
    assert!(
        s.phone_audio()
            .iter()
            .filter(|p| p.payload == [0x66; 160])
            .count()
            >= 9
    );
    assert_eq!(s.core.stats(s.web).unwrap().ice_restarts, 1);
}

#[test]
fn refusals_leave_the_leg_as_it_was() {
    // Opus only: a clear error, and the same leg still takes a G.711 offer afterwards.
    let mut s = Sim::new(Codecs::OpusOnly);
    let opus_offer = s.peer.offer(false);
    let err = s.core.webrtc_answer(s.now, s.web, &opus_offer).unwrap_err();
    assert!(
        matches!(err, MediaError::WebRtc(WebRtcError::NoCommonCodec { ref offered, .. }) if offered.contains("opus")),
        "{err}"
    );
    assert!(err.to_string().contains("no common audio codec"), "{err}");
    s.peer = BrowserPeer::new(s.now, a(PEER_ADDR), Codecs::G711);
    s.connect();
    s.core.bridge(s.web, s.trunk).unwrap();
    s.talk(3, 0x33, 0x55);

    // A re-offer whose fingerprint is not the one DTLS was set up with.
    let re = s.last_offer.clone();
    let forged: String = re
        .lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("a=fingerprint:sha-256 ") {
                format!(
                    "a=fingerprint:sha-256 {}",
                    rest.replace(|c: char| c.is_ascii_hexdigit(), "A")
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let err = s.core.webrtc_answer(s.now, s.web, &forged).unwrap_err();
    assert_eq!(err, MediaError::WebRtc(WebRtcError::FingerprintChanged));
    // Garbage and candidates for other credentials.
    assert!(matches!(
        s.core.webrtc_answer(s.now, s.web, "v=0\r\nnonsense"),
        Err(MediaError::WebRtc(_))
    ));
    let err = s
        .core
        .webrtc_add_candidate(
            s.now,
            s.web,
            "candidate:1 1 udp 2122260223 127.0.0.1 50001 typ host",
            Some("stale"),
        )
        .unwrap_err();
    assert_eq!(
        err,
        MediaError::WebRtc(WebRtcError::StaleCandidate("stale".into()))
    );
    // Wrong kind of leg, and a leg that is gone.
    assert_eq!(
        s.core.webrtc_answer(s.now, s.trunk, &re),
        Err(MediaError::NotWebRtc(s.trunk))
    );
    assert_eq!(s.core.local_offer(s.web), Err(MediaError::NotRtp(s.web)));
    // Media still flows after all of that.
    let before = s.peer.heard.len();
    s.talk(5, 0x33, 0x44);
    assert!(s.peer.heard[before..]
        .iter()
        .any(|h| h.payload == vec![0x44; 160]));
    let web = s.web;
    s.core.remove_leg(s.now, web).unwrap();
    assert_eq!(
        s.core.webrtc_answer(s.now, web, &re),
        Err(MediaError::UnknownLeg(web))
    );
}

#[test]
fn a_vanished_browser_is_reported_while_the_trunk_keeps_talking() {
    let mut s = Sim::new(Codecs::G711);
    s.connect();
    s.core.bridge(s.web, s.trunk).unwrap();
    s.talk(5, 0x33, 0x55);
    s.peer_gone = true;
    // The trunk's audio keeps flowing to the leg. The core's timers are not run here, as when
    // the engine handles a wake-up's datagrams before its due timers: str0m's ICE timeout
    // then runs inside a send, and the state change it produces must still reach the hub.
    let disconnected = |s: &Sim| {
        s.events.iter().any(|e| {
            matches!(e, MediaEvent::WebRtc { leg, state: WebRtcState::Disconnected } if *leg == s.web)
        })
    };
    for i in 0..3_000 {
        if disconnected(&s) {
            return;
        }
        s.now += Duration::from_millis(20);
        s.phone_sends(0, &[0x55; 160], 9000 + i * 160, false);
    }
    panic!("no Disconnected event in 60 s; events {:?}", s.events);
}

#[test]
fn stats_carry_loss_jitter_and_rtt() {
    let mut s = Sim::new(Codecs::G711);
    s.connect();
    s.core.bridge(s.web, s.trunk).unwrap();
    s.talk(150, 0x33, 0x55);
    // RTCP intervals are randomised (RFC 3550 §6.3.1): talk on, within a bound, until the
    // browser's receiver report has come back.
    for _ in 0..10 {
        if s.core.stats(s.web).unwrap().rtt.is_some() && s.peer.egress_rtt.is_some() {
            break;
        }
        s.talk(50, 0x33, 0x55);
    }
    let st = s.core.stats(s.web).unwrap();
    assert!(
        st.packets_received >= 140 && st.packets_sent >= 140,
        "{st:?}"
    );
    assert!(
        st.rtt.is_some(),
        "RTT from the browser's receiver reports: {st:?}"
    );
    assert!(s.events.iter().any(|e| matches!(e, MediaEvent::Stats { leg, stats } if *leg == s.web && stats.packets_received > 0)));
    assert!(
        s.peer.egress_rtt.is_some(),
        "the peer gets our receiver reports too"
    );
}

#[test]
fn our_offer_and_the_browser_answer_connect_too() {
    let mut s = Sim::new(Codecs::G711);
    let offer = s.core.webrtc_offer(s.now, s.web, false).unwrap();
    assert!(
        offer.contains("a=ice-lite") && offer.contains("PCMU/8000"),
        "{offer}"
    );
    let answer = s.peer.answer(s.now, &offer);
    assert_eq!(
        s.core.webrtc_apply_answer(s.now, s.trunk, &answer),
        Err(MediaError::NotWebRtc(s.trunk))
    );
    s.core.webrtc_apply_answer(s.now, s.web, &answer).unwrap();
    s.pump();
    for _ in 0..100 {
        if s.peer.connected && s.connected_event() {
            break;
        }
        s.advance(Duration::from_millis(10));
    }
    assert!(s.connected_event(), "{:?}", s.events);
    assert_eq!(
        s.core.webrtc_apply_answer(s.now, s.web, &answer),
        Err(MediaError::WebRtc(WebRtcError::NoPendingOffer))
    );
}

#[test]
fn fuzzed_datagrams_never_panic_a_webrtc_leg() {
    let mut s = Sim::new(Codecs::G711);
    s.connect();
    s.core.bridge(s.web, s.trunk).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..5_000u32 {
        let len = (rnd() % 300) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        // Steer a share into each demux class: STUN, DTLS, RTP/RTCP.
        if let Some(b) = d.first_mut() {
            *b = [0x00, 0x01, 0x16, 0x17, 0x80, 0x81, 0x90][i as usize % 7]
                | ((*b & 0x0f) * (i as u8 % 2));
        }
        s.core
            .handle_datagram(s.now, s.web, Port::Rtp, a(PEER_ADDR), &d);
        if i % 100 == 0 {
            s.advance(Duration::from_millis(20));
        }
    }
    // Still alive.
    let before = s.peer.heard.len();
    s.talk(5, 0x33, 0x44);
    assert!(s.peer.heard.len() > before);
}
