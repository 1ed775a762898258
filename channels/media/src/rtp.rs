//! RTP packets (RFC 3550 §5) and receive statistics (RFC 3550 appendix A).

use std::fmt;

/// Why a datagram is not an RTP packet we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet shorter than its headers")]
    Truncated,
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    #[error("padding length exceeds the payload")]
    BadPadding,
}

/// A parsed RTP packet borrowing the datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    csrc: &'a [u8],
    /// Header extension: (profile, data) if present.
    pub extension: Option<(u16, &'a [u8])>,
    pub payload: &'a [u8],
    /// Number of padding bytes that were stripped.
    pub padding: u8,
}

impl fmt::Debug for RtpPacket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpPacket")
            .field("pt", &self.payload_type)
            .field("seq", &self.sequence)
            .field("ts", &self.timestamp)
            .field("ssrc", &format_args!("{:#010x}", self.ssrc))
            .field("marker", &self.marker)
            .field("len", &self.payload.len())
            .finish()
    }
}

impl<'a> RtpPacket<'a> {
    /// Parses and validates one datagram.
    pub fn parse(data: &'a [u8]) -> Result<Self, RtpError> {
        if data.len() < 12 {
            return Err(RtpError::Truncated);
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = data[0] & 0x20 != 0;
        let has_extension = data[0] & 0x10 != 0;
        let csrc_count = (data[0] & 0x0F) as usize;
        let marker = data[1] & 0x80 != 0;
        let payload_type = data[1] & 0x7F;
        let sequence = u16::from_be_bytes([data[2], data[3]]);
        let timestamp = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let mut offset = 12 + 4 * csrc_count;
        if data.len() < offset {
            return Err(RtpError::Truncated);
        }
        let csrc = &data[12..offset];
        let mut extension = None;
        if has_extension {
            if data.len() < offset + 4 {
                return Err(RtpError::Truncated);
            }
            let profile = u16::from_be_bytes([data[offset], data[offset + 1]]);
            let words = u16::from_be_bytes([data[offset + 2], data[offset + 3]]) as usize;
            let start = offset + 4;
            let end = start + 4 * words;
            if data.len() < end {
                return Err(RtpError::Truncated);
            }
            extension = Some((profile, &data[start..end]));
            offset = end;
        }
        let mut end = data.len();
        let mut padding = 0;
        if has_padding {
            padding = data[end - 1];
            if padding == 0 || end - offset < padding as usize {
                return Err(RtpError::BadPadding);
            }
            end -= padding as usize;
        }
        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc,
            extension,
            payload: &data[offset..end],
            padding,
        })
    }

    /// Contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Whether a datagram on a muxed port is RTCP (RFC 5761 §4: PT 192..=223 in the second byte).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && data[0] >> 6 == 2 && (192..=223).contains(&data[1])
}

/// Fields of an RTP packet to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Appends a header (no CSRC, no extension) and the payload to `out`.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.reserve(12 + payload.len());
        out.push(0x80);
        out.push((self.marker as u8) << 7 | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// Builds a full packet with optional CSRCs, extension and padding (for tests and peers).
    pub fn build_full(
        &self,
        csrcs: &[u32],
        extension: Option<(u16, &[u8])>,
        payload: &[u8],
        padding: u8,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let csrc_count = csrcs.len().min(15) as u8;
        out.push(0x80 | ((padding > 0) as u8) << 5 | (extension.is_some() as u8) << 4 | csrc_count);
        out.push((self.marker as u8) << 7 | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &csrcs[..csrc_count as usize] {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some((profile, data)) = extension {
            let words = data.len().div_ceil(4);
            out.extend_from_slice(&profile.to_be_bytes());
            out.extend_from_slice(&(words as u16).to_be_bytes());
            out.extend_from_slice(data);
            out.resize(out.len() + words * 4 - data.len(), 0);
        }
        out.extend_from_slice(payload);
        if padding > 0 {
            out.resize(out.len() + padding as usize - 1, 0);
            out.push(padding);
        }
        out
    }
}

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u32 = 2;

/// Outcome of feeding a packet to [`ReceiveStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence (or an acceptable reorder); use it.
    Accept,
    /// The source is still on probation (RFC 3550 A.1); the packet is not yet trusted.
    Probation,
    /// A duplicate or a packet far out of order; drop it.
    Discard,
    /// The source restarted its sequence; statistics were reset.
    Restart,
}

/// Sequence tracking, loss and interarrival jitter of one received source (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    pub ssrc: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Interarrival jitter in timestamp units, scaled by 16 (A.8).
    jitter_q4: u32,
    last_transit: Option<i64>,
    initialised: bool,
}

impl ReceiveStats {
    pub fn new(ssrc: u32, seq: u16) -> Self {
        let mut s = ReceiveStats {
            ssrc,
            max_seq: seq.wrapping_sub(1),
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            last_transit: None,
            initialised: false,
        };
        s.init_seq(seq);
        s.max_seq = seq.wrapping_sub(1);
        s.probation = MIN_SEQUENTIAL;
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.initialised = true;
    }

    /// RFC 3550 A.1 `update_seq`.
    pub fn update_seq(&mut self, seq: u16) -> SeqVerdict {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return SeqVerdict::Accept;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqVerdict::Probation;
        }
        if udelta == 0 {
            return SeqVerdict::Discard;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += RTP_SEQ_MOD;
            }
            self.max_seq = seq;
        } else if udelta as u32 <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
            if seq as u32 == self.bad_seq {
                // Two sequential packets after a jump: the source restarted.
                self.init_seq(seq);
                self.received += 1;
                self.last_transit = None;
                return SeqVerdict::Restart;
            }
            self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
            return SeqVerdict::Discard;
        }
        // else: duplicate or reordered packet, counted as received.
        self.received += 1;
        SeqVerdict::Accept
    }

    /// RFC 3550 A.8: `arrival` and `rtp_ts` in the same timestamp units.
    pub fn update_jitter(&mut self, arrival: u32, rtp_ts: u32) {
        let transit = arrival.wrapping_sub(rtp_ts) as i32 as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs().min(u32::MAX as u64) as u32;
            // J += (|D| - J) / 16 in Q4 fixed point.
            let j = self.jitter_q4 as i64 + d as i64 - ((self.jitter_q4 as i64 + 8) >> 4);
            self.jitter_q4 = j.clamp(0, u32::MAX as i64) as u32;
        }
        self.last_transit = Some(transit);
    }

    /// Highest sequence number with cycles (RFC 3550 "extended highest sequence number").
    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(self.max_seq as u32)
    }

    pub fn expected(&self) -> u32 {
        self.extended_max()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    pub fn received(&self) -> u32 {
        self.received
    }

    /// Cumulative packets lost (may be negative with duplicates, as in RFC 3550).
    pub fn cumulative_lost(&self) -> i32 {
        if !self.initialised || self.probation > 0 {
            return 0;
        }
        (self.expected() as i64 - self.received as i64).clamp(-(1 << 23), (1 << 23) - 1) as i32
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// Fraction lost since the previous call, as the 8-bit RTCP field (A.3); advances the interval.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior) as i64;
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior) as i64;
        self.received_prior = self.received;
        let lost = expected_interval - received_interval;
        if expected_interval <= 0 || lost <= 0 {
            0
        } else {
            ((lost << 8) / expected_interval).min(255) as u8
        }
    }

    pub fn on_probation(&self) -> bool {
        self.probation > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u16) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: seq as u32 * 160,
            ssrc: 0x1234_5678,
        }
    }

    #[test]
    fn parse_round_trip_with_csrc_extension_padding() {
        let h = RtpHeader {
            marker: true,
            payload_type: 101,
            sequence: 65535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 42,
        };
        let bytes = h.build_full(&[7, 8], Some((0xBEDE, &[1, 2, 3])), b"hello", 3);
        let p = RtpPacket::parse(&bytes).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 101);
        assert_eq!(p.sequence, 65535);
        assert_eq!(p.timestamp, 0xDEAD_BEEF);
        assert_eq!(p.ssrc, 42);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(p.extension, Some((0xBEDE, &[1u8, 2, 3, 0][..])));
        assert_eq!(p.payload, b"hello");
        assert_eq!(p.padding, 3);

        let mut simple = Vec::new();
        h.write(b"xy", &mut simple);
        let p = RtpPacket::parse(&simple).unwrap();
        assert_eq!((p.payload, p.sequence, p.ssrc), (&b"xy"[..], 65535, 42));
    }

    #[test]
    fn malformed_packets_are_rejected() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::Truncated));
        let mut v1 = Vec::new();
        hdr(1).write(b"x", &mut v1);
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));
        let mut csrc = Vec::new();
        hdr(1).write(b"", &mut csrc);
        csrc[0] = 0x8F; // claims 15 CSRCs
        assert_eq!(RtpPacket::parse(&csrc), Err(RtpError::Truncated));
        let mut pad = Vec::new();
        hdr(1).write(b"ab", &mut pad);
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 9;
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        let mut ext = Vec::new();
        hdr(1).write(&[0xBE, 0xDE, 0x00, 0x09], &mut ext);
        ext[0] |= 0x10;
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::Truncated));
    }

    #[test]
    fn fuzz_parse_never_panics() {
        let mut rng = crate::testutil::Rng::new(7);
        let mut base = Vec::new();
        hdr(9).write(&[0u8; 160], &mut base);
        for _ in 0..20_000 {
            let mut d = base.clone();
            d.truncate(rng.below(d.len() as u32 + 1) as usize);
            for _ in 0..rng.below(6) {
                if d.is_empty() {
                    break;
                }
                let i = rng.below(d.len() as u32) as usize;
                d[i] = rng.next() as u8;
            }
            if let Ok(p) = RtpPacket::parse(&d) {
                assert!(p.payload.len() <= d.len());
                let _ = p.csrcs().count();
            }
            let _ = is_rtcp(&d);
        }
    }

    #[test]
    fn rtcp_demux() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(!is_rtcp(&[0x80, 0, 0, 6]));
        assert!(!is_rtcp(&[0x80, 0x80 | 101]));
    }

    fn feed(stats: &mut ReceiveStats, seqs: impl IntoIterator<Item = u16>) {
        for s in seqs {
            stats.update_seq(s);
        }
    }

    #[test]
    fn loss_counts_gaps_across_wrap() {
        let mut s = ReceiveStats::new(1, 65530);
        feed(&mut s, 65530..=65535);
        feed(&mut s, [0, 1, 3, 4, 7]);
        // Expected 65530..=7 = 14, received 11, but probation ate the first... A.1: the
        // first MIN_SEQUENTIAL packets validate the source and then count from there.
        assert_eq!(s.expected(), 13);
        assert_eq!(s.cumulative_lost(), 3);
        assert_eq!(s.extended_max(), 65536 + 7);
        let f = s.take_fraction_lost();
        assert_eq!(f, ((3u32 << 8) / 13) as u8);
        assert_eq!(s.take_fraction_lost(), 0);
    }

    #[test]
    fn duplicates_and_restart() {
        let mut s = ReceiveStats::new(1, 100);
        feed(&mut s, 100..110);
        assert_eq!(s.update_seq(109), SeqVerdict::Discard);
        assert_eq!(s.update_seq(30000), SeqVerdict::Discard);
        assert_eq!(s.update_seq(30001), SeqVerdict::Restart);
        assert_eq!(s.update_seq(30002), SeqVerdict::Accept);
        assert_eq!(s.cumulative_lost(), 0);
    }

    #[test]
    fn jitter_of_steady_stream_is_zero_and_grows_with_delay_variation() {
        let mut s = ReceiveStats::new(1, 0);
        for i in 0..100u32 {
            s.update_jitter(1000 + i * 160, i * 160);
        }
        assert_eq!(s.jitter(), 0);
        // Alternate 0 and 80 samples (10 ms) of extra delay: |D| = 80 each packet; J converges to 80.
        for i in 100..1000u32 {
            let d = if i % 2 == 0 { 80 } else { 0 };
            s.update_jitter(1000 + i * 160 + d, i * 160);
        }
        assert!((75..=80).contains(&s.jitter()), "{}", s.jitter());
    }
}
