//! G.711 μ-law (PCMU) and A-law (PCMA), by hand after ITU-T G.711.
//!
//! Audio inside the crate is 8 kHz mono `i16` PCM in 20 ms frames of [`FRAME_SAMPLES`].

/// Samples per second of every narrowband stream we handle.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 160;
/// Frame duration.
pub const FRAME_DURATION: std::time::Duration = std::time::Duration::from_millis(20);

/// One 20 ms frame of PCM.
pub type Frame = [i16; FRAME_SAMPLES];

/// The audio codecs a leg can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Looks up a codec by rtpmap encoding name (case-insensitive) and clock rate.
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Codec> {
        if clock_rate != SAMPLE_RATE {
            return None;
        }
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// Codec of a static payload type, if it is one we support.
    pub fn from_static_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Encodes PCM into `out` (one byte per sample).
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            Codec::Pcmu => out.extend(pcm.iter().map(|&s| linear_to_ulaw(s))),
            Codec::Pcma => out.extend(pcm.iter().map(|&s| linear_to_alaw(s))),
        }
    }

    /// Decodes one byte.
    #[inline]
    pub fn decode_sample(self, byte: u8) -> i16 {
        match self {
            Codec::Pcmu => ULAW_TO_LINEAR[byte as usize],
            Codec::Pcma => ALAW_TO_LINEAR[byte as usize],
        }
    }

    /// Decodes a payload into `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Codec::Pcmu => &ULAW_TO_LINEAR,
            Codec::Pcma => &ALAW_TO_LINEAR,
        };
        out.extend(payload.iter().map(|&b| table[b as usize]));
    }

    /// Converts a payload from `self` to `to` in place, without going through PCM twice.
    pub fn transcode_in_place(self, to: Codec, payload: &mut [u8]) {
        let table = match (self, to) {
            (Codec::Pcmu, Codec::Pcma) => &ULAW_TO_ALAW,
            (Codec::Pcma, Codec::Pcmu) => &ALAW_TO_ULAW,
            _ => return,
        };
        for b in payload {
            *b = table[*b as usize];
        }
    }

    /// The byte that decodes to (near) silence, used for comfort padding.
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Encodes one sample to μ-law.
#[inline]
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    if x > ULAW_CLIP {
        x = ULAW_CLIP;
    }
    x += ULAW_BIAS;
    // x is in 0x84..=0x7FFF: its top bit (7..=14) is the segment.
    let exponent = (31 - (x as u32).leading_zeros()) as i32 - 7;
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one μ-law byte.
#[inline]
pub const fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let mut t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

/// Encodes one sample to A-law.
#[inline]
pub const fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let mut pcm = (sample as i32) >> 3;
    let mask: i32 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // Segment ends 0x1F, 0x3F, 0x7F, ... 0xFFF.
    let seg = if pcm < 0x20 {
        0
    } else {
        (31 - (pcm as u32).leading_zeros()) as i32 - 4
    };
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mut aval = seg << 4;
    if seg < 2 {
        aval |= (pcm >> 1) & 0x0F;
    } else {
        aval |= (pcm >> seg) & 0x0F;
    }
    (aval ^ mask) as u8
}

/// Decodes one A-law byte.
#[inline]
pub const fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn build_decode(ulaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if ulaw {
            ulaw_to_linear(i as u8)
        } else {
            alaw_to_linear(i as u8)
        };
        i += 1;
    }
    t
}

const fn build_convert(from_ulaw: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if from_ulaw {
            linear_to_alaw(ulaw_to_linear(i as u8))
        } else {
            linear_to_ulaw(alaw_to_linear(i as u8))
        };
        i += 1;
    }
    t
}

static ULAW_TO_LINEAR: [i16; 256] = build_decode(true);
static ALAW_TO_LINEAR: [i16; 256] = build_decode(false);
static ULAW_TO_ALAW: [u8; 256] = build_convert(true);
static ALAW_TO_ULAW: [u8; 256] = build_convert(false);

/// μ-law byte to A-law byte.
pub fn ulaw_to_alaw(b: u8) -> u8 {
    ULAW_TO_ALAW[b as usize]
}

/// A-law byte to μ-law byte.
pub fn alaw_to_ulaw(b: u8) -> u8 {
    ALAW_TO_ULAW[b as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_match_g711() {
        // Values from the ITU-T G.711 tables / reference g711.c.
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(32767), 0xAA);
        assert_eq!(linear_to_alaw(-32768), 0x2A);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn every_code_round_trips() {
        for b in 0..=255u8 {
            // μ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes to 0xFF.
            let u = linear_to_ulaw(ulaw_to_linear(b));
            assert!(u == b || (b == 0x7F && u == 0xFF), "ulaw {b:#x} -> {u:#x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "alaw {b:#x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            let a = alaw_to_linear(linear_to_alaw(s)) as i32;
            let tol = (s as i32).abs() / 16 + 16;
            assert!((u - s as i32).abs() <= tol, "ulaw {s} -> {u}");
            assert!((a - s as i32).abs() <= tol, "alaw {s} -> {a}");
        }
    }

    #[test]
    fn monotonic_decode() {
        let mut u: Vec<i16> = (0..=255).map(ulaw_to_linear).collect();
        let mut a: Vec<i16> = (0..=255).map(alaw_to_linear).collect();
        u.sort();
        a.sort();
        u.dedup();
        a.dedup();
        assert_eq!(u.len(), 255); // two zeros
        assert_eq!(a.len(), 256);
    }

    #[test]
    fn transcoding_preserves_level() {
        for b in 0..=255u8 {
            let lin = ulaw_to_linear(b) as i32;
            let via_a = alaw_to_linear(ulaw_to_alaw(b)) as i32;
            assert!(
                (lin - via_a).abs() <= lin.abs() / 16 + 16,
                "{b:#x}: {lin} vs {via_a}"
            );
            let lin = alaw_to_linear(b) as i32;
            let via_u = ulaw_to_linear(alaw_to_ulaw(b)) as i32;
            assert!(
                (lin - via_u).abs() <= lin.abs() / 16 + 16,
                "{b:#x}: {lin} vs {via_u}"
            );
        }
        let mut p = vec![0x12u8, 0x80, 0xFF];
        Codec::Pcmu.transcode_in_place(Codec::Pcma, &mut p);
        assert_eq!(
            p,
            vec![ulaw_to_alaw(0x12), ulaw_to_alaw(0x80), ulaw_to_alaw(0xFF)]
        );
    }
}
