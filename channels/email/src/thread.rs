//! Which conversation a new message joins, and why. Pure: the hub supplies the facts
//! through [`ThreadLookup`] (from its index, or pre-fetched into [`KnownFacts`]).
//!
//! Order: In-Reply-To naming a known Message-ID; then References (newest first); then a ticket
//! reference in the subject (`[#12345]` by default); then the same sender with the same
//! normalized subject within a time window; otherwise a new conversation.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::parse::ParsedEmail;

/// How a ticket reference looks in a subject: `prefix`, then ASCII letters, digits or `-`,
/// then `suffix`. The default is `[#12345]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPattern {
    pub prefix: String,
    pub suffix: String,
    /// Only digits between prefix and suffix (the default); otherwise letters and `-` too.
    pub digits_only: bool,
}

impl Default for TicketPattern {
    fn default() -> Self {
        Self {
            prefix: "[#".into(),
            suffix: "]".into(),
            digits_only: true,
        }
    }
}

impl TicketPattern {
    /// The first ticket reference in `subject`, without prefix and suffix.
    pub fn find<'a>(&self, subject: &'a str) -> Option<&'a str> {
        self.spans(subject).next().map(|(_, _, t)| t)
    }

    /// `subject` with the ticket reference added in front, unless it already carries it.
    pub fn tag(&self, subject: &str, ticket: &str) -> String {
        if self.spans(subject).any(|(_, _, t)| t == ticket) {
            return subject.to_string();
        }
        format!(
            "{}{}{} {}",
            self.prefix,
            ticket,
            self.suffix,
            subject.trim()
        )
        .trim_end()
        .to_string()
    }

    /// `subject` without any ticket references.
    pub fn strip(&self, subject: &str) -> String {
        let mut out = String::with_capacity(subject.len());
        let mut last = 0;
        for (start, end, _) in self.spans(subject) {
            out.push_str(&subject[last..start]);
            last = end;
        }
        out.push_str(&subject[last..]);
        out
    }

    fn spans<'a, 'p>(
        &'p self,
        subject: &'a str,
    ) -> impl Iterator<Item = (usize, usize, &'a str)> + use<'a, 'p> {
        let mut from = 0;
        std::iter::from_fn(move || {
            if self.prefix.is_empty() {
                return None;
            }
            while let Some(pos) = subject[from..].find(&self.prefix) {
                let start = from + pos;
                let body_start = start + self.prefix.len();
                let body_len = subject[body_start..]
                    .bytes()
                    .take_while(|b| {
                        b.is_ascii_digit()
                            || (!self.digits_only && (b.is_ascii_alphabetic() || *b == b'-'))
                    })
                    .count();
                let body_end = body_start + body_len;
                from = body_start;
                if body_len > 0 && subject[body_end..].starts_with(&self.suffix) {
                    let end = body_end + self.suffix.len();
                    from = end;
                    return Some((start, end, &subject[body_start..body_end]));
                }
            }
            None
        })
    }
}

/// Reply and forward prefixes in the languages our customers write (compared without case).
const PREFIXES: &[&str] = &[
    "re", "fw", "fwd", "aw", "sv", "wg", "vs", "antw", "回复", "回覆", "答复", "答覆", "转发",
    "轉發", "轉寄", "转寄",
];

/// The subject reduced for comparison: reply/forward prefixes (`Re:`, `RE:`, `Fwd:`, `FW:`,
/// `Aw:`, `Sv:`, `回复:`, `回覆:`, `答复:`, `转发:`, `轉寄:`, with ASCII or full-width colon
/// and counters like `Re[2]:`) and ticket tags removed, repeatedly; whitespace collapsed;
/// lower-cased.
pub fn normalize_subject(subject: &str, tickets: &TicketPattern) -> String {
    strip_subject_prefixes(subject, tickets).to_lowercase()
}

/// Like [`normalize_subject`] but keeping the case: the subject as a person would quote it.
pub fn strip_subject_prefixes(subject: &str, tickets: &TicketPattern) -> String {
    let mut s = tickets.strip(subject);
    loop {
        let trimmed = s.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{3000}');
        let mut stripped = None;
        for p in PREFIXES {
            let Some(head) = trimmed.get(..p.len()) else {
                continue;
            };
            if !head.eq_ignore_ascii_case(p) {
                continue;
            }
            let mut rest = trimmed[p.len()..].trim_start();
            // Counters: Re[2]: / Re(2):
            if let Some(r) = rest.strip_prefix(['[', '(']) {
                let digits = r.bytes().take_while(u8::is_ascii_digit).count();
                if let Some(after) = r[digits..].strip_prefix([']', ')']) {
                    rest = after.trim_start();
                }
            }
            if let Some(after) = rest.strip_prefix([':', '：']) {
                stripped = Some(after.to_string());
                break;
            }
        }
        match stripped {
            Some(next) => s = next,
            None => {
                s = trimmed.to_string();
                break;
            }
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Why a message joined a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadReason {
    InReplyTo,
    References,
    TicketRef,
    SubjectWindow,
    New,
}

/// The decision: the conversation to join (`None` = start a new one) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadDecision<Id> {
    pub conversation: Option<Id>,
    pub reason: ThreadReason,
    /// The ticket reference found in the subject, if any.
    pub ticket: Option<String>,
    pub normalized_subject: String,
}

/// The facts the decision needs, supplied by the hub.
pub trait ThreadLookup {
    type Id: Clone;
    /// The conversation holding the message with this Message-ID (without `<>`).
    fn conversation_of_message_id(&self, message_id: &str) -> Option<Self::Id>;
    /// The conversation with this ticket reference.
    fn conversation_of_ticket(&self, ticket: &str) -> Option<Self::Id>;
    /// The latest conversation with `sender` (lower-cased address) whose normalized subject is
    /// `normalized_subject` and that had activity at or after `since`.
    fn recent_conversation(
        &self,
        sender: &str,
        normalized_subject: &str,
        since: DateTime<Utc>,
    ) -> Option<Self::Id>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadConfig {
    pub tickets: TicketPattern,
    /// How far back the same sender and subject join an open conversation.
    pub subject_window: Duration,
}

impl Default for ThreadConfig {
    fn default() -> Self {
        Self {
            tickets: TicketPattern::default(),
            subject_window: Duration::days(7),
        }
    }
}

/// What of a message threading looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInput<'a> {
    pub in_reply_to: &'a [String],
    pub references: &'a [String],
    pub subject: &'a str,
    /// Lower-cased sender address (Reply-To is not used: it can be anyone).
    pub sender: Option<&'a str>,
}

impl<'a> From<&'a ParsedEmail> for ThreadInput<'a> {
    fn from(p: &'a ParsedEmail) -> Self {
        Self {
            in_reply_to: &p.in_reply_to,
            references: &p.references,
            subject: &p.subject,
            sender: p.from.as_ref().map(|m| m.address.as_str()),
        }
    }
}

/// Decides the conversation for a new message at time `now`.
pub fn decide<L: ThreadLookup>(
    input: &ThreadInput<'_>,
    lookup: &L,
    config: &ThreadConfig,
    now: DateTime<Utc>,
) -> ThreadDecision<L::Id> {
    let ticket = config.tickets.find(input.subject).map(str::to_string);
    let normalized_subject = normalize_subject(input.subject, &config.tickets);
    let decision = |conversation, reason| ThreadDecision {
        conversation,
        reason,
        ticket: ticket.clone(),
        normalized_subject: normalized_subject.clone(),
    };
    for id in input.in_reply_to {
        if let Some(c) = lookup.conversation_of_message_id(id) {
            return decision(Some(c), ThreadReason::InReplyTo);
        }
    }
    for id in input.references.iter().rev() {
        if let Some(c) = lookup.conversation_of_message_id(id) {
            return decision(Some(c), ThreadReason::References);
        }
    }
    if let Some(c) = ticket
        .as_deref()
        .and_then(|t| lookup.conversation_of_ticket(t))
    {
        return decision(Some(c), ThreadReason::TicketRef);
    }
    if let Some(sender) = input.sender.filter(|_| !normalized_subject.is_empty()) {
        let since = now - config.subject_window;
        if let Some(c) = lookup.recent_conversation(sender, &normalized_subject, since) {
            return decision(Some(c), ThreadReason::SubjectWindow);
        }
    }
    decision(None, ThreadReason::New)
}

/// Duplicate detection: a message whose Message-ID is already stored is the same message
/// (e.g. an MTA retry after a lost 250, or an IMAP message fetched again); returns the
/// conversation holding it.
pub fn duplicate_of<L: ThreadLookup>(message_id: &str, lookup: &L) -> Option<L::Id> {
    let id = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    if id.is_empty() {
        return None;
    }
    lookup.conversation_of_message_id(id)
}

/// Facts fetched ahead of the decision (for a hub that reads its store asynchronously).
#[derive(Debug, Clone, Default)]
pub struct KnownFacts<Id> {
    pub by_message_id: HashMap<String, Id>,
    pub by_ticket: HashMap<String, Id>,
    /// (sender, normalized subject) → (conversation, last activity).
    pub recent: HashMap<(String, String), (Id, DateTime<Utc>)>,
}

impl<Id: Clone> ThreadLookup for KnownFacts<Id> {
    type Id = Id;
    fn conversation_of_message_id(&self, message_id: &str) -> Option<Id> {
        self.by_message_id.get(message_id).cloned()
    }
    fn conversation_of_ticket(&self, ticket: &str) -> Option<Id> {
        self.by_ticket.get(ticket).cloned()
    }
    fn recent_conversation(&self, sender: &str, subject: &str, since: DateTime<Utc>) -> Option<Id> {
        self.recent
            .get(&(sender.to_string(), subject.to_string()))
            .filter(|(_, at)| *at >= since)
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn facts() -> KnownFacts<u32> {
        let mut f = KnownFacts::default();
        f.by_message_id.insert("first@cust".into(), 1);
        f.by_message_id.insert("ack@hub".into(), 2);
        f.by_ticket.insert("4711".into(), 3);
        f.recent
            .insert(("li@cust.example".into(), "发票问题".into()), (4, t(0)));
        f
    }

    fn input<'a>(irt: &'a [String], refs: &'a [String], subject: &'a str) -> ThreadInput<'a> {
        ThreadInput {
            in_reply_to: irt,
            references: refs,
            subject,
            sender: Some("li@cust.example"),
        }
    }

    #[test]
    fn normalizes_reply_and_forward_prefixes_in_all_languages() {
        let p = TicketPattern::default();
        for s in [
            "Re: 发票问题",
            "RE: RE: 发票问题",
            "Fwd: Re: 发票问题",
            "FW: 发票问题",
            "Aw: 发票问题",
            "Sv: 发票问题",
            "回复: 发票问题",
            "回复：发票问题",
            "回覆：回覆: 发票问题",
            "答复：发票问题",
            "转发：发票问题",
            "轉寄： 发票问题",
            "[#4711] Re: 发票问题",
            "Re: [#4711] 发票问题",
            "Re[2]: 发票问题",
            "  re :  发票问题  ",
        ] {
            assert_eq!(normalize_subject(s, &p), "发票问题", "{s}");
        }
        assert_eq!(normalize_subject("Order  12 Late", &p), "order 12 late");
        assert_eq!(
            normalize_subject("Reply needed", &p),
            "reply needed",
            "no colon, no prefix"
        );
        assert_eq!(normalize_subject("Re: ", &p), "");
    }

    #[test]
    fn ticket_pattern_finds_tags_and_strips() {
        let p = TicketPattern::default();
        assert_eq!(p.find("Re: [#4711] late order"), Some("4711"));
        assert_eq!(p.find("[#] [#abc] [#12"), None);
        assert_eq!(p.tag("late order", "4711"), "[#4711] late order");
        assert_eq!(
            p.tag("Re: [#4711] late order", "4711"),
            "Re: [#4711] late order"
        );
        let custom = TicketPattern {
            prefix: "工单#".into(),
            suffix: "".into(),
            digits_only: false,
        };
        assert_eq!(custom.find("回复：工单#CH-17 退款"), Some("CH-17"));
    }

    #[test]
    fn in_reply_to_wins_over_everything() {
        let irt = vec!["first@cust".to_string()];
        let refs = vec!["ack@hub".to_string()];
        let d = decide(
            &input(&irt, &refs, "[#4711] x"),
            &facts(),
            &ThreadConfig::default(),
            t(1),
        );
        assert_eq!(
            (d.conversation, d.reason),
            (Some(1), ThreadReason::InReplyTo)
        );
        assert_eq!(d.ticket.as_deref(), Some("4711"));
    }

    #[test]
    fn references_newest_first_then_ticket_then_subject_window() {
        let cfg = ThreadConfig::default();
        let refs = vec!["first@cust".to_string(), "ack@hub".to_string()];
        let unknown = vec!["nope@x".to_string()];
        let d = decide(&input(&unknown, &refs, "x"), &facts(), &cfg, t(1));
        assert_eq!(
            (d.conversation, d.reason),
            (Some(2), ThreadReason::References)
        );

        let d = decide(
            &input(&unknown, &unknown, "Re: [#4711] x"),
            &facts(),
            &cfg,
            t(1),
        );
        assert_eq!(
            (d.conversation, d.reason),
            (Some(3), ThreadReason::TicketRef)
        );

        let d = decide(&input(&[], &[], "回复：发票问题"), &facts(), &cfg, t(24));
        assert_eq!(
            (d.conversation, d.reason),
            (Some(4), ThreadReason::SubjectWindow)
        );

        // Outside the window, or another sender: new.
        let d = decide(
            &input(&[], &[], "回复：发票问题"),
            &facts(),
            &cfg,
            t(24 * 8),
        );
        assert_eq!((d.conversation, d.reason), (None, ThreadReason::New));
        let mut other = input(&[], &[], "发票问题");
        other.sender = Some("wang@cust.example");
        let d = decide(&other, &facts(), &cfg, t(1));
        assert_eq!(d.reason, ThreadReason::New);
        // An unknown ticket falls through to the later rules.
        let d = decide(&input(&[], &[], "[#999] 发票问题"), &facts(), &cfg, t(1));
        assert_eq!(d.reason, ThreadReason::SubjectWindow);
        // An empty subject never matches by subject.
        let d = decide(&input(&[], &[], "Re:"), &facts(), &cfg, t(1));
        assert_eq!(d.reason, ThreadReason::New);
    }

    #[test]
    fn duplicates_by_message_id() {
        assert_eq!(duplicate_of("<first@cust>", &facts()), Some(1));
        assert_eq!(duplicate_of("other@cust", &facts()), None);
        assert_eq!(duplicate_of("", &facts()), None);
    }
}
