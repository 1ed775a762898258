//! Two phones through two engine legs and a bridge, on real UDP sockets.

mod common;

use channel_media::codec::Codec;
use channel_media::{MediaEvent, PlayItem, PlaySpec};
use common::*;
use std::time::Duration;

const A_HZ: f64 = 1000.0;
const B_HZ: f64 = 440.0;

async fn call(codec_a: Codec, codec_b: Codec) {
    let (engine, _events) = engine();
    let mut a = Phone::new(codec_a, Some(101)).await;
    let mut b = Phone::new(codec_b, Some(101)).await;
    let la = connect(&engine, &mut a).await;
    let lb = connect(&engine, &mut b).await;
    engine.bridge(la, lb).await.unwrap();
    let ta = a.send_tone(A_HZ, Duration::from_millis(1500));
    let tb = b.send_tone(B_HZ, Duration::from_millis(1500));
    ta.await.unwrap();
    tb.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let heard_a = a.heard_pcm();
    let heard_b = b.heard_pcm();
    assert!(
        heard_a.len() >= 60 * 160,
        "A heard {} samples",
        heard_a.len()
    );
    assert!(
        heard_b.len() >= 60 * 160,
        "B heard {} samples",
        heard_b.len()
    );
    let (fa, ra) = dominant(&heard_a, &[A_HZ, B_HZ]);
    let (fb, rb) = dominant(&heard_b, &[A_HZ, B_HZ]);
    assert_eq!(fa, B_HZ, "A hears B's tone");
    assert_eq!(fb, A_HZ, "B hears A's tone");
    assert!(ra > 100.0 && rb > 100.0, "clean tones: {ra} {rb}");
    // Each phone received its own codec's payload type.
    assert!(a
        .packets()
        .iter()
        .all(|p| p.pt == codec_a.static_payload_type()));
    assert!(b
        .packets()
        .iter()
        .all(|p| p.pt == codec_b.static_payload_type()));
    let (relayed, _) = engine.counters().await.unwrap();
    assert!(relayed >= 140, "relayed {relayed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_phones_hear_each_other_pcmu() {
    call(Codec::Pcmu, Codec::Pcmu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_phones_hear_each_other_through_ulaw_alaw_transcoding() {
    call(Codec::Pcmu, Codec::Pcma).await;
}

/// The relayed stream a phone receives is one continuous RTP stream: one SSRC, sequence
/// numbers that step by one, timestamps that follow wall time, across prompt interruptions
/// and a re-bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebridge_after_prompt_keeps_one_continuous_stream() {
    let (engine, mut events) = engine();
    let mut a = Phone::new(Codec::Pcmu, Some(101)).await;
    let mut b = Phone::new(Codec::Pcma, Some(101)).await;
    let la = connect(&engine, &mut a).await;
    let lb = connect(&engine, &mut b).await;
    engine.bridge(la, lb).await.unwrap();
    let tb = b.send_tone(B_HZ, Duration::from_millis(2600));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A prompt (a 600 Hz tone of 400 ms) interrupts what A hears.
    let prompt = PlayItem::Tone {
        freq: 600.0,
        second: None,
        amplitude: 8000.0,
        ms: 400,
    };
    engine
        .play(la, vec![PlaySpec::Item(prompt)], false)
        .await
        .unwrap();
    let done = wait_event(&mut events, Duration::from_secs(2), |e| {
        matches!(e, MediaEvent::PlaybackDone { .. })
    })
    .await;
    assert_eq!(
        done,
        Some(MediaEvent::PlaybackDone {
            leg: la,
            completed: true
        })
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Re-bridge explicitly (as after a transfer back).
    engine.unbridge(la).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine.bridge(la, lb).await.unwrap();
    tb.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let pkts = a.packets();
    assert!(pkts.len() > 90, "{}", pkts.len());
    let ssrc = pkts[0].ssrc;
    assert!(pkts.iter().all(|p| p.ssrc == ssrc), "one SSRC throughout");
    for w in pkts.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence steps by one");
        let dts = w[1].ts.wrapping_sub(w[0].ts) as i32;
        // Whole frames forward; during the unbridged gap the timestamp jumps by the gap.
        assert!(dts > 0 && dts % 160 == 0, "timestamp step {dts}");
    }
    // Over the whole call the timestamps followed wall time.
    let span_ts = pkts.last().unwrap().ts.wrapping_sub(pkts[0].ts) as f64 / 8.0;
    let span_ms = pkts
        .last()
        .unwrap()
        .at
        .duration_since(pkts[0].at)
        .as_secs_f64()
        * 1000.0;
    assert!(
        (span_ts - span_ms).abs() < 120.0,
        "{span_ts} ms of timestamps over {span_ms:.0} ms"
    );
    // Markers where the source changed (start, prompt, back to B, re-bridge).
    let markers = pkts.iter().filter(|p| p.marker).count();
    assert!((3..=6).contains(&markers), "markers {markers}");
    // And it is audio: the prompt then B's tone, decodable throughout.
    let pcm = a.heard_pcm();
    let tail = &pcm[pcm.len() - 8 * 160..];
    assert_eq!(dominant(tail, &[600.0, B_HZ]).0, B_HZ);
    assert!(tone_power(&pcm, 600.0) > 1000.0, "the prompt was heard");
}
