//! Audio sources played into legs: prompt playlists, looping music on hold, tones, silence.

use crate::codec::{Frame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::dtmf::ToneGenerator;
use std::sync::Arc;

/// Something that yields 20 ms frames; `None` when finished.
pub trait AudioSource: Send {
    fn next_frame(&mut self) -> Option<Frame>;
}

/// Decoded 8 kHz mono audio, shared between every leg that plays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    samples: Arc<[i16]>,
}

impl Clip {
    pub fn new(samples: Vec<i16>) -> Self {
        Clip {
            samples: samples.into(),
        }
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.samples.len() as u64 * 1_000_000 / SAMPLE_RATE as u64)
    }
}

/// One element of a playlist.
#[derive(Debug, Clone)]
pub enum PlayItem {
    Clip(Clip),
    /// A tone of one or two frequencies, e.g. the beep before a voicemail.
    Tone {
        freq: f64,
        second: Option<f64>,
        amplitude: f64,
        ms: u32,
    },
    Silence {
        ms: u32,
    },
}

impl PlayItem {
    /// The usual "leave a message after the tone" beep: 1 kHz, 400 ms.
    pub fn beep() -> Self {
        PlayItem::Tone {
            freq: 1000.0,
            second: None,
            amplitude: 8000.0,
            ms: 400,
        }
    }
}

/// Plays items in order, optionally looping the whole list (music on hold).
pub struct Playlist {
    items: Vec<PlayItem>,
    looping: bool,
    index: usize,
    pos: usize,
    tone: Option<ToneGenerator>,
}

impl Playlist {
    pub fn new(items: Vec<PlayItem>, looping: bool) -> Self {
        Playlist {
            items,
            looping,
            index: 0,
            pos: 0,
            tone: None,
        }
    }

    /// Samples left in one pass (for tests and logs).
    pub fn total_samples(&self) -> usize {
        self.items
            .iter()
            .map(|i| match i {
                PlayItem::Clip(c) => c.samples.len(),
                PlayItem::Tone { ms, .. } | PlayItem::Silence { ms } => (*ms as usize) * 8,
            })
            .sum()
    }

    /// Copies up to `out.len()` samples; returns how many were written.
    fn fill(&mut self, out: &mut [i16]) -> usize {
        let mut written = 0;
        let mut empty_passes = 0;
        while written < out.len() {
            if self.index >= self.items.len() {
                if !self.looping || self.items.is_empty() || empty_passes > 0 {
                    break;
                }
                self.index = 0;
                empty_passes += 1;
            }
            let rest = &mut out[written..];
            let n = match &self.items[self.index] {
                PlayItem::Clip(c) => {
                    let src = &c.samples[self.pos.min(c.samples.len())..];
                    let n = src.len().min(rest.len());
                    rest[..n].copy_from_slice(&src[..n]);
                    n
                }
                PlayItem::Tone {
                    freq,
                    second,
                    amplitude,
                    ms,
                } => {
                    let total = *ms as u64 * 8;
                    let gen = self.tone.get_or_insert_with(|| {
                        ToneGenerator::new(*freq, *second, *amplitude, total)
                    });
                    let want = rest.len().min(gen.remaining_samples() as usize);
                    gen.fill(&mut rest[..want])
                }
                PlayItem::Silence { ms } => {
                    let total = *ms as usize * 8;
                    let n = total.saturating_sub(self.pos).min(rest.len());
                    rest[..n].fill(0);
                    n
                }
            };
            if n > 0 {
                empty_passes = 0;
            }
            written += n;
            self.pos += n;
            let done = match &self.items[self.index] {
                PlayItem::Clip(c) => self.pos >= c.samples.len(),
                PlayItem::Tone { .. } => self
                    .tone
                    .as_ref()
                    .is_none_or(|g| g.remaining_samples() == 0),
                PlayItem::Silence { ms } => self.pos >= *ms as usize * 8,
            };
            if done {
                self.index += 1;
                self.pos = 0;
                self.tone = None;
            }
        }
        written
    }
}

impl AudioSource for Playlist {
    fn next_frame(&mut self) -> Option<Frame> {
        let mut f = [0i16; FRAME_SAMPLES];
        // The tail of the last item is padded with silence to a whole frame.
        (self.fill(&mut f) > 0).then_some(f)
    }
}

/// A single tone or digit as a source (in-band DTMF sending, beeps).
impl AudioSource for ToneGenerator {
    fn next_frame(&mut self) -> Option<Frame> {
        (self.remaining_samples() > 0).then(|| ToneGenerator::next_frame(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_plays_items_in_order_then_ends() {
        let a = Clip::new(vec![1; 200]);
        let b = Clip::new(vec![2; 100]);
        let mut p = Playlist::new(
            vec![
                PlayItem::Clip(a),
                PlayItem::Silence { ms: 5 },
                PlayItem::Clip(b),
            ],
            false,
        );
        let f1 = p.next_frame().unwrap();
        assert!(f1.iter().all(|&s| s == 1));
        let f2 = p.next_frame().unwrap();
        assert_eq!(&f2[..40], &[1; 40]);
        assert_eq!(&f2[40..80], &[0; 40]);
        assert_eq!(&f2[80..160], &[2; 80]);
        let f3 = p.next_frame().unwrap();
        assert_eq!(&f3[..20], &[2; 20]);
        assert_eq!(&f3[20..], &[0; 140]);
        assert!(p.next_frame().is_none());
    }

    #[test]
    fn looping_music_never_ends_and_wraps_seamlessly() {
        let samples: Vec<i16> = (0..250).collect();
        let mut p = Playlist::new(vec![PlayItem::Clip(Clip::new(samples))], true);
        let mut all = Vec::new();
        for _ in 0..10 {
            all.extend_from_slice(&p.next_frame().unwrap());
        }
        for (i, &s) in all.iter().enumerate() {
            assert_eq!(s as usize, i % 250);
        }
        let mut empty = Playlist::new(vec![], true);
        assert!(empty.next_frame().is_none());
        let mut zero = Playlist::new(vec![PlayItem::Clip(Clip::new(vec![]))], true);
        assert!(zero.next_frame().is_none(), "an empty loop must not spin");
    }

    #[test]
    fn tone_item_has_its_duration() {
        let mut p = Playlist::new(vec![PlayItem::beep()], false);
        let frames: Vec<Frame> = std::iter::from_fn(|| p.next_frame()).collect();
        assert_eq!(frames.len(), 20);
        assert!(frames[10].iter().any(|&s| s.abs() > 7000));
    }
}
