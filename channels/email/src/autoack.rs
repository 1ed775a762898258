//! Whether a new conversation gets an automatic acknowledgement, and its text. Pure: time is
//! an input, the per-sender rate limit keeps its state in [`AckPolicy`].
//!
//! Never acknowledged: auto-submitted mail, bounces, mailing lists, null/`MAILER-DAEMON`/
//! `noreply`-style senders, and mail from our own addresses (loops). Templates exist per queue
//! and language (zh-CN, zh-TW, en) with `{ticket}`, `{subject}`, `{expected_response}` and
//! `{customer.name}`.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::parse::charset::script_counts;
use crate::parse::ParsedEmail;
use crate::sink::LocalAddresses;
use crate::thread::TicketPattern;

/// Languages the templates are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "zh-TW")]
    ZhTw,
    #[serde(rename = "en")]
    En,
}

impl Language {
    /// From a tag such as `zh-CN`, `zh-Hant`, `zh_TW`, `en-US`.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let t = tag.trim().to_ascii_lowercase().replace('_', "-");
        if t.starts_with("zh-tw")
            || t.starts_with("zh-hk")
            || t.starts_with("zh-mo")
            || t.starts_with("zh-hant")
        {
            Some(Language::ZhTw)
        } else if t.starts_with("zh") {
            Some(Language::ZhCn)
        } else if t.starts_with("en") {
            Some(Language::En)
        } else {
            None
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::ZhTw => "zh-TW",
            Language::En => "en",
        }
    }

    /// A guess from the text the customer wrote: Han characters mean Chinese, Traditional
    /// when Traditional-only characters outnumber Simplified-only ones.
    pub fn detect(text: &str) -> Self {
        let han = text
            .chars()
            .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
            .count();
        if han == 0 {
            return Language::En;
        }
        let (simplified, traditional) = script_counts(text);
        if traditional > simplified {
            Language::ZhTw
        } else {
            Language::ZhCn
        }
    }
}

/// Subject and body templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub subject: String,
    pub body: String,
}

/// Values for the template variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateVars {
    pub ticket: String,
    pub subject: String,
    pub expected_response: String,
    pub customer_name: String,
}

impl Template {
    /// Replaces `{ticket}`, `{subject}`, `{expected_response}` and `{customer.name}`; other
    /// braces stay as written. Values are inserted once (a value containing `{ticket}` is
    /// not expanded again).
    pub fn render_text(text: &str, vars: &TemplateVars) -> String {
        let mut out = String::with_capacity(text.len() + 64);
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            let value = [
                ("{ticket}", vars.ticket.as_str()),
                ("{subject}", vars.subject.as_str()),
                ("{expected_response}", vars.expected_response.as_str()),
                ("{customer.name}", vars.customer_name.as_str()),
            ]
            .into_iter()
            .find(|(k, _)| after.starts_with(k));
            match value {
                Some((k, v)) => {
                    out.push_str(v);
                    rest = &after[k.len()..];
                }
                None => {
                    out.push('{');
                    rest = &after[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    pub fn render(&self, vars: &TemplateVars) -> (String, String) {
        (
            Self::render_text(&self.subject, vars),
            Self::render_text(&self.body, vars),
        )
    }
}

/// Templates by queue and language; `*` is the queue every queue falls back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Templates {
    by_key: HashMap<String, Template>,
}

impl Default for Templates {
    /// The shipped acknowledgements for every queue in zh-CN, zh-TW and en.
    fn default() -> Self {
        let mut t = Templates {
            by_key: HashMap::new(),
        };
        t.set(
            "*",
            Language::ZhCn,
            Template {
                subject: "[#{ticket}] 我们已收到您的来信：{subject}".into(),
                body: "{customer.name}您好：\n\n\
                       感谢您的来信！我们已收到您的邮件，工单号为 {ticket}。\n\
                       客服人员会尽快处理，预计在{expected_response}内回复您。\n\n\
                       如需补充信息，请直接回复本邮件，并保留邮件主题中的工单号，\
                       以便我们及时跟进。\n\n\
                       此邮件为系统自动发送，请勿修改主题。\n\n\
                       客户服务中心"
                    .into(),
            },
        );
        t.set(
            "*",
            Language::ZhTw,
            Template {
                subject: "[#{ticket}] 我們已收到您的來信：{subject}".into(),
                body: "{customer.name}您好：\n\n\
                       感謝您的來信！我們已收到您的郵件，案件編號為 {ticket}。\n\
                       客服人員會盡快處理，預計在{expected_response}內回覆您。\n\n\
                       如需補充資料，請直接回覆本郵件，並保留郵件主旨中的案件編號，\
                       以便我們即時跟進。\n\n\
                       此郵件由系統自動發送，請勿修改主旨。\n\n\
                       客戶服務中心"
                    .into(),
            },
        );
        t.set(
            "*",
            Language::En,
            Template {
                subject: "[#{ticket}] We have received your message: {subject}".into(),
                body: "Dear {customer.name},\n\n\
                       Thank you for contacting us. We have received your message and opened \
                       ticket {ticket}.\n\
                       An agent will get back to you within {expected_response}.\n\n\
                       To add information, simply reply to this email and keep the ticket \
                       number in the subject line.\n\n\
                       This is an automatic message.\n\n\
                       Customer Service"
                    .into(),
            },
        );
        t
    }
}

impl Templates {
    pub fn empty() -> Self {
        Templates {
            by_key: HashMap::new(),
        }
    }

    pub fn set(&mut self, queue: &str, language: Language, template: Template) {
        self.by_key
            .insert(format!("{queue}\u{0}{}", language.tag()), template);
    }

    /// The template for `queue` in `language`, falling back to the `*` queue, then to
    /// English.
    pub fn get(&self, queue: &str, language: Language) -> Option<&Template> {
        let key = |q: &str, l: Language| format!("{q}\u{0}{}", l.tag());
        self.by_key
            .get(&key(queue, language))
            .or_else(|| self.by_key.get(&key("*", language)))
            .or_else(|| self.by_key.get(&key(queue, Language::En)))
            .or_else(|| self.by_key.get(&key("*", Language::En)))
    }
}

/// Why no acknowledgement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The message joined an existing conversation.
    NotNewConversation,
    AutoSubmitted,
    Bounce,
    MailingList,
    /// Null, MAILER-DAEMON, postmaster or noreply-style sender, or none at all.
    NoReplySender,
    /// From one of our own addresses: answering would loop.
    OwnAddress,
    RateLimited,
    NoTemplate,
}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckDecision {
    Send(Ack),
    Skip(SkipReason),
}

/// The acknowledgement to send; [`crate::outbound::compose_ack`] turns it into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Lower-cased address to send to (Reply-To, else From).
    pub to: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub body: String,
    pub language: Language,
    /// Message-ID of the original (for In-Reply-To).
    pub in_reply_to: String,
    /// The original's References plus its Message-ID.
    pub references: Vec<String>,
}

/// The facts about one new message the hub knows beyond the parsed email.
#[derive(Debug, Clone)]
pub struct AckRequest<'a> {
    pub email: &'a ParsedEmail,
    /// SMTP MAIL FROM, if the message came by SMTP (empty = null sender).
    pub envelope_from: Option<&'a str>,
    pub is_new_conversation: bool,
    pub queue: &'a str,
    pub ticket: &'a str,
    /// The customer's preferred language if the archive has one; else detected.
    pub language: Option<Language>,
    pub customer_name: Option<&'a str>,
    /// e.g. "4 小时" / "4 hours", from the queue's service target.
    pub expected_response: &'a str,
}

#[derive(Debug, Clone)]
pub struct AckConfig {
    pub our_addresses: LocalAddresses,
    /// Our domains: any address there is ours (covers `noreply@`, agents' own addresses).
    pub our_domains: Vec<String>,
    pub max_per_sender: usize,
    pub window: Duration,
    pub templates: Templates,
    pub tickets: TicketPattern,
}

impl Default for AckConfig {
    fn default() -> Self {
        Self {
            our_addresses: LocalAddresses::new(),
            our_domains: Vec::new(),
            max_per_sender: 3,
            window: Duration::hours(1),
            templates: Templates::default(),
            tickets: TicketPattern::default(),
        }
    }
}

/// The policy with its per-sender rate-limit state.
#[derive(Debug, Clone)]
pub struct AckPolicy {
    config: AckConfig,
    sent: HashMap<String, VecDeque<DateTime<Utc>>>,
}

impl AckPolicy {
    pub fn new(config: AckConfig) -> Self {
        Self {
            config,
            sent: HashMap::new(),
        }
    }

    pub fn config(&self) -> &AckConfig {
        &self.config
    }

    /// Decides, and when the answer is [`AckDecision::Send`] counts it against the sender's
    /// limit.
    pub fn decide(&mut self, req: &AckRequest<'_>, now: DateTime<Utc>) -> AckDecision {
        match self.check(req, now) {
            Ok(ack) => {
                self.sent.entry(ack.to.clone()).or_default().push_back(now);
                AckDecision::Send(ack)
            }
            Err(reason) => AckDecision::Skip(reason),
        }
    }

    fn check(&mut self, req: &AckRequest<'_>, now: DateTime<Utc>) -> Result<Ack, SkipReason> {
        let email = req.email;
        if !req.is_new_conversation {
            return Err(SkipReason::NotNewConversation);
        }
        if email.auto_submitted {
            return Err(SkipReason::AutoSubmitted);
        }
        if email.is_bounce
            || req
                .envelope_from
                .is_some_and(|f| f.trim().trim_matches(['<', '>']).is_empty())
        {
            return Err(SkipReason::Bounce);
        }
        if email.is_list {
            return Err(SkipReason::MailingList);
        }
        let from = email.from.as_ref().map(|m| m.address.as_str());
        let to = email.reply_address().ok_or(SkipReason::NoReplySender)?;
        for address in [from, Some(to.address.as_str()), req.envelope_from]
            .into_iter()
            .flatten()
        {
            if self.is_ours(address) {
                return Err(SkipReason::OwnAddress);
            }
            if is_no_reply(address) {
                return Err(SkipReason::NoReplySender);
            }
        }
        self.prune(now);
        if self
            .sent
            .get(&to.address)
            .is_some_and(|q| q.len() >= self.config.max_per_sender)
        {
            return Err(SkipReason::RateLimited);
        }
        let language = req.language.unwrap_or_else(|| {
            let sample: String = email
                .subject
                .chars()
                .chain(email.text_body.as_deref().unwrap_or("").chars().take(2000))
                .collect();
            Language::detect(&sample)
        });
        let template = self
            .config
            .templates
            .get(req.queue, language)
            .ok_or(SkipReason::NoTemplate)?;
        let vars = TemplateVars {
            ticket: req.ticket.to_string(),
            subject: crate::thread::strip_subject_prefixes(&email.subject, &self.config.tickets),
            expected_response: req.expected_response.to_string(),
            customer_name: req
                .customer_name
                .map(str::to_string)
                .or_else(|| to.name.clone())
                .unwrap_or_default(),
        };
        let (subject, body) = template.render(&vars);
        let subject = self.config.tickets.tag(&subject, req.ticket);
        let mut references = email.references.clone();
        references.push(email.message_id.clone());
        Ok(Ack {
            to: to.address.clone(),
            to_name: to.name.clone(),
            subject,
            body,
            language,
            in_reply_to: email.message_id.clone(),
            references,
        })
    }

    fn is_ours(&self, address: &str) -> bool {
        let address = address.trim().to_lowercase();
        self.config.our_addresses.contains(&address)
            || address.rsplit_once('@').is_some_and(|(_, d)| {
                self.config
                    .our_domains
                    .iter()
                    .any(|ours| ours.eq_ignore_ascii_case(d))
            })
    }

    /// Forgets sends older than the window (bounded memory).
    fn prune(&mut self, now: DateTime<Utc>) {
        let cutoff = now - self.config.window;
        self.sent.retain(|_, q| {
            while q.front().is_some_and(|t| *t <= cutoff) {
                q.pop_front();
            }
            !q.is_empty()
        });
    }
}

/// `noreply@`, `no-reply@`, `donotreply@`, `mailer-daemon@`, `postmaster@` and the like.
pub fn is_no_reply(address: &str) -> bool {
    let address = address.trim().trim_matches(['<', '>']);
    if address.is_empty() {
        return true;
    }
    let local: String = address
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    matches!(
        local.as_str(),
        "noreply"
            | "donotreply"
            | "dontreply"
            | "mailerdaemon"
            | "postmaster"
            | "bounce"
            | "bounces"
    ) || local.starts_with("noreply")
        || local.starts_with("donotreply")
        || local.starts_with("bounce")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, ParseOptions};
    use chrono::TimeZone;

    fn email(headers: &str) -> ParsedEmail {
        parse(
            format!("From: 王先生 <Wang@Cust.Example>\r\nMessage-ID: <m1@cust>\r\nReferences: <r0@cust>\r\n{headers}\r\n你好").as_bytes(),
            &ParseOptions::default(),
        )
    }

    fn at(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn policy() -> AckPolicy {
        AckPolicy::new(AckConfig {
            our_addresses: LocalAddresses::new().with("service@example.com", "service"),
            our_domains: vec!["example.com".into()],
            ..AckConfig::default()
        })
    }

    fn req<'a>(e: &'a ParsedEmail) -> AckRequest<'a> {
        AckRequest {
            email: e,
            envelope_from: Some("wang@cust.example"),
            is_new_conversation: true,
            queue: "support",
            ticket: "1024",
            language: None,
            customer_name: None,
            expected_response: "4 小时",
        }
    }

    #[test]
    fn acknowledges_a_new_conversation_in_the_customers_language() {
        let e = email("Subject: 订单还没有发货\r\n");
        let AckDecision::Send(ack) = policy().decide(&req(&e), at(0)) else {
            panic!("expected an ack");
        };
        assert_eq!(ack.to, "wang@cust.example");
        assert_eq!(ack.language, Language::ZhCn);
        assert_eq!(ack.subject, "[#1024] 我们已收到您的来信：订单还没有发货");
        assert!(ack.body.starts_with("王先生您好："), "{}", ack.body);
        assert!(ack.body.contains("工单号为 1024"));
        assert!(ack.body.contains("预计在4 小时内回复您"));
        assert_eq!(ack.in_reply_to, "m1@cust");
        assert_eq!(ack.references, vec!["r0@cust", "m1@cust"]);
    }

    #[test]
    fn never_for_auto_submitted_bounces_lists_noreply_or_own_addresses() {
        let mut p = policy();
        let cases = [
            ("Subject: x\r\nAuto-Submitted: auto-replied\r\n", SkipReason::AutoSubmitted),
            ("Subject: x\r\nPrecedence: bulk\r\n", SkipReason::AutoSubmitted),
            ("Subject: x\r\nList-Id: <l.example>\r\n", SkipReason::MailingList),
            (
                "Subject: x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
                SkipReason::Bounce,
            ),
            ("Subject: x\r\nReply-To: noreply@shop.example\r\n", SkipReason::NoReplySender),
            ("Subject: x\r\nReply-To: agent7@example.com\r\n", SkipReason::OwnAddress),
        ];
        for (headers, reason) in cases {
            let e = email(headers);
            assert_eq!(
                p.decide(&req(&e), at(0)),
                AckDecision::Skip(reason),
                "{headers}"
            );
        }
        let e = email("Subject: x\r\n");
        let mut r = req(&e);
        r.envelope_from = Some("");
        assert_eq!(p.decide(&r, at(0)), AckDecision::Skip(SkipReason::Bounce));
        r.envelope_from = Some("service@example.com");
        assert_eq!(
            p.decide(&r, at(0)),
            AckDecision::Skip(SkipReason::OwnAddress)
        );
        let mut r = req(&e);
        r.is_new_conversation = false;
        assert_eq!(
            p.decide(&r, at(0)),
            AckDecision::Skip(SkipReason::NotNewConversation)
        );
        for a in [
            "no-reply@x.com",
            "NoReply.Orders@x.com",
            "MAILER-DAEMON@x",
            "postmaster@x",
            "do-not-reply@x",
        ] {
            assert!(is_no_reply(a), "{a}");
        }
        assert!(!is_no_reply("norah@x.com"));
    }

    #[test]
    fn rate_limit_per_sender_with_a_simulated_clock() {
        let mut p = policy();
        let e = email("Subject: help\r\n");
        for m in 0..3 {
            assert!(
                matches!(p.decide(&req(&e), at(m)), AckDecision::Send(_)),
                "ack {m}"
            );
        }
        assert_eq!(
            p.decide(&req(&e), at(10)),
            AckDecision::Skip(SkipReason::RateLimited)
        );
        // Another sender is not limited.
        let other = parse(
            b"From: li@cust.example\r\nSubject: hi\r\n\r\nhello",
            &ParseOptions::default(),
        );
        let mut r = req(&other);
        r.envelope_from = Some("li@cust.example");
        assert!(matches!(p.decide(&r, at(10)), AckDecision::Send(_)));
        // An hour after the first ack, one slot is free again.
        assert_eq!(
            p.decide(&req(&e), at(59)),
            AckDecision::Skip(SkipReason::RateLimited)
        );
        assert!(matches!(p.decide(&req(&e), at(60)), AckDecision::Send(_)));
        assert_eq!(
            p.decide(&req(&e), at(60)),
            AckDecision::Skip(SkipReason::RateLimited)
        );
    }

    #[test]
    fn templates_render_in_all_three_languages() {
        let t = Templates::default();
        let vars = TemplateVars {
            ticket: "77".into(),
            subject: "退款".into(),
            expected_response: "24 小時".into(),
            customer_name: "林小姐".into(),
        };
        let (s, b) = t.get("any-queue", Language::ZhTw).unwrap().render(&vars);
        assert_eq!(s, "[#77] 我們已收到您的來信：退款");
        assert!(
            b.starts_with("林小姐您好：")
                && b.contains("案件編號為 77")
                && b.contains("24 小時內回覆")
        );
        let (s, b) = t.get("x", Language::En).unwrap().render(&TemplateVars {
            expected_response: "one business day".into(),
            customer_name: "Ms. Lin".into(),
            ..vars.clone()
        });
        assert_eq!(s, "[#77] We have received your message: 退款");
        assert!(b.starts_with("Dear Ms. Lin,") && b.contains("within one business day"));
        let (_, b) = t.get("x", Language::ZhCn).unwrap().render(&vars);
        assert!(b.contains("工单号为 77"));
        for l in [Language::ZhCn, Language::ZhTw, Language::En] {
            let (s, b) = t.get("x", l).unwrap().render(&vars);
            assert!(!s.contains('{') && !b.contains('{'), "{l:?}: {s} {b}");
        }
    }

    #[test]
    fn per_queue_templates_fall_back_and_unknown_braces_stay() {
        let mut t = Templates::empty();
        t.set(
            "sales",
            Language::En,
            Template {
                subject: "Sales {ticket}".into(),
                body: "{unknown} {ticket} {subject}".into(),
            },
        );
        let vars = TemplateVars {
            ticket: "{subject}".into(),
            subject: "s".into(),
            ..TemplateVars::default()
        };
        assert_eq!(
            t.get("sales", Language::ZhCn).unwrap().render(&vars).1,
            "{unknown} {subject} s"
        );
        assert!(t.get("support", Language::En).is_none());
    }

    #[test]
    fn language_detection_and_tags() {
        assert_eq!(Language::detect("请问我的订单在哪里"), Language::ZhCn);
        assert_eq!(Language::detect("請問我的訂單在哪裡，謝謝"), Language::ZhTw);
        assert_eq!(Language::detect("Where is my order?"), Language::En);
        assert_eq!(Language::from_tag("zh_Hant_TW"), Some(Language::ZhTw));
        assert_eq!(Language::from_tag("zh-cn"), Some(Language::ZhCn));
        assert_eq!(Language::from_tag("en-GB"), Some(Language::En));
        assert_eq!(Language::from_tag("fr"), None);
    }
}
