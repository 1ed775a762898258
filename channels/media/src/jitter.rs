//! A small jitter buffer for legs whose audio the hub decodes (mixer, recording, in-band
//! DTMF): reorders by timestamp, plays out at a fixed or mildly adaptive depth, drops late
//! packets and conceals losses by repeating the last frame with fading. Relayed legs do not
//! use it.

use crate::codec::{Frame, FRAME_SAMPLES};
use std::collections::VecDeque;

const FRAME: u64 = FRAME_SAMPLES as u64;
/// A timestamp further than this from the playout point means the source restarted.
const RESYNC_SAMPLES: u64 = 8000 * 2;
/// Frames buffered at most; more arrive only from a misbehaving sender.
const MAX_ENTRIES: usize = 64;
/// Consecutive concealed frames before we fall silent.
const MAX_CONCEAL: u32 = 5;

#[derive(Debug, Clone, Copy)]
pub struct JitterConfig {
    /// Playout delay in 20 ms frames at start and the minimum when adapting.
    pub min_depth: u32,
    /// Upper bound of the adaptive depth.
    pub max_depth: u32,
    /// Grow the depth by one frame on each late packet and shrink it after a quiet period.
    pub adaptive: bool,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_depth: 2,
            max_depth: 6,
            adaptive: true,
        }
    }
}

/// What a popped frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Real audio (possibly partly concealed).
    Audio,
    /// A repeated, attenuated previous frame.
    Concealed,
    /// Nothing to play (before the stream started or after a long gap).
    Silence,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub late: u64,
    pub concealed: u64,
    pub dropped_overflow: u64,
    pub duplicates: u64,
}

#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    depth_frames: u32,
    entries: VecDeque<(u64, Vec<i16>)>,
    /// Extended timestamp of the next sample to play.
    playout: Option<u64>,
    last_ts: Option<(u32, u64)>,
    last_frame: Frame,
    conceal_run: u32,
    stretch: u32,
    quiet_pops: u32,
    late_run: u32,
    pub stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        JitterBuffer {
            depth_frames: config.min_depth.max(1),
            config,
            entries: VecDeque::new(),
            playout: None,
            last_ts: None,
            last_frame: [0; FRAME_SAMPLES],
            conceal_run: MAX_CONCEAL,
            stretch: 0,
            quiet_pops: 0,
            late_run: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn depth_frames(&self) -> u32 {
        self.depth_frames
    }

    fn extend_ts(&mut self, ts: u32) -> u64 {
        let ext = match self.last_ts {
            None => (1u64 << 32) + ts as u64,
            Some((last, last_ext)) => {
                let delta = ts.wrapping_sub(last) as i32 as i64;
                (last_ext as i64 + delta).max(0) as u64
            }
        };
        self.last_ts = Some((ts, ext));
        ext
    }

    pub fn reset(&mut self) {
        self.entries.clear();
        self.playout = None;
        self.last_ts = None;
        self.stretch = 0;
    }

    /// Adds decoded audio that starts at RTP timestamp `ts`.
    pub fn push(&mut self, ts: u32, pcm: &[i16]) {
        if pcm.is_empty() {
            return;
        }
        let mut ext = self.extend_ts(ts);
        if let Some(p) = self.playout {
            if ext.abs_diff(p) > RESYNC_SAMPLES {
                self.reset();
                ext = self.extend_ts(ts);
            }
        }
        let depth = self.depth_frames as u64 * FRAME;
        let mut playout = *self.playout.get_or_insert(ext.saturating_sub(depth));
        if ext + pcm.len() as u64 <= playout && self.late_run >= 3 {
            // Several late in a row: the sender's clock stepped back; follow it.
            self.reset();
            ext = self.extend_ts(ts);
            playout = *self.playout.get_or_insert(ext.saturating_sub(depth));
        }
        if ext + pcm.len() as u64 <= playout {
            self.late_run += 1;
            self.stats.late += 1;
            if self.config.adaptive && self.depth_frames < self.config.max_depth {
                self.depth_frames += 1;
                self.stretch += 1;
            }
            self.quiet_pops = 0;
            return;
        }
        self.late_run = 0;
        let pos = self.entries.partition_point(|(t, _)| *t < ext);
        if self.entries.get(pos).is_some_and(|(t, _)| *t == ext) {
            self.stats.duplicates += 1;
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.stats.dropped_overflow += 1;
            return;
        }
        self.entries.insert(pos, (ext, pcm.to_vec()));
    }

    /// Takes the next 20 ms of audio.
    pub fn pop(&mut self) -> (Frame, FrameKind) {
        let Some(p) = self.playout else {
            return ([0; FRAME_SAMPLES], FrameKind::Silence);
        };
        if self.stretch > 0 {
            // The depth grew: hold the playout point for one frame.
            self.stretch -= 1;
            return self.conceal();
        }
        // Too much buffered (sender burst or drift): skip ahead to the target depth.
        if let Some((t, pcm)) = self.entries.back() {
            let end = t + pcm.len() as u64;
            let target = (self.depth_frames as u64 + 3) * FRAME;
            if end > p + target {
                let np = end - self.depth_frames as u64 * FRAME;
                self.playout = Some(np);
                return self.pop_at(np);
            }
        }
        if self.config.adaptive && self.depth_frames > self.config.min_depth {
            self.quiet_pops += 1;
            if self.quiet_pops >= 500 {
                // 10 s without a late packet: shrink by skipping one frame.
                self.quiet_pops = 0;
                self.depth_frames -= 1;
                let np = p + FRAME;
                self.playout = Some(np);
                self.entries.retain(|(t, pcm)| t + pcm.len() as u64 > np);
                return self.pop_at(np);
            }
        }
        self.pop_at(p)
    }

    fn pop_at(&mut self, p: u64) -> (Frame, FrameKind) {
        let end = p + FRAME;
        let mut out = [0i16; FRAME_SAMPLES];
        let mut filled = 0usize;
        for (t, pcm) in &self.entries {
            let e_end = t + pcm.len() as u64;
            if e_end <= p {
                continue;
            }
            if *t >= end {
                break;
            }
            let from = (*t).max(p);
            let to = e_end.min(end);
            let src = &pcm[(from - t) as usize..(to - t) as usize];
            out[(from - p) as usize..(to - p) as usize].copy_from_slice(src);
            filled += src.len();
        }
        while self
            .entries
            .front()
            .is_some_and(|(t, pcm)| t + pcm.len() as u64 <= end)
        {
            self.entries.pop_front();
        }
        self.playout = Some(end);
        if filled == 0 {
            return self.conceal();
        }
        self.conceal_run = 0;
        self.last_frame = out;
        (out, FrameKind::Audio)
    }

    fn conceal(&mut self) -> (Frame, FrameKind) {
        if self.conceal_run >= MAX_CONCEAL {
            return ([0; FRAME_SAMPLES], FrameKind::Silence);
        }
        self.conceal_run += 1;
        self.stats.concealed += 1;
        // Fade each repetition by about 6 dB.
        for s in self.last_frame.iter_mut() {
            *s /= 2;
        }
        (self.last_frame, FrameKind::Concealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: i16) -> Vec<i16> {
        vec![v; FRAME_SAMPLES]
    }

    fn fixed() -> JitterBuffer {
        JitterBuffer::new(JitterConfig {
            min_depth: 2,
            max_depth: 2,
            adaptive: false,
        })
    }

    #[test]
    fn reorders_and_delays_by_depth() {
        let mut jb = fixed();
        jb.push(160, &frame(2));
        jb.push(0, &frame(1));
        jb.push(320, &frame(3));
        // Playout started two frames before the first packet seen (ts 160).
        let got: Vec<(i16, FrameKind)> = (0..5)
            .map(|_| {
                let (f, k) = jb.pop();
                (f[0], k)
            })
            .collect();
        assert_eq!(got[0].1, FrameKind::Silence);
        assert_eq!(got[1], (1, FrameKind::Audio));
        assert_eq!(got[2], (2, FrameKind::Audio));
        assert_eq!(got[3], (3, FrameKind::Audio));
        assert_eq!(got[4].1, FrameKind::Concealed);
    }

    #[test]
    fn loss_is_concealed_with_fading_then_silence() {
        let mut jb = fixed();
        jb.push(0, &frame(1000));
        let _ = jb.pop();
        let _ = jb.pop();
        assert_eq!(jb.pop().0[0], 1000);
        let levels: Vec<i16> = (0..7).map(|_| jb.pop().0[0]).collect();
        assert_eq!(levels, vec![500, 250, 125, 62, 31, 0, 0]);
        assert_eq!(jb.stats.concealed, 5);
    }

    #[test]
    fn late_packets_are_dropped_and_grow_adaptive_depth() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.push(0, &frame(1));
        for _ in 0..4 {
            jb.pop();
        }
        jb.push(160, &frame(2)); // its time has passed
        assert_eq!(jb.stats.late, 1);
        assert_eq!(jb.depth_frames(), 3);
        jb.push(160, &frame(2));
        assert_eq!(jb.depth_frames(), 4);
        assert!(jb.depth_frames() <= 6);
    }

    #[test]
    fn duplicates_ignored_and_timestamp_wrap_handled() {
        let mut jb = fixed();
        let start = u32::MAX - 159;
        jb.push(start, &frame(1));
        jb.push(start, &frame(1));
        jb.push(start.wrapping_add(160), &frame(2));
        assert_eq!(jb.stats.duplicates, 1);
        let vals: Vec<i16> = (0..4).map(|_| jb.pop().0[0]).collect();
        assert_eq!(vals, vec![0, 0, 1, 2]);
    }

    #[test]
    fn sender_clock_stepping_back_is_followed_after_a_few_late_packets() {
        let mut jb = fixed();
        for i in 0..50u32 {
            jb.push(10_000 + i * 160, &frame(1));
            jb.pop();
        }
        // The stream restarts 40 frames earlier (within the resync window).
        for i in 0..6u32 {
            jb.push(10_000 + i * 160, &frame(9));
            jb.pop();
        }
        assert_eq!(jb.stats.late, 3);
        let vals: Vec<i16> = (0..3).map(|_| jb.pop().0[0]).collect();
        assert!(vals.contains(&9), "{vals:?}");
    }

    #[test]
    fn restart_resyncs_and_burst_skips_ahead() {
        let mut jb = fixed();
        jb.push(0, &frame(1));
        jb.pop();
        jb.push(1_000_000, &frame(7));
        let vals: Vec<i16> = (0..3).map(|_| jb.pop().0[0]).collect();
        assert_eq!(vals, vec![0, 0, 7]);
        // A burst of 20 frames at once is trimmed to the depth instead of adding 400 ms.
        let mut jb = fixed();
        for i in 0..20u32 {
            jb.push(i * 160, &frame(i as i16 + 1));
        }
        let (f, _) = jb.pop();
        assert!(f[0] >= 17, "played {}", f[0]);
    }

    #[test]
    fn odd_packet_sizes_are_rechunked() {
        let mut jb = fixed();
        // 30 ms packets (240 samples) arriving in real time.
        jb.push(0, &[1; 240]);
        jb.push(240, &[2; 240]);
        jb.pop();
        jb.pop();
        let f = jb.pop().0;
        assert_eq!((f[0], f[159]), (1, 1));
        jb.push(480, &[3; 240]);
        let f = jb.pop().0;
        assert_eq!((f[0], f[79], f[80]), (1, 1, 2));
    }
}
