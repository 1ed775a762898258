//! SDP for audio (RFC 4566 / RFC 3264 offer/answer): a small tolerant parser, our offers and
//! answers, codec choice and hold directions.

use crate::codec::Codec;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    pub fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The direction as seen from the other side.
    pub fn reversed(self) -> Self {
        Self::from_flags(self.receives(), self.sends())
    }

    /// What both sides allow: we send only if we want to and they receive, and so on.
    pub fn intersect_with_remote(self, remote: Direction) -> Self {
        Self::from_flags(
            self.sends() && remote.receives(),
            self.receives() && remote.sends(),
        )
    }

    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// Why a description cannot be used. SIP maps `NoCommonCodec` and `NoAudio` to 488.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is empty or has no v= line")]
    NotSdp,
    #[error("malformed {0} line")]
    BadLine(&'static str),
    #[error("no usable audio stream (m=audio missing or rejected)")]
    NoAudio,
    #[error("no connection address for the audio stream")]
    NoConnection,
    #[error("no codec in common (we support PCMU and PCMA)")]
    NoCommonCodec,
}

impl SdpError {
    /// Whether SIP should answer 488 Not Acceptable Here (else 400 Bad Request).
    pub fn is_not_acceptable(&self) -> bool {
        matches!(self, SdpError::NoCommonCodec | SdpError::NoAudio)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
}

/// One m= section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    /// Format tokens in order (payload type numbers for RTP profiles).
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    pub ptime: Option<u32>,
    pub direction: Option<Direction>,
    /// a=rtcp: port and optional address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    pub rtcp_mux: bool,
}

impl MediaDescription {
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse().ok())
    }

    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }

    /// Codec of a payload type: its rtpmap, or the static assignment when there is none.
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
        match self.rtpmap(pt) {
            Some(m) => Codec::from_rtpmap(&m.encoding, m.clock_rate),
            None => Codec::from_static_payload_type(pt),
        }
    }

    /// Payload type of telephone-event/8000, if offered.
    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.payload_types().find(|&pt| {
            self.rtpmap(pt).is_some_and(|m| {
                m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        })
    }

    fn is_rtp_audio(&self) -> bool {
        self.kind == "audio" && self.proto.to_ascii_uppercase().starts_with("RTP/")
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    pub origin_session_id: String,
    pub origin_version: String,
    pub connection: Option<IpAddr>,
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

fn parse_connection(v: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.1[/ttl]
    let mut it = v.split_ascii_whitespace();
    let (net, ty, addr) = (it.next(), it.next(), it.next());
    if net != Some("IN") {
        return Err(SdpError::BadLine("c="));
    }
    let addr = addr.ok_or(SdpError::BadLine("c="))?;
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr.parse().map_err(|_| SdpError::BadLine("c="))?;
    match (ty, ip) {
        (Some("IP4"), IpAddr::V4(_)) | (Some("IP6"), IpAddr::V6(_)) => Ok(ip),
        _ => Err(SdpError::BadLine("c=")),
    }
}

impl SessionDescription {
    /// Parses SDP leniently: unknown lines and attributes are skipped; what we rely on
    /// (c=, m=) must be well formed.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut sd = SessionDescription::default();
        let mut saw_version = false;
        let mut current: Option<MediaDescription> = None;
        for raw in text.split('\n') {
            let line = raw.trim_end_matches('\r').trim_start();
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if key.len() != 1 {
                continue;
            }
            match key {
                "v" => saw_version = true,
                "o" => {
                    let f: Vec<&str> = value.split_ascii_whitespace().collect();
                    if f.len() >= 3 {
                        sd.origin_session_id = f[1].to_string();
                        sd.origin_version = f[2].to_string();
                    }
                }
                "c" => {
                    let ip = parse_connection(value)?;
                    match current.as_mut() {
                        Some(m) => m.connection = Some(ip),
                        None => sd.connection = Some(ip),
                    }
                }
                "m" => {
                    if let Some(m) = current.take() {
                        sd.media.push(m);
                    }
                    let mut f = value.split_ascii_whitespace();
                    let kind = f.next().ok_or(SdpError::BadLine("m="))?;
                    let port = f.next().ok_or(SdpError::BadLine("m="))?;
                    // "port/count": the count is irrelevant for one audio stream.
                    let port: u16 = port
                        .split('/')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .ok_or(SdpError::BadLine("m="))?;
                    let proto = f.next().ok_or(SdpError::BadLine("m="))?;
                    current = Some(MediaDescription {
                        kind: kind.to_string(),
                        port,
                        proto: proto.to_string(),
                        formats: f.take(64).map(str::to_string).collect(),
                        connection: None,
                        rtpmaps: Vec::new(),
                        fmtps: Vec::new(),
                        ptime: None,
                        direction: None,
                        rtcp: None,
                        rtcp_mux: false,
                    });
                }
                "a" => {
                    let (name, arg) = match value.split_once(':') {
                        Some((n, a)) => (n, a.trim()),
                        None => (value.trim(), ""),
                    };
                    if let Some(d) = Direction::parse(name) {
                        match current.as_mut() {
                            Some(m) => m.direction = Some(d),
                            None => sd.direction = Some(d),
                        }
                        continue;
                    }
                    let Some(m) = current.as_mut() else { continue };
                    match name {
                        "rtpmap" => {
                            if let Some(map) = parse_rtpmap(arg) {
                                if m.rtpmaps.len() < 64 {
                                    m.rtpmaps.push(map);
                                }
                            }
                        }
                        "fmtp" => {
                            if let Some((pt, params)) = arg.split_once(' ') {
                                if let Ok(pt) = pt.parse() {
                                    if m.fmtps.len() < 64 {
                                        m.fmtps.push((pt, params.trim().to_string()));
                                    }
                                }
                            }
                        }
                        "ptime" => m.ptime = arg.parse().ok(),
                        "rtcp" => {
                            let mut f = arg.split_ascii_whitespace();
                            if let Some(Ok(port)) = f.next().map(str::parse::<u16>) {
                                let rest: Vec<&str> = f.collect();
                                let addr = if rest.len() >= 3 {
                                    parse_connection(&rest.join(" ")).ok()
                                } else {
                                    None
                                };
                                m.rtcp = Some((port, addr));
                            }
                        }
                        "rtcp-mux" => m.rtcp_mux = true,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if let Some(m) = current.take() {
            sd.media.push(m);
        }
        if !saw_version {
            return Err(SdpError::NotSdp);
        }
        Ok(sd)
    }

    /// Index of the first usable RTP audio stream.
    pub fn audio_index(&self) -> Option<usize> {
        self.media
            .iter()
            .position(|m| m.is_rtp_audio() && m.port != 0)
    }

    /// Direction of a stream (media level overrides session level). The RFC 2543 hold form
    /// `c=0.0.0.0` counts as inactive: nothing can be sent to that address.
    pub fn direction_of(&self, m: &MediaDescription) -> Direction {
        let addr = m.connection.or(self.connection);
        if addr.is_some_and(|a| a.is_unspecified()) {
            return Direction::Inactive;
        }
        m.direction.or(self.direction).unwrap_or_default()
    }
}

fn parse_rtpmap(arg: &str) -> Option<RtpMap> {
    let (pt, rest) = arg.split_once(' ')?;
    let mut enc = rest.trim().split('/');
    Some(RtpMap {
        payload_type: pt.parse().ok()?,
        encoding: enc.next()?.to_string(),
        clock_rate: enc.next()?.parse().ok()?,
    })
}

/// What we put in our descriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub addr: IpAddr,
    pub rtp_port: u16,
    /// RTCP port when not muxed (normally rtp_port + 1).
    pub rtcp_port: u16,
    /// Codecs in our order of preference (for offers) and the set we accept.
    pub codecs: Vec<Codec>,
    /// Payload type for telephone-event in our offers (None = do not offer DTMF events).
    pub telephone_event_pt: Option<u8>,
    pub ptime: u32,
    pub offer_rtcp_mux: bool,
    pub session_id: u64,
    pub session_version: u64,
    /// What we want: SendOnly while we hold the remote.
    pub direction: Direction,
}

/// The result of offer/answer for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub payload_type: u8,
    /// Telephone-event payload type both sides use, if any.
    pub telephone_event_pt: Option<u8>,
    pub remote_rtp: SocketAddr,
    pub remote_rtcp: SocketAddr,
    pub rtcp_mux: bool,
    /// The direction the remote declared.
    pub remote_direction: Direction,
    /// What we may actually do (our wish intersected with theirs).
    pub direction: Direction,
    pub remote_ptime: Option<u32>,
}

impl Negotiated {
    /// The remote has put us on hold: it declared sendonly or inactive (it will not listen).
    pub fn remote_holds(&self) -> bool {
        !self.remote_direction.receives()
    }
}

fn write_session(out: &mut String, local: &LocalMedia) {
    let (ip_ver, addr) = match local.addr {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    let _ = write!(
        out,
        "v=0\r\no=- {} {} IN {ip_ver} {addr}\r\ns=-\r\nc=IN {ip_ver} {addr}\r\nt=0 0\r\n",
        local.session_id, local.session_version
    );
}

fn write_audio(
    out: &mut String,
    local: &LocalMedia,
    formats: &[(u8, &str)],
    te: Option<u8>,
    direction: Direction,
    rtcp_mux: bool,
) {
    let mut m = format!("m=audio {} RTP/AVP", local.rtp_port);
    for (pt, _) in formats {
        let _ = write!(m, " {pt}");
    }
    if let Some(te) = te {
        let _ = write!(m, " {te}");
    }
    out.push_str(&m);
    out.push_str("\r\n");
    for (pt, name) in formats {
        let _ = write!(out, "a=rtpmap:{pt} {name}/8000\r\n");
    }
    if let Some(te) = te {
        let _ = write!(
            out,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        );
    }
    let _ = write!(out, "a=ptime:{}\r\n", local.ptime);
    if rtcp_mux {
        out.push_str("a=rtcp-mux\r\n");
    } else if local.rtcp_port != local.rtp_port.wrapping_add(1) {
        let _ = write!(out, "a=rtcp:{}\r\n", local.rtcp_port);
    }
    let _ = write!(out, "a={}\r\n", direction.attribute());
}

/// Builds our offer.
pub fn build_offer(local: &LocalMedia) -> String {
    let mut out = String::with_capacity(300);
    write_session(&mut out, local);
    let formats: Vec<(u8, &str)> = local
        .codecs
        .iter()
        .map(|c| (c.static_payload_type(), c.encoding_name()))
        .collect();
    write_audio(
        &mut out,
        local,
        &formats,
        local.telephone_event_pt,
        local.direction,
        local.offer_rtcp_mux,
    );
    out
}

fn remote_addrs(
    sd: &SessionDescription,
    m: &MediaDescription,
    mux: bool,
) -> Result<(SocketAddr, SocketAddr), SdpError> {
    let ip = m
        .connection
        .or(sd.connection)
        .ok_or(SdpError::NoConnection)?;
    let rtp = SocketAddr::new(ip, m.port);
    let rtcp = if mux {
        rtp
    } else {
        match m.rtcp {
            Some((port, addr)) => SocketAddr::new(addr.unwrap_or(ip), port),
            None => SocketAddr::new(ip, m.port.wrapping_add(1)),
        }
    };
    Ok((rtp, rtcp))
}

/// Answers a remote offer: the first offered codec we support (in the offerer's order), the
/// offered telephone-event payload type, and the direction both sides allow. Non-audio and
/// extra streams are rejected with port 0, as RFC 3264 requires.
pub fn answer_offer(
    local: &LocalMedia,
    offer: &SessionDescription,
) -> Result<(String, Negotiated), SdpError> {
    let idx = offer.audio_index().ok_or(SdpError::NoAudio)?;
    let m = &offer.media[idx];
    let (pt, codec) = m
        .payload_types()
        .find_map(|pt| {
            m.codec_of(pt)
                .filter(|c| local.codecs.contains(c))
                .map(|c| (pt, c))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let te = local
        .telephone_event_pt
        .and_then(|_| m.telephone_event_pt());
    let remote_direction = offer.direction_of(m);
    let direction = local.direction.intersect_with_remote(remote_direction);
    let rtcp_mux = m.rtcp_mux && local.offer_rtcp_mux;
    let (remote_rtp, remote_rtcp) = remote_addrs(offer, m, rtcp_mux)?;

    let mut out = String::with_capacity(300);
    write_session(&mut out, local);
    for (i, other) in offer.media.iter().enumerate() {
        if i == idx {
            write_audio(
                &mut out,
                local,
                &[(pt, codec.encoding_name())],
                te,
                direction,
                rtcp_mux,
            );
        } else {
            let fmt = other.formats.first().map(String::as_str).unwrap_or("0");
            let _ = write!(out, "m={} 0 {} {fmt}\r\n", other.kind, other.proto);
        }
    }
    Ok((
        out,
        Negotiated {
            codec,
            payload_type: pt,
            telephone_event_pt: te,
            remote_rtp,
            remote_rtcp,
            rtcp_mux,
            remote_direction,
            direction,
            remote_ptime: m.ptime,
        },
    ))
}

/// Applies the remote answer to our offer.
pub fn apply_answer(
    local: &LocalMedia,
    answer: &SessionDescription,
) -> Result<Negotiated, SdpError> {
    let idx = answer.audio_index().ok_or(SdpError::NoAudio)?;
    let m = &answer.media[idx];
    let (pt, codec) = m
        .payload_types()
        .find_map(|pt| {
            m.codec_of(pt)
                .filter(|c| local.codecs.contains(c))
                .map(|c| (pt, c))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let te = local
        .telephone_event_pt
        .and_then(|_| m.telephone_event_pt());
    let remote_direction = answer.direction_of(m);
    let rtcp_mux = m.rtcp_mux && local.offer_rtcp_mux;
    let (remote_rtp, remote_rtcp) = remote_addrs(answer, m, rtcp_mux)?;
    Ok(Negotiated {
        codec,
        payload_type: pt,
        telephone_event_pt: te,
        remote_rtp,
        remote_rtcp,
        rtcp_mux,
        remote_direction,
        direction: local.direction.intersect_with_remote(remote_direction),
        remote_ptime: m.ptime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    fn local() -> LocalMedia {
        LocalMedia {
            addr: "10.0.0.1".parse().unwrap(),
            rtp_port: 20000,
            rtcp_port: 20001,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event_pt: Some(101),
            ptime: 20,
            offer_rtcp_mux: false,
            session_id: 42,
            session_version: 1,
            direction: Direction::SendRecv,
        }
    }

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\n\
s=call\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
a=tool:some-phone 1.0\r\n\
m=audio 49170 RTP/AVP 9 8 0 96\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:96 telephone-event/8000\r\n\
a=fmtp:96 0-15\r\n\
a=ptime:20\r\n\
a=x-unknown-thing\r\n\
m=video 51372 RTP/AVP 31\r\n";

    #[test]
    fn answer_picks_first_common_codec_in_offer_order_and_offered_event_pt() {
        let offer = SessionDescription::parse(OFFER).unwrap();
        let (answer, neg) = answer_offer(&local(), &offer).unwrap();
        assert_eq!(neg.codec, Codec::Pcma);
        assert_eq!(neg.payload_type, 8);
        assert_eq!(neg.telephone_event_pt, Some(96));
        assert_eq!(neg.remote_rtp, "192.0.2.10:49170".parse().unwrap());
        assert_eq!(neg.remote_rtcp, "192.0.2.10:49171".parse().unwrap());
        assert_eq!(neg.direction, Direction::SendRecv);
        assert!(
            answer.contains("m=audio 20000 RTP/AVP 8 96\r\n"),
            "{answer}"
        );
        assert!(answer.contains("a=rtpmap:96 telephone-event/8000"));
        assert!(
            answer.contains("m=video 0 RTP/AVP 31\r\n"),
            "video rejected"
        );
        // Our answer parses back with our own parser.
        let back = SessionDescription::parse(&answer).unwrap();
        assert_eq!(back.media[0].codec_of(8), Some(Codec::Pcma));
        assert_eq!(back.audio_index(), Some(0));
    }

    #[test]
    fn static_payload_without_rtpmap_and_no_common_codec() {
        let offer = "v=0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 18 0\n";
        let (_, neg) = answer_offer(&local(), &SessionDescription::parse(offer).unwrap()).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
        assert_eq!(neg.telephone_event_pt, None);

        let offer = "v=0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 9 18\na=rtpmap:9 G722/8000\n";
        let err = answer_offer(&local(), &SessionDescription::parse(offer).unwrap()).unwrap_err();
        assert_eq!(err, SdpError::NoCommonCodec);
        assert!(err.is_not_acceptable());
        // A dynamic PT mapped to PCMU by rtpmap counts; a "PCMU" at 16 kHz does not.
        let offer = "v=0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 110 111\n\
a=rtpmap:110 PCMU/16000\na=rtpmap:111 pcmu/8000\n";
        let (_, neg) = answer_offer(&local(), &SessionDescription::parse(offer).unwrap()).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 111));
    }

    #[test]
    fn hold_directions() {
        let mk = |dir: &str| {
            format!("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na={dir}\r\n")
        };
        let cases = [
            ("sendrecv", Direction::SendRecv, false),
            ("sendonly", Direction::RecvOnly, true),
            ("recvonly", Direction::SendOnly, false),
            ("inactive", Direction::Inactive, true),
        ];
        for (dir, ours, held) in cases {
            let (ans, neg) =
                answer_offer(&local(), &SessionDescription::parse(&mk(dir)).unwrap()).unwrap();
            assert_eq!(neg.direction, ours, "{dir}");
            assert_eq!(neg.remote_holds(), held, "{dir}");
            assert!(ans.contains(&format!("a={}", ours.attribute())));
        }
        // We hold: our offer says sendonly; the answer's recvonly keeps us sending.
        let mut l = local();
        l.direction = Direction::SendOnly;
        assert!(build_offer(&l).contains("a=sendonly\r\n"));
        let ans = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n";
        let neg = apply_answer(&l, &SessionDescription::parse(ans).unwrap()).unwrap();
        assert_eq!(neg.direction, Direction::SendOnly);
        // Session-level direction and the old c=0.0.0.0 hold.
        let s = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let sd = SessionDescription::parse(s).unwrap();
        assert_eq!(sd.direction_of(&sd.media[0]), Direction::Inactive);
        let s = "v=0\r\na=sendonly\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n";
        let sd = SessionDescription::parse(s).unwrap();
        assert_eq!(sd.direction_of(&sd.media[0]), Direction::SendOnly);
    }

    #[test]
    fn ipv6_media_level_connection_and_rtcp_attribute() {
        let s = "v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n\
m=audio 5004 RTP/AVP 0\nc=IN IP6 2001:db8::5\na=rtcp:6000 IN IP6 2001:db8::6\n";
        let neg = answer_offer(&local(), &SessionDescription::parse(s).unwrap())
            .unwrap()
            .1;
        assert_eq!(neg.remote_rtp, "[2001:db8::5]:5004".parse().unwrap());
        assert_eq!(neg.remote_rtcp, "[2001:db8::6]:6000".parse().unwrap());
        let mut l = local();
        l.addr = "::1".parse().unwrap();
        let offer = build_offer(&l);
        assert!(offer.contains("c=IN IP6 ::1\r\n"));
        let back = SessionDescription::parse(&offer).unwrap();
        assert_eq!(back.connection, Some("::1".parse().unwrap()));
        assert_eq!(
            back.media[0].payload_types().collect::<Vec<_>>(),
            [0, 8, 101]
        );
        assert_eq!(back.media[0].telephone_event_pt(), Some(101));
        assert_eq!(back.media[0].ptime, Some(20));
    }

    #[test]
    fn rtcp_mux_negotiation() {
        let mut l = local();
        l.offer_rtcp_mux = true;
        assert!(build_offer(&l).contains("a=rtcp-mux"));
        let ans = "v=0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=rtcp-mux\n";
        let neg = apply_answer(&l, &SessionDescription::parse(ans).unwrap()).unwrap();
        assert!(neg.rtcp_mux);
        assert_eq!(neg.remote_rtcp, neg.remote_rtp);
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(SessionDescription::parse(""), Err(SdpError::NotSdp));
        assert_eq!(
            SessionDescription::parse("v=0\nc=IN IP4 nonsense\n"),
            Err(SdpError::BadLine("c="))
        );
        assert_eq!(
            SessionDescription::parse("v=0\nm=audio x RTP/AVP 0\n"),
            Err(SdpError::BadLine("m="))
        );
        let no_audio = SessionDescription::parse("v=0\nc=IN IP4 1.2.3.4\nm=audio 0 RTP/AVP 0\n");
        assert_eq!(
            answer_offer(&local(), &no_audio.unwrap()).unwrap_err(),
            SdpError::NoAudio
        );
        let no_c = SessionDescription::parse("v=0\nm=audio 4000 RTP/AVP 0\n").unwrap();
        assert_eq!(
            answer_offer(&local(), &no_c).unwrap_err(),
            SdpError::NoConnection
        );
    }

    #[test]
    fn fuzz_parse_and_answer_never_panic() {
        let mut rng = Rng::new(99);
        let seeds = [
            OFFER.as_bytes().to_vec(),
            build_offer(&local()).into_bytes(),
        ];
        for i in 0..30_000 {
            let mut d = seeds[i % 2].clone();
            for _ in 0..rng.below(8) + 1 {
                let at = rng.below(d.len() as u32 + 1) as usize;
                match rng.below(4) {
                    0 if at < d.len() => d[at] = rng.next() as u8,
                    1 if at < d.len() => {
                        d.remove(at);
                    }
                    2 => d.insert(at, b"=:/ \r\n0aIP6"[rng.below(11) as usize]),
                    _ => d.truncate(at),
                }
            }
            let text = String::from_utf8_lossy(&d);
            if let Ok(sd) = SessionDescription::parse(&text) {
                if let Ok((ans, _)) = answer_offer(&local(), &sd) {
                    SessionDescription::parse(&ans).expect("our answer parses");
                }
                let _ = apply_answer(&local(), &sd);
            }
        }
    }
}
