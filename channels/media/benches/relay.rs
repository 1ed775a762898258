//! Relay benchmark: N concurrent G.711 calls, RTP in both directions through the engine.
//!
//! The engine's thread is pinned to CPU 0 and the load generator's to CPU 1 (with `taskset -p`
//! on the thread ids), so "calls per core" means what it says. Bounded in time.
//!
//!   cargo bench -p channel-media --bench relay -- [--calls 1000] [--seconds 10]
//!   cargo bench -p channel-media --bench relay -- --core-only [--calls 1000] [--seconds 10]
//!       the same relay through the sans-IO core alone (no sockets, simulated clock): the
//!       engine's own CPU per packet, without the kernel's UDP work.

use channel_media::rtp::{RtpHeader, RtpPacket};
use channel_media::sdp::SessionDescription;
use channel_media::{EngineConfig, LegConfig, MediaEngine};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin(tid: u32, cpu: u32) {
    let ok = std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("warning: could not pin thread {tid} to CPU {cpu} (is taskset installed?)");
    }
}

/// Real-time priority, so builds sharing the machine do not preempt the measured threads
/// (the kernel's RT throttling still leaves 5 % to everything else).
fn realtime(tid: u32) -> bool {
    std::process::Command::new("chrt")
        .args(["-f", "-p", "20", &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
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

/// CPU time (user + system) of a thread, in clock ticks.
fn cpu_ticks(tid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12) // utime, stime (fields 14 and 15 of stat)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

struct PhoneStats {
    sent: u64,
    received: u64,
    latencies_us: Vec<u32>,
    min_latency: Vec<u32>,
}

fn percentile(v: &mut [u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Relays `calls` bridged pairs through a bare `MediaCore` for `seconds` of simulated time
/// (50 packets per second per leg, 20 ms ticks) and prints the wall-clock cost per packet.
fn core_only(calls: usize, seconds: u64) {
    use channel_media::leg::Port;
    use channel_media::switch::CoreConfig;
    use channel_media::MediaCore;
    println!("relay through the sans-IO core only: {calls} calls, {seconds} s simulated, PCMU");
    println!("command: cargo bench -p channel-media --bench relay -- --core-only --calls {calls} --seconds {seconds}");
    let start = Instant::now();
    let mut now = start;
    let mut core = MediaCore::new(CoreConfig::default(), now);
    let local: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let mut legs = Vec::with_capacity(calls * 2);
    let mut remotes = Vec::with_capacity(calls * 2);
    for i in 0..calls * 2 {
        let port = 20_000 + 2 * i as u16;
        let rtp = SocketAddr::new(local, port);
        let rtcp = SocketAddr::new(local, port + 1);
        let leg = core.add_leg(now, LegConfig::default(), rtp, rtcp, local);
        let remote_port = 40_000 + 2 * i as u16;
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio {remote_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        );
        core.answer(now, leg, &offer).expect("answer");
        legs.push(leg);
        remotes.push(SocketAddr::new("192.0.2.1".parse().unwrap(), remote_port));
    }
    for pair in legs.chunks(2) {
        core.bridge(pair[0], pair[1]).expect("bridge");
    }
    while core.poll_transmit().is_some() {}
    let payload = [0xFFu8; 160];
    let mut buf = Vec::with_capacity(172);
    let frames = seconds * 50;
    let (mut packets, mut out) = (0u64, 0u64);
    let t0 = Instant::now();
    for k in 0..frames {
        for (i, (&leg, &from)) in legs.iter().zip(&remotes).enumerate() {
            buf.clear();
            RtpHeader {
                marker: k == 0,
                payload_type: 0,
                sequence: k as u16,
                timestamp: k as u32 * 160,
                ssrc: 0x1000 + i as u32,
            }
            .write(&payload, &mut buf);
            core.handle_datagram(now, leg, Port::Rtp, from, &buf);
            packets += 1;
            while let Some(t) = core.poll_transmit() {
                out += t.data.len() as u64 / 172;
            }
        }
        now += Duration::from_millis(20);
        core.handle_timeout(now);
        while core.poll_transmit().is_some() {}
        while core.poll_event().is_some() {}
    }
    let wall = t0.elapsed();
    println!(
        "{packets} packets in, {out} relayed, {:.2} s: {:.3} us per packet in the core \
         (the kernel's recvfrom + sendto come on top)",
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1e6 / packets.max(1) as f64
    );
}

fn main() {
    let calls = arg("--calls", 1000) as usize;
    let seconds = arg("--seconds", 10);
    if std::env::args().any(|a| a == "--core-only") {
        return core_only(calls, seconds);
    }
    let warmup = Duration::from_secs(1);
    println!("relay benchmark: {calls} calls, {seconds} s, G.711 PCMU both directions");
    println!("command: cargo bench -p channel-media --bench relay -- --calls {calls} --seconds {seconds}");

    let rss_start = rss_kib();
    let (engine, _events) = MediaEngine::start(EngineConfig {
        rtp_ports: (20_000, 39_999),
        seed: Some(1),
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
    let rt = std::env::var_os("RELAY_NO_RT").is_none() && realtime(engine_tid);
    println!(
        "engine thread {engine_tid} pinned to CPU 0, generator to CPU 1; SCHED_FIFO: {}",
        if rt {
            "yes"
        } else {
            "no (set RELAY_NO_RT unset and run as root for it)"
        }
    );

    let gen = std::thread::spawn(move || {
        pin(own_tid(), 1);
        if std::env::var_os("RELAY_NO_RT").is_none() {
            realtime(own_tid());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(
            &rt,
            run(engine, engine_tid, calls, seconds, warmup, rss_start),
        )
    });
    gen.join().expect("generator");
}

async fn run(
    engine: MediaEngine,
    engine_tid: u32,
    calls: usize,
    seconds: u64,
    warmup: Duration,
    rss_start: u64,
) {
    // Two phones per call.
    let mut phones: Vec<(Rc<UdpSocket>, SocketAddr)> = Vec::with_capacity(calls * 2);
    for _ in 0..calls * 2 {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("phone socket");
        let a = s.local_addr().unwrap();
        phones.push((Rc::new(s), a));
    }
    let rss_phones = rss_kib();
    let setup = Instant::now();
    let mut targets: Vec<SocketAddr> = Vec::with_capacity(calls * 2);
    for c in 0..calls {
        let mut legs = Vec::new();
        for k in 0..2 {
            let (_, addr) = &phones[c * 2 + k];
            let (leg, _) = engine.create_leg(LegConfig::default()).await.expect("leg");
            let offer = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
                addr.port()
            );
            let answer = engine.answer(leg, offer).await.expect("answer");
            let sd = SessionDescription::parse(&answer).unwrap();
            targets.push(SocketAddr::new(
                "127.0.0.1".parse().unwrap(),
                sd.media[0].port,
            ));
            legs.push(leg);
        }
        engine.bridge(legs[0], legs[1]).await.expect("bridge");
    }
    let rss_legs = rss_kib();
    println!(
        "setup: {} legs in {:.2} s; memory per call (2 legs, 4 sockets, engine state): {:.1} KiB RSS",
        calls * 2,
        setup.elapsed().as_secs_f64(),
        (rss_legs.saturating_sub(rss_phones)) as f64 / calls as f64
    );

    // RELAY_GENERATOR_SPINS=1: the generator never sleeps in epoll, so the engine's sends do
    // not pay for waking it on the other CPU (a loopback artefact). Off by default: with
    // SCHED_FIFO the spinning thread gets RT-throttled, which distorts latency.
    if std::env::var_os("RELAY_GENERATOR_SPINS").is_some() {
        tokio::task::spawn_local(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
    }
    let n = phones.len();
    let stats: Rc<RefCell<Vec<PhoneStats>>> = Rc::new(RefCell::new(
        (0..n)
            .map(|_| PhoneStats {
                sent: 0,
                received: 0,
                latencies_us: Vec::new(),
                min_latency: Vec::new(),
            })
            .collect(),
    ));
    let t0 = Instant::now();
    let measure_from = t0 + warmup;
    let run_for = Duration::from_secs(seconds);
    // Receivers.
    let mut receivers = Vec::new();
    for (i, (sock, _)) in phones.iter().enumerate() {
        let sock = sock.clone();
        let stats = stats.clone();
        receivers.push(tokio::task::spawn_local(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((len, _)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let now = Instant::now();
                let Ok(p) = RtpPacket::parse(&buf[..len]) else {
                    continue;
                };
                // RTCP from the engine may land here when port+1 is another phone's socket.
                if p.payload_type != 0 || p.payload.len() < 12 {
                    continue;
                }
                let sent_ns = u64::from_be_bytes(p.payload[4..12].try_into().unwrap());
                let sent_at = t0 + Duration::from_nanos(sent_ns);
                if sent_at < measure_from {
                    continue;
                }
                let lat = now.saturating_duration_since(sent_at).as_micros() as u32;
                let mut st = stats.borrow_mut();
                st[i].received += 1;
                st[i].latencies_us.push(lat);
            }
        }));
    }
    // One sender task: every phone sends each 20 ms, spread evenly across the period.
    let cpu0 = cpu_ticks(engine_tid);
    let cpu_t0 = Instant::now();
    let (relayed0, _) = engine.counters().await.unwrap();
    {
        let stats = stats.clone();
        let slots = 20usize;
        let period = Duration::from_millis(20);
        let mut payload = [0xFFu8; 160];
        let mut seq = vec![0u16; n];
        let mut k: u64 = 0;
        loop {
            let frame_start = t0 + period * (k as u32);
            if frame_start.duration_since(t0) >= run_for {
                break;
            }
            for s in 0..slots {
                tokio::time::sleep_until((frame_start + Duration::from_millis(s as u64)).into())
                    .await;
                let mut buf = Vec::with_capacity(172);
                for i in (s..n).step_by(slots) {
                    let now = Instant::now();
                    payload[0..4].copy_from_slice(&(i as u32).to_be_bytes());
                    payload[4..12]
                        .copy_from_slice(&(now.duration_since(t0).as_nanos() as u64).to_be_bytes());
                    buf.clear();
                    RtpHeader {
                        marker: k == 0,
                        payload_type: 0,
                        sequence: seq[i],
                        timestamp: (k as u32) * 160,
                        ssrc: 0x1000 + i as u32,
                    }
                    .write(&payload, &mut buf);
                    seq[i] = seq[i].wrapping_add(1);
                    if phones[i].0.try_send_to(&buf, targets[i]).is_ok() && now >= measure_from {
                        stats.borrow_mut()[i].sent += 1;
                    }
                }
            }
            k += 1;
        }
    }
    let elapsed_cpu = cpu_t0.elapsed();
    let cpu1 = cpu_ticks(engine_tid);
    let (relayed1, send_errors) = engine.counters().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in receivers {
        r.abort();
    }
    let rss_end = rss_kib();

    let mut st = stats.borrow_mut();
    // A packet sent by phone i arrives at its call partner (i ^ 1).
    let sent: u64 = st.iter().map(|s| s.sent).sum();
    let received: u64 = st.iter().map(|s| s.received).sum();
    let mut all: Vec<u32> = Vec::with_capacity(received as usize);
    let mut added: Vec<u32> = Vec::with_capacity(received as usize);
    for s in st.iter_mut() {
        let min = s.latencies_us.iter().copied().min().unwrap_or(0);
        s.min_latency.push(min);
        for &l in &s.latencies_us {
            all.push(l);
            added.push(l - min);
        }
    }
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu_share = (cpu1 - cpu0) as f64 / ticks_per_sec / elapsed_cpu.as_secs_f64();
    let loss = 1.0 - received as f64 / sent.max(1) as f64;
    let pps = (relayed1 - relayed0) as f64 / elapsed_cpu.as_secs_f64();
    println!("calls: {calls}; packets relayed: {:.0}/s", pps);
    println!(
        "sent {sent}, received {received}: loss {:.4} % (target < 0.1 %)",
        loss * 100.0
    );
    let p50 = percentile(&mut all, 0.50);
    let p99 = percentile(&mut all, 0.99);
    let p999 = percentile(&mut all, 0.999);
    let max = all.last().copied().unwrap_or(0);
    println!(
        "latency through the engine: p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max} us"
    );
    let a99 = percentile(&mut added, 0.99);
    let a999 = percentile(&mut added, 0.999);
    println!(
        "added jitter (latency above each stream's minimum): p99 {:.3} ms (target < 1 ms), p99.9 {:.3} ms",
        a99 as f64 / 1000.0,
        a999 as f64 / 1000.0
    );
    println!(
        "engine thread CPU: {:.1} % of one core (pinned to CPU 0); send errors {send_errors}",
        cpu_share * 100.0
    );
    println!(
        "RSS: start {} MiB, with phones {} MiB, with legs {} MiB, end {} MiB",
        rss_start / 1024,
        rss_phones / 1024,
        rss_legs / 1024,
        rss_end / 1024
    );
    let ok = loss < 0.001 && a99 < 1000;
    println!("result: {}", if ok { "PASS" } else { "MISS" });
}
