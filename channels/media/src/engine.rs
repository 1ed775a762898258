//! The driver: owns the UDP sockets and runs the [`MediaCore`] on one dedicated thread (a
//! level-triggered epoll loop, see `poll`), so relaying never waits on the hub. The hub talks
//! to it through a cloneable [`MediaEngine`] handle (async calls, usable from any tokio
//! runtime) and one event receiver.

use crate::leg::Port;
use crate::mixer::Role;
use crate::playback::{Clip, PlayItem};
use crate::poll::{Poller, Waker};
use crate::sdp::Direction;
use crate::switch::{
    ConferenceId, CoreConfig, LegConfig, LegId, LegStats, MediaCore, MediaError, MediaEvent,
    RecordingId,
};
use crate::wav::{self, RecordingInfo, WavWriter};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use str0m::config::DtlsCert;
use tokio::sync::{mpsc, oneshot};

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
    rtp: std::net::UdpSocket,
    /// None for WebRTC legs (RTP and RTCP share one socket).
    rtcp: Option<std::net::UdpSocket>,
}

/// The engine thread's state: the core, the sockets (in the level-triggered poller) and the
/// recorders. Jobs from the hub run on it between I/O events.
struct Driver {
    core: MediaCore,
    config: EngineConfig,
    advertise: IpAddr,
    poller: Poller,
    sockets: HashMap<LegId, LegSockets>,
    recorders: HashMap<RecordingId, WavWriter>,
    clips: HashMap<PathBuf, Clip>,
    port_cursor: u16,
    events: mpsc::UnboundedSender<MediaEvent>,
    send_errors: u64,
    /// The engine's DTLS identity, made on the first WebRTC leg.
    dtls_cert: Option<DtlsCert>,
}

type Job = Box<dyn FnOnce(&mut Driver) + Send>;

/// Poller token of the hub's wake-up eventfd; sockets use `leg << 1 | is_rtcp`.
const WAKE_TOKEN: u64 = u64::MAX;

/// Datagrams of one wake-up that share a clock reading (see `run`).
const ARRIVAL_CLOCK_EVERY: usize = 4;

fn token(leg: LegId, port: Port) -> u64 {
    (leg.0 as u64) << 1 | matches!(port, Port::Rtcp) as u64
}

fn untoken(token: u64) -> (LegId, Port) {
    let port = if token & 1 == 1 {
        Port::Rtcp
    } else {
        Port::Rtp
    };
    (LegId((token >> 1) as u32), port)
}

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
            if sock.send_to(&t.data, t.to).is_err() {
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

    /// Reads one datagram from a ready socket and runs it through the core. One read per
    /// readiness report: the poller is level-triggered and reports the socket again while
    /// datagrams are queued, so no read ends in EAGAIN.
    fn receive(&mut self, now: Instant, leg: LegId, port: Port, buf: &mut [u8]) {
        let Some(s) = self.sockets.get(&leg) else {
            return;
        };
        let sock = match (port, &s.rtcp) {
            (Port::Rtcp, Some(rtcp)) => rtcp,
            _ => &s.rtp,
        };
        let (n, from) = match sock.recv_from(buf) {
            Ok(x) => x,
            // WouldBlock (spurious), or an ICMP error from an earlier send: not fatal.
            Err(_) => return,
        };
        self.core.handle_datagram(now, leg, port, from, &buf[..n]);
        self.flush();
    }

    fn watch(&mut self, leg: LegId, sockets: LegSockets) -> Result<(), MediaError> {
        let io = |e: std::io::Error| MediaError::Io(e.to_string());
        self.poller
            .add(sockets.rtp.as_raw_fd(), token(leg, Port::Rtp))
            .map_err(io)?;
        if let Some(rtcp) = &sockets.rtcp {
            if let Err(e) = self.poller.add(rtcp.as_raw_fd(), token(leg, Port::Rtcp)) {
                self.poller.remove(sockets.rtp.as_raw_fd());
                return Err(io(e));
            }
        }
        self.sockets.insert(leg, sockets);
        Ok(())
    }

    fn unwatch(&mut self, leg: LegId) {
        if let Some(s) = self.sockets.remove(&leg) {
            self.poller.remove(s.rtp.as_raw_fd());
            if let Some(rtcp) = &s.rtcp {
                self.poller.remove(rtcp.as_raw_fd());
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

/// The hub's side of the job queue. When the last handle goes, the queue closes and the
/// engine thread is woken to see it.
struct Handle {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    waker: Arc<Waker>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.jobs.take();
        self.waker.wake();
    }
}

/// Handle to the media engine. Cheap to clone; the engine stops when every handle is dropped.
#[derive(Clone)]
pub struct MediaEngine {
    handle: Arc<Handle>,
}

/// The engine thread: one level-triggered epoll loop over every leg's sockets, the hub's
/// wake-up eventfd and the core's next timeout. No async runtime: a packet costs one
/// `epoll_wait` share, one `recvfrom`, the core's work and one `sendto`.
fn run(mut d: Driver, mut jobs: mpsc::UnboundedReceiver<Job>, waker: Arc<Waker>) {
    let mut buf = vec![0u8; 2048];
    let mut ready: Vec<u64> = Vec::with_capacity(1024);
    if let Err(e) = d.poller.add(waker.fd(), WAKE_TOKEN) {
        tracing::error!(error = %e, "media engine cannot watch its wake-up eventfd");
        return;
    }
    let mut deadline = d.core.poll_timeout();
    loop {
        let timeout = deadline.map(|t| t.saturating_duration_since(Instant::now()));
        ready.clear();
        match d.poller.wait(timeout) {
            Ok(evs) => ready.extend(evs.iter().map(|e| e.u64)),
            Err(e) => {
                tracing::error!(error = %e, "media engine epoll_wait failed");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let mut woken = false;
        // The clock is read once per few datagrams rather than per datagram: a few are
        // handled within ~100 µs, below the jitter figures' 125 µs resolution; re-read so a
        // long batch (overload) does not stamp its last datagrams early.
        let mut arrival = Instant::now();
        for (i, &t) in ready.iter().enumerate() {
            if t == WAKE_TOKEN {
                woken = true;
                continue;
            }
            if i > 0 && i % ARRIVAL_CLOCK_EVERY == 0 {
                arrival = Instant::now();
            }
            let (leg, port) = untoken(t);
            d.receive(arrival, leg, port, &mut buf);
        }
        if woken {
            waker.reset();
            loop {
                match jobs.try_recv() {
                    Ok(job) => {
                        job(&mut d);
                        d.flush();
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        shutdown(&mut d);
                        return;
                    }
                }
            }
        }
        let now = Instant::now();
        if deadline.is_some_and(|t| t <= now) {
            d.core.handle_timeout(now);
            d.flush();
        }
        // Re-read every round (it is a field read, not a scan): jobs add legs and timers,
        // datagrams bring WebRTC timers forward.
        deadline = d.core.poll_timeout();
    }
}

fn shutdown(d: &mut Driver) {
    let legs: Vec<LegId> = d.sockets.keys().copied().collect();
    for leg in legs {
        d.unwatch(leg);
    }
    for (_, w) in d.recorders.drain() {
        let _ = w.finish();
    }
}

impl MediaEngine {
    /// Starts the engine thread. Returns the handle and the stream of [`MediaEvent`]s.
    pub fn start(
        config: EngineConfig,
    ) -> Result<(MediaEngine, mpsc::UnboundedReceiver<MediaEvent>), MediaError> {
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel::<Job>();
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
        let io = |e: std::io::Error| MediaError::Io(e.to_string());
        let waker = Arc::new(Waker::new().map_err(io)?);
        let poller = Poller::new(1024).map_err(io)?;
        let thread_waker = waker.clone();
        std::thread::Builder::new()
            .name("media".into())
            .spawn(move || {
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
                let driver = Driver {
                    core,
                    port_cursor: config.rtp_ports.0,
                    config,
                    advertise,
                    poller,
                    sockets: HashMap::new(),
                    recorders: HashMap::new(),
                    clips: HashMap::new(),
                    events: events_tx,
                    send_errors: 0,
                    dtls_cert: None,
                };
                run(driver, jobs_rx, thread_waker);
            })
            .map_err(io)?;
        let handle = Handle {
            jobs: Some(jobs_tx),
            waker,
        };
        Ok((
            MediaEngine {
                handle: Arc::new(handle),
            },
            events_rx,
        ))
    }

    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> R + Send + 'static,
    ) -> Result<R, MediaError> {
        let (tx, rx) = oneshot::channel();
        let jobs = self.handle.jobs.as_ref().ok_or(MediaError::Stopped)?;
        jobs.send(Box::new(move |d: &mut Driver| {
            let _ = tx.send(f(d));
        }))
        .map_err(|_| MediaError::Stopped)?;
        self.handle.waker.wake();
        rx.await.map_err(|_| MediaError::Stopped)
    }

    async fn with_core<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MediaCore, Instant) -> Result<R, MediaError> + Send + 'static,
    ) -> Result<R, MediaError> {
        self.call(move |d| f(&mut d.core, Instant::now())).await?
    }

    /// Binds an RTP/RTCP socket pair and creates a leg. Returns its id and local RTP address.
    pub async fn create_leg(&self, config: LegConfig) -> Result<(LegId, SocketAddr), MediaError> {
        self.call(move |d| {
            let (rtp, rtcp) = d.bind_pair()?;
            let io = |e: std::io::Error| MediaError::Io(e.to_string());
            rtp.set_nonblocking(true).map_err(io)?;
            rtcp.set_nonblocking(true).map_err(io)?;
            let (ra, rb) = (
                rtp.local_addr().map_err(io)?,
                rtcp.local_addr().map_err(io)?,
            );
            let advertise = d.advertise;
            let id = d.core.add_leg(Instant::now(), config, ra, rb, advertise);
            let sockets = LegSockets {
                rtp,
                rtcp: Some(rtcp),
            };
            if let Err(e) = d.watch(id, sockets) {
                let _ = d.core.remove_leg(Instant::now(), id);
                return Err(e);
            }
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
        self.call(move |d| {
            let cert = d.dtls_cert()?;
            let sock = d.bind_single()?;
            let io = |e: std::io::Error| MediaError::Io(e.to_string());
            sock.set_nonblocking(true).map_err(io)?;
            let local = sock.local_addr().map_err(io)?;
            let advertise = d.advertise;
            let id = d
                .core
                .add_webrtc_leg(Instant::now(), config, local, advertise, cert);
            let sockets = LegSockets {
                rtp: sock,
                rtcp: None,
            };
            if let Err(e) = d.watch(id, sockets) {
                let _ = d.core.remove_leg(Instant::now(), id);
                return Err(e);
            }
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
        self.call(move |d| {
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
        self.call(move |d| {
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
        self.call(move |d| {
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
        self.call(move |d| {
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
        self.call(move |d| {
            d.core.remove_leg(Instant::now(), leg)?;
            d.flush();
            d.unwatch(leg);
            Ok(())
        })
        .await?
    }

    pub async fn stats(&self, leg: LegId) -> Result<LegStats, MediaError> {
        self.with_core(move |c, _| c.stats(leg)).await
    }

    /// Packets relayed without decoding, and sends the OS refused, since start.
    pub async fn counters(&self) -> Result<(u64, u64), MediaError> {
        self.call(|d| (d.core.relayed, d.send_errors)).await
    }
}
