//! WebRTC leg benchmarks, browser-free (the far ends are in-process str0m peers, see
//! `tests/common/str0m_peer.rs`). Bounded in count and time.
//!
//!   cargo bench -p channel-media --bench webrtc -- --mode handshakes [--count 300]
//!       ICE + DTLS handshakes per second through the sans-IO core (both sides on one thread).
//!   cargo bench -p channel-media --bench webrtc -- --mode calls [--calls 500] [--seconds 10]
//!       N calls WebRTC leg ⇄ RTP leg through the engine over UDP on 127.0.0.1: SRTP both
//!       ways, engine CPU (pinned to CPU 0), loss, added jitter, and setup time from the
//!       browser's offer to its first audio packet.
//!   cargo bench -p channel-media --bench webrtc -- --mode core [--calls 200] [--seconds 10]
//!       the same bridged calls through the sans-IO core alone (no sockets, simulated clock,
//!       the str0m peers' work not counted): the engine's own CPU per packet — str0m and the
//!       core — without the kernel's UDP work, and without its noise.

#[path = "../tests/common/str0m_peer.rs"]
mod str0m_peer;

use channel_media::leg::Port;
use channel_media::rtp::{RtpHeader, RtpPacket};
use channel_media::sdp::SessionDescription;
use channel_media::switch::CoreConfig;
use channel_media::{EngineConfig, LegConfig, MediaCore, MediaEngine, MediaEvent, WebRtcState};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use str0m_peer::{BrowserPeer, Codecs};
use tokio::net::UdpSocket;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name, &default.to_string()).parse().unwrap_or(default)
}

fn pin(tid: u32, cpu: u32) {
    let ok = std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("warning: could not pin thread {tid} to CPU {cpu}");
    }
}

fn realtime(tid: u32) -> bool {
    std::env::var_os("RELAY_NO_RT").is_none()
        && std::process::Command::new("chrt")
            .args(["-f", "-p", "20", &tid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn thread_id_named(name: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc/self/task").ok()? {
        let e = e.ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            return e.file_name().to_str()?.parse().ok();
        }
    }
    None
}

fn own_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(tid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn percentile<T: Copy + Ord + Default>(v: &mut [T], p: f64) -> T {
    if v.is_empty() {
        return T::default();
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    match arg("--mode", "calls").as_str() {
        "handshakes" => handshakes(num("--count", 300) as usize),
        "core" => core_only(num("--calls", 200) as usize, num("--seconds", 10)),
        _ => calls(num("--calls", 500) as usize, num("--seconds", 10)),
    }
}

/// Sequential ICE + DTLS setups through `MediaCore` with zero network latency: CPU-bound.
fn handshakes(count: usize) {
    println!("WebRTC handshakes: {count} sequential ICE-lite + DTLS 1.2 setups, in-process");
    println!(
        "command: cargo bench -p channel-media --bench webrtc -- --mode handshakes --count {count}"
    );
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .unwrap();
    let leg_addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let peer_addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let start = Instant::now();
    let mut core = MediaCore::new(CoreConfig::default(), start);
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let mut now = t;
        let leg = core.add_webrtc_leg(
            now,
            LegConfig::default(),
            leg_addr,
            leg_addr.ip(),
            cert.clone(),
        );
        let mut peer = BrowserPeer::new(now, peer_addr, Codecs::G711);
        let offer = peer.offer(false);
        let answer = core.webrtc_answer(now, leg, &offer).unwrap();
        let mut to_core: Vec<Vec<u8>> = peer
            .accept_answer(now, &answer)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        let mut connected = false;
        for _ in 0..200 {
            for d in to_core.drain(..) {
                core.handle_datagram(now, leg, Port::Rtp, peer_addr, &d);
            }
            while let Some(tx) = core.poll_transmit() {
                to_core.extend(
                    peer.receive(now, leg_addr, &tx.data)
                        .into_iter()
                        .map(|(_, d)| d),
                );
            }
            while let Some(e) = core.poll_event() {
                connected |= matches!(
                    e,
                    MediaEvent::WebRtc {
                        state: WebRtcState::Connected,
                        ..
                    }
                );
            }
            if connected && peer.connected {
                break;
            }
            if to_core.is_empty() {
                now += Duration::from_millis(5);
                core.handle_timeout(now);
                to_core.extend(peer.timeout(now).into_iter().map(|(_, d)| d));
            }
        }
        assert!(connected && peer.connected, "handshake completed");
        core.remove_leg(now, leg).unwrap();
        while core.poll_transmit().is_some() {}
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    let p50 = percentile(&mut times, 0.5);
    let p95 = percentile(&mut times, 0.95);
    println!(
        "{:.0} handshakes/s (engine and browser side together on one thread); per handshake p50 {:.2} ms, p95 {:.2} ms",
        count as f64 / total.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3
    );
}

/// Bridged calls through `MediaCore` on a simulated clock; only the time spent in the core's
/// calls is counted (the peers' str0m work and the phone side are outside the clock).
fn core_only(n: usize, seconds: u64) {
    println!("WebRTC bridged calls through the sans-IO core only: {n} calls, {seconds} s simulated, PCMU both ways");
    println!(
        "command: cargo bench -p channel-media --bench webrtc -- --mode core --calls {n} --seconds {seconds}"
    );
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .unwrap();
    let start = Instant::now();
    let mut now = start;
    let mut core = MediaCore::new(CoreConfig::default(), now);
    let phone_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    // The phone offers telephone-event, as in `calls`: no in-band DTMF detection on the trunk.
    let mut peers = Vec::with_capacity(n);
    let mut webs = Vec::with_capacity(n);
    let mut trunks = Vec::with_capacity(n);
    let mut call_of = std::collections::HashMap::new();
    for i in 0..n {
        let leg_addr: SocketAddr = format!("10.0.0.1:{}", 20000 + 2 * i).parse().unwrap();
        let peer_addr: SocketAddr = format!("10.0.0.3:{}", 20000 + 2 * i).parse().unwrap();
        let web = core.add_webrtc_leg(
            now,
            LegConfig::default(),
            leg_addr,
            leg_addr.ip(),
            cert.clone(),
        );
        let trunk = core.add_leg(
            now,
            LegConfig::default(),
            format!("10.0.0.1:{}", 30000 + 2 * i).parse().unwrap(),
            format!("10.0.0.1:{}", 30001 + 2 * i).parse().unwrap(),
            leg_addr.ip(),
        );
        let phone_sdp = format!(
            "v=0\r\no=phone 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            phone_addr.port()
        );
        core.answer(now, trunk, &phone_sdp).unwrap();
        let mut peer = BrowserPeer::new(now, peer_addr, Codecs::G711);
        let answer = core.webrtc_answer(now, web, &peer.offer(false)).unwrap();
        let out = peer.accept_answer(now, &answer);
        for (_, d) in out {
            core.handle_datagram(now, web, Port::Rtp, peer_addr, &d);
        }
        core.bridge(web, trunk).unwrap();
        call_of.insert(web, i);
        peers.push(peer);
        webs.push(web);
        trunks.push(trunk);
    }
    // Delivers the core's datagrams to the peers (the phones discard theirs) and the peers'
    // answers back, until both sides are quiet. Returns the time spent in the core.
    let exchange = |core: &mut MediaCore, peers: &mut [BrowserPeer], now: Instant| {
        let mut in_core = Duration::ZERO;
        loop {
            let mut back = Vec::new();
            let t = Instant::now();
            while let Some(tx) = core.poll_transmit() {
                back.push(tx);
            }
            in_core += t.elapsed();
            if back.is_empty() {
                return in_core;
            }
            for tx in back {
                let Some(&i) = call_of.get(&tx.leg) else {
                    continue;
                };
                let replies = peers[i].receive(now, tx.to, &tx.data);
                let t = Instant::now();
                for (_, d) in replies {
                    core.handle_datagram(now, webs[i], Port::Rtp, peers[i].addr, &d);
                }
                in_core += t.elapsed();
            }
        }
    };
    // Connect everyone.
    for _ in 0..400 {
        exchange(&mut core, &mut peers, now);
        if peers.iter().all(|p| p.connected) {
            break;
        }
        now += Duration::from_millis(5);
        core.handle_timeout(now);
        for i in 0..n {
            if peers[i].timeout <= now {
                for (_, d) in peers[i].timeout(now) {
                    core.handle_datagram(now, webs[i], Port::Rtp, peers[i].addr, &d);
                }
            }
        }
    }
    assert!(peers.iter().all(|p| p.connected), "every call connected");
    while core.poll_event().is_some() {}
    let relayed0 = core.relayed;
    let mut in_core = Duration::ZERO;
    let payload = [0x55u8; 160];
    let frames = seconds * 50;
    for f in 0..frames {
        // Each call's two packets of this 20 ms, spread over the frame as on a network. Timers
        // run once per frame, as the engine runs WebRTC timers at the latest with its tick.
        for i in 0..n {
            let at = now + Duration::from_micros((i as u64 * 20_000) / n as u64);
            let mut rtp = Vec::with_capacity(172);
            RtpHeader {
                marker: f == 0,
                payload_type: 0,
                sequence: f as u16,
                timestamp: (f as u32) * 160,
                ssrc: 0x1000 + i as u32,
            }
            .write(&payload, &mut rtp);
            let from_peer = peers[i].send(at, 0, &payload, f == 0);
            if peers[i].timeout <= at {
                let more = peers[i].timeout(at);
                in_core += deliver(&mut core, webs[i], peers[i].addr, at, more);
            }
            let t = Instant::now();
            core.handle_datagram(at, trunks[i], Port::Rtp, phone_addr, &rtp);
            in_core += t.elapsed();
            in_core += deliver(&mut core, webs[i], peers[i].addr, at, from_peer);
            in_core += exchange(&mut core, &mut peers, at);
        }
        now += Duration::from_millis(20);
        let t = Instant::now();
        core.handle_timeout(now);
        in_core += t.elapsed();
        in_core += exchange(&mut core, &mut peers, now);
        while core.poll_event().is_some() {}
    }
    let packets = core.relayed - relayed0;
    let per_packet = in_core.as_secs_f64() / packets.max(1) as f64;
    println!(
        "relayed {packets} packets; core time {:.3} s = {:.2} us per relayed packet (SRTP, str0m and the core; no kernel) -> {:.0} bridged calls per core at 100 pkt/s each",
        in_core.as_secs_f64(),
        per_packet * 1e6,
        1.0 / (per_packet * 100.0)
    );
}

/// Feeds a peer's datagrams to its WebRTC leg; returns the time spent in the core.
fn deliver(
    core: &mut MediaCore,
    leg: channel_media::LegId,
    from: SocketAddr,
    now: Instant,
    datagrams: Vec<(SocketAddr, Vec<u8>)>,
) -> Duration {
    let t = Instant::now();
    for (_, d) in datagrams {
        core.handle_datagram(now, leg, Port::Rtp, from, &d);
    }
    t.elapsed()
}

struct Call {
    peer: RefCell<BrowserPeer>,
    web_sock: UdpSocket,
    web_target: RefCell<Option<SocketAddr>>,
    phone_sock: UdpSocket,
    phone_target: SocketAddr,
    first_heard: RefCell<Option<Instant>>,
    sent: [RefCell<u64>; 2],
    /// Received (by the browser side, by the phone side), latencies in µs.
    received: [RefCell<Vec<u32>>; 2],
}

fn calls(n: usize, seconds: u64) {
    println!("WebRTC bridged calls: {n} calls, WebRTC leg (SRTP, str0m peer) <-> RTP leg (phone), {seconds} s, PCMU both ways");
    println!("command: cargo bench -p channel-media --bench webrtc -- --mode calls --calls {n} --seconds {seconds}");
    let (engine, events) = MediaEngine::start(EngineConfig {
        rtp_ports: (20_000, 39_999),
        seed: Some(3),
        ..EngineConfig::default()
    })
    .expect("engine");
    let engine_tid = loop {
        if let Some(t) = thread_id_named("media") {
            break t;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    pin(engine_tid, 0);
    let rt = realtime(engine_tid);
    println!(
        "engine thread pinned to CPU 0, generator (all str0m peers) to CPU 1; SCHED_FIFO: {rt}"
    );
    let gen = std::thread::spawn(move || {
        pin(own_tid(), 1);
        realtime(own_tid());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new()
            .block_on(&rt, run_calls(engine, events, engine_tid, n, seconds))
    });
    gen.join().expect("generator");
}

fn stamp(payload: &mut [u8; 160], t0: Instant) {
    payload[4..12].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_be_bytes());
}

fn latency(payload: &[u8], t0: Instant, measure_from: Instant) -> Option<u32> {
    let sent = t0 + Duration::from_nanos(u64::from_be_bytes(payload.get(4..12)?.try_into().ok()?));
    (sent >= measure_from)
        .then(|| Instant::now().saturating_duration_since(sent).as_micros() as u32)
}

async fn send_all(call: &Call, out: Vec<(SocketAddr, Vec<u8>)>) {
    for (to, d) in out {
        *call.web_target.borrow_mut() = Some(to);
        let _ = call.web_sock.try_send_to(&d, to);
    }
}

async fn run_calls(
    engine: MediaEngine,
    _events: tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
    engine_tid: u32,
    n: usize,
    seconds: u64,
) {
    let t0 = Instant::now();
    let measure_from = Rc::new(RefCell::new(t0 + Duration::from_secs(3600)));
    let mut all: Vec<Rc<Call>> = Vec::with_capacity(n);
    let mut setup_ms: Vec<u32> = Vec::with_capacity(n);
    let setup_start = Instant::now();
    for _ in 0..n {
        let web_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let phone_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = web_sock.local_addr().unwrap();
        let (rtp_leg, _) = engine.create_leg(LegConfig::default()).await.unwrap();
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            phone_sock.local_addr().unwrap().port()
        );
        let answer = engine.answer(rtp_leg, offer).await.unwrap();
        let sd = SessionDescription::parse(&answer).unwrap();
        let phone_target = SocketAddr::new("127.0.0.1".parse().unwrap(), sd.media[0].port);
        // The browser's offer: from here to its first audio packet is the setup time.
        let started = Instant::now();
        let mut peer = BrowserPeer::new(started, peer_addr, Codecs::G711);
        let offer = peer.offer(false);
        let (web_leg, _) = engine
            .create_webrtc_leg(LegConfig::default())
            .await
            .unwrap();
        let answer = engine.webrtc_answer(web_leg, offer).await.unwrap();
        engine.bridge(web_leg, rtp_leg).await.unwrap();
        let first = peer.accept_answer(Instant::now(), &answer);
        let call = Rc::new(Call {
            peer: RefCell::new(peer),
            web_sock,
            web_target: RefCell::new(None),
            phone_sock,
            phone_target,
            first_heard: RefCell::new(None),
            sent: Default::default(),
            received: Default::default(),
        });
        send_all(&call, first).await;
        spawn_receivers(call.clone(), t0, measure_from.clone());
        // The phone talks every 20 ms until the browser side hears it.
        let mut seq = 0u16;
        loop {
            let mut payload = [0xFFu8; 160];
            stamp(&mut payload, t0);
            let mut buf = Vec::new();
            RtpHeader {
                marker: seq == 0,
                payload_type: 0,
                sequence: seq,
                timestamp: seq as u32 * 160,
                ssrc: 77,
            }
            .write(&payload, &mut buf);
            let _ = call.phone_sock.try_send_to(&buf, call.phone_target);
            seq += 1;
            let until = Instant::now() + Duration::from_millis(20);
            while Instant::now() < until && call.first_heard.borrow().is_none() {
                let out = {
                    let mut p = call.peer.borrow_mut();
                    if p.timeout <= Instant::now() {
                        p.timeout(Instant::now())
                    } else {
                        Vec::new()
                    }
                };
                send_all(&call, out).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if let Some(at) = *call.first_heard.borrow() {
                setup_ms.push(at.saturating_duration_since(started).as_micros() as u32);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "call set up within 10 s"
            );
        }
        all.push(call);
    }
    let mut s = setup_ms.clone();
    println!(
        "setup of {n} calls in {:.1} s; offer to first audio at the browser side: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (target p95 < 300 ms)",
        setup_start.elapsed().as_secs_f64(),
        percentile(&mut s, 0.5) as f64 / 1e3,
        percentile(&mut s, 0.95) as f64 / 1e3,
        s.last().copied().unwrap_or(0) as f64 / 1e3
    );

    // Timers of all peers (RTCP, ICE keepalives).
    {
        let all = all.clone();
        tokio::task::spawn_local(async move {
            loop {
                let now = Instant::now();
                for c in &all {
                    let out = {
                        let mut p = c.peer.borrow_mut();
                        if p.timeout <= now {
                            p.timeout(now)
                        } else {
                            Vec::new()
                        }
                    };
                    send_all(c, out).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    let warmup = Duration::from_secs(1);
    let begin = Instant::now();
    *measure_from.borrow_mut() = begin + warmup;
    let cpu0 = cpu_ticks(engine_tid);
    let run_for = Duration::from_secs(seconds);
    let period = Duration::from_millis(20);
    let slots = 20usize;
    let mut k = 0u32;
    let mut seq = vec![1000u16; n];
    loop {
        let frame_start = begin + period * k;
        if frame_start.duration_since(begin) >= run_for {
            break;
        }
        for slot in 0..slots {
            tokio::time::sleep_until((frame_start + Duration::from_millis(slot as u64)).into())
                .await;
            for i in (slot..n).step_by(slots) {
                let c = &all[i];
                let counting = Instant::now() >= *measure_from.borrow();
                let mut payload = [0xFFu8; 160];
                stamp(&mut payload, t0);
                let out = c.peer.borrow_mut().send(Instant::now(), 0, &payload, false);
                send_all(c, out).await;
                let mut buf = Vec::with_capacity(172);
                stamp(&mut payload, t0);
                RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: seq[i],
                    timestamp: seq[i] as u32 * 160,
                    ssrc: 77,
                }
                .write(&payload, &mut buf);
                seq[i] = seq[i].wrapping_add(1);
                let _ = c.phone_sock.try_send_to(&buf, c.phone_target);
                if counting {
                    *c.sent[0].borrow_mut() += 1;
                    *c.sent[1].borrow_mut() += 1;
                }
            }
        }
        k += 1;
    }
    let elapsed = begin.elapsed();
    let cpu = (cpu_ticks(engine_tid) - cpu0) as f64 / 100.0 / elapsed.as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (relayed, send_errors) = engine.counters().await.unwrap();
    let (mut sent, mut recv) = (0u64, 0u64);
    let mut added = Vec::new();
    let mut lat = Vec::new();
    for c in &all {
        // Packets the browser side sent arrive at the phone, and the other way.
        sent += *c.sent[0].borrow() + *c.sent[1].borrow();
        for r in &c.received {
            let r = r.borrow();
            recv += r.len() as u64;
            let min = r.iter().copied().min().unwrap_or(0);
            added.extend(r.iter().map(|l| l - min));
            lat.extend(r.iter().copied());
        }
    }
    // The last frames' packets may still be in flight when counting stops.
    let loss = 1.0 - (recv as f64 / sent.max(1) as f64).min(1.0);
    println!("sent {sent}, received {recv}: loss {:.4} % (target < 0.1 %); relayed {relayed}, send errors {send_errors}", loss * 100.0);
    println!(
        "latency through the engine: p50 {} us, p99 {} us; added jitter p99 {:.3} ms, p99.9 {:.3} ms",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        percentile(&mut added, 0.99) as f64 / 1e3,
        percentile(&mut added, 0.999) as f64 / 1e3
    );
    println!(
        "engine thread CPU: {:.1} % of one core for {n} bridged calls -> {:.0} bridged calls per core at 100 % (target >= 500)",
        cpu * 100.0,
        n as f64 / cpu.max(1e-6)
    );
}

fn spawn_receivers(call: Rc<Call>, t0: Instant, measure_from: Rc<RefCell<Instant>>) {
    let c = call.clone();
    let m = measure_from.clone();
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((len, from)) = c.web_sock.recv_from(&mut buf).await else {
                continue;
            };
            let out = {
                let mut p = c.peer.borrow_mut();
                let before = p.heard.len();
                let out = p.receive(Instant::now(), from, &buf[..len]);
                for h in p.heard.drain(before..) {
                    if h.pt == 0 {
                        c.first_heard.borrow_mut().get_or_insert(Instant::now());
                        if let Some(l) = latency(&h.payload, t0, *m.borrow()) {
                            c.received[0].borrow_mut().push(l);
                        }
                    }
                }
                out
            };
            send_all(&c, out).await;
        }
    });
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((len, _)) = call.phone_sock.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(p) = RtpPacket::parse(&buf[..len]) else {
                continue;
            };
            if p.payload_type == 0 {
                if let Some(l) = latency(p.payload, t0, *measure_from.borrow()) {
                    call.received[1].borrow_mut().push(l);
                }
            }
        }
    });
}
