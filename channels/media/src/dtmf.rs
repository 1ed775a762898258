//! DTMF: RFC 4733 telephone-event decode/encode, in-band Goertzel detection, tone generation.

use crate::codec::{Frame, FRAME_SAMPLES, SAMPLE_RATE};
use std::collections::VecDeque;
use std::f64::consts::PI;

/// A DTMF digit: `0-9`, `*`, `#`, `A-D`.
pub type Digit = char;

/// RFC 4733 event code of a digit.
pub fn event_code(digit: Digit) -> Option<u8> {
    Some(match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => digit as u8 - b'A' + 12,
        'a'..='d' => digit as u8 - b'a' + 12,
        _ => return None,
    })
}

/// Digit of an RFC 4733 event code (flash and others are not digits).
pub fn event_digit(code: u8) -> Option<Digit> {
    Some(match code {
        0..=9 => (b'0' + code) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + code - 12) as char,
        _ => return None,
    })
}

/// One decoded telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        if payload.len() < 4 {
            return None;
        }
        Some(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (self.end as u8) << 7 | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// Turns a stream of telephone-event packets into digits, one per event.
///
/// An event is identified by its RTP timestamp (RFC 4733 §2.5.1.3): updates and the
/// retransmitted end packets share it, so a digit is reported once, when first seen.
#[derive(Debug, Default)]
pub struct EventReceiver {
    current: Option<(u32, u8)>,
}

impl EventReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one packet; returns the digit if this packet starts a new event.
    pub fn handle(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<Digit> {
        let ev = TelephoneEvent::parse(payload)?;
        if self.current == Some((rtp_timestamp, ev.event)) {
            return None;
        }
        self.current = Some((rtp_timestamp, ev.event));
        event_digit(ev.event)
    }
}

/// What the sender wants in the next 20 ms packet slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSlot {
    /// Send this telephone-event payload; `start` marks the first packet of a new event
    /// (marker bit set, timestamp fixed to the current stream time for the whole event).
    Event { payload: [u8; 4], start: bool },
    /// Between digits or idle: carry normal audio.
    Audio,
}

/// Generates RFC 4733 packets for queued digits: a start packet, updates every 20 ms, and
/// three end packets, then a pause before the next digit.
#[derive(Debug)]
pub struct EventSender {
    queue: VecDeque<u8>,
    /// (event, elapsed samples, end packets sent)
    active: Option<(u8, u32, u8)>,
    gap_left: u32,
    pub tone_samples: u32,
    pub gap_samples: u32,
    pub volume: u8,
}

impl Default for EventSender {
    fn default() -> Self {
        EventSender {
            queue: VecDeque::new(),
            active: None,
            gap_left: 0,
            tone_samples: 800, // 100 ms
            gap_samples: 480,  // 60 ms
            volume: 10,
        }
    }
}

impl EventSender {
    /// Queues digits; characters that are not DTMF digits are skipped.
    pub fn queue(&mut self, digits: &str) {
        self.queue.extend(digits.chars().filter_map(event_code));
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.active.is_none() && self.gap_left == 0
    }

    /// Advances one 20 ms slot.
    pub fn next_slot(&mut self) -> EventSlot {
        let step = FRAME_SAMPLES as u32;
        if self.active.is_none() {
            if self.gap_left > 0 {
                self.gap_left = self.gap_left.saturating_sub(step);
                return EventSlot::Audio;
            }
            match self.queue.pop_front() {
                Some(ev) => self.active = Some((ev, 0, 0)),
                None => return EventSlot::Audio,
            }
        }
        let (ev, elapsed, ends) = self.active.as_mut().expect("set above");
        let start = *elapsed == 0;
        let end = *elapsed + step >= self.tone_samples;
        let duration = (*elapsed + step)
            .min(self.tone_samples)
            .min(u16::MAX as u32) as u16;
        let payload = TelephoneEvent {
            event: *ev,
            end,
            volume: self.volume,
            duration,
        }
        .to_bytes();
        if end {
            *ends += 1;
            if *ends == 3 {
                self.active = None;
                self.gap_left = self.gap_samples;
            }
        } else {
            *elapsed += step;
        }
        EventSlot::Event { payload, start }
    }
}

const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[Digit; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Frequencies (row, column) of a digit.
pub fn digit_frequencies(digit: Digit) -> Option<(f64, f64)> {
    let d = digit.to_ascii_uppercase();
    for (r, row) in KEYPAD.iter().enumerate() {
        for (c, &k) in row.iter().enumerate() {
            if k == d {
                return Some((ROWS[r], COLS[c]));
            }
        }
    }
    None
}

/// Goertzel power of `freq` over `samples` (squared magnitude of the DFT term).
pub fn goertzel_power(samples: &[f32], freq: f64) -> f64 {
    let w = 2.0 * PI * freq / SAMPLE_RATE as f64;
    let coeff = (2.0 * w.cos()) as f32;
    let (mut s1, mut s2) = (0f32, 0f32);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) as f64
}

/// Thresholds of the in-band detector.
#[derive(Debug, Clone, Copy)]
pub struct DetectorConfig {
    /// Minimum mean square per sample of the strongest row/column tone (about -30 dBm0).
    pub min_tone_power: f64,
    /// Row + column power must be at least this fraction of the block's energy.
    pub min_tone_fraction: f64,
    /// Strongest row/column must exceed the other rows/columns by this factor (power).
    pub min_peak_ratio: f64,
    /// Allowed twist in dB: row stronger than column (normal) and the reverse.
    pub max_normal_twist_db: f64,
    pub max_reverse_twist_db: f64,
    /// Consecutive 20 ms blocks that must agree before a digit is reported.
    pub min_blocks: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_tone_power: 30.0 * 30.0 / 2.0,
            min_tone_fraction: 0.70,
            min_peak_ratio: 8.0,
            max_normal_twist_db: 8.0,
            max_reverse_twist_db: 6.0,
            min_blocks: 2,
        }
    }
}

/// In-band DTMF detector over 20 ms PCM frames (Goertzel over the eight DTMF frequencies
/// with energy, dominance, twist and duration checks).
#[derive(Debug)]
pub struct InbandDetector {
    config: DetectorConfig,
    candidate: Option<Digit>,
    run: u32,
    reported: bool,
    buf: Vec<f32>,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new(DetectorConfig::default())
    }
}

impl InbandDetector {
    pub fn new(config: DetectorConfig) -> Self {
        InbandDetector {
            config,
            candidate: None,
            run: 0,
            reported: false,
            buf: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// Feeds PCM of any length; returns a digit when one has lasted long enough (once per tone).
    pub fn process(&mut self, pcm: &[i16]) -> Option<Digit> {
        let mut found = None;
        for chunk in pcm.chunks(FRAME_SAMPLES) {
            let need = FRAME_SAMPLES - self.buf.len();
            let take = chunk.len().min(need);
            self.buf.extend(chunk[..take].iter().map(|&s| s as f32));
            if self.buf.len() == FRAME_SAMPLES {
                let block = std::mem::take(&mut self.buf);
                if let Some(d) = self.block(&block) {
                    found = Some(d);
                }
                self.buf = block;
                self.buf.clear();
                self.buf.extend(chunk[take..].iter().map(|&s| s as f32));
            }
        }
        found
    }

    /// Classifies one block without the duration logic.
    pub fn classify(&self, block: &[f32]) -> Option<Digit> {
        let n = block.len() as f64;
        let energy: f64 = block.iter().map(|&x| (x as f64) * (x as f64)).sum();
        if energy <= 0.0 {
            return None;
        }
        let c = &self.config;
        // No frequency's normalised power can exceed 2·energy (|X|² ≤ N·energy), so a block
        // this quiet fails the power test below: skip the eight Goertzel filters (silence and
        // quiet speech are most blocks of a call).
        if 2.0 * energy / n < c.min_tone_power {
            return None;
        }
        // Normalise Goertzel power to the energy a sinusoid of that power carries: 2|X|²/N.
        let norm = |p: f64| 2.0 * p / n;
        let rows = ROWS.map(|f| norm(goertzel_power(block, f)));
        let cols = COLS.map(|f| norm(goertzel_power(block, f)));
        let (ri, &rp) = max_index(&rows);
        let (ci, &cp) = max_index(&cols);
        if rp / n < c.min_tone_power || cp / n < c.min_tone_power {
            return None;
        }
        if (rp + cp) < c.min_tone_fraction * energy {
            return None;
        }
        let dominates = |v: &[f64], i: usize, p: f64| {
            v.iter()
                .enumerate()
                .all(|(j, &q)| j == i || p >= c.min_peak_ratio * q)
        };
        if !dominates(&rows, ri, rp) || !dominates(&cols, ci, cp) {
            return None;
        }
        let twist_db = 10.0 * (rp / cp).log10();
        if twist_db > c.max_normal_twist_db || -twist_db > c.max_reverse_twist_db {
            return None;
        }
        Some(KEYPAD[ri][ci])
    }

    fn block(&mut self, block: &[f32]) -> Option<Digit> {
        let d = self.classify(block);
        match d {
            Some(d) if self.candidate == Some(d) => self.run += 1,
            Some(d) => {
                self.candidate = Some(d);
                self.run = 1;
                self.reported = false;
            }
            None => {
                self.candidate = None;
                self.run = 0;
                self.reported = false;
            }
        }
        if !self.reported && self.run >= self.config.min_blocks {
            self.reported = true;
            return d;
        }
        None
    }
}

fn max_index(v: &[f64]) -> (usize, &f64) {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("non-empty")
}

/// Phase-continuous generator of one or two sinusoids (DTMF digits, beeps, ringback).
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    freqs: [f64; 2],
    amplitude: f64,
    phase: [f64; 2],
    remaining: u64,
}

impl ToneGenerator {
    /// `amplitude` per component in linear PCM units (e.g. 6000 ≈ -10 dBm0 per tone).
    pub fn new(f1: f64, f2: Option<f64>, amplitude: f64, samples: u64) -> Self {
        ToneGenerator {
            freqs: [f1, f2.unwrap_or(0.0)],
            amplitude,
            phase: [0.0; 2],
            remaining: samples,
        }
    }

    /// A DTMF digit of `ms` milliseconds.
    pub fn dtmf(digit: Digit, ms: u32) -> Option<Self> {
        let (r, c) = digit_frequencies(digit)?;
        Some(Self::new(
            r,
            Some(c),
            6000.0,
            ms as u64 * SAMPLE_RATE as u64 / 1000,
        ))
    }

    pub fn remaining_samples(&self) -> u64 {
        self.remaining
    }

    /// Fills `out` (silence once finished); returns how many samples carried tone.
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let mut n = 0;
        for s in out.iter_mut() {
            if self.remaining == 0 {
                *s = 0;
                continue;
            }
            let mut v = 0.0;
            for k in 0..2 {
                if self.freqs[k] > 0.0 {
                    v += self.phase[k].sin();
                    self.phase[k] += 2.0 * PI * self.freqs[k] / SAMPLE_RATE as f64;
                    if self.phase[k] > 2.0 * PI {
                        self.phase[k] -= 2.0 * PI;
                    }
                }
            }
            *s = (v * self.amplitude).round().clamp(-32768.0, 32767.0) as i16;
            self.remaining -= 1;
            n += 1;
        }
        n
    }

    /// Next 20 ms frame.
    pub fn next_frame(&mut self) -> Frame {
        let mut f = [0i16; FRAME_SAMPLES];
        self.fill(&mut f);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    #[test]
    fn event_payload_round_trip() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Some(e));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
        assert_eq!(event_digit(event_code('#').unwrap()), Some('#'));
        assert_eq!(event_digit(16), None); // flash
    }

    #[test]
    fn sender_then_receiver_yields_each_digit_once() {
        let mut tx = EventSender::default();
        tx.queue("12#x9");
        let mut rx = EventReceiver::new();
        let mut digits = String::new();
        let mut ts = 0u32;
        let mut event_ts = 0;
        let mut ends = 0;
        let mut starts = 0;
        for _ in 0..200 {
            match tx.next_slot() {
                EventSlot::Event { payload, start } => {
                    if start {
                        event_ts = ts;
                        starts += 1;
                    }
                    if TelephoneEvent::parse(&payload).unwrap().end {
                        ends += 1;
                    }
                    // Send every packet twice, as a lossy network with retransmission would.
                    for _ in 0..2 {
                        if let Some(d) = rx.handle(event_ts, &payload) {
                            digits.push(d);
                        }
                    }
                }
                EventSlot::Audio => {}
            }
            ts += 160;
        }
        assert_eq!(digits, "12#9");
        assert_eq!(starts, 4);
        assert_eq!(ends, 12, "three end packets per digit");
        assert!(tx.is_idle());
    }

    #[test]
    fn same_digit_twice_is_two_events() {
        let mut rx = EventReceiver::new();
        let p = TelephoneEvent {
            event: 5,
            end: false,
            volume: 10,
            duration: 160,
        }
        .to_bytes();
        assert_eq!(rx.handle(1000, &p), Some('5'));
        assert_eq!(rx.handle(1000, &p), None);
        assert_eq!(rx.handle(3000, &p), Some('5'));
    }

    fn tone_with_noise(digit: Digit, ms: u32, noise: f64, rng: &mut Rng) -> Vec<i16> {
        let mut g = ToneGenerator::dtmf(digit, ms).unwrap();
        let mut v = vec![0i16; (ms * 8) as usize];
        g.fill(&mut v);
        v.iter()
            .map(|&s| (s as f64 + noise * rng.unit()).clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    #[test]
    fn detects_every_digit_in_noise() {
        let mut rng = Rng::new(3);
        for d in "0123456789*#ABCD".chars() {
            let mut det = InbandDetector::default();
            let mut pcm = vec![0i16; 400];
            // White noise of amplitude 3000 uniform: ~-13 dB relative to the tone pair.
            pcm.extend(tone_with_noise(d, 80, 3000.0, &mut rng));
            pcm.extend(vec![0i16; 400]);
            let mut got = Vec::new();
            for chunk in pcm.chunks(160) {
                got.extend(det.process(chunk));
            }
            assert_eq!(got, vec![d], "digit {d}");
        }
    }

    #[test]
    fn short_blips_and_single_tones_do_not_trigger() {
        let mut det = InbandDetector::default();
        let mut g = ToneGenerator::dtmf('5', 20).unwrap();
        let mut pcm = vec![0i16; 160];
        g.fill(&mut pcm);
        assert_eq!(det.process(&pcm), None);
        assert_eq!(det.process(&[0; 160]), None);
        let mut single = ToneGenerator::new(697.0, None, 8000.0, 8000);
        let mut pcm = vec![0i16; 8000];
        single.fill(&mut pcm);
        assert_eq!(det.process(&pcm), None);
        // Excessive twist: column 20 dB below row.
        let mut a = ToneGenerator::new(770.0, None, 8000.0, 8000);
        let mut b = ToneGenerator::new(1336.0, None, 800.0, 8000);
        let (mut x, mut y) = (vec![0i16; 8000], vec![0i16; 8000]);
        a.fill(&mut x);
        b.fill(&mut y);
        let mix: Vec<i16> = x.iter().zip(&y).map(|(p, q)| p + q).collect();
        assert_eq!(det.process(&mix), None);
    }

    #[test]
    fn noise_and_speech_like_signals_do_not_trigger() {
        let mut rng = Rng::new(5);
        let mut det = InbandDetector::default();
        // 30 s of white noise, loud.
        let noise: Vec<i16> = (0..240_000)
            .map(|_| (12000.0 * rng.unit()) as i16)
            .collect();
        assert_eq!(det.process(&noise), None);
        // Harmonic "voice": 120-220 Hz glottal pitch with many harmonics, varying.
        let mut voice = Vec::new();
        let mut phase = 0.0f64;
        for i in 0..240_000 {
            let f0 = 150.0 + 60.0 * ((i as f64) / 4000.0).sin();
            phase += 2.0 * PI * f0 / 8000.0;
            let mut v = 0.0;
            for h in 1..20 {
                v += (phase * h as f64).sin() / h as f64;
            }
            voice.push((v * 5000.0) as i16);
        }
        assert_eq!(det.process(&voice), None);
    }

    #[test]
    fn generator_is_phase_continuous_and_ends() {
        let mut g = ToneGenerator::new(1000.0, None, 10000.0, 200);
        let a = g.next_frame();
        let b = g.next_frame();
        assert!(a.iter().all(|&s| s.abs() <= 10000));
        assert!(b[..40].iter().any(|&s| s != 0));
        assert!(b[40..].iter().all(|&s| s == 0));
        assert_eq!(g.remaining_samples(), 0);
    }
}
