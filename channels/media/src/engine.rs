//! The tokio driver: owns the UDP sockets and runs the [`MediaCore`] on one dedicated thread
//! (a current-thread runtime), so relaying never waits on the hub. The hub talks to it through
//! a cloneable [`MediaEngine`] handle (async calls) and one event receiver.

use crate::leg::Port;
use crate::mixer::Role;
use crate::playback::{Clip, PlayItem};
use crate::sdp::Direction;
use crate::switch::{
    ConferenceId, CoreConfig, LegConfig, LegId, LegStats, MediaCore, MediaError, MediaEvent,
    RecordingId,
};
use crate::wav::{self, RecordingInfo, WavWriter};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};
use str0m::config::DtlsCert;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Address the RTP sockets bind to.
    pub bind: IpAddr,
    /// Address written into SDP; defaults to `bind` (or 127.0.0.1 when `bind` is unspecified).
    pub advertise: Option<IpAddr>,
    /// Ports for RTP (even) and RTCP (+1). `0..=0` lets the OS choose (tests).
    pub rtp_ports: (u16, u16),
    /// RTCP report and Stats interval.
    pub report_interval: Duration,
    /// Seed for SSRCs and SDP ids; None derives one from the clock.
    pub seed: Option<u64>,
    /// How often a recording's WAV header is rewritten (what a crash can lose at most).
    pub recording_fixup: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise: None,
            rtp_ports: (20000, 29999),
            report_interval: Duration::from_secs(5),
            seed: None,
            recording_fixup: Duration::from_secs(1),
        }
    }
}

/// Something to play: a ready item or a WAV file (loaded once and cached).
#[derive(Debug, Clone)]
pub enum PlaySpec {
    Item(PlayItem),
    File(PathBuf),
}

impl From<PlayItem> for PlaySpec {
    fn from(i: PlayItem) -> Self {
        PlaySpec::Item(i)
    }
}

impl From<&Path> for PlaySpec {
    fn from(p: &Path) -> Self {
        PlaySpec::File(p.to_owned())
    }
}

impl From<PathBuf> for PlaySpec {
    fn from(p: PathBuf) -> Self {
        PlaySpec::File(p)
    }
}

struct LegSockets {
    rtp: Rc<UdpSocket>,
    /// None for WebRTC legs (RTP and RTCP share one socket).
    rtcp: Option<Rc<UdpSocket>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Driver {
    core: MediaCore,
    config: EngineConfig,
    advertise: IpAddr,
    sockets: HashMap<LegId, LegSockets>,
    recorders: HashMap<RecordingId, WavWriter>,
    clips: HashMap<PathBuf, Clip>,
    port_cursor: u16,
    events: mpsc::UnboundedSender<MediaEvent>,
    send_errors: u64,
    /// The engine's DTLS identity, made on the first WebRTC leg.
    dtls_cert: Option<DtlsCert>,
}

type Shared = Rc<RefCell<Driver>>;
type Job = Box<dyn FnOnce(&Shared) + Send>;

impl Driver {
    fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let Some(s) = self.sockets.get(&t.leg) else {
                continue;
            };
            let sock = match (t.port, &s.rtcp) {
                (Port::Rtcp, Some(rtcp)) => rtcp,
                _ => &s.rtp,
            };
            // UDP: a full send buffer drops the packet, as the network would.
            if sock.try_send_to(&t.data, t.to).is_err() {
                self.send_errors += 1;
            }
        }
        while let Some(e) = self.core.poll_event() {
            let _ = self.events.send(e);
        }
        while let Some(f) = self.core.poll_recording() {
            if let Some(w) = self.recorders.get_mut(&f.recording) {
                if let Err(e) = w.write(&f.samples) {
                    tracing::warn!(recording = f.recording.0, error = %e, "recording write failed");
                }
            }
        }
    }

    fn bind_pair(&mut self) -> Result<(std::net::UdpSocket, std::net::UdpSocket), MediaError> {
        let bind = self.config.bind;
        let (lo, hi) = self.config.rtp_ports;
        if lo == 0 {
            let io = |e: std::io::Error| MediaError::Io(e.to_string());
            let a = std::net::UdpSocket::bind((bind, 0)).map_err(io)?;
            let b = std::net::UdpSocket::bind((bind, 0)).map_err(io)?;
            return Ok((a, b));
        }
        let lo = lo + (lo & 1);
        let slots = ((hi.saturating_sub(lo)) / 2).max(1);
        for _ in 0..slots {
            let p = self.port_cursor.max(lo);
            self.port_cursor = if p.saturating_add(2) > hi.saturating_sub(1) {
                lo
            } else {
                p + 2
            };
            let Ok(a) = std::net::UdpSocket::bind((bind, p)) else {
                continue;
            };
            let Ok(b) = std::net::UdpSocket::bind((bind, p + 1)) else {
                continue;
            };
            return Ok((a, b));
        }
        Err(MediaError::NoPorts)
    }

    /// One socket for a WebRTC leg, from the same range as RTP pairs.
    fn bind_single(&mut self) -> Result<std::net::UdpSocket, MediaError> {
        let bind = self.config.bind;
        let (lo, hi) = self.config.rtp_ports;
        if lo == 0 {
            return std::net::UdpSocket::bind((bind, 0)).map_err(|e| MediaError::Io(e.to_string()));
        }
        let lo = lo + (lo & 1);
        let slots = ((hi.saturating_sub(lo)) / 2).max(1);
        for _ in 0..slots {
            let p = self.port_cursor.max(lo);
            self.port_cursor = if p.saturating_add(2) > hi.saturating_sub(1) {
                lo
            } else {
                p + 2
            };
            if let Ok(s) = std::net::UdpSocket::bind((bind, p)) {
                return Ok(s);
            }
        }
        Err(MediaError::NoPorts)
    }

    fn dtls_cert(&mut self) -> Result<DtlsCert, MediaError> {
        if self.dtls_cert.is_none() {
            let provider = str0m::crypto::from_feature_flags();
            self.dtls_cert = provider.dtls_provider.generate_certificate();
        }
        self.dtls_cert
            .clone()
            .ok_or_else(|| MediaError::Io("cannot generate a DTLS certificate".into()))
    }

    fn resolve(&mut self, specs: Vec<PlaySpec>) -> Result<Vec<PlayItem>, MediaError> {
        specs
            .into_iter()
            .map(|s| match s {
                PlaySpec::Item(i) => Ok(i),
                PlaySpec::File(p) => {
                    if let Some(c) = self.clips.get(&p) {
                        return Ok(PlayItem::Clip(c.clone()));
                    }
                    let c = wav::load(&p).map_err(|e| MediaError::Io(e.to_string()))?;
                    self.clips.insert(p, c.clone());
                    Ok(PlayItem::Clip(c))
                }
            })
            .collect()
    }
}

async fn reader(shared: Shared, leg: LegId, port: Port, sock: Rc<UdpSocket>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors from earlier sends surface here; they are not fatal.
            Err(_) => continue,
        };
        let now = Instant::now();
        let mut d = shared.borrow_mut();
        d.core.handle_datagram(now, leg, port, from, &buf[..n]);
        d.flush();
    }
}

async fn timer(shared: Shared, notify: Rc<Notify>) {
    loop {
        let deadline = shared.borrow().core.poll_timeout();
        match deadline {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    _ = notify.notified() => {}
                }
            }
            None => notify.notified().await,
        }
        let mut d = shared.borrow_mut();
        d.core.handle_timeout(Instant::now());
        d.flush();
    }
}

/// Handle to the media engine. Cheap to clone; the engine stops when every handle is dropped.
#[derive(Clone)]
pub struct MediaEngine {
    jobs: mpsc::UnboundedSender<Job>,
}

impl MediaEngine {
    /// Starts the engine thread. Returns the handle and the stream of [`MediaEvent`]s.
    pub fn start(
        config: EngineConfig,
    ) -> Result<(MediaEngine, mpsc::UnboundedReceiver<MediaEvent>), MediaError> {
        let (jobs_tx, mut jobs_rx) = mpsc::unbounded_channel::<Job>();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = config
            .seed
            .unwrap_or(unix.as_nanos() as u64 ^ std::process::id() as u64);
        let advertise = config.advertise.unwrap_or(if config.bind.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            config.bind
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MediaError::Io(e.to_string()))?;
        std::thread::Builder::new()
            .name("media".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let now = Instant::now();
                    let core = MediaCore::new(
                        CoreConfig {
                            seed,
                            report_interval: config.report_interval,
                            unix_time_at_start: unix,
                            cname: format!("media@{advertise}"),
                        },
                        now,
                    );
                    let shared: Shared = Rc::new(RefCell::new(Driver {
                        core,
                        port_cursor: config.rtp_ports.0,
                        config,
                        advertise,
                        sockets: HashMap::new(),
                        recorders: HashMap::new(),
                        clips: HashMap::new(),
                        events: events_tx,
                        send_errors: 0,
                        dtls_cert: None,
                    }));
                    let notify = Rc::new(Notify::new());
                    let timer_task =
                        tokio::task::spawn_local(timer(shared.clone(), notify.clone()));
                    while let Some(job) = jobs_rx.recv().await {
                        job(&shared);
                        shared.borrow_mut().flush();
                        notify.notify_one();
                    }
                    timer_task.abort();
                    let mut d = shared.borrow_mut();
                    for (_, s) in d.sockets.drain() {
                        s.tasks.iter().for_each(|t| t.abort());
                    }
                    for (_, w) in d.recorders.drain() {
                        let _ = w.finish();
                    }
                });
            })
            .map_err(|e| MediaError::Io(e.to_string()))?;
        Ok((MediaEngine { jobs: jobs_tx }, events_rx))
    }

    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> R + Send + 'static,
    ) -> Result<R, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |s: &Shared| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)
    }

    async fn with_core<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MediaCore, Instant) -> Result<R, MediaError> + Send + 'static,
    ) -> Result<R, MediaError> {
        self.call(move |s| f(&mut s.borrow_mut().core, Instant::now()))
            .await?
    }

    /// Binds an RTP/RTCP socket pair and creates a leg. Returns its id and local RTP address.
    pub async fn create_leg(&self, config: LegConfig) -> Result<(LegId, SocketAddr), MediaError> {
        self.call(move |shared| {
            let mut d = shared.borrow_mut();
            let (a, b) = d.bind_pair()?;
            let io = |e: std::io::Error| MediaError::Io(e.to_string());
            a.set_nonblocking(true).map_err(io)?;
            b.set_nonblocking(true).map_err(io)?;
            let rtp = Rc::new(UdpSocket::from_std(a).map_err(io)?);
            let rtcp = Rc::new(UdpSocket::from_std(b).map_err(io)?);
            let (ra, rb) = (
                rtp.local_addr().map_err(io)?,
                rtcp.local_addr().map_err(io)?,
            );
            let advertise = d.advertise;
            let id = d.core.add_leg(Instant::now(), config, ra, rb, advertise);
            let tasks = vec![
                tokio::task::spawn_local(reader(shared.clone(), id, Port::Rtp, rtp.clone())),
                tokio::task::spawn_local(reader(shared.clone(), id, Port::Rtcp, rtcp.clone())),
            ];
            d.sockets.insert(
                id,
                LegSockets {
                    rtp,
                    rtcp: Some(rtcp),
                    tasks,
                },
            );
            Ok((id, ra))
        })
        .await?
    }

    /// Binds one UDP socket and creates a WebRTC leg for a browser agent (ICE-lite host
    /// candidate on the advertised address, DTLS-SRTP, PCMU/PCMA, telephone-event). Returns its
    /// id and local address. Then `webrtc_answer` the browser's offer.
    pub async fn create_webrtc_leg(
        &self,
        config: LegConfig,
    ) -> Result<(LegId, SocketAddr), MediaError> {
        self.call(move |shared| {
            let mut d = shared.borrow_mut();
            let cert = d.dtls_cert()?;
            let sock = d.bind_single()?;
            let io = |e: std::io::Error| MediaError::Io(e.to_string());
            sock.set_nonblocking(true).map_err(io)?;
            let sock = Rc::new(UdpSocket::from_std(sock).map_err(io)?);
            let local = sock.local_addr().map_err(io)?;
            let advertise = d.advertise;
            let id = d
                .core
                .add_webrtc_leg(Instant::now(), config, local, advertise, cert);
            let tasks = vec![tokio::task::spawn_local(reader(
                shared.clone(),
                id,
                Port::Rtp,
                sock.clone(),
            ))];
            d.sockets.insert(
                id,
                LegSockets {
                    rtp: sock,
                    rtcp: None,
                    tasks,
                },
            );
            Ok((id, local))
        })
        .await?
    }

    /// Answers the browser's SDP offer (the first, an ICE restart, or any re-offer). Errors
    /// (`MediaError::WebRtc`) leave the leg unchanged: no common codec, a changed fingerprint,
    /// malformed SDP.
    pub async fn webrtc_answer(&self, leg: LegId, offer_sdp: String) -> Result<String, MediaError> {
        self.with_core(move |c, now| c.webrtc_answer(now, leg, &offer_sdp))
            .await
    }

    /// Our offer to the browser; `ice_restart` makes new ICE credentials on a live call.
    pub async fn webrtc_offer(&self, leg: LegId, ice_restart: bool) -> Result<String, MediaError> {
        self.with_core(move |c, now| c.webrtc_offer(now, leg, ice_restart))
            .await
    }

    /// The browser's answer to `webrtc_offer`.
    pub async fn webrtc_apply_answer(
        &self,
        leg: LegId,
        answer_sdp: String,
    ) -> Result<(), MediaError> {
        self.with_core(move |c, now| c.webrtc_apply_answer(now, leg, &answer_sdp))
            .await
    }

    /// A trickled ICE candidate from the browser (`candidate:...`, with its usernameFragment
    /// when known); one for credentials replaced by an ICE restart is refused.
    pub async fn webrtc_add_candidate(
        &self,
        leg: LegId,
        candidate: String,
        ufrag: Option<String>,
    ) -> Result<(), MediaError> {
        self.with_core(move |c, now| c.webrtc_add_candidate(now, leg, &candidate, ufrag.as_deref()))
            .await
    }

    /// Our SDP offer (initial INVITE or re-INVITE after `set_direction`).
    pub async fn local_offer(&self, leg: LegId) -> Result<String, MediaError> {
        self.with_core(move |c, _| c.local_offer(leg)).await
    }

    /// Answers the remote offer; `MediaError::Sdp(e)` with `e.is_not_acceptable()` means 488.
    pub async fn answer(&self, leg: LegId, remote_sdp: String) -> Result<String, MediaError> {
        self.with_core(move |c, now| c.answer(now, leg, &remote_sdp))
            .await
    }

    pub async fn apply_answer(&self, leg: LegId, remote_sdp: String) -> Result<(), MediaError> {
        self.with_core(move |c, now| c.apply_answer(now, leg, &remote_sdp))
            .await
    }

    /// `SendOnly` to hold the remote, `SendRecv` to resume; follow with `local_offer`.
    pub async fn set_direction(&self, leg: LegId, direction: Direction) -> Result<(), MediaError> {
        self.with_core(move |c, _| c.set_direction(leg, direction))
            .await
    }

    pub async fn bridge(&self, a: LegId, b: LegId) -> Result<(), MediaError> {
        self.with_core(move |c, _| c.bridge(a, b)).await
    }

    pub async fn unbridge(&self, leg: LegId) -> Result<(), MediaError> {
        self.with_core(move |c, _| c.unbridge(leg)).await
    }

    /// Plays a sequence into the leg (prompts, numbers, tones); `looping` for music on hold.
    /// `PlaybackDone` follows when it ends or is stopped.
    pub async fn play(
        &self,
        leg: LegId,
        items: Vec<PlaySpec>,
        looping: bool,
    ) -> Result<(), MediaError> {
        self.call(move |s| {
            let mut d = s.borrow_mut();
            let items = d.resolve(items)?;
            d.core.play(leg, items, looping)
        })
        .await?
    }

    pub async fn stop(&self, leg: LegId) -> Result<(), MediaError> {
        self.with_core(move |c, _| c.stop(leg)).await
    }

    pub async fn mix(
        &self,
        conference: ConferenceId,
        leg: LegId,
        role: Role<LegId>,
    ) -> Result<(), MediaError> {
        self.with_core(move |c, _| c.mix(conference, leg, role))
            .await
    }

    pub async fn unmix(&self, leg: LegId) -> Result<(), MediaError> {
        self.with_core(move |c, _| c.unmix(leg)).await
    }

    /// Music (looped) for one conference participant, who is then not heard; None resumes.
    pub async fn conference_hold(
        &self,
        leg: LegId,
        music: Option<Vec<PlaySpec>>,
    ) -> Result<(), MediaError> {
        self.call(move |s| {
            let mut d = s.borrow_mut();
            let items = music.map(|m| d.resolve(m)).transpose()?;
            d.core.conference_hold(leg, items)
        })
        .await?
    }

    /// Records the customer legs (left) and agent legs (right) into a stereo WAV at `path`.
    pub async fn record(
        &self,
        customer: Vec<LegId>,
        agent: Vec<LegId>,
        path: PathBuf,
    ) -> Result<RecordingId, MediaError> {
        self.call(move |s| {
            let mut d = s.borrow_mut();
            let fixup = d.config.recording_fixup;
            let w =
                WavWriter::create(&path, 2, fixup).map_err(|e| MediaError::Io(e.to_string()))?;
            let id = d.core.record(customer, agent)?;
            d.recorders.insert(id, w);
            Ok(id)
        })
        .await?
    }

    /// Stops a recording; returns its duration and file size.
    pub async fn stop_record(&self, id: RecordingId) -> Result<RecordingInfo, MediaError> {
        self.call(move |s| {
            let mut d = s.borrow_mut();
            d.flush();
            d.core.stop_record(id)?;
            let w = d
                .recorders
                .remove(&id)
                .ok_or(MediaError::UnknownRecording(id))?;
            w.finish().map_err(|e| MediaError::Io(e.to_string()))
        })
        .await?
    }

    /// Sends digits (RFC 4733 when negotiated, else in-band tones).
    pub async fn send_dtmf(&self, leg: LegId, digits: String) -> Result<(), MediaError> {
        self.with_core(move |c, _| c.send_dtmf(leg, &digits)).await
    }

    /// Ends the leg (sends RTCP BYE) and closes its sockets.
    pub async fn remove_leg(&self, leg: LegId) -> Result<(), MediaError> {
        self.call(move |s| {
            let mut d = s.borrow_mut();
            d.core.remove_leg(Instant::now(), leg)?;
            d.flush();
            if let Some(sock) = d.sockets.remove(&leg) {
                sock.tasks.iter().for_each(|t| t.abort());
            }
            Ok(())
        })
        .await?
    }

    pub async fn stats(&self, leg: LegId) -> Result<LegStats, MediaError> {
        self.with_core(move |c, _| c.stats(leg)).await
    }

    /// Packets relayed without decoding, and sends the OS refused, since start.
    pub async fn counters(&self) -> Result<(u64, u64), MediaError> {
        self.call(|s| {
            let d = s.borrow();
            (d.core.relayed, d.send_errors)
        })
        .await
    }
}
