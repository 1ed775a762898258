//! DTMF, latching, malformed packets, statistics, timeouts and SDP negotiation through the
//! engine on real UDP sockets.

mod common;

use channel_media::codec::Codec;
use channel_media::dtmf::ToneGenerator;
use channel_media::rtp::RtpHeader;
use channel_media::{
    Direction, DtmfSource, EngineConfig, LegConfig, MediaEngine, MediaError, MediaEvent, Prompts,
    SdpError,
};
use common::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

fn digits(events: &[MediaEvent], src: DtmfSource) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf { digit, source, .. } if *source == src => Some(*digit),
            _ => None,
        })
        .collect()
}

async fn drain(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
    wait: Duration,
) -> Vec<MediaEvent> {
    tokio::time::sleep(wait).await;
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4733_digits_arrive_once_each_and_pass_through_the_bridge() {
    let (engine, mut events) = engine();
    let mut a = Phone::new(Codec::Pcmu, Some(101)).await;
    let mut b = Phone::new(Codec::Pcma, Some(96)).await;
    let la = connect(&engine, &mut a).await;
    let lb = connect(&engine, &mut b).await;
    engine.bridge(la, lb).await.unwrap();
    a.send_rfc4733("12#9*", 20_000).await;
    let ev = drain(&mut events, Duration::from_millis(200)).await;
    assert_eq!(digits(&ev, DtmfSource::Rfc4733), "12#9*");
    assert!(ev
        .iter()
        .all(|e| !matches!(e, MediaEvent::Dtmf { leg, .. } if *leg != la)));
    // B got the events on its own payload type (96), with three end packets each.
    let te: Vec<_> = b.packets().into_iter().filter(|p| p.pt == 96).collect();
    let ends = te.iter().filter(|p| p.payload[1] & 0x80 != 0).count();
    assert_eq!(ends, 15);
    let starts: Vec<u8> = te
        .iter()
        .filter(|p| p.marker)
        .map(|p| p.payload[0])
        .collect();
    assert_eq!(starts, vec![1, 2, 11, 9, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_sends_rfc4733_and_inband_dtmf() {
    let (engine, mut events) = engine();
    // Phone with telephone-event: the engine sends events.
    let mut a = Phone::new(Codec::Pcmu, Some(101)).await;
    let la = connect(&engine, &mut a).await;
    engine.send_dtmf(la, "407".into()).await.unwrap();
    // Phone without: the engine sends tones, which our own detector (on a second leg) hears.
    let mut b = Phone::new(Codec::Pcmu, None).await;
    let lb = connect(&engine, &mut b).await;
    engine.send_dtmf(lb, "58".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let te: Vec<_> = a.packets().into_iter().filter(|p| p.pt == 101).collect();
    let starts: Vec<u8> = te
        .iter()
        .filter(|p| p.marker)
        .map(|p| p.payload[0])
        .collect();
    assert_eq!(starts, vec![4, 0, 7]);
    let ends = te.iter().filter(|p| p.payload[1] & 0x80 != 0).count();
    assert_eq!(ends, 9, "three end packets per digit");
    // Replay what B heard into a fresh in-band detector.
    let mut det = channel_media::dtmf::InbandDetector::default();
    let heard: String = b
        .heard_pcm()
        .chunks(160)
        .filter_map(|c| det.process(c))
        .collect();
    assert_eq!(heard, "58");
    let _ = drain(&mut events, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inband_dtmf_detected_in_noise_and_music_does_not_trigger() {
    let (engine, mut events) = engine();
    let mut phone = Phone::new(Codec::Pcma, None).await;
    let _leg = connect(&engine, &mut phone).await;
    // Digits 3, 6, # as tones of 100 ms with 60 ms gaps, plus white noise (~15 dB SNR).
    let mut pcm = vec![0i16; 800];
    for d in ['3', '6', '#'] {
        let mut g = ToneGenerator::dtmf(d, 100).unwrap();
        let mut t = vec![0i16; 800];
        g.fill(&mut t);
        pcm.extend(t);
        pcm.extend(vec![0i16; 480]);
    }
    pcm.extend(vec![0i16; 1600]);
    let plan = SendPlan {
        pcm: Some(Arc::new(pcm.clone())),
        duration: Duration::from_millis((pcm.len() / 8) as u64),
        noise: 1500.0,
        ..SendPlan::default()
    };
    phone.send_plan(plan).await.unwrap();
    let ev = drain(&mut events, Duration::from_millis(100)).await;
    assert_eq!(digits(&ev, DtmfSource::Inband), "36#");
    // 6 s of the shipped music on hold and a spoken prompt: no digits.
    let moh = channel_media::wav::load(&Prompts::default().music_on_hold()).unwrap();
    let plan = SendPlan {
        pcm: Some(Arc::new(moh.samples()[..48_000].to_vec())),
        duration: Duration::from_secs(6),
        ..SendPlan::default()
    };
    let speech =
        channel_media::wav::load(&Prompts::default().path(channel_media::Language::En, "closed"))
            .unwrap();
    phone.send_plan(plan).await.unwrap();
    let plan = SendPlan {
        pcm: Some(Arc::new(speech.samples().to_vec())),
        duration: speech.duration(),
        ..SendPlan::default()
    };
    phone.send_plan(plan).await.unwrap();
    let ev = drain(&mut events, Duration::from_millis(100)).await;
    assert_eq!(
        digits(&ev, DtmfSource::Inband),
        "",
        "music and speech are not digits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latches_to_the_real_source_and_drops_other_addresses() {
    let (engine, _events) = engine();
    let mut a = Phone::new(Codec::Pcmu, Some(101)).await;
    let mut b = Phone::new(Codec::Pcmu, Some(101)).await;
    // A's SDP names a port nobody listens on (as behind NAT); it really sends from a.addr.
    let (la, _) = engine.create_leg(LegConfig::default()).await.unwrap();
    let bogus = a
        .offer()
        .replace(&format!("m=audio {} ", a.addr.port()), "m=audio 9 ");
    let ans = engine.answer(la, bogus).await.unwrap();
    a.learn(&ans);
    let lb = connect(&engine, &mut b).await;
    engine.bridge(la, lb).await.unwrap();
    let ta = a.send_tone(1000.0, Duration::from_millis(1000));
    let tb = b.send_tone(440.0, Duration::from_millis(1000));
    // An intruder sends a 2 kHz tone to A's leg from another address.
    let intruder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20u16 {
        let mut pkt = Vec::new();
        let mut g = ToneGenerator::new(2000.0, None, 12000.0, 160);
        let mut payload = Vec::new();
        Codec::Pcmu.encode(&g.next_frame(), &mut payload);
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: i,
            timestamp: i as u32 * 160,
            ssrc: 666,
        }
        .write(&payload, &mut pkt);
        intruder.send_to(&pkt, a.remote).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ta.await.unwrap();
    tb.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A hears B although its SDP port was wrong: the engine latched onto a.addr.
    assert!(
        a.heard_pcm().len() > 30 * 160,
        "A heard {}",
        a.heard_pcm().len()
    );
    assert_eq!(dominant(&a.heard_pcm(), &[440.0, 1000.0]).0, 440.0);
    // B never hears the intruder.
    assert!(tone_power(&b.heard_pcm(), 2000.0) < 1000.0);
    let stats = engine.stats(la).await.unwrap();
    assert_eq!(stats.foreign_dropped, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rtp_is_dropped_and_the_call_goes_on() {
    let (engine, _events) = engine();
    let mut a = Phone::new(Codec::Pcmu, Some(101)).await;
    let mut b = Phone::new(Codec::Pcmu, Some(101)).await;
    let la = connect(&engine, &mut a).await;
    let lb = connect(&engine, &mut b).await;
    engine.bridge(la, lb).await.unwrap();
    let t = a.send_tone(1000.0, Duration::from_millis(600));
    let garbage: [&[u8]; 5] = [
        &[],
        &[0x80],
        &[0x40, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        &[0x8F, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        &[0xA0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xFF],
    ];
    for g in garbage {
        a.rtp.send_to(g, a.remote).await.unwrap();
    }
    t.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = engine.stats(la).await.unwrap();
    assert_eq!(s.malformed, 5, "each bad datagram counted and dropped");
    assert_eq!(dominant(&b.heard_pcm(), &[440.0, 1000.0]).0, 1000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_jitter_and_rtt_are_measured() {
    let (engine, mut events) = engine();
    let mut a = Phone::new(Codec::Pcmu, Some(101)).await;
    let mut b = Phone::new(Codec::Pcmu, Some(101)).await;
    let la = connect(&engine, &mut a).await;
    let lb = connect(&engine, &mut b).await;
    engine.bridge(la, lb).await.unwrap();
    // 100 packets, every 10th dropped, odd packets 8 ms late.
    let plan = SendPlan {
        duration: Duration::from_millis(2000),
        drop_every: Some(10),
        jitter: Duration::from_millis(8),
        ..SendPlan::default()
    };
    let tb = b.send_tone(440.0, Duration::from_millis(2000));
    a.send_plan(plan).await.unwrap();
    tb.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = engine.stats(la).await.unwrap();
    // The last packet (index 99) is itself dropped, so 9 gaps are visible.
    assert!(
        (9..=10).contains(&s.packets_lost),
        "lost {}",
        s.packets_lost
    );
    let jitter_ms = s.jitter.as_secs_f64() * 1000.0;
    // Alternating 0/8 ms delay: |D| = 8 ms; RFC 3550 jitter converges towards 8 ms.
    assert!((3.0..=20.0).contains(&jitter_ms), "jitter {jitter_ms} ms");
    // The phone answered our SRs with LSR/DLSR: an RTT on loopback, well under 50 ms.
    let rtt = s.rtt.expect("rtt from the phone's RR");
    assert!(rtt < Duration::from_millis(200), "{rtt:?}");
    let got_stats = drain(&mut events, Duration::ZERO)
        .await
        .into_iter()
        .any(|e| matches!(e, MediaEvent::Stats { leg, stats } if leg == la && stats.packets_received > 0));
    assert!(got_stats, "periodic Stats events");
    // The clean direction shows no loss.
    assert_eq!(engine.stats(lb).await.unwrap().packets_lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_timeout_when_the_remote_goes_silent() {
    let (engine, mut events) = engine();
    let mut a = Phone::new(Codec::Pcmu, Some(101)).await;
    let (la, _) = engine
        .create_leg(LegConfig {
            media_timeout: Some(Duration::from_millis(300)),
            ..LegConfig::default()
        })
        .await
        .unwrap();
    a.learn(&engine.answer(la, a.offer()).await.unwrap());
    a.send_tone(1000.0, Duration::from_millis(200))
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let e = wait_event(&mut events, Duration::from_secs(2), |e| {
        matches!(e, MediaEvent::MediaTimeout { .. })
    })
    .await;
    assert_eq!(e, Some(MediaEvent::MediaTimeout { leg: la }));
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_negotiation_errors_and_hold() {
    let (engine, mut events) = engine();
    let (leg, _) = engine.create_leg(LegConfig::default()).await.unwrap();
    let g722 = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
    match engine.answer(leg, g722.into()).await {
        Err(MediaError::Sdp(e)) => {
            assert_eq!(e, SdpError::NoCommonCodec);
            assert!(e.is_not_acceptable(), "SIP answers 488");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        engine.answer(leg, "garbage".into()).await,
        Err(MediaError::Sdp(SdpError::NotSdp))
    ));
    // The remote holds us (sendonly), then resumes.
    let phone = Phone::new(Codec::Pcmu, Some(101)).await;
    let held = phone.offer().replace("a=sendrecv", "a=sendonly");
    let ans = engine.answer(leg, held).await.unwrap();
    assert!(ans.contains("a=recvonly"), "{ans}");
    let e = wait_event(&mut events, Duration::from_secs(1), |e| {
        matches!(e, MediaEvent::RemoteHold { .. })
    })
    .await;
    assert_eq!(e, Some(MediaEvent::RemoteHold { leg, held: true }));
    let ans2 = engine.answer(leg, phone.offer()).await.unwrap();
    assert!(ans2.contains("a=sendrecv"));
    let e = wait_event(&mut events, Duration::from_secs(1), |e| {
        matches!(e, MediaEvent::RemoteHold { .. })
    })
    .await;
    assert_eq!(e, Some(MediaEvent::RemoteHold { leg, held: false }));
    // The o= version went up with the changed answer.
    let ver = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("o="))
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_ne!(ver(&ans), ver(&ans2));
    // We hold: sendonly re-offer, and we keep sending (music) but not receiving.
    engine
        .set_direction(leg, Direction::SendOnly)
        .await
        .unwrap();
    let offer = engine.local_offer(leg).await.unwrap();
    assert!(offer.contains("a=sendonly"));
    assert_ne!(ver(&offer), ver(&ans2));
    let again = engine.local_offer(leg).await.unwrap();
    assert_eq!(ver(&offer), ver(&again), "unchanged SDP keeps its version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_legs_bridge_on_loopback() {
    let (engine, _events) = MediaEngine::start(EngineConfig {
        bind: "::1".parse().unwrap(),
        rtp_ports: (0, 0),
        ..EngineConfig::default()
    })
    .unwrap();
    let mut socks = Vec::new();
    let mut legs = Vec::new();
    for _ in 0..2 {
        let s = UdpSocket::bind("[::1]:0")
            .await
            .expect("IPv6 loopback (::1) must be available");
        let port = s.local_addr().unwrap().port();
        let (leg, _) = engine.create_leg(LegConfig::default()).await.unwrap();
        let offer = format!("v=0\r\nc=IN IP6 ::1\r\nm=audio {port} RTP/AVP 0\r\n");
        let ans = engine.answer(leg, offer).await.unwrap();
        assert!(ans.contains("c=IN IP6 ::1"), "{ans}");
        let sd = channel_media::sdp::SessionDescription::parse(&ans).unwrap();
        let to = std::net::SocketAddr::new("::1".parse().unwrap(), sd.media[0].port);
        socks.push((s, to));
        legs.push(leg);
    }
    engine.bridge(legs[0], legs[1]).await.unwrap();
    let mut pkt = Vec::new();
    RtpHeader {
        marker: true,
        payload_type: 0,
        sequence: 1,
        timestamp: 0,
        ssrc: 5,
    }
    .write(&[0xAB; 160], &mut pkt);
    socks[0].0.send_to(&pkt, socks[0].1).await.unwrap();
    // Before the far side sends anything, its SDP address is the destination.
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), socks[1].0.recv_from(&mut buf))
        .await
        .expect("relayed over IPv6")
        .unwrap();
    assert_eq!(&buf[12..n], &[0xAB; 160][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_come_from_the_configured_range_even_with_rtcp_next() {
    let base = 30_000 + (std::process::id() % 1000) as u16 * 20;
    let (engine, _events) = MediaEngine::start(EngineConfig {
        rtp_ports: (base, base + 19),
        ..EngineConfig::default()
    })
    .unwrap();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let (leg, addr) = engine.create_leg(LegConfig::default()).await.unwrap();
        assert_eq!(addr.port() % 2, 0);
        assert!((base..base + 19).contains(&addr.port()));
        let offer = engine.local_offer(leg).await.unwrap();
        assert!(offer.contains(&format!("m=audio {} RTP/AVP 0 8 101", addr.port())));
        assert!(!offer.contains("a=rtcp:"), "RTCP is on port+1");
        ports.push(addr.port());
    }
    ports.dedup();
    assert_eq!(ports.len(), 3);
}
