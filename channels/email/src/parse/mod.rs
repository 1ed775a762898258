//! From raw message bytes to a [`ParsedEmail`]: addresses, decoded subject, bodies, a
//! sanitized HTML for display, attachments within limits, and the flags the hub's policies
//! need (auto-submitted, bounce, mailing list). Malformed MIME never fails: what can be read
//! is kept and the problems are listed in [`ParsedEmail::warnings`].

pub mod charset;
pub mod sanitize;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use sanitize::{resolve_inline_images, sanitize_html};

/// A name and a lower-cased address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// One attachment (or inline part such as an embedded image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Position among the message's attachments; `data-attachment-index` in the sanitized
    /// HTML refers to it.
    pub index: usize,
    pub filename: Option<String>,
    /// `type/subtype`, lower-cased.
    pub content_type: String,
    /// Decoded size in bytes (also for omitted attachments).
    pub size: usize,
    /// The decoded content; empty when `omitted`.
    #[serde(skip)]
    pub data: Vec<u8>,
    pub inline: bool,
    /// Content-ID without `<>`.
    pub content_id: Option<String>,
    /// Over the per-attachment or total limit (or too deeply nested): recorded, not kept.
    pub omitted: bool,
}

/// Limits applied while parsing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseOptions {
    pub max_attachment_size: usize,
    pub max_total_attachment_size: usize,
    /// Deepest multipart nesting read; deeper parts are skipped with a warning.
    pub max_depth: usize,
    /// Most MIME parts read.
    pub max_parts: usize,
    /// Produce [`ParsedEmail::html_sanitized`].
    pub sanitize: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            max_attachment_size: 25 * 1024 * 1024,
            max_total_attachment_size: 50 * 1024 * 1024,
            max_depth: 16,
            max_parts: 500,
            sanitize: true,
        }
    }
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedEmail {
    /// Without `<>`. Synthesized from a hash of the raw bytes when the message has none,
    /// so the same bytes always get the same id.
    pub message_id: String,
    pub message_id_synthesized: bool,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from: Option<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    pub text_body: Option<String>,
    /// True when `text_body` was made from the HTML body (there was no text part).
    pub text_from_html: bool,
    pub html_body: Option<String>,
    pub html_sanitized: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Auto-Submitted other than `no`, X-Autoreply, X-Autorespond, Precedence
    /// bulk/list/junk/auto_reply, or X-Auto-Response-Suppress.
    pub auto_submitted: bool,
    /// A delivery status notification (multipart/report; report-type=delivery-status), from
    /// MAILER-DAEMON, or sent with the null envelope sender.
    pub is_bounce: bool,
    /// Has List-Id or List-Unsubscribe.
    pub is_list: bool,
    pub raw_size: usize,
    pub warnings: Vec<String>,
}

impl ParsedEmail {
    /// Where replies go: Reply-To if given, else From.
    pub fn reply_address(&self) -> Option<&Mailbox> {
        self.reply_to.first().or(self.from.as_ref())
    }

    /// Takes the SMTP envelope sender into account: the null sender `<>` means a bounce.
    pub fn apply_envelope_sender(&mut self, mail_from: &str) {
        let s = mail_from
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        if s.is_empty() || is_mailer_daemon(s) {
            self.is_bounce = true;
        }
    }
}

/// Parses a message. Never panics and never fails: unreadable input gives a mostly empty
/// result with warnings.
pub fn parse(raw: &[u8], opts: &ParseOptions) -> ParsedEmail {
    let mut out = ParsedEmail {
        message_id: String::new(),
        message_id_synthesized: false,
        in_reply_to: Vec::new(),
        references: Vec::new(),
        from: None,
        reply_to: Vec::new(),
        to: Vec::new(),
        cc: Vec::new(),
        subject: String::new(),
        date: None,
        text_body: None,
        text_from_html: false,
        html_body: None,
        html_sanitized: None,
        attachments: Vec::new(),
        auto_submitted: false,
        is_bounce: false,
        is_list: false,
        raw_size: raw.len(),
        warnings: Vec::new(),
    };
    let parser = MessageParser::default();
    // mail-parser 0.11 has a debug assertion reachable by corrupt multipart nesting; a panic
    // in a dependency must not take the connection down, so fall back to the headers alone.
    let parsed = std::panic::catch_unwind(|| parser.parse(raw)).unwrap_or_else(|_| {
        out.warnings
            .push("MIME structure unreadable: only the headers were read".into());
        std::panic::catch_unwind(|| parser.parse_headers(raw)).unwrap_or(None)
    });
    let Some(message) = parsed else {
        out.warnings.push("not a readable message".into());
        out.message_id = synthesized_id(raw);
        out.message_id_synthesized = true;
        if !raw.is_empty() {
            out.text_body = Some(charset::decode_guess(raw, None).0);
        }
        return out;
    };

    let hint = charset_hint(&message);
    read_headers(&message, raw, hint, &mut out);
    if out.message_id.is_empty() {
        out.message_id = synthesized_id(raw);
        out.message_id_synthesized = true;
        out.warnings
            .push("no Message-ID: synthesized from the content".into());
    }
    read_flags(&message, &mut out);

    let depth = part_depths(&message);
    if message.parts.len() > opts.max_parts {
        out.warnings.push(format!(
            "{} MIME parts: only the first {} are read",
            message.parts.len(),
            opts.max_parts
        ));
    }
    let readable = |id: u32| {
        let id = id as usize;
        id < opts.max_parts && depth.get(id).copied().unwrap_or(0) <= opts.max_depth
    };
    if depth.iter().any(|&d| d != usize::MAX && d > opts.max_depth) {
        out.warnings.push(format!(
            "MIME nesting deeper than {}: deeper parts skipped",
            opts.max_depth
        ));
    }
    check_structure(&message, &mut out);

    read_attachments(&message, raw, hint, opts, &readable, &mut out);
    read_bodies(&message, raw, hint, &readable, &mut out);

    if opts.sanitize {
        if let Some(html) = &out.html_body {
            let cids: HashMap<String, usize> = out
                .attachments
                .iter()
                .filter(|a| !a.omitted)
                .filter_map(|a| a.content_id.clone().map(|c| (c, a.index)))
                .collect();
            out.html_sanitized = Some(sanitize_html(html, &cids));
        }
    }
    out
}

fn synthesized_id(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}@synthesized.contact-hub.invalid")
}

/// The charset the message declares for its text, used for undeclared 8-bit headers.
fn charset_hint(message: &Message<'_>) -> Option<&'static encoding_rs::Encoding> {
    message
        .parts
        .iter()
        .filter_map(|p| p.content_type())
        .filter_map(|ct| ct.attribute("charset"))
        .filter_map(charset::encoding_for_label)
        .find(|e| *e != encoding_rs::UTF_8 && e.is_ascii_compatible())
        .or_else(|| {
            message
                .parts
                .iter()
                .filter_map(|p| p.content_type())
                .filter_map(|ct| ct.attribute("charset"))
                .filter_map(charset::encoding_for_label)
                .next()
        })
}

fn read_headers(
    message: &Message<'_>,
    raw: &[u8],
    hint: Option<&'static encoding_rs::Encoding>,
    out: &mut ParsedEmail,
) {
    // Headers in raw 8-bit without RFC 2047 (often GBK or Big5): transcode the header block
    // with the guessed charset and read the address and subject fields from that.
    let header_end = (message.parts[0].offset_body as usize).min(raw.len());
    let header_block = &raw[..header_end];
    let transcoded;
    let fields: &Message<'_> = if std::str::from_utf8(header_block).is_err() {
        let (text, enc) = charset::decode_guess(header_block, hint);
        out.warnings
            .push(format!("raw 8-bit header text read as {}", enc.name()));
        transcoded = MessageParser::default()
            .parse_headers(text.as_bytes())
            .map(|m| m.into_owned());
        transcoded.as_ref().unwrap_or(message)
    } else {
        message
    };

    out.subject = fields.subject().unwrap_or_default().trim().to_string();
    out.from = fields.from().and_then(|a| mailboxes(a).into_iter().next());
    if out.from.is_none() {
        out.warnings.push("no From address".into());
    }
    out.reply_to = fields.reply_to().map(mailboxes).unwrap_or_default();
    out.to = fields.to().map(mailboxes).unwrap_or_default();
    out.cc = fields.cc().map(mailboxes).unwrap_or_default();
    out.message_id = message.message_id().unwrap_or_default().trim().to_string();
    out.in_reply_to = ids(message.in_reply_to());
    out.references = ids(message.references());
    out.date = message
        .date()
        .and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0));
    if out.date.is_none() {
        out.warnings.push("no readable Date".into());
    }
}

fn mailboxes(address: &Address<'_>) -> Vec<Mailbox> {
    address
        .iter()
        .filter_map(|a| {
            let addr = a.address.as_deref()?.trim();
            if addr.is_empty() {
                return None;
            }
            let name = a
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case(addr))
                .map(str::to_string);
            Some(Mailbox {
                name,
                address: addr.to_lowercase(),
            })
        })
        .collect()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let raw: Vec<&str> = match value {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    raw.into_iter()
        .map(|s| {
            s.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn header_text<'a>(message: &'a Message<'_>, name: &'a str) -> Option<&'a str> {
    match message.header(name)? {
        HeaderValue::Text(t) => Some(t.as_ref()),
        HeaderValue::TextList(l) => l.first().map(|t| t.as_ref()),
        _ => message.header_raw(name),
    }
}

fn has_header(message: &Message<'_>, name: &str) -> bool {
    message.header(name).is_some()
}

fn read_flags(message: &Message<'_>, out: &mut ParsedEmail) {
    let token = |name: &str| {
        header_text(message, name).map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    };
    let auto_submitted = token("Auto-Submitted").is_some_and(|v| v != "no");
    let precedence = token("Precedence")
        .is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk" | "auto_reply"));
    out.auto_submitted = auto_submitted
        || precedence
        || has_header(message, "X-Autoreply")
        || has_header(message, "X-Autorespond")
        || has_header(message, "X-Auto-Response-Suppress");

    out.is_list = !matches!(message.list_id(), HeaderValue::Empty)
        || !matches!(message.list_unsubscribe(), HeaderValue::Empty);

    let report = message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|r| r.eq_ignore_ascii_case("delivery-status"))
    });
    let daemon = out
        .from
        .as_ref()
        .is_some_and(|f| is_mailer_daemon(&f.address));
    let null_return_path = message
        .header_raw("Return-Path")
        .is_some_and(|r| r.trim() == "<>");
    out.is_bounce = report || daemon || null_return_path;
}

fn is_mailer_daemon(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or_default();
    local.eq_ignore_ascii_case("mailer-daemon") || local.eq_ignore_ascii_case("postmaster")
}

/// Multipart depth of every part reachable from the root; `usize::MAX` for the rest.
fn part_depths(message: &Message<'_>) -> Vec<usize> {
    let mut depth = vec![usize::MAX; message.parts.len()];
    let mut stack = vec![(0u32, 0usize)];
    while let Some((id, d)) = stack.pop() {
        let Some(slot) = depth.get_mut(id as usize) else {
            continue;
        };
        if *slot != usize::MAX {
            continue;
        }
        *slot = d;
        if let PartType::Multipart(children) = &message.parts[id as usize].body {
            stack.extend(children.iter().map(|&c| (c, d + 1)));
        }
    }
    depth
}

fn check_structure(message: &Message<'_>, out: &mut ParsedEmail) {
    let raw = message.raw_message.as_ref();
    for (i, part) in message.parts.iter().enumerate() {
        if part.is_encoding_problem {
            out.warnings
                .push(format!("part {i}: content could not be decoded cleanly"));
        }
        let Some(ct) = part.content_type() else {
            continue;
        };
        if !ct.ctype().eq_ignore_ascii_case("multipart") {
            continue;
        }
        match ct.attribute("boundary") {
            None => out
                .warnings
                .push(format!("part {i}: multipart without a boundary")),
            Some(b) => {
                let start = (part.offset_body as usize).min(raw.len());
                let end = (part.offset_end as usize).clamp(start, raw.len());
                let closing = format!("--{b}--");
                if !contains(&raw[start..end], closing.as_bytes())
                    && !contains(&raw[start..], closing.as_bytes())
                {
                    out.warnings.push(format!(
                        "part {i}: multipart not terminated (missing closing boundary)"
                    ));
                }
            }
        }
    }
}

/// Searched from the end: a closing boundary sits at the end of its part, so a well-formed
/// message is answered after a few bytes instead of a scan of the whole part.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::rfind(hay, needle).is_some()
}

fn content_type_of(part: &mail_parser::MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => match part.body {
            PartType::Message(_) => "message/rfc822".into(),
            PartType::Html(_) => "text/html".into(),
            PartType::Text(_) => "text/plain".into(),
            _ => "application/octet-stream".into(),
        },
    }
}

fn read_attachments(
    message: &Message<'_>,
    raw: &[u8],
    hint: Option<&'static encoding_rs::Encoding>,
    opts: &ParseOptions,
    readable: &dyn Fn(u32) -> bool,
    out: &mut ParsedEmail,
) {
    let mut total = 0usize;
    for &id in &message.attachments {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        let index = out.attachments.len();
        let data: Vec<u8> = match &part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
            PartType::Text(t) | PartType::Html(t) => t.as_bytes().to_vec(),
            PartType::Message(m) => m.raw_message.to_vec(),
            PartType::Multipart(_) => continue,
        };
        let inline = matches!(part.body, PartType::InlineBinary(_))
            || part
                .content_disposition()
                .is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"));
        let filename = attachment_name(part, raw, hint);
        let size = data.len();
        let mut omitted = false;
        if !readable(id) {
            omitted = true;
        } else if size > opts.max_attachment_size {
            out.warnings.push(format!(
                "attachment {index} ({size} bytes) over the per-attachment limit: omitted"
            ));
            omitted = true;
        } else if total + size > opts.max_total_attachment_size {
            out.warnings.push(format!(
                "attachment {index} ({size} bytes) over the total attachment limit: omitted"
            ));
            omitted = true;
        }
        if !omitted {
            total += size;
        }
        out.attachments.push(Attachment {
            index,
            filename,
            content_type: content_type_of(part),
            size,
            data: if omitted { Vec::new() } else { data },
            inline,
            content_id: part
                .content_id()
                .map(|c| {
                    c.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
                .filter(|c| !c.is_empty()),
            omitted,
        });
    }
}

/// The file name, decoded; raw 8-bit names (undeclared GBK/Big5) are re-read from the raw
/// header bytes with the guessed charset.
fn attachment_name(
    part: &mail_parser::MessagePart<'_>,
    raw: &[u8],
    hint: Option<&'static encoding_rs::Encoding>,
) -> Option<String> {
    let name = part.attachment_name().map(str::to_string);
    if name.as_deref().is_some_and(|n| n.contains('\u{fffd}')) {
        for header in part.headers.iter().filter(|h| {
            matches!(
                h.name,
                HeaderName::ContentDisposition | HeaderName::ContentType
            )
        }) {
            let start = header.offset_start as usize;
            let end = (header.offset_end as usize).min(raw.len());
            if start >= end {
                continue;
            }
            let (text, _) = charset::decode_guess(&raw[start..end], hint);
            if let Some(found) = raw_param(&text, "filename").or_else(|| raw_param(&text, "name")) {
                return Some(found);
            }
        }
    }
    name.filter(|n| !n.trim().is_empty())
}

fn raw_param(header: &str, param: &str) -> Option<String> {
    let lower = header.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(param) {
        let at = from + pos;
        from = at + param.len();
        let before_ok = at == 0 || matches!(lower.as_bytes()[at - 1], b';' | b' ' | b'\t' | b'\n');
        let rest = header[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value = rest[1..].trim_start();
        let value = if let Some(quoted) = value.strip_prefix('"') {
            quoted.split('"').next().unwrap_or_default()
        } else {
            value
                .split([';', '\r', '\n'])
                .next()
                .unwrap_or_default()
                .trim()
        };
        if !value.is_empty() {
            return Some(value.to_string());
        }
    }
    None
}

fn read_bodies(
    message: &Message<'_>,
    raw: &[u8],
    hint: Option<&'static encoding_rs::Encoding>,
    readable: &dyn Fn(u32) -> bool,
    out: &mut ParsedEmail,
) {
    let mut texts = Vec::new();
    let mut text_from_html = false;
    for &id in message.text_body.iter().filter(|&&id| readable(id)) {
        match message.parts.get(id as usize).map(|p| (&p.body, p)) {
            Some((PartType::Text(t), part)) => texts.push(undeclared_8bit(part, t, raw, hint)),
            Some((PartType::Html(h), _)) => {
                texts.push(mail_parser::decoders::html::html_to_text(h));
                text_from_html = true;
            }
            _ => {}
        }
    }
    let mut htmls = Vec::new();
    for &id in message.html_body.iter().filter(|&&id| readable(id)) {
        if let Some(PartType::Html(h)) = message.parts.get(id as usize).map(|p| &p.body) {
            htmls.push(h.to_string());
        }
    }
    if !texts.is_empty() {
        out.text_body = Some(texts.join("\n"));
        out.text_from_html = text_from_html;
    }
    if !htmls.is_empty() {
        out.html_body = Some(htmls.join("\n"));
    }
    if out.text_body.is_none() {
        if let Some(html) = &out.html_body {
            out.text_body = Some(mail_parser::decoders::html::html_to_text(html));
            out.text_from_html = true;
        }
    }
}

/// A text part without a charset whose 8-bit body is not UTF-8 was decoded lossily by the
/// parser; decode its raw bytes with the guessed charset instead.
fn undeclared_8bit(
    part: &mail_parser::MessagePart<'_>,
    decoded: &str,
    raw: &[u8],
    hint: Option<&'static encoding_rs::Encoding>,
) -> String {
    let declared = part
        .content_type()
        .is_some_and(|ct| ct.attribute("charset").is_some());
    if declared || !decoded.contains('\u{fffd}') || part.encoding != mail_parser::Encoding::None {
        return decoded.to_string();
    }
    let start = (part.offset_body as usize).min(raw.len());
    let end = (part.offset_end as usize).clamp(start, raw.len());
    charset::decode_guess(&raw[start..end], hint).0
}

#[cfg(test)]
mod tests;
