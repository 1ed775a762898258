//! Test "phones": real RTP endpoints on 127.0.0.1 that send tones and analyse what they hear.
#![allow(dead_code)]

pub mod str0m_peer;

use channel_media::codec::Codec;
use channel_media::dtmf::{goertzel_power, TelephoneEvent};
use channel_media::rtcp::{self, ReportBlock, RtcpPacket};
use channel_media::rtp::{RtpHeader, RtpPacket};
use channel_media::sdp::SessionDescription;
use channel_media::{EngineConfig, MediaEngine, MediaEvent};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub fn engine() -> (MediaEngine, mpsc::UnboundedReceiver<MediaEvent>) {
    MediaEngine::start(EngineConfig {
        rtp_ports: (0, 0),
        report_interval: Duration::from_millis(400),
        seed: Some(7),
        ..EngineConfig::default()
    })
    .expect("engine starts")
}

#[derive(Debug, Clone)]
pub struct RxPacket {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    pub at: Instant,
}

#[derive(Default)]
pub struct Heard {
    pub packets: Vec<RxPacket>,
    /// Decoded audio in arrival order.
    pub pcm: Vec<i16>,
    pub rtcp: Vec<RtcpPacket>,
}

/// A phone: an RTP socket pair, one codec, optional telephone-event.
pub struct Phone {
    pub rtp: Arc<UdpSocket>,
    pub rtcp: Arc<UdpSocket>,
    pub addr: SocketAddr,
    pub codec: Codec,
    pub pt: u8,
    pub te_pt: Option<u8>,
    pub heard: Arc<Mutex<Heard>>,
    pub ssrc: u32,
    /// Where the engine's leg is (from its SDP).
    pub remote: SocketAddr,
    pub remote_rtcp: SocketAddr,
    /// Packets sent so far, so each send continues one RTP stream as a real phone does.
    pub sent: Arc<std::sync::atomic::AtomicU32>,
}

impl Phone {
    pub async fn new(codec: Codec, te_pt: Option<u8>) -> Phone {
        // RTCP on RTP+1 as SDP implies: retry until an adjacent pair is free.
        for _ in 0..100 {
            let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = rtp.local_addr().unwrap();
            if addr.port() == u16::MAX {
                continue;
            }
            let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", addr.port() + 1)).await else {
                continue;
            };
            let p = Phone {
                rtp: Arc::new(rtp),
                rtcp: Arc::new(rtcp),
                addr,
                codec,
                pt: codec.static_payload_type(),
                te_pt,
                heard: Arc::default(),
                ssrc: 0x5000_0000 + addr.port() as u32,
                remote: addr,
                remote_rtcp: addr,
                sent: Arc::default(),
            };
            p.listen();
            return p;
        }
        panic!("no adjacent UDP port pair on 127.0.0.1");
    }

    fn listen(&self) {
        let sock = self.rtp.clone();
        let heard = self.heard.clone();
        let (codec, pt) = (self.codec, self.pt);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                let Ok(p) = RtpPacket::parse(&buf[..n]) else {
                    continue;
                };
                let mut h = heard.lock().unwrap();
                if p.payload_type == pt {
                    codec.decode(p.payload, &mut h.pcm);
                }
                h.packets.push(RxPacket {
                    pt: p.payload_type,
                    seq: p.sequence,
                    ts: p.timestamp,
                    ssrc: p.ssrc,
                    marker: p.marker,
                    payload: p.payload.to_vec(),
                    at: Instant::now(),
                });
            }
        });
        // RTCP: record reports and answer each SR with an RR carrying LSR/DLSR.
        let sock = self.rtcp.clone();
        let heard = self.heard.clone();
        let ssrc = self.ssrc;
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Ok(pkts) = rtcp::parse_compound(&buf[..n]) else {
                    continue;
                };
                for p in &pkts {
                    if let RtcpPacket::SenderReport {
                        ssrc: their, ntp, ..
                    } = p
                    {
                        let block = ReportBlock {
                            ssrc: *their,
                            last_sr: rtcp::ntp_middle(*ntp),
                            // We answer at once: 2 ms "processing" delay declared.
                            delay_since_last_sr: rtcp::to_compact(Duration::from_millis(2)),
                            ..Default::default()
                        };
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        let rr = rtcp::build_report(ssrc, None, &[block], "phone");
                        let _ = sock.send_to(&rr, from).await;
                    }
                }
                heard.lock().unwrap().rtcp.extend(pkts);
            }
        });
    }

    pub fn offer(&self) -> String {
        let mut m = format!("m=audio {} RTP/AVP {}", self.addr.port(), self.pt);
        let mut attrs = format!(
            "a=rtpmap:{} {}/8000\r\n",
            self.pt,
            self.codec.encoding_name()
        );
        if let Some(te) = self.te_pt {
            m.push_str(&format!(" {te}"));
            attrs.push_str(&format!(
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
            ));
        }
        format!(
            "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{m}\r\n{attrs}a=ptime:20\r\na=sendrecv\r\n"
        )
    }

    /// Takes the engine's answer (or offer) to learn where to send.
    pub fn learn(&mut self, sdp: &str) {
        let sd = SessionDescription::parse(sdp).expect("engine SDP parses");
        let m = &sd.media[sd.audio_index().expect("audio")];
        let ip = m.connection.or(sd.connection).unwrap();
        self.remote = SocketAddr::new(ip, m.port);
        self.remote_rtcp = SocketAddr::new(ip, m.rtcp.map(|r| r.0).unwrap_or(m.port + 1));
    }

    pub fn heard_pcm(&self) -> Vec<i16> {
        self.heard.lock().unwrap().pcm.clone()
    }

    pub fn packets(&self) -> Vec<RxPacket> {
        self.heard.lock().unwrap().packets.clone()
    }

    pub fn clear(&self) {
        let mut h = self.heard.lock().unwrap();
        h.pcm.clear();
        h.packets.clear();
    }

    /// Sends a tone for `duration` from a task; returns its handle.
    pub fn send_tone(&self, freq: f64, duration: Duration) -> tokio::task::JoinHandle<()> {
        self.send_plan(SendPlan {
            freq,
            duration,
            ..SendPlan::default()
        })
    }

    pub fn send_plan(&self, plan: SendPlan) -> tokio::task::JoinHandle<()> {
        let sock = self.rtp.clone();
        let (codec, pt, ssrc, to) = (self.codec, self.pt, self.ssrc, self.remote);
        let frames = (plan.duration.as_millis() / 20) as u32;
        let base = self
            .sent
            .fetch_add(frames, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut phase = 0.0f64;
            let mut noise = plan.noise_seed;
            for i in 0..frames {
                let mut pcm = [0i16; 160];
                for (k, s) in pcm.iter_mut().enumerate() {
                    let mut v = match &plan.pcm {
                        Some(src) => src[(i as usize * 160 + k) % src.len()] as f64,
                        None => plan.amplitude * phase.sin(),
                    };
                    phase += 2.0 * std::f64::consts::PI * plan.freq / 8000.0;
                    if plan.noise > 0.0 {
                        noise ^= noise << 13;
                        noise ^= noise >> 7;
                        noise ^= noise << 17;
                        v += plan.noise * ((noise >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0);
                    }
                    *s = v.clamp(-32768.0, 32767.0) as i16;
                }
                let delay = plan.extra_delay(i);
                tokio::time::sleep_until(start + Duration::from_millis(20 * i as u64) + delay)
                    .await;
                if plan.drop_every.is_some_and(|n| i % n == n - 1) {
                    continue;
                }
                let mut payload = Vec::new();
                codec.encode(&pcm, &mut payload);
                let mut pkt = Vec::new();
                let n = base + i;
                RtpHeader {
                    marker: i == 0,
                    payload_type: pt,
                    sequence: 1000u16.wrapping_add(n as u16),
                    timestamp: 50_000 + n * 160,
                    ssrc,
                }
                .write(&payload, &mut pkt);
                let _ = sock.send_to(&pkt, to).await;
            }
        })
    }

    /// Sends RFC 4733 digits as a real phone does: start, updates, three end packets.
    pub async fn send_rfc4733(&self, digits: &str, seq0: u16) {
        let te = self.te_pt.expect("phone has telephone-event");
        let mut seq = seq0;
        let mut ts = 900_000u32;
        for d in digits.chars() {
            let code = channel_media::dtmf::event_code(d).unwrap();
            for k in 0..8u16 {
                let end = k >= 5;
                let ev = TelephoneEvent {
                    event: code,
                    end,
                    volume: 10,
                    duration: (160 * (k + 1)).min(800),
                };
                let mut pkt = Vec::new();
                RtpHeader {
                    marker: k == 0,
                    payload_type: te,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: self.ssrc,
                }
                .write(&ev.to_bytes(), &mut pkt);
                self.rtp.send_to(&pkt, self.remote).await.unwrap();
                seq = seq.wrapping_add(1);
                if !end {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            ts += 2000;
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
    }
}

#[derive(Clone)]
pub struct SendPlan {
    pub freq: f64,
    pub amplitude: f64,
    pub duration: Duration,
    /// Drop every Nth packet.
    pub drop_every: Option<u32>,
    /// Delay odd packets by this much (interarrival jitter).
    pub jitter: Duration,
    pub noise: f64,
    pub noise_seed: u64,
    /// Send this audio (looped) instead of a tone.
    pub pcm: Option<Arc<Vec<i16>>>,
}

impl Default for SendPlan {
    fn default() -> Self {
        SendPlan {
            freq: 1000.0,
            amplitude: 8000.0,
            duration: Duration::from_secs(1),
            drop_every: None,
            jitter: Duration::ZERO,
            noise: 0.0,
            noise_seed: 0x1234_5678_9abc_def1,
            pcm: None,
        }
    }
}

impl SendPlan {
    fn extra_delay(&self, i: u32) -> Duration {
        if i % 2 == 1 {
            self.jitter
        } else {
            Duration::ZERO
        }
    }
}

/// Mean power per sample of `freq` in `pcm` (Goertzel).
pub fn tone_power(pcm: &[i16], freq: f64) -> f64 {
    let f: Vec<f32> = pcm.iter().map(|&s| s as f32).collect();
    if f.is_empty() {
        return 0.0;
    }
    2.0 * goertzel_power(&f, freq) / (f.len() as f64 * f.len() as f64)
}

/// Which of `candidates` is strongest, and how many times stronger than the runner-up.
pub fn dominant(pcm: &[i16], candidates: &[f64]) -> (f64, f64) {
    let mut p: Vec<(f64, f64)> = candidates
        .iter()
        .map(|&f| (f, tone_power(pcm, f)))
        .collect();
    p.sort_by(|a, b| b.1.total_cmp(&a.1));
    (
        p[0].0,
        p[0].1 / p.get(1).map(|x| x.1).unwrap_or(0.0).max(1e-9),
    )
}

/// Waits for an event matching `pred`, up to `limit`.
pub async fn wait_event(
    rx: &mut mpsc::UnboundedReceiver<MediaEvent>,
    limit: Duration,
    mut pred: impl FnMut(&MediaEvent) -> bool,
) -> Option<MediaEvent> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return Some(e),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Creates a leg answering the phone's offer and points the phone at it.
pub async fn connect(engine: &MediaEngine, phone: &mut Phone) -> channel_media::LegId {
    let (leg, _) = engine
        .create_leg(channel_media::LegConfig::default())
        .await
        .unwrap();
    let answer = engine.answer(leg, phone.offer()).await.unwrap();
    phone.learn(&answer);
    leg
}
