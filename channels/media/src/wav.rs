//! WAV files: reading prompts (8 kHz 16-bit PCM, μ-law or A-law; other rates resampled,
//! stereo downmixed) and writing recordings incrementally with a header that stays valid.

use crate::codec::{alaw_to_linear, ulaw_to_linear, SAMPLE_RATE};
use crate::playback::Clip;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a RIFF/WAVE file")]
    NotWav,
    #[error("WAV has no fmt chunk or no data chunk")]
    MissingChunk,
    #[error("unsupported WAV format: {0} (use 16-bit PCM, μ-law or A-law)")]
    Unsupported(String),
}

const FMT_PCM: u16 = 1;
const FMT_ALAW: u16 = 6;
const FMT_ULAW: u16 = 7;
const FMT_EXTENSIBLE: u16 = 0xFFFE;

/// Reads a WAV file into an 8 kHz mono clip.
pub fn load(path: &Path) -> Result<Clip, WavError> {
    let bytes = std::fs::read(path).map_err(|source| WavError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&bytes)
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses WAV bytes into an 8 kHz mono clip.
pub fn parse(bytes: &[u8]) -> Result<Clip, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut data: Option<&[u8]> = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = le32(bytes, at + 4).ok_or(WavError::NotWav)? as usize;
        let body_start = at + 8;
        // A crashed writer may leave a data size larger than the file: take what is there.
        let body_end = body_start.saturating_add(size).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                let mut tag = le16(body, 0).ok_or(WavError::MissingChunk)?;
                let channels = le16(body, 2).ok_or(WavError::MissingChunk)?;
                let rate = le32(body, 4).ok_or(WavError::MissingChunk)?;
                let bits = le16(body, 14).ok_or(WavError::MissingChunk)?;
                if tag == FMT_EXTENSIBLE {
                    // The sub-format GUID starts with the format tag.
                    tag = le16(body, 24).ok_or(WavError::MissingChunk)?;
                }
                fmt = Some((tag, channels, rate, bits));
            }
            b"data" => data = Some(body),
            _ => {}
        }
        at = body_start.saturating_add(size).saturating_add(size & 1);
    }
    let (tag, channels, rate, bits) = fmt.ok_or(WavError::MissingChunk)?;
    let data = data.ok_or(WavError::MissingChunk)?;
    if channels == 0 || channels > 2 {
        return Err(WavError::Unsupported(format!("{channels} channels")));
    }
    if !(4000..=192_000).contains(&rate) {
        return Err(WavError::Unsupported(format!("{rate} Hz")));
    }
    let samples: Vec<i16> = match (tag, bits) {
        (FMT_PCM, 16) => data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect(),
        (FMT_ULAW, 8) => data.iter().map(|&b| ulaw_to_linear(b)).collect(),
        (FMT_ALAW, 8) => data.iter().map(|&b| alaw_to_linear(b)).collect(),
        (FMT_PCM, b) => return Err(WavError::Unsupported(format!("{b}-bit PCM"))),
        (t, b) => {
            return Err(WavError::Unsupported(format!(
                "format tag {t} with {b} bits"
            )))
        }
    };
    let mono = if channels == 2 {
        samples
            .chunks_exact(2)
            .map(|c| ((c[0] as i32 + c[1] as i32) / 2) as i16)
            .collect()
    } else {
        samples
    };
    let out = if rate == SAMPLE_RATE {
        mono
    } else {
        resample(&mono, rate, SAMPLE_RATE)
    };
    Ok(Clip::new(out))
}

/// Windowed-sinc resampling with a low-pass below the output Nyquist frequency.
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if input.is_empty() || from == to {
        return input.to_vec();
    }
    let ratio = to as f64 / from as f64;
    let cutoff = ratio.min(1.0) * 0.92; // of the input Nyquist
    let half_width = (8.0 / cutoff).ceil() as i64;
    let out_len = (input.len() as f64 * ratio).floor() as usize;
    let mut out = Vec::with_capacity(out_len);
    for i in 0..out_len {
        let x = i as f64 / ratio;
        let centre = x.floor() as i64;
        let mut acc = 0.0;
        let mut norm = 0.0;
        for k in (centre - half_width + 1)..=(centre + half_width) {
            let t = x - k as f64;
            let arg = std::f64::consts::PI * t * cutoff;
            let sinc = if t.abs() < 1e-9 { 1.0 } else { arg.sin() / arg };
            let w = 0.5 + 0.5 * (std::f64::consts::PI * t / half_width as f64).cos();
            let h = sinc * w;
            norm += h;
            if k >= 0 && (k as usize) < input.len() {
                acc += h * input[k as usize] as f64;
            }
        }
        out.push((acc / norm).round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

fn header(channels: u16, data_bytes: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let block = channels * 2;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36u32.saturating_add(data_bytes)).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&FMT_PCM.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * block as u32).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// Encodes mono 8 kHz PCM as a WAV file in memory (prompts, tests).
pub fn encode_mono(samples: &[i16]) -> Vec<u8> {
    let mut v = header(1, (samples.len() * 2) as u32).to_vec();
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// What a finished recording amounts to, for the call record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingInfo {
    pub duration: Duration,
    pub bytes: u64,
}

/// Writes 8 kHz 16-bit WAV incrementally. The RIFF and data sizes are rewritten every
/// `fixup_every` frames and at the end, so a crash leaves a file readable up to the last fixup.
pub struct WavWriter {
    file: BufWriter<File>,
    path: PathBuf,
    channels: u16,
    data_bytes: u64,
    since_fixup: u64,
    fixup_every_bytes: u64,
}

impl WavWriter {
    /// Creates the file; `fixup_every` is the interval of header rewrites in audio time.
    pub fn create(path: &Path, channels: u16, fixup_every: Duration) -> Result<Self, WavError> {
        let io = |source| WavError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = BufWriter::with_capacity(16 * 1024, File::create(path).map_err(io)?);
        file.write_all(&header(channels, 0)).map_err(io)?;
        file.flush().map_err(io)?;
        let bytes_per_sec = SAMPLE_RATE as u64 * channels as u64 * 2;
        Ok(WavWriter {
            file,
            path: path.to_owned(),
            channels,
            data_bytes: 0,
            since_fixup: 0,
            fixup_every_bytes: (fixup_every.as_millis() as u64 * bytes_per_sec / 1000).max(2),
        })
    }

    fn io(&self, source: std::io::Error) -> WavError {
        WavError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends interleaved samples.
    pub fn write(&mut self, interleaved: &[i16]) -> Result<(), WavError> {
        let mut buf = Vec::with_capacity(interleaved.len() * 2);
        for s in interleaved {
            buf.extend_from_slice(&s.to_le_bytes());
        }
        self.file.write_all(&buf).map_err(|e| self.io(e))?;
        self.data_bytes += buf.len() as u64;
        self.since_fixup += buf.len() as u64;
        if self.since_fixup >= self.fixup_every_bytes {
            self.fixup()?;
        }
        Ok(())
    }

    /// Flushes and rewrites the header sizes to cover everything written so far.
    pub fn fixup(&mut self) -> Result<(), WavError> {
        self.since_fixup = 0;
        let data = self.data_bytes.min(u32::MAX as u64 - 36) as u32;
        let h = header(self.channels, data);
        let r = (|| {
            self.file.flush()?;
            let f = self.file.get_mut();
            f.seek(SeekFrom::Start(4))?;
            f.write_all(&h[4..8])?;
            f.seek(SeekFrom::Start(40))?;
            f.write_all(&h[40..44])?;
            f.seek(SeekFrom::End(0))?;
            Ok(())
        })();
        r.map_err(|e| self.io(e))
    }

    pub fn duration(&self) -> Duration {
        let frames = self.data_bytes / (self.channels as u64 * 2);
        Duration::from_micros(frames * 1_000_000 / SAMPLE_RATE as u64)
    }

    /// Final fixup; returns duration and size.
    pub fn finish(mut self) -> Result<RecordingInfo, WavError> {
        self.fixup()?;
        self.file.get_ref().sync_data().map_err(|e| self.io(e))?;
        Ok(RecordingInfo {
            duration: self.duration(),
            bytes: 44 + self.data_bytes,
        })
    }
}

/// Reads a stereo 16-bit WAV written by [`WavWriter`] (tests, tools): (left, right).
pub fn read_stereo(bytes: &[u8]) -> Result<(Vec<i16>, Vec<i16>), WavError> {
    if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[36..40] != b"data" {
        return Err(WavError::NotWav);
    }
    if le16(bytes, 22) != Some(2) {
        return Err(WavError::Unsupported("not stereo".into()));
    }
    let n = (le32(bytes, 40).ok_or(WavError::NotWav)? as usize).min(bytes.len() - 44);
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for c in bytes[44..44 + n].chunks_exact(4) {
        l.push(i16::from_le_bytes([c[0], c[1]]));
        r.push(i16::from_le_bytes([c[2], c[3]]));
    }
    Ok((l, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{linear_to_alaw, linear_to_ulaw};
    use crate::dtmf::goertzel_power;

    fn wav_with(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32 + 12).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        // An unknown chunk first, odd-sized, to check chunk walking and padding.
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&[1, 2, 3, 0]);
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * channels as u32 * bits as u32 / 8).to_le_bytes());
        v.extend_from_slice(&(channels * bits / 8).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    fn sine(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn reads_pcm_ulaw_alaw() {
        let pcm = sine(440.0, 8000, 800);
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        let clip = parse(&wav_with(1, 1, 8000, 16, &bytes)).unwrap();
        assert_eq!(clip.samples(), &pcm[..]);
        let u: Vec<u8> = pcm.iter().map(|&s| linear_to_ulaw(s)).collect();
        let clip = parse(&wav_with(7, 1, 8000, 8, &u)).unwrap();
        assert_eq!(clip.samples().len(), 800);
        assert!((clip.samples()[20] as i32 - pcm[20] as i32).abs() < 300);
        let a: Vec<u8> = pcm.iter().map(|&s| linear_to_alaw(s)).collect();
        let clip = parse(&wav_with(6, 1, 8000, 8, &a)).unwrap();
        assert!((clip.samples()[20] as i32 - pcm[20] as i32).abs() < 300);
        assert_eq!(parse(&encode_mono(&pcm)).unwrap().samples(), &pcm[..]);
    }

    #[test]
    fn resamples_and_downmixes() {
        // 1 kHz at 48 kHz stereo -> 8 kHz mono keeps the tone; a 6 kHz tone is filtered out.
        let tone = sine(1000.0, 48000, 48000);
        let stereo: Vec<u8> = tone
            .iter()
            .flat_map(|s| [s.to_le_bytes(), s.to_le_bytes()])
            .flatten()
            .collect();
        let clip = parse(&wav_with(1, 2, 48000, 16, &stereo)).unwrap();
        assert_eq!(clip.samples().len(), 8000);
        let f: Vec<f32> = clip.samples()[100..420].iter().map(|&s| s as f32).collect();
        let at_1k = goertzel_power(&f, 1000.0);
        let at_2k = goertzel_power(&f, 2000.0);
        assert!(at_1k > 1000.0 * at_2k);
        let hi = sine(6000.0, 48000, 48000);
        let hi_bytes: Vec<u8> = hi.iter().flat_map(|s| s.to_le_bytes()).collect();
        let clip = parse(&wav_with(1, 1, 48000, 16, &hi_bytes)).unwrap();
        let peak = clip.samples()[100..7900]
            .iter()
            .map(|s| s.abs())
            .max()
            .unwrap();
        assert!(peak < 400, "alias leaked at {peak}");
    }

    #[test]
    fn unsupported_formats_are_clear_errors() {
        let e = parse(&wav_with(1, 1, 8000, 8, &[0; 10])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported WAV format: 8-bit PCM (use 16-bit PCM, μ-law or A-law)"
        );
        assert!(matches!(
            parse(&wav_with(3, 1, 8000, 32, &[0; 8])),
            Err(WavError::Unsupported(_))
        ));
        assert!(matches!(
            parse(&wav_with(1, 6, 8000, 16, &[0; 8])),
            Err(WavError::Unsupported(_))
        ));
        assert!(matches!(parse(b"RIFX...."), Err(WavError::NotWav)));
        assert!(matches!(
            parse(b"RIFF\0\0\0\0WAVE"),
            Err(WavError::MissingChunk)
        ));
        let mut rng = crate::testutil::Rng::new(1);
        let base = wav_with(1, 1, 8000, 16, &[1; 64]);
        for _ in 0..5000 {
            let mut d = base.clone();
            for _ in 0..3 {
                let i = rng.below(d.len() as u32) as usize;
                d[i] = rng.next() as u8;
            }
            d.truncate(rng.below(d.len() as u32 + 1) as usize);
            let _ = parse(&d);
        }
    }

    #[test]
    fn writer_header_is_valid_mid_recording_and_at_end() {
        let dir = std::env::temp_dir().join(format!("media-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec.wav");
        let mut w = WavWriter::create(&path, 2, Duration::from_millis(100)).unwrap();
        let frame: Vec<i16> = (0..320)
            .map(|i| if i % 2 == 0 { 100 } else { -100 })
            .collect();
        for _ in 0..6 {
            w.write(&frame).unwrap(); // 6 x 20 ms
        }
        // Without finish (a crash now), the file already claims the first 100 ms.
        let mid = std::fs::read(&path).unwrap();
        let (l, r) = read_stereo(&mid).unwrap();
        assert!(l.len() >= 800 && l.len() <= 960, "{}", l.len());
        assert!(l.iter().all(|&s| s == 100) && r.iter().all(|&s| s == -100));
        let info = w.finish().unwrap();
        assert_eq!(info.duration, Duration::from_millis(120));
        assert_eq!(info.bytes, 44 + 6 * 640);
        let end = std::fs::read(&path).unwrap();
        assert_eq!(end.len() as u64, info.bytes);
        assert_eq!(read_stereo(&end).unwrap().0.len(), 960);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
