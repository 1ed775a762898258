//! RTCP sender/receiver reports, SDES CNAME and BYE (RFC 3550 §6).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet truncated")]
    Truncated,
    #[error("RTCP version is not 2")]
    BadVersion,
    #[error("RTCP length field exceeds the datagram")]
    BadLength,
}

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub extended_max_seq: u32,
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from `ssrc`.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        ntp: u64,
        rtp_timestamp: u32,
        packet_count: u32,
        octet_count: u32,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    Bye {
        ssrcs: Vec<u32>,
    },
    /// SDES, APP, feedback and anything else we do not act on.
    Other {
        packet_type: u8,
    },
}

/// Parses a compound RTCP datagram.
pub fn parse_compound(mut data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    if data.is_empty() {
        return Err(RtcpError::Truncated);
    }
    while !data.is_empty() {
        if data.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        if data[0] >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        let count = (data[0] & 0x1F) as usize;
        let pt = data[1];
        let len = (u16::from_be_bytes([data[2], data[3]]) as usize + 1) * 4;
        if len > data.len() {
            return Err(RtcpError::BadLength);
        }
        let mut body = &data[4..len];
        if data[0] & 0x20 != 0 {
            // Padding: the last byte counts the padding octets.
            let pad = *data[..len].last().unwrap_or(&0) as usize;
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadLength);
            }
            body = &body[..body.len() - pad];
        }
        out.push(parse_one(pt, count, body)?);
        data = &data[len..];
    }
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> Result<u32, RtcpError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(RtcpError::Truncated)
}

fn parse_blocks(body: &[u8], count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    let mut reports = Vec::with_capacity(count);
    for i in 0..count {
        let at = i * 24;
        let lost_word = be32(body, at + 4)?;
        // Cumulative lost is a signed 24-bit number.
        let cumulative_lost = ((lost_word << 8) as i32) >> 8;
        reports.push(ReportBlock {
            ssrc: be32(body, at)?,
            fraction_lost: (lost_word >> 24) as u8,
            cumulative_lost,
            extended_max_seq: be32(body, at + 8)?,
            jitter: be32(body, at + 12)?,
            last_sr: be32(body, at + 16)?,
            delay_since_last_sr: be32(body, at + 20)?,
        });
    }
    Ok(reports)
}

fn parse_one(pt: u8, count: usize, body: &[u8]) -> Result<RtcpPacket, RtcpError> {
    Ok(match pt {
        200 => RtcpPacket::SenderReport {
            ssrc: be32(body, 0)?,
            ntp: (be32(body, 4)? as u64) << 32 | be32(body, 8)? as u64,
            rtp_timestamp: be32(body, 12)?,
            packet_count: be32(body, 16)?,
            octet_count: be32(body, 20)?,
            reports: parse_blocks(body.get(24..).ok_or(RtcpError::Truncated)?, count)?,
        },
        201 => RtcpPacket::ReceiverReport {
            ssrc: be32(body, 0)?,
            reports: parse_blocks(body.get(4..).ok_or(RtcpError::Truncated)?, count)?,
        },
        203 => {
            let mut ssrcs = Vec::with_capacity(count);
            for i in 0..count {
                ssrcs.push(be32(body, i * 4)?);
            }
            RtcpPacket::Bye { ssrcs }
        }
        other => RtcpPacket::Other { packet_type: other },
    })
}

fn write_header(out: &mut Vec<u8>, count: u8, pt: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0x80 | (count & 0x1F), pt, 0, 0]);
    at
}

fn finish_length(out: &mut [u8], at: usize) {
    let words = ((out.len() - at) / 4 - 1) as u16;
    out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
}

fn write_blocks(out: &mut Vec<u8>, reports: &[ReportBlock]) {
    for r in reports {
        out.extend_from_slice(&r.ssrc.to_be_bytes());
        let lost = (r.cumulative_lost.clamp(-(1 << 23), (1 << 23) - 1) as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&((r.fraction_lost as u32) << 24 | lost).to_be_bytes());
        out.extend_from_slice(&r.extended_max_seq.to_be_bytes());
        out.extend_from_slice(&r.jitter.to_be_bytes());
        out.extend_from_slice(&r.last_sr.to_be_bytes());
        out.extend_from_slice(&r.delay_since_last_sr.to_be_bytes());
    }
}

/// Sender information of an SR.
#[derive(Debug, Clone, Copy)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Builds a compound report: SR (with `sender`) or RR, then SDES CNAME.
pub fn build_report(
    ssrc: u32,
    sender: Option<SenderInfo>,
    reports: &[ReportBlock],
    cname: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    let reports = &reports[..reports.len().min(31)];
    match sender {
        Some(s) => {
            let at = write_header(&mut out, reports.len() as u8, 200);
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.extend_from_slice(&s.ntp.to_be_bytes());
            out.extend_from_slice(&s.rtp_timestamp.to_be_bytes());
            out.extend_from_slice(&s.packet_count.to_be_bytes());
            out.extend_from_slice(&s.octet_count.to_be_bytes());
            write_blocks(&mut out, reports);
            finish_length(&mut out, at);
        }
        None => {
            let at = write_header(&mut out, reports.len() as u8, 201);
            out.extend_from_slice(&ssrc.to_be_bytes());
            write_blocks(&mut out, reports);
            finish_length(&mut out, at);
        }
    }
    write_sdes(&mut out, ssrc, cname);
    out
}

fn write_sdes(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let at = write_header(out, 1, 202);
    out.extend_from_slice(&ssrc.to_be_bytes());
    let name = &cname.as_bytes()[..cname.len().min(255)];
    out.push(1); // CNAME
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    // Item list ends with a null octet, then pad to a word boundary.
    out.push(0);
    while (out.len() - at) % 4 != 0 {
        out.push(0);
    }
    finish_length(out, at);
}

/// Builds RR + SDES + BYE, sent when a leg ends.
pub fn build_bye(ssrc: u32, cname: &str) -> Vec<u8> {
    let mut out = build_report(ssrc, None, &[], cname);
    let at = write_header(&mut out, 1, 203);
    out.extend_from_slice(&ssrc.to_be_bytes());
    finish_length(&mut out, at);
    out
}

/// Middle 32 bits of a 64-bit NTP timestamp (the "compact" form used by LSR/DLSR).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Converts a duration to 1/65536 s units.
pub fn to_compact(d: Duration) -> u32 {
    ((d.as_nanos() << 16) / 1_000_000_000).min(u32::MAX as u128) as u32
}

/// Converts a duration to a 64-bit NTP offset.
pub fn to_ntp64(d: Duration) -> u64 {
    (d.as_secs() << 32) | (((d.subsec_nanos() as u64) << 32) / 1_000_000_000)
}

/// Round-trip time from a report block received at `arrival` (compact NTP, our clock), per
/// RFC 3550 §6.4.1: `A - LSR - DLSR`. None when the peer has not yet seen an SR from us.
pub fn round_trip_time(arrival_compact: u32, block: &ReportBlock) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let rtt = arrival_compact
        .wrapping_sub(block.last_sr)
        .wrapping_sub(block.delay_since_last_sr);
    // A negative (wrapped) value means clocks or fields are bogus.
    if rtt > 0x8000_0000 {
        return None;
    }
    Some(Duration::from_nanos(((rtt as u64) * 1_000_000_000) >> 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr_round_trip() {
        let block = ReportBlock {
            ssrc: 9,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_max_seq: 70_000,
            jitter: 44,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        };
        let sender = SenderInfo {
            ntp: 0x0102_0304_0506_0708,
            rtp_timestamp: 160,
            packet_count: 10,
            octet_count: 1600,
        };
        let bytes = build_report(7, Some(sender), &[block], "hub@example");
        assert_eq!(bytes.len() % 4, 0);
        let pkts = parse_compound(&bytes).unwrap();
        assert_eq!(pkts.len(), 2);
        assert_eq!(
            pkts[0],
            RtcpPacket::SenderReport {
                ssrc: 7,
                ntp: 0x0102_0304_0506_0708,
                rtp_timestamp: 160,
                packet_count: 10,
                octet_count: 1600,
                reports: vec![block],
            }
        );
        assert_eq!(pkts[1], RtcpPacket::Other { packet_type: 202 });
    }

    #[test]
    fn rr_and_bye() {
        let bytes = build_bye(5, "x");
        let pkts = parse_compound(&bytes).unwrap();
        assert_eq!(
            pkts[0],
            RtcpPacket::ReceiverReport {
                ssrc: 5,
                reports: vec![]
            }
        );
        assert_eq!(pkts[2], RtcpPacket::Bye { ssrcs: vec![5] });
    }

    #[test]
    fn rtt_from_lsr_dlsr() {
        let sent = to_ntp64(Duration::from_secs(1000));
        let lsr = ntp_middle(sent);
        // Peer held our SR for 250 ms; it arrived back 330 ms after we sent it.
        let block = ReportBlock {
            last_sr: lsr,
            delay_since_last_sr: to_compact(Duration::from_millis(250)),
            ..Default::default()
        };
        let arrival = ntp_middle(to_ntp64(Duration::from_millis(1_000_330)));
        let rtt = round_trip_time(arrival, &block).unwrap();
        assert!((rtt.as_secs_f64() - 0.080).abs() < 0.001, "{rtt:?}");
        assert_eq!(
            round_trip_time(arrival, &ReportBlock::default()),
            None,
            "no SR seen yet"
        );
    }

    #[test]
    fn malformed_is_an_error_and_fuzz_never_panics() {
        assert!(parse_compound(&[]).is_err());
        assert!(parse_compound(&[0x81, 200, 0, 50]).is_err());
        assert!(parse_compound(&[0x40, 200, 0, 0]).is_err());
        // SR claiming one block but carrying none.
        assert!(parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]).is_err());
        let base = build_report(
            1,
            Some(SenderInfo {
                ntp: 1,
                rtp_timestamp: 2,
                packet_count: 3,
                octet_count: 4,
            }),
            &[ReportBlock::default(); 2],
            "cname",
        );
        let mut rng = crate::testutil::Rng::new(11);
        for _ in 0..20_000 {
            let mut d = base.clone();
            d.truncate(rng.below(d.len() as u32 + 1) as usize);
            for _ in 0..rng.below(5) {
                if d.is_empty() {
                    break;
                }
                let i = rng.below(d.len() as u32) as usize;
                d[i] = rng.next() as u8;
            }
            let _ = parse_compound(&d);
        }
    }
}
