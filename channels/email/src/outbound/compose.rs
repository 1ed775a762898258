//! Building outgoing messages (replies, forwards, acknowledgements) with lettre. Pure: the
//! Message-ID and the date are inputs.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::Message;

use crate::autoack::Ack;
use crate::parse::{Mailbox, ParsedEmail};
use crate::thread::TicketPattern;

/// A file to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingAttachment {
    pub filename: String,
    /// `type/subtype`; unparseable values become `application/octet-stream`.
    pub content_type: String,
    pub data: Vec<u8>,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingEmail {
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Message-ID (without `<>`) this answers.
    pub in_reply_to: Option<String>,
    /// The thread's Message-IDs, oldest first (without `<>`).
    pub references: Vec<String>,
    pub attachments: Vec<OutgoingAttachment>,
    /// Ticket reference to carry in the subject (`[#12345]`).
    pub ticket: Option<String>,
    /// `Auto-Submitted` value, e.g. `auto-replied` for acknowledgements.
    pub auto_submitted: Option<String>,
}

/// A composed message: what to hand to the relay and to store in the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedEmail {
    /// Without `<>`.
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    /// The exact bytes sent.
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("no sender")]
    NoSender,
    #[error("no recipient")]
    NoRecipient,
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// At most this many References are kept: the first (the thread's root) and the latest.
const MAX_REFERENCES: usize = 20;

/// A fresh Message-ID `uuid@domain` (without `<>`).
pub fn new_message_id(domain: &str) -> String {
    format!("{}@{}", uuid::Uuid::new_v4(), domain)
}

/// The References of an answer to `original`: its References and its own Message-ID — or,
/// when it has no References but answers a single message, that In-Reply-To and its own
/// Message-ID (RFC 5322 §3.6.4).
pub fn references_after(original: &ParsedEmail) -> Vec<String> {
    let mut refs = original.references.clone();
    if refs.is_empty() && original.in_reply_to.len() == 1 {
        refs = original.in_reply_to.clone();
    }
    if !refs.contains(&original.message_id) {
        refs.push(original.message_id.clone());
    }
    trim_references(refs)
}

fn trim_references(mut refs: Vec<String>) -> Vec<String> {
    if refs.len() > MAX_REFERENCES {
        let tail = refs.split_off(refs.len() - (MAX_REFERENCES - 1));
        refs.truncate(1);
        refs.extend(tail);
    }
    refs
}

fn with_prefix(prefix: &str, subject: &str) -> String {
    let lower = subject.trim_start().to_lowercase();
    if lower.starts_with(&format!("{}:", prefix.to_lowercase())) {
        subject.trim().to_string()
    } else {
        format!("{prefix}: {}", subject.trim())
    }
}

/// A reply to `original` from `from`, to its Reply-To (or From).
pub fn reply(
    original: &ParsedEmail,
    from: Mailbox,
    text: String,
    html: Option<String>,
) -> OutgoingEmail {
    OutgoingEmail {
        from: Some(from),
        to: original.reply_address().cloned().into_iter().collect(),
        subject: with_prefix("Re", &original.subject),
        text,
        html,
        in_reply_to: Some(original.message_id.clone()),
        references: references_after(original),
        ..OutgoingEmail::default()
    }
}

/// A forward of `original` (attached whole as `message/rfc822`) with a covering note.
pub fn forward(
    original: &ParsedEmail,
    original_raw: &[u8],
    from: Mailbox,
    to: Vec<Mailbox>,
    note: String,
) -> OutgoingEmail {
    OutgoingEmail {
        from: Some(from),
        to,
        subject: with_prefix("Fwd", &original.subject),
        text: note,
        references: references_after(original),
        attachments: vec![OutgoingAttachment {
            filename: "forwarded.eml".into(),
            content_type: "message/rfc822".into(),
            data: original_raw.to_vec(),
        }],
        ..OutgoingEmail::default()
    }
}

/// The acknowledgement decided by [`crate::autoack`], as a message from `from`.
pub fn ack_email(ack: &Ack, from: Mailbox) -> OutgoingEmail {
    OutgoingEmail {
        from: Some(from),
        to: vec![Mailbox {
            name: ack.to_name.clone(),
            address: ack.to.clone(),
        }],
        subject: ack.subject.clone(),
        text: ack.body.clone(),
        in_reply_to: Some(ack.in_reply_to.clone()),
        references: trim_references(ack.references.clone()),
        auto_submitted: Some("auto-replied".into()),
        ..OutgoingEmail::default()
    }
}

fn lettre_mailbox(m: &Mailbox) -> Result<lettre::message::Mailbox, ComposeError> {
    let address = m
        .address
        .parse::<lettre::Address>()
        .map_err(|_| ComposeError::Address(m.address.clone()))?;
    Ok(lettre::message::Mailbox::new(
        m.name.clone().filter(|n| !n.trim().is_empty()),
        address,
    ))
}

fn angle(id: &str) -> String {
    format!(
        "<{}>",
        id.trim().trim_start_matches('<').trim_end_matches('>')
    )
}

fn raw_header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// Builds the message: Message-ID `<message_id>`, Date `date`, the ticket in the subject,
/// multipart/alternative when there is HTML, multipart/mixed with attachments.
pub fn compose(
    mail: &OutgoingEmail,
    message_id: &str,
    date: DateTime<Utc>,
    tickets: &TicketPattern,
) -> Result<ComposedEmail, ComposeError> {
    let from = mail.from.as_ref().ok_or(ComposeError::NoSender)?;
    if mail.to.is_empty() && mail.cc.is_empty() && mail.bcc.is_empty() {
        return Err(ComposeError::NoRecipient);
    }
    let subject = match &mail.ticket {
        Some(t) => tickets.tag(&mail.subject, t),
        None => mail.subject.clone(),
    };
    let mut b = Message::builder()
        .from(lettre_mailbox(from)?)
        .subject(subject)
        .date(SystemTime::from(date))
        .message_id(Some(angle(message_id)));
    for m in &mail.to {
        b = b.to(lettre_mailbox(m)?);
    }
    for m in &mail.cc {
        b = b.cc(lettre_mailbox(m)?);
    }
    for m in &mail.bcc {
        b = b.bcc(lettre_mailbox(m)?);
    }
    if let Some(r) = &mail.reply_to {
        b = b.reply_to(lettre_mailbox(r)?);
    }
    if let Some(irt) = &mail.in_reply_to {
        b = b.in_reply_to(angle(irt));
    }
    if !mail.references.is_empty() {
        let refs: Vec<String> = mail.references.iter().map(|r| angle(r)).collect();
        b = b.references(refs.join(" "));
    }
    if let Some(auto) = &mail.auto_submitted {
        b = b
            .raw_header(raw_header("Auto-Submitted", auto.clone()))
            .raw_header(raw_header("X-Auto-Response-Suppress", "All".into()));
    }

    let text = || SinglePart::plain(mail.text.clone());
    let alternative = mail
        .html
        .as_ref()
        .map(|html| MultiPart::alternative_plain_html(mail.text.clone(), html.clone()));
    let message = if mail.attachments.is_empty() {
        match alternative {
            Some(alt) => b.multipart(alt),
            None => b.singlepart(text()),
        }
    } else {
        let mut mixed = match alternative {
            Some(alt) => MultiPart::mixed().multipart(alt),
            None => MultiPart::mixed().singlepart(text()),
        };
        for a in &mail.attachments {
            let ct = ContentType::parse(&a.content_type)
                .unwrap_or_else(|_| ContentType::parse("application/octet-stream").expect("valid"));
            mixed = mixed.singlepart(Attachment::new(a.filename.clone()).body(a.data.clone(), ct));
        }
        b.multipart(mixed)
    }
    .map_err(|e| ComposeError::Build(e.to_string()))?;

    let envelope = message.envelope();
    Ok(ComposedEmail {
        message_id: message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string(),
        envelope_from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
        recipients: envelope.to().iter().map(|a| a.to_string()).collect(),
        raw: message.formatted(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, ParseOptions};
    use chrono::TimeZone;

    fn original() -> ParsedEmail {
        parse(
            "From: 客户 <cust@client.example>\r\nReply-To: cust-reply@client.example\r\n\
             Subject: 发票问题\r\nMessage-ID: <c2@client.example>\r\nReferences: <c1@client.example>\r\n\r\nhi"
                .as_bytes(),
            &ParseOptions::default(),
        )
    }

    fn agent() -> Mailbox {
        Mailbox {
            name: Some("客服 小王".into()),
            address: "service@example.com".into(),
        }
    }

    #[test]
    fn reply_carries_thread_headers_ticket_and_round_trips_through_the_parser() {
        let mut r = reply(
            &original(),
            agent(),
            "您好，发票已寄出。".into(),
            Some("<p>您好，<b>发票</b>已寄出。</p>".into()),
        );
        r.ticket = Some("1024".into());
        r.attachments.push(OutgoingAttachment {
            filename: "发票.pdf".into(),
            content_type: "application/pdf".into(),
            data: vec![1, 2, 3, 4],
        });
        let date = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
        let c = compose(&r, "abc-123@example.com", date, &TicketPattern::default()).unwrap();
        assert_eq!(c.message_id, "abc-123@example.com");
        assert_eq!(c.recipients, vec!["cust-reply@client.example"]);
        let text = String::from_utf8_lossy(&c.raw);
        assert!(
            text.is_ascii()
                || !text
                    .lines()
                    .take_while(|l| !l.is_empty())
                    .any(|l| !l.is_ascii())
        );
        let p = parse(&c.raw, &ParseOptions::default());
        assert_eq!(p.message_id, "abc-123@example.com");
        assert_eq!(p.subject, "[#1024] Re: 发票问题");
        assert_eq!(p.in_reply_to, vec!["c2@client.example"]);
        assert_eq!(p.references, vec!["c1@client.example", "c2@client.example"]);
        assert_eq!(p.from.as_ref().unwrap().name.as_deref(), Some("客服 小王"));
        assert_eq!(
            p.text_body.as_deref().map(str::trim),
            Some("您好，发票已寄出。")
        );
        assert!(p.html_body.unwrap().contains("<b>发票</b>"));
        assert_eq!(p.attachments[0].filename.as_deref(), Some("发票.pdf"));
        assert_eq!(p.attachments[0].data, vec![1, 2, 3, 4]);
        assert_eq!(p.date, Some(date));
        assert!(!p.auto_submitted);
    }

    #[test]
    fn references_are_capped_keeping_root_and_latest() {
        let mut o = original();
        o.references = (0..40).map(|i| format!("r{i}@x")).collect();
        let refs = references_after(&o);
        assert_eq!(refs.len(), MAX_REFERENCES);
        assert_eq!(refs[0], "r0@x");
        assert_eq!(refs.last().unwrap(), "c2@client.example");
    }

    #[test]
    fn forward_attaches_the_original() {
        let raw = b"From: a@b.c\r\nSubject: x\r\nMessage-ID: <f@b.c>\r\n\r\nbody";
        let o = parse(raw, &ParseOptions::default());
        let f = forward(
            &o,
            raw,
            agent(),
            vec![Mailbox {
                name: None,
                address: "boss@example.com".into(),
            }],
            "FYI".into(),
        );
        let c = compose(&f, "fw1@example.com", Utc::now(), &TicketPattern::default()).unwrap();
        let p = parse(&c.raw, &ParseOptions::default());
        assert_eq!(p.subject, "Fwd: x");
        assert_eq!(p.attachments[0].content_type, "message/rfc822");
        let inner = String::from_utf8_lossy(&p.attachments[0].data).into_owned();
        assert!(
            inner.contains("Message-ID: <f@b.c>") && inner.contains("body"),
            "{inner}"
        );
    }

    #[test]
    fn compose_errors() {
        let mut m = OutgoingEmail {
            from: Some(agent()),
            ..OutgoingEmail::default()
        };
        assert_eq!(
            compose(&m, "x@y", Utc::now(), &TicketPattern::default()),
            Err(ComposeError::NoRecipient)
        );
        m.to.push(Mailbox {
            name: None,
            address: "not an address".into(),
        });
        assert!(matches!(
            compose(&m, "x@y", Utc::now(), &TicketPattern::default()),
            Err(ComposeError::Address(_))
        ));
        assert!(new_message_id("example.com").ends_with("@example.com"));
        assert_ne!(new_message_id("a"), new_message_id("a"));
    }
}
