//! Playback, conference roles and recording, heard by real UDP phones.

mod common;

use channel_media::codec::Codec;
use channel_media::wav;
use channel_media::{ConferenceId, Language, MediaEvent, PlayItem, PlaySpec, Prompts, Role};
use common::*;
use std::time::Duration;

/// Best normalised cross-correlation of `needle` inside `hay`.
fn best_correlation(hay: &[i16], needle: &[i16]) -> f64 {
    let n: Vec<f64> = needle.iter().map(|&s| s as f64).collect();
    let nn: f64 = n.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut best = 0.0f64;
    for lag in 0..hay.len().saturating_sub(n.len()) {
        let h = &hay[lag..lag + n.len()];
        let dot: f64 = h.iter().zip(&n).map(|(&a, b)| a as f64 * b).sum();
        let hh: f64 = h.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
        if hh > 0.0 {
            best = best.max(dot / (hh * nn));
        }
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_played_into_a_leg_arrives_as_the_wav_content() {
    let (engine, mut events) = engine();
    let mut phone = Phone::new(Codec::Pcma, Some(101)).await;
    let leg = connect(&engine, &mut phone).await;
    let prompts = Prompts::default();
    let path = prompts.path(Language::En, "please_hold");
    let clip = wav::load(&path).unwrap();
    engine
        .play(leg, vec![PlaySpec::File(path)], false)
        .await
        .unwrap();
    let done = wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, MediaEvent::PlaybackDone { .. })
    })
    .await;
    assert_eq!(
        done,
        Some(MediaEvent::PlaybackDone {
            leg,
            completed: true
        })
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let heard = phone.heard_pcm();
    let frames = clip.samples().len().div_ceil(160);
    assert!(
        heard.len() >= (frames - 1) * 160 && heard.len() <= (frames + 1) * 160,
        "heard {} samples for a {}-sample prompt",
        heard.len(),
        clip.samples().len()
    );
    // The middle 0.3 s of the prompt is found in what arrived (through A-law).
    let mid = clip.samples().len() / 2;
    let needle = &clip.samples()[mid - 1200..mid + 1200];
    let c = best_correlation(&heard, needle);
    assert!(c > 0.95, "correlation {c}");
    // Unknown files are clear errors.
    let err = engine
        .play(
            leg,
            vec![PlaySpec::File("/nonexistent/x.wav".into())],
            false,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.wav"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn music_on_hold_loops_until_stopped() {
    let (engine, mut events) = engine();
    let mut phone = Phone::new(Codec::Pcmu, None).await;
    let leg = connect(&engine, &mut phone).await;
    // A 300 ms "music" clip looped: 700 Hz then 900 Hz.
    let mut samples = Vec::new();
    for (f, n) in [(700.0, 1200), (900.0, 1200)] {
        for i in 0..n {
            samples
                .push((8000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as i16);
        }
    }
    let dir = std::env::temp_dir().join(format!("media-moh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("loop.wav");
    std::fs::write(&path, wav::encode_mono(&samples)).unwrap();
    engine
        .play(leg, vec![PlaySpec::File(path)], true)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let heard = phone.heard_pcm();
    assert!(heard.len() >= 60 * 160, "{}", heard.len());
    // Every 150 ms window carries one of the two notes: the loop never falls silent.
    for (i, w) in heard.chunks(1200).filter(|w| w.len() == 1200).enumerate() {
        let p = tone_power(w, 700.0) + tone_power(w, 900.0);
        assert!(p > 1_000_000.0, "window {i} silent ({p})");
    }
    // It played past the clip length several times.
    assert!(heard.len() > 4 * samples.len());
    engine.stop(leg).await.unwrap();
    let done = wait_event(&mut events, Duration::from_secs(1), |e| {
        matches!(e, MediaEvent::PlaybackDone { .. })
    })
    .await;
    assert_eq!(
        done,
        Some(MediaEvent::PlaybackDone {
            leg,
            completed: false
        })
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_music_on_hold_plays() {
    let (engine, _events) = engine();
    let mut phone = Phone::new(Codec::Pcmu, None).await;
    let leg = connect(&engine, &mut phone).await;
    let moh = Prompts::default().music_on_hold();
    engine.play(leg, vec![moh.into()], true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let heard = phone.heard_pcm();
    let rms = (heard.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / heard.len() as f64).sqrt();
    assert!(rms > 300.0, "music is audible (rms {rms})");
}

const CUSTOMER_HZ: f64 = 1000.0;
const AGENT_HZ: f64 = 440.0;
const SUPERVISOR_HZ: f64 = 1700.0;

struct Room {
    engine: channel_media::MediaEngine,
    customer: Phone,
    agent: Phone,
    supervisor: Phone,
    legs: [channel_media::LegId; 3],
}

async fn room() -> Room {
    let (engine, _events) = engine();
    let mut customer = Phone::new(Codec::Pcmu, Some(101)).await;
    let mut agent = Phone::new(Codec::Pcma, Some(101)).await;
    let mut supervisor = Phone::new(Codec::Pcmu, Some(101)).await;
    let lc = connect(&engine, &mut customer).await;
    let la = connect(&engine, &mut agent).await;
    let ls = connect(&engine, &mut supervisor).await;
    Room {
        engine,
        customer,
        agent,
        supervisor,
        legs: [lc, la, ls],
    }
}

/// Runs 1.2 s of all three talking and returns who heard which tones: for each listener,
/// whether each of (customer, agent, supervisor) tones is present.
async fn talk(r: &Room) -> [[bool; 3]; 3] {
    for p in [&r.customer, &r.agent, &r.supervisor] {
        p.clear();
    }
    let t = [
        r.customer
            .send_tone(CUSTOMER_HZ, Duration::from_millis(1200)),
        r.agent.send_tone(AGENT_HZ, Duration::from_millis(1200)),
        r.supervisor
            .send_tone(SUPERVISOR_HZ, Duration::from_millis(1200)),
    ];
    for h in t {
        h.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut out = [[false; 3]; 3];
    for (i, p) in [&r.customer, &r.agent, &r.supervisor].iter().enumerate() {
        let pcm = p.heard_pcm();
        // Skip the jitter-buffer start-up.
        let pcm = &pcm[pcm.len().min(1600)..];
        for (j, f) in [CUSTOMER_HZ, AGENT_HZ, SUPERVISOR_HZ].iter().enumerate() {
            out[i][j] = tone_power(pcm, *f) > 100_000.0;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_roles_decide_who_hears_whom() {
    let r = room().await;
    let [lc, la, ls] = r.legs;
    let conf = ConferenceId(1);
    r.engine.mix(conf, lc, Role::Normal).await.unwrap();
    r.engine.mix(conf, la, Role::Normal).await.unwrap();

    // Listen: the supervisor hears both; nobody hears the supervisor.
    r.engine.mix(conf, ls, Role::Listen).await.unwrap();
    let h = talk(&r).await;
    assert_eq!(h[0], [false, true, false], "customer hears only the agent");
    assert_eq!(h[1], [true, false, false], "agent hears only the customer");
    assert_eq!(h[2], [true, true, false], "supervisor hears both");

    // Whisper: only the agent hears the supervisor.
    r.engine
        .mix(conf, ls, Role::Whisper { to: la })
        .await
        .unwrap();
    let h = talk(&r).await;
    assert_eq!(
        h[0],
        [false, true, false],
        "customer does not hear the whisper"
    );
    assert_eq!(
        h[1],
        [true, false, true],
        "agent hears customer and supervisor"
    );
    assert_eq!(h[2], [true, true, false], "supervisor hears both");

    // Barge: everyone hears everyone else.
    r.engine.mix(conf, ls, Role::Barge).await.unwrap();
    let h = talk(&r).await;
    assert_eq!(h[0], [false, true, true]);
    assert_eq!(h[1], [true, false, true]);
    assert_eq!(h[2], [true, true, false]);

    // Hold music into the customer: it hears music (not the others) and is not heard.
    let music = PlayItem::Tone {
        freq: 2200.0,
        second: None,
        amplitude: 8000.0,
        ms: 60_000,
    };
    r.engine
        .conference_hold(lc, Some(vec![PlaySpec::Item(music)]))
        .await
        .unwrap();
    let h = talk(&r).await;
    assert_eq!(
        h[0],
        [false, false, false],
        "held customer hears only music"
    );
    let pcm = r.customer.heard_pcm();
    assert!(
        tone_power(&pcm, 2200.0) > 1_000_000.0,
        "music reaches the held customer"
    );
    assert_eq!(
        h[1],
        [false, false, true],
        "agent no longer hears the customer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_puts_customer_left_and_agent_right() {
    let (engine, _events) = engine();
    let mut customer = Phone::new(Codec::Pcmu, Some(101)).await;
    let mut agent = Phone::new(Codec::Pcma, Some(101)).await;
    let lc = connect(&engine, &mut customer).await;
    let la = connect(&engine, &mut agent).await;
    engine.bridge(lc, la).await.unwrap();
    let dir = std::env::temp_dir().join(format!("media-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("call.wav");
    let rec = engine
        .record(vec![lc], vec![la], path.clone())
        .await
        .unwrap();
    let t1 = customer.send_tone(CUSTOMER_HZ, Duration::from_millis(1500));
    let t2 = agent.send_tone(AGENT_HZ, Duration::from_millis(1500));
    t1.await.unwrap();
    t2.await.unwrap();
    // Mid-call the file is already a valid WAV (header fixed up periodically).
    let mid = std::fs::read(&path).unwrap();
    let (l_mid, _) = wav::read_stereo(&mid).unwrap();
    assert!(
        l_mid.len() >= 8000 / 2,
        "fixed-up header covers {} samples",
        l_mid.len()
    );
    let info = engine.stop_record(rec).await.unwrap();
    assert!(
        info.duration >= Duration::from_millis(1400)
            && info.duration <= Duration::from_millis(2000),
        "{:?}",
        info.duration
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, info.bytes);
    let (left, right) = wav::read_stereo(&bytes).unwrap();
    let (fl, rl) = dominant(&left, &[CUSTOMER_HZ, AGENT_HZ]);
    let (fr, rr) = dominant(&right, &[CUSTOMER_HZ, AGENT_HZ]);
    assert_eq!(fl, CUSTOMER_HZ, "customer on the left");
    assert_eq!(fr, AGENT_HZ, "agent on the right");
    assert!(rl > 100.0 && rr > 100.0, "channels do not bleed: {rl} {rr}");
    // Bridged relay still worked while recording.
    assert_eq!(
        dominant(&customer.heard_pcm(), &[CUSTOMER_HZ, AGENT_HZ]).0,
        AGENT_HZ
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
