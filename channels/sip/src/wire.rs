//! The boundary where untrusted bytes become SIP messages. Every datagram passes `inspect`
//! before rsipstack sees it: garbage is dropped, requests that cannot be processed get a 400
//! (or 501/513) built from whatever headers could be salvaged, and only messages that parse
//! and carry the mandatory headers go on. Pure functions; never panics on any input (the
//! stack's parser runs under `catch_unwind`, and the fuzz tests hold this).

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Method, SipMessage};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Methods the endpoint implements (Allow header); others get 405, unknown ones 501.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK";
/// Bodies the endpoint understands (Accept header).
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";

/// Largest header section we read; beyond it a message is refused (413-style, as 400/513).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest number of header lines.
pub const MAX_HEADERS: usize = 128;

/// What to do with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the first `len` bytes (possibly a corrected copy, see `Rewritten`) to the stack.
    Accept { len: usize },
    /// Hand these bytes instead (e.g. a missing Content-Length was added for a UDP body).
    Rewritten(Vec<u8>),
    /// Answer the sender with these bytes and drop the message.
    Respond { response: Vec<u8>, reason: String },
    /// Ignore (logged at debug).
    Drop(&'static str),
}

/// One header line as found on the wire.
#[derive(Debug, Clone)]
struct RawHeader<'a> {
    name: &'a str,
    value: String,
}

struct RawMessage<'a> {
    start_line: &'a str,
    headers: Vec<RawHeader<'a>>,
    /// Offset of the body (after CRLFCRLF).
    body_start: usize,
}

fn canonical(name: &str) -> &str {
    // Compact forms (RFC 3261 §7.3.3) of the headers we look at.
    match name {
        n if n.eq_ignore_ascii_case("v") => "via",
        n if n.eq_ignore_ascii_case("f") => "from",
        n if n.eq_ignore_ascii_case("t") => "to",
        n if n.eq_ignore_ascii_case("i") => "call-id",
        n if n.eq_ignore_ascii_case("l") => "content-length",
        n if n.eq_ignore_ascii_case("m") => "contact",
        n if n.eq_ignore_ascii_case("c") => "content-type",
        n => n,
    }
}

impl RawMessage<'_> {
    fn all<'s, 'n: 's>(&'s self, name: &'n str) -> impl Iterator<Item = &'s RawHeader<'s>> + 's {
        self.headers
            .iter()
            .filter(move |h| canonical(h.name).eq_ignore_ascii_case(name))
    }

    fn first<'s>(&'s self, name: &str) -> Option<&'s str> {
        self.headers
            .iter()
            .find(|h| canonical(h.name).eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

/// Split the header section without trusting anything but CRLF/LF framing.
fn scan(bytes: &[u8]) -> Result<RawMessage<'_>, &'static str> {
    let sep = find(bytes, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(bytes, b"\n\n").map(|i| (i, 2)));
    let (head_len, sep_len) = match sep {
        Some(s) => s,
        None if bytes.len() > MAX_HEADER_BYTES => return Err("Header Section Too Large"),
        None => return Err("Missing Header Terminator"),
    };
    if head_len > MAX_HEADER_BYTES {
        return Err("Header Section Too Large");
    }
    let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| "Headers Not UTF-8")?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or("");
    let mut headers: Vec<RawHeader> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some(h) => {
                    h.value.push(' ');
                    h.value.push_str(line.trim());
                }
                None => return Err("Continuation Without Header"),
            }
            continue;
        }
        let (name, value) = line.split_once(':').ok_or("Header Line Without Colon")?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err("Bad Header Name");
        }
        if headers.len() >= MAX_HEADERS {
            return Err("Too Many Headers");
        }
        headers.push(RawHeader {
            name,
            value: value.trim().to_string(),
        });
    }
    Ok(RawMessage {
        start_line,
        headers,
        body_start: head_len + sep_len,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// The method token of a request line, if the line looks like one.
fn request_method(start_line: &str) -> Option<&str> {
    let mut parts = start_line.split(' ');
    let method = parts.next()?;
    let _uri = parts.next().filter(|u| !u.is_empty())?;
    let version = parts.next()?;
    if parts.next().is_some() || version != "SIP/2.0" {
        return None;
    }
    (!method.is_empty() && method.bytes().all(is_token_char)).then_some(method)
}

/// Parse with the stack's parser, turning a panic into an error.
pub fn parse(bytes: &[u8]) -> Result<SipMessage, String> {
    match catch_unwind(AssertUnwindSafe(|| SipMessage::try_from(bytes))) {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            tracing::warn!("rsipstack parser panicked on peer input; message refused");
            Err("parser panic".into())
        }
    }
}

/// Decide what to do with one datagram of `bytes` (`max` is the largest message the stack
/// accepts whole).
pub fn inspect(bytes: &[u8], max: usize) -> Verdict {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // Keep-alive (RFC 5626 CRLF); the stack answers it.
        return Verdict::Accept { len: bytes.len() };
    }
    let is_response = bytes.starts_with(b"SIP/2.0 ");
    let raw = match scan(bytes) {
        Ok(raw) => raw,
        Err(reason) => {
            return match scan_lenient(bytes) {
                Some(raw) if !is_response && request_method(raw.start_line).is_some() => {
                    respond(&raw, 400, reason)
                }
                _ => Verdict::Drop(reason),
            }
        }
    };
    if is_response {
        return match check_response(bytes, &raw) {
            Ok(v) => v,
            Err(reason) => Verdict::Drop(reason),
        };
    }
    let Some(method) = request_method(raw.start_line) else {
        return Verdict::Drop("Not A SIP Message");
    };
    let is_ack = method == "ACK";
    let fail = |code: u16, reason: &'static str| -> Verdict {
        if is_ack {
            // Never answer an ACK (RFC 3261 §17.2.3).
            Verdict::Drop(reason)
        } else {
            respond(&raw, code, reason)
        }
    };
    if bytes.len() > max {
        return fail(513, "Message Too Large");
    }
    if method.parse::<Method>().is_err() {
        return fail(501, "Not Implemented");
    }
    for (name, reason) in [
        ("via", "Missing Via Header"),
        ("from", "Missing From Header"),
        ("to", "Missing To Header"),
        ("call-id", "Missing Call-ID Header"),
        ("cseq", "Missing CSeq Header"),
    ] {
        if raw.first(name).is_none_or(str::is_empty) {
            return fail(400, reason);
        }
    }
    if raw.all("from").count() > 1 || raw.all("to").count() > 1 || raw.all("call-id").count() > 1 {
        return fail(400, "Duplicate Header");
    }
    let cseq_ok = raw.first("cseq").and_then(|v| {
        let (num, m) = v.split_once(char::is_whitespace)?;
        let _: u32 = num.trim().parse().ok()?;
        (m.trim() == method).then_some(())
    });
    if cseq_ok.is_none() {
        return fail(400, "Bad CSeq");
    }
    if let Some(mf) = raw.first("max-forwards") {
        if mf.parse::<u8>().is_err() {
            return fail(400, "Bad Max-Forwards");
        }
    }
    let body_len = bytes.len() - raw.body_start.min(bytes.len());
    let rewritten = match content_length(&raw) {
        Err(()) => return fail(400, "Bad Content-Length"),
        Ok(Some(cl)) if cl > body_len => return fail(400, "Content-Length Exceeds Body"),
        // Extra bytes after the declared body are discarded (RFC 3261 §18.3).
        Ok(Some(cl)) => Verdict::Accept {
            len: raw.body_start + cl,
        },
        // UDP without Content-Length: the body runs to the end of the datagram; the stack
        // would read it as empty, so say its length.
        Ok(None) if body_len > 0 => Verdict::Rewritten(add_content_length(bytes, &raw, body_len)),
        Ok(None) => Verdict::Accept { len: bytes.len() },
    };
    let candidate: &[u8] = match &rewritten {
        Verdict::Accept { len } => &bytes[..*len],
        Verdict::Rewritten(b) => b,
        _ => bytes,
    };
    match parse(candidate) {
        Ok(SipMessage::Request(req)) => {
            if let Err(reason) = check_typed(&req) {
                return fail(400, reason);
            }
            rewritten
        }
        Ok(SipMessage::Response(_)) => Verdict::Drop("Start Line Mismatch"),
        Err(_) => fail(400, "Malformed Request"),
    }
}

/// Header scan that tolerates everything, to salvage routing headers for a 400.
fn scan_lenient(bytes: &[u8]) -> Option<RawMessage<'_>> {
    let head_len = find(bytes, b"\r\n\r\n")
        .unwrap_or(bytes.len())
        .min(MAX_HEADER_BYTES);
    let head = match std::str::from_utf8(&bytes[..head_len]) {
        Ok(h) => h,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()?,
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next()?;
    let headers = lines
        .take(MAX_HEADERS)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some(RawHeader {
                name: n.trim(),
                value: v.trim().to_string(),
            })
        })
        .collect();
    Some(RawMessage {
        start_line,
        headers,
        body_start: bytes.len(),
    })
}

fn content_length(raw: &RawMessage) -> Result<Option<usize>, ()> {
    let mut values = raw.all("content-length");
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|other| other.value != first.value) {
        return Err(());
    }
    first.value.parse::<usize>().map(Some).map_err(|_| ())
}

fn add_content_length(bytes: &[u8], raw: &RawMessage, body_len: usize) -> Vec<u8> {
    // Insert right before the blank line ending the headers.
    let sep_len = if bytes[..raw.body_start].ends_with(b"\r\n\r\n") {
        4
    } else {
        2
    };
    let head_end = raw.body_start - sep_len;
    let mut out = Vec::with_capacity(bytes.len() + 24);
    out.extend_from_slice(&bytes[..head_end]);
    out.extend_from_slice(format!("\r\nContent-Length: {body_len}\r\n\r\n").as_bytes());
    out.extend_from_slice(&bytes[raw.body_start..]);
    out
}

/// Lazily-parsed headers the stack needs typed later: check they parse now, so a bad one is a
/// 400 here and not a silent drop deep in the stack.
fn check_typed(req: &rsipstack::sip::Request) -> Result<(), &'static str> {
    let via = req.via_header().map_err(|_| "Missing Via Header")?;
    via.typed().map_err(|_| "Bad Via Header")?;
    let from = req.from_header().map_err(|_| "Missing From Header")?;
    from.typed().map_err(|_| "Bad From Header")?;
    let to = req.to_header().map_err(|_| "Missing To Header")?;
    to.typed().map_err(|_| "Bad To Header")?;
    let cseq = req.cseq_header().map_err(|_| "Missing CSeq Header")?;
    cseq.seq().map_err(|_| "Bad CSeq")?;
    cseq.method().map_err(|_| "Bad CSeq")?;
    req.call_id_header().map_err(|_| "Missing Call-ID Header")?;
    if req.method == Method::Invite || req.method == Method::Register {
        for c in req.contact_headers() {
            if c.value().trim() != "*" {
                c.typed().map_err(|_| "Bad Contact Header")?;
            }
        }
    }
    Ok(())
}

fn check_response(bytes: &[u8], raw: &RawMessage) -> Result<Verdict, &'static str> {
    for name in ["via", "from", "to", "call-id", "cseq"] {
        if raw.first(name).is_none() {
            return Err("Response Missing Header");
        }
    }
    let body_len = bytes.len() - raw.body_start.min(bytes.len());
    let len = match content_length(raw) {
        Err(()) => return Err("Response Bad Content-Length"),
        Ok(Some(cl)) if cl > body_len => return Err("Response Truncated"),
        Ok(Some(cl)) => raw.body_start + cl,
        Ok(None) => bytes.len(),
    };
    match parse(&bytes[..len]) {
        Ok(SipMessage::Response(resp)) => {
            resp.via_header()
                .ok()
                .and_then(|v| v.typed().ok())
                .ok_or("Response Bad Via")?;
            resp.cseq_header()
                .ok()
                .and_then(|c| c.seq().ok())
                .ok_or("Response Bad CSeq")?;
            Ok(Verdict::Accept { len })
        }
        _ => Err("Malformed Response"),
    }
}

/// Build an error response from the raw headers we could read. Without a Via and a Call-ID
/// there is no one to answer: drop.
fn respond(raw: &RawMessage, code: u16, reason: &'static str) -> Verdict {
    let vias: Vec<&str> = raw.all("via").map(|h| h.value.as_str()).collect();
    let Some(call_id) = raw.first("call-id").filter(|c| !c.is_empty()) else {
        return Verdict::Drop(reason);
    };
    if vias.is_empty() {
        return Verdict::Drop(reason);
    }
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).take(1024).collect() };
    let mut out = String::with_capacity(512);
    out.push_str(&format!("SIP/2.0 {code} {reason}\r\n"));
    for via in vias {
        out.push_str(&format!("Via: {}\r\n", clean(via)));
    }
    if let Some(from) = raw.first("from") {
        out.push_str(&format!("From: {}\r\n", clean(from)));
    }
    if let Some(to) = raw.first("to") {
        let to = clean(to);
        if to.to_ascii_lowercase().contains(";tag=") {
            out.push_str(&format!("To: {to}\r\n"));
        } else {
            // A final response needs a To tag; derive it from the Call-ID (no RNG here).
            let tag = crate::digest::Algorithm::Md5.hash(call_id.as_bytes());
            out.push_str(&format!("To: {to};tag={}\r\n", &tag[..10]));
        }
    }
    out.push_str(&format!("Call-ID: {}\r\n", clean(call_id)));
    if let Some(cseq) = raw.first("cseq") {
        out.push_str(&format!("CSeq: {}\r\n", clean(cseq)));
    }
    if code == 501 || code == 405 {
        out.push_str(&format!("Allow: {ALLOW}\r\n"));
    }
    out.push_str(&format!("Warning: 399 contact-hub \"{reason}\"\r\n"));
    out.push_str("Content-Length: 0\r\n\r\n");
    Verdict::Respond {
        response: out.into_bytes(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const INVITE: &str = "INVITE sip:+8610@hub.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:+8613800138000@carrier.example>;tag=abc\r\n\
To: <sip:+8610@hub.example>\r\n\
Call-ID: call-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5070>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    fn status(v: &Verdict) -> Option<(u16, String)> {
        match v {
            Verdict::Respond { response, .. } => {
                let s = String::from_utf8_lossy(response);
                let line = s.lines().next().unwrap().to_string();
                let code = line[8..11].parse().unwrap();
                Some((code, s.to_string()))
            }
            _ => None,
        }
    }

    #[test]
    fn valid_invite_is_accepted() {
        assert_eq!(
            inspect(INVITE.as_bytes(), 8192),
            Verdict::Accept { len: INVITE.len() }
        );
    }

    #[test]
    fn content_length_errors() {
        let long = INVITE.replace("Content-Length: 4", "Content-Length: 400");
        let (code, resp) = status(&inspect(long.as_bytes(), 8192)).unwrap();
        assert_eq!(code, 400);
        assert!(resp.contains("Warning: 399 contact-hub \"Content-Length Exceeds Body\""));
        assert!(resp.contains("Call-ID: call-1@127.0.0.1"));
        assert!(resp.contains("To: <sip:+8610@hub.example>;tag="));
        let bad = INVITE.replace("Content-Length: 4", "Content-Length: four");
        assert_eq!(status(&inspect(bad.as_bytes(), 8192)).unwrap().0, 400);
        // Shorter than the body: the rest is cut.
        let short = INVITE.replace("Content-Length: 4", "Content-Length: 2");
        assert_eq!(
            inspect(short.as_bytes(), 8192),
            Verdict::Accept {
                len: INVITE.len() - 2
            }
        );
        // Missing: added.
        let none = INVITE.replace("Content-Length: 4\r\n", "");
        match inspect(none.as_bytes(), 8192) {
            Verdict::Rewritten(b) => match parse(&b).unwrap() {
                SipMessage::Request(req) => assert_eq!(req.body, b"v=0\n"),
                other => panic!("{other}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_headers_and_bad_cseq() {
        for (header, reason) in [
            (
                "From: \"Alice\" <sip:+8613800138000@carrier.example>;tag=abc\r\n",
                "Missing From",
            ),
            ("To: <sip:+8610@hub.example>\r\n", "Missing To"),
            ("CSeq: 1 INVITE\r\n", "Missing CSeq"),
        ] {
            let msg = INVITE.replace(header, "");
            let (code, resp) = status(&inspect(msg.as_bytes(), 8192)).unwrap();
            assert_eq!(code, 400, "{reason}");
            assert!(resp.contains(reason), "{resp}");
        }
        // No Call-ID: nothing to answer with.
        let msg = INVITE.replace("Call-ID: call-1@127.0.0.1\r\n", "");
        assert!(matches!(inspect(msg.as_bytes(), 8192), Verdict::Drop(_)));
        let msg = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        assert_eq!(status(&inspect(msg.as_bytes(), 8192)).unwrap().0, 400);
        let msg = INVITE.replace("CSeq: 1 INVITE", "CSeq: x INVITE");
        assert_eq!(status(&inspect(msg.as_bytes(), 8192)).unwrap().0, 400);
        let msg = INVITE.replace("Via: SIP/2.0/UDP 127.0.0.1:5070", "Via: garbage");
        assert_eq!(status(&inspect(msg.as_bytes(), 8192)).unwrap().0, 400);
    }

    #[test]
    fn unknown_method_is_501_with_allow_and_oversize_is_513() {
        let msg = INVITE
            .replace("INVITE sip", "FROBNICATE sip")
            .replace("1 INVITE", "1 FROBNICATE");
        let (code, resp) = status(&inspect(msg.as_bytes(), 8192)).unwrap();
        assert_eq!(code, 501);
        assert!(resp.contains("Allow: INVITE"));
        let (code, _) = status(&inspect(INVITE.as_bytes(), 100)).unwrap();
        assert_eq!(code, 513);
    }

    #[test]
    fn ack_is_never_answered() {
        let ack = INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace("Content-Length: 4", "Content-Length: 99");
        assert!(matches!(inspect(ack.as_bytes(), 8192), Verdict::Drop(_)));
    }

    #[test]
    fn garbage_is_dropped() {
        for g in [
            &b"hello"[..],
            b"\x00\x01\x02",
            b"GET / HTTP/1.1\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",
        ] {
            assert!(matches!(inspect(g, 8192), Verdict::Drop(_)), "{g:?}");
        }
        assert_eq!(inspect(b"\r\n\r\n", 8192), Verdict::Accept { len: 4 });
    }
}
