//! A browser-like WebRTC peer in-process: a full (controlling, non-lite) str0m `Rtc` that offers
//! audio like a browser does, with DTLS active. Used by the core tests and the benchmarks to
//! drive WebRTC legs without a browser; the browser test uses real Chromium.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

#[derive(Debug, Clone)]
pub struct Heard {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    pub at: Instant,
}

pub struct BrowserPeer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    pub connected: bool,
    pub heard: Vec<Heard>,
    pub timeout: Instant,
    seq: u64,
    ts: u32,
    pub egress_rtt: Option<std::time::Duration>,
}

pub enum Codecs {
    G711,
    OpusOnly,
}

impl BrowserPeer {
    pub fn new(now: Instant, addr: SocketAddr, codecs: Codecs) -> Self {
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .set_stats_interval(Some(std::time::Duration::from_millis(500)))
            .set_rtcp_report_interval_audio(std::time::Duration::from_millis(500))
            .clear_codecs();
        match codecs {
            Codecs::G711 => {
                config = config.enable_pcmu(true, false).enable_pcma(true, false);
                config.codec_config().add_config(
                    126.into(),
                    None,
                    Codec::Tele,
                    Frequency::EIGHT_KHZ,
                    None,
                    FormatParams::parse_line("0-16"),
                );
            }
            Codecs::OpusOnly => config = config.enable_opus(true, false),
        }
        let mut rtc = config.build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        BrowserPeer {
            rtc,
            addr,
            mid: None,
            pending: None,
            connected: false,
            heard: Vec::new(),
            timeout: now,
            seq: 1000,
            ts: 0,
            egress_rtt: None,
        }
    }

    /// An offer (the first, or with `ice_restart` new ICE credentials).
    pub fn offer(&mut self, ice_restart: bool) -> String {
        let mut change = self.rtc.sdp_api();
        if self.mid.is_none() {
            self.mid =
                Some(change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None));
        }
        if ice_restart {
            change.ice_restart(true);
        }
        let (offer, pending) = change.apply().expect("a change to offer");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    /// Answers an offer from the media engine.
    pub fn answer(&mut self, now: Instant, sdp: &str) -> String {
        let offer = str0m::change::SdpOffer::from_sdp_string(sdp).expect("offer parses");
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("offer accepted");
        self.mid = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(|m| Mid::from(m.trim()));
        self.timeout(now);
        answer.to_sdp_string()
    }

    pub fn accept_answer(&mut self, now: Instant, sdp: &str) -> Vec<(SocketAddr, Vec<u8>)> {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
        self.rtc
            .sdp_api()
            .accept_answer(self.pending.take().expect("pending offer"), answer)
            .expect("answer accepted");
        self.timeout(now)
    }

    pub fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.addr,
                contents: data.try_into().expect("a WebRTC datagram"),
            },
        );
        self.rtc.handle_input(input).expect("input accepted");
        self.drain(now)
    }

    pub fn timeout(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        self.rtc
            .handle_input(Input::Timeout(now))
            .expect("timeout accepted");
        self.drain(now)
    }

    /// Sends a 20 ms frame with `pt` (0 PCMU, 8 PCMA, 126 telephone-event).
    pub fn send(
        &mut self,
        now: Instant,
        pt: u8,
        payload: &[u8],
        marker: bool,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mid = self.mid.expect("negotiated");
        self.seq += 1;
        if pt != 126 {
            self.ts = self.ts.wrapping_add(160);
        }
        let (seq, ts) = (self.seq, self.ts);
        let mut api = self.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("send stream");
        tx.write_rtp(RtpWrite::new(pt.into(), seq.into(), ts, now, payload).marker(marker));
        self.timeout(now)
    }

    fn drain(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            match self.rtc.poll_output().expect("poll") {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return out;
                }
                Output::Transmit(t) => out.push((t.destination, t.contents.into())),
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RtpPacket(p)) => self.heard.push(Heard {
                    pt: *p.header.payload_type,
                    seq: p.header.sequence_number,
                    ts: p.header.timestamp,
                    ssrc: *p.header.ssrc,
                    marker: p.header.marker,
                    payload: p.payload.to_vec(),
                    at: now,
                }),
                Output::Event(Event::MediaEgressStats(s)) => {
                    if s.rtt.is_some() {
                        self.egress_rtt = s.rtt;
                    }
                }
                Output::Event(_) => {}
            }
        }
    }
}
