//! Routing rules: the TOML files of `routing-rules/` turned into queues ([`QueueConfig`]) and an
//! ordered rule list that maps a contact's attributes to a [`RoutingDecision`] (queue, priority,
//! extra skills, overflow). The format is documented in `routing-rules/README.md`.
//!
//! Parsing ([`RuleSet::load`]), evaluation ([`RuleSet::route`], [`RuleSet::is_open`]) and the
//! cases files ([`run_cases`]) are pure: text and `now` in, values out. Every error is a
//! [`RuleError`] naming the file, the line and the reason. The [`watch`] module is the thin IO
//! driver: it reads a directory and hot-reloads it when a file changes.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::acd::types::{
    BusinessHours, ClosedHandling, Millis, OverflowStep, QueueConfig, Skill, SkillSet, Strategy,
};
use crate::domain::Channel;

pub use watch::load_dir;

/// Highest skill level (1 = basic … 10 = expert).
pub const MAX_SKILL_LEVEL: u8 = 10;

// ------------------------------------------------------------------------------------------
// Public API
// ------------------------------------------------------------------------------------------

/// What the router knows about a contact when it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactAttributes {
    pub channel: Channel,
    /// The number or address the customer contacted (E.164 number, email address, chat entry).
    #[serde(default)]
    pub called: Option<String>,
    /// The IVR menu choice (e.g. "1"), or the topic picked in the chat widget.
    #[serde(default)]
    pub ivr_choice: Option<String>,
    /// The customer's value tier from the archive (e.g. "vip", "important", "ordinary").
    #[serde(default)]
    pub tier: Option<String>,
    /// The customer's language as a BCP 47 tag (e.g. "zh-CN", "en").
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl ContactAttributes {
    /// A contact on `channel` with nothing else known.
    pub fn new(channel: Channel) -> Self {
        ContactAttributes {
            channel,
            called: None,
            ivr_choice: None,
            tier: None,
            language: None,
            tags: Vec::new(),
        }
    }
}

/// Where a contact goes and how it is ranked there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingDecision {
    pub queue: String,
    /// Higher first (aging adds to it while the contact waits).
    pub priority: i64,
    /// Skills the contact needs on top of the queue's (e.g. a language).
    pub extra_skills: SkillSet,
    /// Name of the rule that chose the queue, for the event log.
    pub rule: String,
    /// Names of the `continue = true` rules that also applied (priority or skills), in order.
    pub modifiers: Vec<String>,
    /// A per-rule overflow: the full step list (step 0 = the queue's own requirement) that
    /// replaces the queue's `steps` for this contact. `None` = the queue's own steps.
    pub overflow: Option<Vec<OverflowStep>>,
}

/// A rule file is wrong: which file, which line (1-based; 0 = the file as a whole) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl RuleError {
    pub fn new(file: impl Into<String>, line: usize, reason: impl Into<String>) -> Self {
        RuleError {
            file: file.into(),
            line,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

impl std::error::Error for RuleError {}

/// A local weekly time window in a fixed UTC offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    pub utc_offset_minutes: i32,
    /// For each weekday (0 = Monday), intervals in minutes since local midnight, `[from, to)`.
    pub week: [Vec<(u16, u16)>; 7],
}

impl TimeWindow {
    pub fn contains(&self, now: Millis) -> bool {
        match local_time(self.utc_offset_minutes, now) {
            Some((_, day, minute)) => in_intervals(&self.week[day], minute),
            None => false,
        }
    }
}

/// The match keys of a rule. An empty list means "any" (the parser refuses written-out empty
/// lists, so only an absent key is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub channel: Vec<Channel>,
    /// Glob patterns (`*` = any run of characters), compared ignoring ASCII case.
    pub called: Vec<String>,
    pub ivr_choice: Vec<String>,
    pub tier: Vec<String>,
    /// Language tags; `zh` also matches `zh-CN`, `zh-TW` …
    pub language: Vec<String>,
    /// Any of these tags.
    pub tags: Vec<String>,
    pub time: Option<TimeWindow>,
}

impl Conditions {
    /// A rule without match keys matches every contact.
    pub fn is_catch_all(&self) -> bool {
        self.channel.is_empty()
            && self.called.is_empty()
            && self.ivr_choice.is_empty()
            && self.tier.is_empty()
            && self.language.is_empty()
            && self.tags.is_empty()
            && self.time.is_none()
    }

    pub fn matches(&self, attrs: &ContactAttributes, now: Millis) -> bool {
        fn one_of(
            list: &[String],
            value: &Option<String>,
            eq: impl Fn(&str, &str) -> bool,
        ) -> bool {
            list.is_empty()
                || value
                    .as_deref()
                    .is_some_and(|v| list.iter().any(|p| eq(p, v.trim())))
        }
        let exact = |p: &str, v: &str| p.eq_ignore_ascii_case(v);
        (self.channel.is_empty() || self.channel.contains(&attrs.channel))
            && one_of(&self.called, &attrs.called, glob_match)
            && one_of(&self.ivr_choice, &attrs.ivr_choice, exact)
            && one_of(&self.tier, &attrs.tier, exact)
            && one_of(&self.language, &attrs.language, language_match)
            && (self.tags.is_empty()
                || attrs
                    .tags
                    .iter()
                    .any(|t| self.tags.iter().any(|p| p.eq_ignore_ascii_case(t.trim()))))
            && self.time.as_ref().is_none_or(|w| w.contains(now))
    }
}

/// One compiled `[[rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// Where it was written, for messages.
    pub file: String,
    pub line: usize,
    /// `continue = true`: apply priority and skills, then keep looking for the deciding rule.
    pub continues: bool,
    pub when: Conditions,
    /// `None` only for `continue` rules.
    pub queue: Option<String>,
    /// Absolute priority (replaces what earlier rules gave).
    pub priority: Option<i64>,
    pub priority_add: i64,
    pub skills: SkillSet,
    /// The full step list (step 0 included) replacing the queue's for matching contacts.
    pub overflow: Option<Vec<OverflowStep>>,
}

/// Validated queues and rules, ready to route. Built only by [`RuleSet::load`], so there is
/// always a final catch-all rule and every rule names a defined queue.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub queues: Vec<QueueConfig>,
    rules: Vec<Rule>,
    files: Vec<String>,
}

impl RuleSet {
    /// Parses and validates rule files (name, text), in order: rules are evaluated in the order
    /// of the files, then of the file. Every file may hold `[[queue]]` and `[[rule]]` entries.
    pub fn load(files: &[(String, String)]) -> Result<RuleSet, RuleError> {
        compile(files)
    }

    /// The decision for a contact arriving at `now` (unix ms): the first matching rule with a
    /// queue decides; matching `continue = true` rules before it add priority and skills.
    pub fn route(&self, attrs: &ContactAttributes, now: Millis) -> RoutingDecision {
        let mut priority: i64 = 0;
        let mut skills: Vec<Skill> = Vec::new();
        let mut modifiers = Vec::new();
        for rule in &self.rules {
            if !rule.when.matches(attrs, now) {
                continue;
            }
            if let Some(p) = rule.priority {
                priority = p;
            }
            priority = priority.saturating_add(rule.priority_add);
            merge_skills(&mut skills, &rule.skills);
            match (&rule.queue, rule.continues) {
                (Some(queue), false) => {
                    return RoutingDecision {
                        queue: queue.clone(),
                        priority,
                        extra_skills: SkillSet(skills),
                        rule: rule.name.clone(),
                        modifiers,
                        overflow: rule.overflow.clone(),
                    }
                }
                _ => modifiers.push(rule.name.clone()),
            }
        }
        // Unreachable for a loaded set (it ends with a catch-all); stay total anyway.
        RoutingDecision {
            queue: self
                .queues
                .first()
                .map(|q| q.name.clone())
                .unwrap_or_default(),
            priority,
            extra_skills: SkillSet(skills),
            rule: String::new(),
            modifiers,
            overflow: None,
        }
    }

    pub fn queue(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// Whether `queue` takes contacts at `now` (business hours and holidays, in its offset).
    /// An unknown queue is closed.
    pub fn is_open(&self, queue: &str, now: Millis) -> bool {
        self.queue(queue).is_some_and(|q| hours_open(&q.hours, now))
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The files this set was loaded from, in evaluation order.
    pub fn files(&self) -> &[String] {
        &self.files
    }
}

/// The overflow step in force after `waited_secs` of waiting: the last one whose `after_secs`
/// has passed. Steps widen cumulatively, so its `targets` are every alternative allowed now.
pub fn active_step(steps: &[OverflowStep], waited_secs: u32) -> Option<&OverflowStep> {
    steps.iter().rev().find(|s| s.after_secs <= waited_secs)
}

/// Whether business `hours` are open at `now`: not a local holiday, and inside an interval of
/// the local weekday (a week without intervals = always open).
pub fn hours_open(hours: &BusinessHours, now: Millis) -> bool {
    let Some((date, day, minute)) = local_time(hours.utc_offset_minutes, now) else {
        return false;
    };
    if !hours.holidays.is_empty() {
        let date = date.format("%Y-%m-%d").to_string();
        if hours.holidays.contains(&date) {
            return false;
        }
    }
    hours.week.iter().all(|d| d.is_empty()) || in_intervals(&hours.week[day], minute)
}

// ------------------------------------------------------------------------------------------
// Evaluation helpers
// ------------------------------------------------------------------------------------------

fn local_time(utc_offset_minutes: i32, now: Millis) -> Option<(NaiveDate, usize, u16)> {
    let local = now.checked_add(utc_offset_minutes as i64 * 60_000)?;
    let local: NaiveDateTime = DateTime::from_timestamp_millis(local)?.naive_utc();
    let day = local.weekday().num_days_from_monday() as usize;
    let minute = (local.hour() * 60 + local.minute()) as u16;
    Some((local.date(), day, minute))
}

fn in_intervals(intervals: &[(u16, u16)], minute: u16) -> bool {
    intervals
        .iter()
        .any(|&(from, to)| minute >= from && minute < to)
}

/// `*` matches any run of characters; everything else matches itself, ignoring ASCII case.
fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&v[vi]) {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `zh` matches `zh`, `zh-CN` and `zh_TW`; `zh-CN` matches `zh-CN` only (ignoring case).
fn language_match(pattern: &str, value: &str) -> bool {
    if pattern.eq_ignore_ascii_case(value) {
        return true;
    }
    match (
        value.get(..pattern.len()),
        value.as_bytes().get(pattern.len()),
    ) {
        (Some(head), Some(b'-' | b'_')) => head.eq_ignore_ascii_case(pattern),
        _ => false,
    }
}

/// Adds `more` to `skills`; a skill already there keeps the higher level. Sorted by name.
fn merge_skills(skills: &mut Vec<Skill>, more: &SkillSet) {
    for s in &more.0 {
        match skills.iter_mut().find(|k| k.name == s.name) {
            Some(k) => k.level = k.level.max(s.level),
            None => skills.push(s.clone()),
        }
    }
    skills.sort_by(|a, b| a.name.cmp(&b.name));
}

// ------------------------------------------------------------------------------------------
// The file format (serde side)
// ------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    queue: Vec<Spanned<RawQueue>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    name: Spanned<String>,
    strategy: Option<Strategy>,
    skills: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    overflow: Vec<Spanned<RawStep>>,
    aging_per_minute: Option<Spanned<i64>>,
    offer_timeout_secs: Option<Spanned<u32>>,
    wrap_up_secs: Option<u32>,
    sticky_secs: Option<u32>,
    max_queue_length: Option<Spanned<u32>>,
    max_wait_secs: Option<Spanned<u32>>,
    hours: Option<Spanned<RawHours>>,
    closed_handling: Option<ClosedHandling>,
    preferred_skills: Option<Vec<Spanned<String>>>,
    max_per_agent: Option<Spanned<u8>>,
    service_level_secs: Option<Spanned<u32>>,
    short_abandon_secs: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    after_secs: Spanned<u32>,
    skills: Option<Vec<Spanned<String>>>,
    queues: Option<Vec<Spanned<String>>>,
}

type Intervals = Option<Spanned<Vec<Spanned<String>>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    utc_offset: Spanned<String>,
    every_day: Intervals,
    weekdays: Intervals,
    weekend: Intervals,
    mon: Intervals,
    tue: Intervals,
    wed: Intervals,
    thu: Intervals,
    fri: Intervals,
    sat: Intervals,
    sun: Intervals,
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
}

/// A rule's `time` window: like business hours, without holidays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    utc_offset: Spanned<String>,
    every_day: Intervals,
    weekdays: Intervals,
    weekend: Intervals,
    mon: Intervals,
    tue: Intervals,
    wed: Intervals,
    thu: Intervals,
    fri: Intervals,
    sat: Intervals,
    sun: Intervals,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    #[serde(rename = "continue", default)]
    continues: bool,
    channel: Option<Spanned<StrList>>,
    called: Option<Spanned<StrList>>,
    ivr_choice: Option<Spanned<StrList>>,
    tier: Option<Spanned<StrList>>,
    language: Option<Spanned<StrList>>,
    tags: Option<Spanned<StrList>>,
    time: Option<Spanned<RawWindow>>,
    queue: Option<Spanned<String>>,
    priority: Option<i64>,
    priority_add: Option<i64>,
    skills: Option<Vec<Spanned<String>>>,
    overflow: Option<Spanned<Vec<Spanned<RawStep>>>>,
}

/// A string or a list of strings (each with its span when the parser gives one).
#[derive(Debug, Default)]
struct StrList(Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<StrList, E> {
                Ok(StrList(vec![Spanned::new(0..0, s.to_string())]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StrList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    items.push(item);
                }
                Ok(StrList(items))
            }
        }
        d.deserialize_any(V)
    }
}

// ------------------------------------------------------------------------------------------
// Compiling: raw → validated, with file and line on every error
// ------------------------------------------------------------------------------------------

/// One file's name and text, to turn spans into lines.
#[derive(Clone, Copy)]
struct Src<'a> {
    file: &'a str,
    text: &'a str,
}

impl Src<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        let end = (0..=end)
            .rev()
            .find(|&i| self.text.is_char_boundary(i))
            .unwrap_or(0);
        self.text[..end].matches('\n').count() + 1
    }

    fn err(&self, span: &Range<usize>, reason: impl Into<String>) -> RuleError {
        RuleError::new(self.file, self.line(span), reason)
    }

    /// The element's own span, or the enclosing value's when the element has none.
    fn item_err(
        &self,
        item: &Range<usize>,
        outer: &Range<usize>,
        reason: impl Into<String>,
    ) -> RuleError {
        if item.is_empty() {
            self.err(outer, reason)
        } else {
            self.err(item, reason)
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, RuleError> {
        toml::from_str::<T>(self.text).map_err(|e| {
            let line = e.span().map(|s| self.line(&s)).unwrap_or(1);
            RuleError::new(self.file, line, e.message().trim().to_string())
        })
    }
}

fn parse_skill(src: Src, s: &Spanned<String>) -> Result<Skill, RuleError> {
    let text = s.get_ref().trim();
    let (name, level) = match text.split_once(':') {
        Some((name, level)) => (name.trim(), Some(level.trim())),
        None => (text, None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(src.err(
            &s.span(),
            format!(
                "bad skill {text:?}: write name:level, e.g. \"mandarin:3\" (names use letters, digits, _ and -)"
            ),
        ));
    }
    let level = match level {
        None => 1,
        Some(l) => match l.parse::<u8>() {
            Ok(l) if (1..=MAX_SKILL_LEVEL).contains(&l) => l,
            _ => {
                return Err(src.err(
                    &s.span(),
                    format!("bad skill level in {text:?}: levels go from 1 to {MAX_SKILL_LEVEL}"),
                ))
            }
        },
    };
    Ok(Skill {
        name: name.to_string(),
        level,
    })
}

/// A skill set, sorted by name; a skill named twice is an error.
fn parse_skills(src: Src, list: &[Spanned<String>]) -> Result<SkillSet, RuleError> {
    let mut skills: Vec<Skill> = Vec::with_capacity(list.len());
    for s in list {
        let skill = parse_skill(src, s)?;
        if skills.iter().any(|k| k.name == skill.name) {
            return Err(src.err(&s.span(), format!("skill {:?} is listed twice", skill.name)));
        }
        skills.push(skill);
    }
    skills.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(SkillSet(skills))
}

fn parse_offset(src: Src, s: &Spanned<String>) -> Result<i32, RuleError> {
    let text = s.get_ref().trim();
    let bad = || {
        src.err(
            &s.span(),
            format!("bad utc_offset {text:?}: write +HH:MM or -HH:MM, e.g. \"+08:00\""),
        )
    };
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "00"));
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m) = match (h.parse::<i32>(), m.parse::<i32>()) {
        (Ok(h), Ok(m)) if h <= 14 && m < 60 && h * 60 + m <= 14 * 60 => (h, m),
        _ => return Err(bad()),
    };
    Ok(sign * (h * 60 + m))
}

/// "HH:MM" → minutes since midnight; "24:00" only as an end.
fn parse_clock(t: &str, end: bool) -> Option<u16> {
    let (h, m) = t.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
    match (h, m) {
        (24, 0) if end => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn parse_interval(src: Src, s: &Spanned<String>) -> Result<(u16, u16), RuleError> {
    let text = s.get_ref().trim();
    let Some((from, to)) = text.split_once('-') else {
        return Err(src.err(
            &s.span(),
            format!("bad interval {text:?}: write \"HH:MM-HH:MM\", e.g. \"09:00-18:00\""),
        ));
    };
    let clock = |t: &str, end: bool| {
        parse_clock(t, end).ok_or_else(|| {
            src.err(
                &s.span(),
                format!(
                    "bad time {:?} in {text:?}: write HH:MM from 00:00 to 23:59 (24:00 only as an end)",
                    t.trim()
                ),
            )
        })
    };
    let (from, to) = (clock(from, false)?, clock(to, true)?);
    if from >= to {
        return Err(src.err(
            &s.span(),
            format!(
                "interval {text:?} ends before it starts; split a night across two days, e.g. mon = [\"22:00-24:00\"], tue = [\"00:00-06:00\"]"
            ),
        ));
    }
    Ok((from, to))
}

/// Interval lists in order of precedence: every_day, weekdays, weekend, mon … sun. A more
/// specific key replaces a general one for its days.
fn compile_week(src: Src, keys: [&Intervals; 10]) -> Result<[Vec<(u16, u16)>; 7], RuleError> {
    const DAYS: [&[usize]; 10] = [
        &[0, 1, 2, 3, 4, 5, 6],
        &[0, 1, 2, 3, 4],
        &[5, 6],
        &[0],
        &[1],
        &[2],
        &[3],
        &[4],
        &[5],
        &[6],
    ];
    let mut week: [Vec<(u16, u16)>; 7] = Default::default();
    for (key, days) in keys.into_iter().zip(DAYS) {
        let Some(list) = key else { continue };
        let mut parsed: Vec<((u16, u16), Range<usize>)> = Vec::new();
        for s in list.get_ref() {
            parsed.push((parse_interval(src, s)?, s.span()));
        }
        parsed.sort_by_key(|(iv, _)| *iv);
        for pair in parsed.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.0 .0 < a.0 .1 {
                // Point at whichever of the two is written later.
                let (later, other) = if b.1.start > a.1.start {
                    (b, a)
                } else {
                    (a, b)
                };
                return Err(src.err(
                    &later.1,
                    format!(
                        "interval {} overlaps {}",
                        fmt_interval(later.0),
                        fmt_interval(other.0)
                    ),
                ));
            }
        }
        let intervals: Vec<(u16, u16)> = parsed.into_iter().map(|(iv, _)| iv).collect();
        for &d in days {
            week[d] = intervals.clone();
        }
    }
    Ok(week)
}

fn fmt_interval((from, to): (u16, u16)) -> String {
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        from / 60,
        from % 60,
        to / 60,
        to % 60
    )
}

fn compile_hours(src: Src, raw: &Spanned<RawHours>) -> Result<BusinessHours, RuleError> {
    let h = raw.get_ref();
    let week = compile_week(
        src,
        [
            &h.every_day,
            &h.weekdays,
            &h.weekend,
            &h.mon,
            &h.tue,
            &h.wed,
            &h.thu,
            &h.fri,
            &h.sat,
            &h.sun,
        ],
    )?;
    if week.iter().all(|d| d.is_empty()) {
        return Err(src.err(
            &raw.span(),
            "business hours list no opening time: give intervals (e.g. weekdays = [\"09:00-18:00\"]) or remove the hours table for a queue open around the clock",
        ));
    }
    let mut holidays: Vec<String> = Vec::new();
    for d in &h.holidays {
        let date = NaiveDate::parse_from_str(d.get_ref().trim(), "%Y-%m-%d").map_err(|_| {
            src.err(
                &d.span(),
                format!("bad holiday {:?}: write a date as YYYY-MM-DD", d.get_ref()),
            )
        })?;
        let date = date.format("%Y-%m-%d").to_string();
        if !holidays.contains(&date) {
            holidays.push(date);
        }
    }
    Ok(BusinessHours {
        utc_offset_minutes: parse_offset(src, &h.utc_offset)?,
        week,
        holidays,
    })
}

fn compile_window(src: Src, raw: &Spanned<RawWindow>) -> Result<TimeWindow, RuleError> {
    let w = raw.get_ref();
    let week = compile_week(
        src,
        [
            &w.every_day,
            &w.weekdays,
            &w.weekend,
            &w.mon,
            &w.tue,
            &w.wed,
            &w.thu,
            &w.fri,
            &w.sat,
            &w.sun,
        ],
    )?;
    if week.iter().all(|d| d.is_empty()) {
        return Err(src.err(
            &raw.span(),
            "time window lists no hours: give intervals, e.g. every_day = [\"22:00-24:00\", \"00:00-08:00\"]",
        ));
    }
    Ok(TimeWindow {
        utc_offset_minutes: parse_offset(src, &w.utc_offset)?,
        week,
    })
}

fn positive(src: Src, v: &Option<Spanned<u32>>, key: &str, default: u32) -> Result<u32, RuleError> {
    match v {
        None => Ok(default),
        Some(v) if *v.get_ref() == 0 => {
            Err(src.err(&v.span(), format!("{key} must be at least 1")))
        }
        Some(v) => Ok(*v.get_ref()),
    }
}

fn push_unique(targets: &mut Vec<SkillSet>, t: SkillSet) {
    if !targets.contains(&t) {
        targets.push(t);
    }
}

/// Step 0 plus the written steps, each keeping every earlier alternative (the bullseye only
/// widens). `queues = [...]` adds those queues' step-0 alternatives.
fn expand_overflow(
    src: Src,
    step0: &OverflowStep,
    raw: &[Spanned<RawStep>],
    step0s: &HashMap<String, Vec<SkillSet>>,
    max_wait: Option<u32>,
) -> Result<Vec<OverflowStep>, RuleError> {
    let mut steps = vec![step0.clone()];
    for s in raw {
        let step = s.get_ref();
        let after = *step.after_secs.get_ref();
        let prev = steps.last().map(|p| p.after_secs).unwrap_or(0);
        if after == 0 {
            return Err(src.err(
                &step.after_secs.span(),
                "after_secs must be at least 1 (step 0 is the queue's own skills)",
            ));
        }
        if after <= prev {
            return Err(src.err(
                &step.after_secs.span(),
                format!(
                    "overflow steps must come in increasing after_secs: {after} s follows {prev} s"
                ),
            ));
        }
        if let Some(max) = max_wait {
            if after >= max {
                return Err(src.err(
                    &step.after_secs.span(),
                    format!("overflow after {after} s is never reached: the queue's max_wait_secs is {max}"),
                ));
            }
        }
        if step.skills.is_none() && step.queues.is_none() {
            return Err(src.err(
                &s.span(),
                "an overflow step needs skills (e.g. skills = [\"billing:1\"]) and/or queues (e.g. queues = [\"support\"])",
            ));
        }
        let mut targets = steps.last().map(|p| p.targets.clone()).unwrap_or_default();
        if let Some(skills) = &step.skills {
            push_unique(&mut targets, parse_skills(src, skills)?);
        }
        for q in step.queues.iter().flatten() {
            let Some(other) = step0s.get(q.get_ref().trim()) else {
                return Err(src.err(
                    &q.span(),
                    format!("unknown queue {:?} in overflow", q.get_ref()),
                ));
            };
            for t in other {
                push_unique(&mut targets, t.clone());
            }
        }
        steps.push(OverflowStep {
            after_secs: after,
            targets,
        });
    }
    Ok(steps)
}

fn check_name(src: Src, name: &Spanned<String>, what: &str) -> Result<String, RuleError> {
    let n = name.get_ref().trim();
    if n.is_empty() || n.chars().any(char::is_whitespace) {
        return Err(src.err(
            &name.span(),
            format!(
                "bad {what} name {:?}: use a non-empty name without spaces",
                name.get_ref()
            ),
        ));
    }
    Ok(n.to_string())
}

/// A written-out match list: non-empty, no blank entries, trimmed.
fn match_list(
    src: Src,
    key: &str,
    list: &Option<Spanned<StrList>>,
) -> Result<Vec<(String, Range<usize>)>, RuleError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let outer = list.span();
    if list.get_ref().0.is_empty() {
        return Err(src.err(
            &outer,
            format!("{key} = [] matches nothing; leave the key out to match any {key}"),
        ));
    }
    let mut out = Vec::new();
    for item in &list.get_ref().0 {
        let value = item.get_ref().trim();
        let span = if item.span().is_empty() {
            outer.clone()
        } else {
            item.span()
        };
        if value.is_empty() {
            return Err(src.item_err(&item.span(), &outer, format!("empty {key} value")));
        }
        out.push((value.to_string(), span));
    }
    Ok(out)
}

struct QueueDraft<'a> {
    src: Src<'a>,
    config: QueueConfig,
    overflow: &'a [Spanned<RawStep>],
}

fn compile_queue<'a>(
    src: Src<'a>,
    raw: &'a Spanned<RawQueue>,
) -> Result<QueueDraft<'a>, RuleError> {
    let q = raw.get_ref();
    let name = check_name(src, &q.name, "queue")?;
    let skills = match &q.skills {
        Some(list) => parse_skills(src, list)?,
        None => SkillSet::default(),
    };
    let preferred_skills = match &q.preferred_skills {
        Some(list) => parse_skills(src, list)?,
        None => SkillSet::default(),
    };
    let max_per_agent = match &q.max_per_agent {
        Some(m) if *m.get_ref() == 0 => {
            return Err(src.err(&m.span(), "max_per_agent must be at least 1"));
        }
        Some(m) => Some(*m.get_ref()),
        None => None,
    };
    let aging = match &q.aging_per_minute {
        None => 0,
        Some(a) if *a.get_ref() < 0 => {
            return Err(src.err(&a.span(), "aging_per_minute must not be negative"))
        }
        Some(a) => *a.get_ref(),
    };
    let max_queue_length = match &q.max_queue_length {
        Some(_) => Some(positive(src, &q.max_queue_length, "max_queue_length", 1)?),
        None => None,
    };
    let max_wait_secs = match &q.max_wait_secs {
        Some(_) => Some(positive(src, &q.max_wait_secs, "max_wait_secs", 1)?),
        None => None,
    };
    let hours = match &q.hours {
        Some(h) => compile_hours(src, h)?,
        None => BusinessHours::default(),
    };
    let service_level_secs = positive(src, &q.service_level_secs, "service_level_secs", 20)?;
    let short_abandon_secs = q
        .short_abandon_secs
        .as_ref()
        .map(|s| *s.get_ref())
        .unwrap_or(5);
    if short_abandon_secs >= service_level_secs {
        let span = q
            .short_abandon_secs
            .as_ref()
            .or(q.service_level_secs.as_ref())
            .map(|s| s.span())
            .unwrap_or_else(|| raw.span());
        return Err(src.err(
            &span,
            format!(
                "short_abandon_secs ({short_abandon_secs}) must be below service_level_secs ({service_level_secs})"
            ),
        ));
    }
    Ok(QueueDraft {
        src,
        config: QueueConfig {
            name,
            strategy: q.strategy.unwrap_or_default(),
            steps: vec![OverflowStep {
                after_secs: 0,
                targets: vec![skills],
            }],
            aging_per_minute: aging,
            offer_timeout_secs: positive(src, &q.offer_timeout_secs, "offer_timeout_secs", 20)?,
            wrap_up_secs: q.wrap_up_secs.unwrap_or(30),
            sticky_secs: q.sticky_secs.unwrap_or(0),
            max_queue_length,
            max_wait_secs,
            hours,
            closed_handling: q.closed_handling.unwrap_or_default(),
            preferred_skills,
            max_per_agent,
            service_level_secs,
            short_abandon_secs,
        },
        overflow: &q.overflow,
    })
}

fn compile_rule(
    src: Src,
    raw: &Spanned<RawRule>,
    queues: &HashMap<String, &QueueConfig>,
    step0s: &HashMap<String, Vec<SkillSet>>,
) -> Result<Rule, RuleError> {
    let r = raw.get_ref();
    let name = check_name(src, &r.name, "rule")?;
    let mut channel = Vec::new();
    for (value, span) in match_list(src, "channel", &r.channel)? {
        let c: Channel = value.parse().map_err(|e: String| src.err(&span, e))?;
        if !channel.contains(&c) {
            channel.push(c);
        }
    }
    let strings = |key: &str, list: &Option<Spanned<StrList>>| -> Result<Vec<String>, RuleError> {
        Ok(match_list(src, key, list)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    };
    let when = Conditions {
        channel,
        called: strings("called", &r.called)?,
        ivr_choice: strings("ivr_choice", &r.ivr_choice)?,
        tier: strings("tier", &r.tier)?,
        language: strings("language", &r.language)?,
        tags: strings("tags", &r.tags)?,
        time: r
            .time
            .as_ref()
            .map(|w| compile_window(src, w))
            .transpose()?,
    };
    let skills = match &r.skills {
        Some(list) => parse_skills(src, list)?,
        None => SkillSet::default(),
    };
    let queue =
        match (&r.queue, r.continues) {
            (Some(q), true) => return Err(src.err(
                &q.span(),
                "a continue = true rule only adds priority and skills; it cannot choose a queue",
            )),
            (None, false) => {
                return Err(src.err(
                    &raw.span(),
                    format!(
                "rule {name:?} needs a queue (or continue = true to only add priority and skills)"
            ),
                ))
            }
            (None, true) => None,
            (Some(q), false) => {
                let name = q.get_ref().trim();
                if !queues.contains_key(name) {
                    let mut known: Vec<&str> = queues.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    return Err(src.err(
                        &q.span(),
                        format!(
                            "unknown queue {:?} (defined queues: {})",
                            q.get_ref(),
                            known.join(", ")
                        ),
                    ));
                }
                Some(name.to_string())
            }
        };
    let overflow = match (&r.overflow, &queue) {
        (None, _) => None,
        (Some(o), None) => return Err(src.err(
            &o.span(),
            "a continue = true rule cannot set overflow; put it on the rule that chooses the queue",
        )),
        (Some(o), Some(q)) => {
            let config = queues[q.as_str()];
            Some(expand_overflow(
                src,
                &config.steps[0],
                o.get_ref(),
                step0s,
                config.max_wait_secs,
            )?)
        }
    };
    if r.continues && r.priority.is_none() && r.priority_add.is_none() && skills.0.is_empty() {
        return Err(src.err(
            &raw.span(),
            format!(
                "continue rule {name:?} does nothing: give it priority, priority_add or skills"
            ),
        ));
    }
    Ok(Rule {
        name,
        file: src.file.to_string(),
        line: src.line(&raw.span()),
        continues: r.continues,
        when,
        queue,
        priority: r.priority,
        priority_add: r.priority_add.unwrap_or(0),
        skills,
        overflow,
    })
}

fn compile(files: &[(String, String)]) -> Result<RuleSet, RuleError> {
    let srcs: Vec<Src> = files
        .iter()
        .map(|(file, text)| Src { file, text })
        .collect();
    let mut parsed: Vec<(Src, RawFile)> = Vec::with_capacity(srcs.len());
    for &src in &srcs {
        parsed.push((src, src.parse::<RawFile>()?));
    }

    // Queues: step 0 of every queue first, then the overflow steps that may name other queues.
    let mut drafts: Vec<QueueDraft> = Vec::new();
    let mut first_at: HashMap<String, String> = HashMap::new();
    for (src, raw) in &parsed {
        for q in &raw.queue {
            let draft = compile_queue(*src, q)?;
            let name = &draft.config.name;
            if let Some(at) = first_at.get(name) {
                return Err(src.err(
                    &q.get_ref().name.span(),
                    format!("duplicate queue {name:?} (first defined at {at})"),
                ));
            }
            first_at.insert(
                name.clone(),
                format!("{}:{}", src.file, src.line(&q.get_ref().name.span())),
            );
            drafts.push(draft);
        }
    }
    let step0s: HashMap<String, Vec<SkillSet>> = drafts
        .iter()
        .map(|d| (d.config.name.clone(), d.config.steps[0].targets.clone()))
        .collect();
    let mut queues: Vec<QueueConfig> = Vec::with_capacity(drafts.len());
    for d in drafts {
        let mut config = d.config;
        config.steps = expand_overflow(
            d.src,
            &config.steps[0],
            d.overflow,
            &step0s,
            config.max_wait_secs,
        )?;
        queues.push(config);
    }

    // Rules, in file order then written order.
    let by_name: HashMap<String, &QueueConfig> =
        queues.iter().map(|q| (q.name.clone(), q)).collect();
    let mut rules: Vec<Rule> = Vec::new();
    let mut last_span: Option<(Src, Range<usize>)> = None;
    for (src, raw) in &parsed {
        for r in &raw.rule {
            let rule = compile_rule(*src, r, &by_name, &step0s)?;
            if let Some(prev) = rules.iter().find(|p| p.name == rule.name) {
                return Err(src.err(
                    &r.get_ref().name.span(),
                    format!(
                        "duplicate rule name {:?} (first at {}:{})",
                        rule.name, prev.file, prev.line
                    ),
                ));
            }
            if let Some(all) = rules.iter().find(|p| !p.continues && p.when.is_catch_all()) {
                return Err(src.err(
                    &r.span(),
                    format!(
                        "rule {:?} is never reached: the catch-all rule {:?} ({}:{}) above matches every contact",
                        rule.name, all.name, all.file, all.line
                    ),
                ));
            }
            rules.push(rule);
            last_span = Some((*src, r.span()));
        }
    }
    match (rules.last(), last_span) {
        (Some(last), Some((src, span))) if last.continues || !last.when.is_catch_all() => {
            return Err(src.err(
                &span,
                "no catch-all rule: the last rule must have a queue and no match keys, e.g. [[rule]] name = \"default\" queue = \"support\"",
            ))
        }
        (None, _) | (_, None) => {
            let file = files
                .iter()
                .find(|(f, _)| f == "routing.toml")
                .or(files.last())
                .map(|(f, _)| f.clone())
                .unwrap_or_default();
            return Err(RuleError::new(
                file,
                if files.is_empty() { 0 } else { 1 },
                "no routing rules: add [[rule]] entries ending with a catch-all rule",
            ));
        }
        _ => {}
    }
    Ok(RuleSet {
        queues,
        rules,
        files: files.iter().map(|(f, _)| f.clone()).collect(),
    })
}

// ------------------------------------------------------------------------------------------
// Cases files
// ------------------------------------------------------------------------------------------

/// The result of one `[[case]]` of a cases file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    pub name: String,
    pub file: String,
    pub line: usize,
    /// `None` = passed; otherwise what differed.
    pub failure: Option<String>,
}

impl CaseOutcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCases {
    #[serde(default)]
    case: Vec<Spanned<RawCase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    at: Option<Spanned<toml::value::Datetime>>,
    // A routing case: contact attributes and what to expect.
    channel: Option<Spanned<String>>,
    called: Option<String>,
    ivr_choice: Option<String>,
    tier: Option<String>,
    language: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    expect: Option<RawExpect>,
    // A queue case: open at `at`, and/or the overflow targets after `waited_secs`.
    queue: Option<Spanned<String>>,
    open: Option<bool>,
    waited_secs: Option<u32>,
    targets: Option<Vec<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    queue: String,
    priority: Option<i64>,
    skills: Option<Vec<Spanned<String>>>,
    rule: Option<String>,
    modifiers: Option<Vec<String>>,
    overflow: Option<Vec<RawExpectStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectStep {
    after_secs: u32,
    targets: Vec<Vec<Spanned<String>>>,
}

fn case_time(src: Src, at: &Spanned<toml::value::Datetime>) -> Result<Millis, RuleError> {
    let dt = at.get_ref();
    if dt.date.is_none() || dt.time.is_none() || dt.offset.is_none() {
        return Err(src.err(
            &at.span(),
            "at needs a date, a time and a UTC offset, e.g. at = 2026-06-01T10:00:00+08:00",
        ));
    }
    DateTime::parse_from_rfc3339(&dt.to_string())
        .map(|t| t.timestamp_millis())
        .map_err(|e| src.err(&at.span(), format!("bad time {dt}: {e}")))
}

/// Targets as a canonical, comparable form: each alternative sorted, alternatives sorted.
fn canon(targets: &[SkillSet]) -> Vec<Vec<(String, u8)>> {
    let mut out: Vec<Vec<(String, u8)>> = targets
        .iter()
        .map(|t| {
            let mut v: Vec<(String, u8)> = t.0.iter().map(|s| (s.name.clone(), s.level)).collect();
            v.sort();
            v
        })
        .collect();
    out.sort();
    out
}

fn fmt_skills(s: &SkillSet) -> String {
    let items: Vec<String> =
        s.0.iter()
            .map(|k| format!("{}:{}", k.name, k.level))
            .collect();
    format!("[{}]", items.join(", "))
}

fn fmt_targets(t: &[SkillSet]) -> String {
    t.iter().map(fmt_skills).collect::<Vec<_>>().join(" | ")
}

fn parse_targets(src: Src, raw: &[Vec<Spanned<String>>]) -> Result<Vec<SkillSet>, RuleError> {
    raw.iter().map(|alt| parse_skills(src, alt)).collect()
}

fn check_routing_case(
    src: Src,
    rules: &RuleSet,
    c: &RawCase,
    span: &Range<usize>,
    e: &RawExpect,
) -> Result<Vec<String>, RuleError> {
    if c.queue.is_some() || c.open.is_some() || c.waited_secs.is_some() || c.targets.is_some() {
        return Err(src.err(
            span,
            "a case with expect routes a contact; queue, open, waited_secs and targets belong to queue cases",
        ));
    }
    let Some(at) = &c.at else {
        return Err(src.err(span, "a routing case needs at = <date-time with offset>"));
    };
    let Some(channel) = &c.channel else {
        return Err(src.err(span, "a routing case needs a channel"));
    };
    let now = case_time(src, at)?;
    let attrs = ContactAttributes {
        channel: channel
            .get_ref()
            .trim()
            .parse()
            .map_err(|e: String| src.err(&channel.span(), e))?,
        called: c.called.clone(),
        ivr_choice: c.ivr_choice.clone(),
        tier: c.tier.clone(),
        language: c.language.clone(),
        tags: c.tags.clone(),
    };
    let d = rules.route(&attrs, now);
    let mut diffs = Vec::new();
    if d.queue != e.queue {
        diffs.push(format!("queue: expected {:?}, got {:?}", e.queue, d.queue));
    }
    if let Some(p) = e.priority {
        if d.priority != p {
            diffs.push(format!("priority: expected {p}, got {}", d.priority));
        }
    }
    if let Some(skills) = &e.skills {
        let want = parse_skills(src, skills)?;
        if canon(std::slice::from_ref(&want)) != canon(std::slice::from_ref(&d.extra_skills)) {
            diffs.push(format!(
                "skills: expected {}, got {}",
                fmt_skills(&want),
                fmt_skills(&d.extra_skills)
            ));
        }
    }
    if let Some(rule) = &e.rule {
        if &d.rule != rule {
            diffs.push(format!("rule: expected {rule:?}, got {:?}", d.rule));
        }
    }
    if let Some(m) = &e.modifiers {
        if &d.modifiers != m {
            diffs.push(format!("modifiers: expected {m:?}, got {:?}", d.modifiers));
        }
    }
    if let Some(steps) = &e.overflow {
        match &d.overflow {
            None => diffs.push("overflow: expected a rule overflow, got the queue's own".into()),
            Some(got) => {
                let want: Vec<(u32, Vec<SkillSet>)> = steps
                    .iter()
                    .map(|s| Ok((s.after_secs, parse_targets(src, &s.targets)?)))
                    .collect::<Result<_, RuleError>>()?;
                let same = want.len() == got.len()
                    && want.iter().zip(got).all(|((after, t), g)| {
                        *after == g.after_secs && canon(t) == canon(&g.targets)
                    });
                if !same {
                    let show = |v: Vec<(u32, String)>| {
                        v.into_iter()
                            .map(|(a, t)| format!("{a} s: {t}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    diffs.push(format!(
                        "overflow: expected {}, got {}",
                        show(want.iter().map(|(a, t)| (*a, fmt_targets(t))).collect()),
                        show(
                            got.iter()
                                .map(|g| (g.after_secs, fmt_targets(&g.targets)))
                                .collect()
                        )
                    ));
                }
            }
        }
    }
    Ok(diffs)
}

fn check_queue_case(
    src: Src,
    rules: &RuleSet,
    c: &RawCase,
    span: &Range<usize>,
) -> Result<Vec<String>, RuleError> {
    if c.channel.is_some()
        || c.called.is_some()
        || c.ivr_choice.is_some()
        || c.tier.is_some()
        || c.language.is_some()
        || !c.tags.is_empty()
    {
        return Err(src.err(
            span,
            "contact attributes belong to routing cases (with expect); a queue case has queue, at/open and waited_secs/targets",
        ));
    }
    let Some(queue) = &c.queue else {
        return Err(src.err(
            span,
            "a case needs expect (a routing case) or queue (a queue case)",
        ));
    };
    let checks_open = match (&c.at, c.open) {
        (Some(_), Some(_)) => true,
        (None, None) => false,
        _ => {
            return Err(src.err(
                span,
                "at and open go together: the local time and whether the queue is open then",
            ))
        }
    };
    let checks_targets = match (&c.waited_secs, &c.targets) {
        (Some(_), Some(_)) => true,
        (None, None) => false,
        _ => {
            return Err(src.err(
                span,
                "waited_secs and targets go together: the wait and the overflow targets then",
            ))
        }
    };
    if !checks_open && !checks_targets {
        return Err(src.err(
            span,
            "a queue case checks at + open and/or waited_secs + targets",
        ));
    }
    let Some(q) = rules.queue(queue.get_ref().trim()) else {
        return Ok(vec![format!("no queue named {:?}", queue.get_ref())]);
    };
    let mut diffs = Vec::new();
    if let (Some(at), Some(open)) = (&c.at, c.open) {
        let now = case_time(src, at)?;
        let is_open = rules.is_open(&q.name, now);
        if is_open != open {
            let word = |b: bool| if b { "open" } else { "closed" };
            diffs.push(format!(
                "expected {} at {}, but it is {}",
                word(open),
                at.get_ref(),
                word(is_open)
            ));
        }
    }
    if let (Some(waited), Some(targets)) = (c.waited_secs, &c.targets) {
        let want = parse_targets(src, targets)?;
        let got = active_step(&q.steps, waited)
            .map(|s| s.targets.clone())
            .unwrap_or_default();
        if canon(&want) != canon(&got) {
            diffs.push(format!(
                "targets after {waited} s: expected {}, got {}",
                fmt_targets(&want),
                fmt_targets(&got)
            ));
        }
    }
    Ok(diffs)
}

/// Runs the `[[case]]` entries of a cases file against `rules`. A malformed cases file is a
/// [`RuleError`]; a case whose expectation differs is an outcome with a `failure`.
pub fn run_cases(rules: &RuleSet, file: &str, text: &str) -> Result<Vec<CaseOutcome>, RuleError> {
    let src = Src { file, text };
    let raw: RawCases = src.parse()?;
    let mut out = Vec::with_capacity(raw.case.len());
    for case in &raw.case {
        let c = case.get_ref();
        let span = case.span();
        let diffs = match &c.expect {
            Some(e) => check_routing_case(src, rules, c, &span, e)?,
            None => check_queue_case(src, rules, c, &span)?,
        };
        out.push(CaseOutcome {
            name: c.name.clone(),
            file: file.to_string(),
            line: src.line(&span),
            failure: (!diffs.is_empty()).then(|| diffs.join("; ")),
        });
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// The IO driver: reading a directory, hot reload
// ------------------------------------------------------------------------------------------

/// Reads `routing-rules/` and reloads it when its files change. The only IO of this module.
pub mod watch {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use tokio::sync::mpsc;

    use super::{RuleError, RuleSet};

    /// What a reload produced: new rules, or why the files were refused (keep the old rules).
    pub type Update = Result<RuleSet, RuleError>;

    /// The rule files of `dir`: `*.toml` except `*.cases.toml` and hidden files, by name.
    pub fn rule_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".toml")
                && !name.ends_with(".cases.toml")
                && !name.starts_with('.')
                && entry.file_type()?.is_file()
            {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    fn file_name(path: &Path) -> String {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    }

    /// Loads every rule file of `dir` (see [`rule_files`]), in name order.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, RuleError> {
        let paths = rule_files(dir).map_err(|e| {
            RuleError::new(
                dir.display().to_string(),
                0,
                format!("cannot list rule files: {e}"),
            )
        })?;
        if paths.is_empty() {
            return Err(RuleError::new(
                dir.display().to_string(),
                0,
                "no *.toml rule files",
            ));
        }
        let mut files = Vec::with_capacity(paths.len());
        for path in &paths {
            let name = file_name(path);
            let bytes = std::fs::read(path)
                .map_err(|e| RuleError::new(&name, 0, format!("cannot read: {e}")))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let at = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                RuleError::new(&name, line, "not UTF-8 text")
            })?;
            files.push((name, text));
        }
        RuleSet::load(&files)
    }

    /// Names, modification times and sizes of the rule files: a change in any means reload.
    type Snapshot = Result<Vec<(String, Option<SystemTime>, u64)>, String>;

    fn snapshot(dir: &Path) -> Snapshot {
        let paths = rule_files(dir).map_err(|e| e.to_string())?;
        Ok(paths
            .iter()
            .map(|p| {
                let meta = std::fs::metadata(p).ok();
                (
                    file_name(p),
                    meta.as_ref().and_then(|m| m.modified().ok()),
                    meta.map(|m| m.len()).unwrap_or(0),
                )
            })
            .collect())
    }

    fn load_and_log(dir: &Path) -> Update {
        let update = load_dir(dir);
        match &update {
            Ok(set) => tracing::info!(
                dir = %dir.display(),
                queues = set.queues.len(),
                rules = set.rules().len(),
                "routing rules loaded"
            ),
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                file = %e.file,
                line = e.line,
                reason = %e.reason,
                "routing rules rejected; the previous rules stay in force"
            ),
        }
        update
    }

    /// Watches `dir`: sends the rules as they are now, then a new [`Update`] each time the
    /// rule files change (polled every `every`; a change is loaded once it has held still for
    /// one poll, so a half-written file is not read). Ends when `tx` is closed.
    pub async fn run(dir: PathBuf, every: Duration, tx: mpsc::Sender<Update>) {
        let mut seen = snapshot(&dir);
        if tx.send(load_and_log(&dir)).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let mut now = snapshot(&dir);
            if now == seen {
                continue;
            }
            // Changed: wait until it holds still for one poll.
            loop {
                tick.tick().await;
                let again = snapshot(&dir);
                if again == now {
                    break;
                }
                now = again;
            }
            seen = now;
            if tx.send(load_and_log(&dir)).await.is_err() {
                return;
            }
        }
    }

    /// [`run`] on a tokio task.
    pub fn spawn(
        dir: impl Into<PathBuf>,
        every: Duration,
        tx: mpsc::Sender<Update>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(dir.into(), every, tx))
    }

    /// The rules in force: the last good set, and the last refusal if it came after it.
    #[derive(Debug, Clone, Default)]
    pub struct LiveRules {
        pub rules: Option<RuleSet>,
        pub error: Option<RuleError>,
    }

    impl LiveRules {
        /// Takes an update: new rules replace the old; an error is kept beside them.
        pub fn apply(&mut self, update: Update) {
            match update {
                Ok(set) => {
                    self.rules = Some(set);
                    self.error = None;
                }
                Err(e) => self.error = Some(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(queues: &str, routing: &str) -> Result<RuleSet, RuleError> {
        RuleSet::load(&[
            ("queues.toml".to_string(), queues.to_string()),
            ("routing.toml".to_string(), routing.to_string()),
        ])
    }

    fn skills(list: &[(&str, u8)]) -> SkillSet {
        SkillSet(
            list.iter()
                .map(|(n, l)| Skill {
                    name: n.to_string(),
                    level: *l,
                })
                .collect(),
        )
    }

    /// Unix ms of a local time in a given offset.
    fn at(rfc3339: &str) -> Millis {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    const DEFAULT: &str = "[[rule]]\nname = \"default\"\nqueue = \"support\"\n";

    #[test]
    fn glob_matches_any_run_and_ignores_ascii_case() {
        assert!(glob_match("+86400*", "+864008001234"));
        assert!(glob_match("+86400*", "+86400"));
        assert!(!glob_match("+86400*", "+8610400"));
        assert!(glob_match("sales@*", "SALES@example.cn"));
        assert!(glob_match("*@example.*", "a@example.cn"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxx"));
        assert!(glob_match("客服*", "客服热线"));
        assert!(glob_match("exact", "EXACT"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn a_language_matches_its_regional_variants() {
        assert!(language_match("zh", "zh-CN"));
        assert!(language_match("zh", "ZH_tw"));
        assert!(language_match("zh", "zh"));
        assert!(!language_match("zh", "zha"));
        assert!(!language_match("zh-CN", "zh"));
        assert!(language_match("zh-TW", "zh-tw"));
        assert!(!language_match("en", "中文"));
    }

    #[test]
    fn clocks_intervals_and_offsets() {
        assert_eq!(parse_clock("00:00", false), Some(0));
        assert_eq!(parse_clock("23:59", false), Some(1439));
        assert_eq!(parse_clock("24:00", true), Some(1440));
        assert_eq!(parse_clock("24:00", false), None);
        assert_eq!(parse_clock("25:00", true), None);
        assert_eq!(parse_clock("9:00", true), None);
        assert_eq!(parse_clock("09:60", true), None);
        let src = Src {
            file: "f.toml",
            text: "",
        };
        let s = |t: &str| Spanned::new(0..0, t.to_string());
        assert_eq!(parse_interval(src, &s("09:00-18:00")), Ok((540, 1080)));
        assert_eq!(parse_interval(src, &s(" 22:00 - 24:00 ")), Ok((1320, 1440)));
        assert!(parse_interval(src, &s("09:00")).is_err());
        assert!(parse_interval(src, &s("10:00-10:00")).is_err());
        assert_eq!(parse_offset(src, &s("+08:00")), Ok(480));
        assert_eq!(parse_offset(src, &s("-05:30")), Ok(-330));
        assert_eq!(parse_offset(src, &s("+05")), Ok(300));
        assert_eq!(parse_offset(src, &s("Z")), Ok(0));
        assert!(parse_offset(src, &s("08:00")).is_err());
        assert!(parse_offset(src, &s("+15:00")).is_err());
    }

    #[test]
    fn a_queue_with_only_a_name_gets_the_defaults() {
        let rules = load("[[queue]]\nname = \"support\"\n", DEFAULT).unwrap();
        let q = rules.queue("support").unwrap();
        assert_eq!(q.strategy, Strategy::LongestIdle);
        assert_eq!(
            q.steps,
            vec![OverflowStep {
                after_secs: 0,
                targets: vec![SkillSet::default()]
            }]
        );
        assert_eq!(
            (
                q.offer_timeout_secs,
                q.wrap_up_secs,
                q.sticky_secs,
                q.aging_per_minute
            ),
            (20, 30, 0, 0)
        );
        assert_eq!((q.service_level_secs, q.short_abandon_secs), (20, 5));
        assert_eq!((q.max_queue_length, q.max_wait_secs), (None, None));
        assert_eq!(q.closed_handling, ClosedHandling::Voicemail);
        assert_eq!(q.hours, BusinessHours::default());
        assert!(rules.is_open("support", 0));
        assert!(!rules.is_open("nowhere", 0));
    }

    #[test]
    fn overflow_steps_widen_cumulatively_and_expand_other_queues() {
        let queues = r#"
[[queue]]
name = "billing"
skills = ["billing:2", "mandarin:3"]

[[queue.overflow]]
after_secs = 30
skills = ["billing:1"]
queues = ["support", "billing"]

[[queue.overflow]]
after_secs = 90
skills = []

[[queue]]
name = "support"
skills = ["support:2"]
"#;
        let rules = load(queues, DEFAULT).unwrap();
        let q = rules.queue("billing").unwrap();
        let step0 = skills(&[("billing", 2), ("mandarin", 3)]);
        assert_eq!(q.steps[0].targets, vec![step0.clone()]);
        assert_eq!(q.steps[1].after_secs, 30);
        assert_eq!(
            q.steps[1].targets,
            vec![
                step0.clone(),
                skills(&[("billing", 1)]),
                skills(&[("support", 2)])
            ]
        );
        assert_eq!(q.steps[2].targets.len(), 4);
        assert_eq!(q.steps[2].targets[3], SkillSet::default());
        assert_eq!(active_step(&q.steps, 29).unwrap().after_secs, 0);
        assert_eq!(active_step(&q.steps, 30).unwrap().after_secs, 30);
        assert_eq!(active_step(&q.steps, 10_000).unwrap().after_secs, 90);
    }

    #[test]
    fn continue_rules_add_up_and_an_absolute_priority_replaces() {
        let routing = r#"
[[rule]]
name = "vip"
continue = true
tier = "vip"
priority_add = 50
skills = ["mandarin:2"]

[[rule]]
name = "chinese"
continue = true
language = "zh"
skills = ["mandarin:3", "cantonese:1"]

[[rule]]
name = "hotline"
called = "+86400*"
queue = "support"
priority = 100
priority_add = 5

[[rule]]
name = "default"
queue = "support"
priority_add = 1
"#;
        let rules = load("[[queue]]\nname = \"support\"\n", routing).unwrap();
        let mut a = ContactAttributes::new(Channel::Chat);
        a.tier = Some("VIP".into());
        a.language = Some("zh-HK".into());
        let d = rules.route(&a, 0);
        assert_eq!((d.rule.as_str(), d.priority), ("default", 51));
        assert_eq!(d.modifiers, ["vip", "chinese"]);
        assert_eq!(d.extra_skills, skills(&[("cantonese", 1), ("mandarin", 3)]));
        assert_eq!(d.overflow, None);
        a.called = Some("+864008001234".into());
        let d = rules.route(&a, 0);
        assert_eq!((d.rule.as_str(), d.priority), ("hotline", 105));
        let d = rules.route(&ContactAttributes::new(Channel::Email), 0);
        assert_eq!((d.rule.as_str(), d.priority), ("default", 1));
        assert!(d.modifiers.is_empty() && d.extra_skills.0.is_empty());
    }

    #[test]
    fn a_rule_overflow_starts_from_the_queue_step_zero() {
        let queues = "[[queue]]\nname = \"vip\"\nskills = [\"vip:1\"]\n[[queue.overflow]]\nafter_secs = 10\nskills = [\"x:1\"]\n";
        let routing = "[[rule]]\nname = \"all\"\nqueue = \"vip\"\noverflow = [{ after_secs = 5, skills = [] }]\n";
        let rules = load(queues, routing).unwrap();
        let d = rules.route(&ContactAttributes::new(Channel::Voice), 0);
        assert_eq!(
            d.overflow,
            Some(vec![
                OverflowStep {
                    after_secs: 0,
                    targets: vec![skills(&[("vip", 1)])]
                },
                OverflowStep {
                    after_secs: 5,
                    targets: vec![skills(&[("vip", 1)]), SkillSet::default()]
                },
            ])
        );
        // An empty override means: no overflow for these contacts.
        let routing = "[[rule]]\nname = \"all\"\nqueue = \"vip\"\noverflow = []\n";
        let d = load(queues, routing)
            .unwrap()
            .route(&ContactAttributes::new(Channel::Voice), 0);
        assert_eq!(d.overflow.map(|s| s.len()), Some(1));
    }

    #[test]
    fn time_windows_use_their_own_offset() {
        let routing = r#"
[[rule]]
name = "us-evening"
time = { utc_offset = "-05:00", sun = ["18:00-24:00"] }
queue = "support"
priority = 7

[[rule]]
name = "default"
queue = "support"
"#;
        let rules = load("[[queue]]\nname = \"support\"\n", routing).unwrap();
        let a = ContactAttributes::new(Channel::Voice);
        // Monday 02:00 UTC is Sunday 21:00 at -05:00.
        assert_eq!(
            rules.route(&a, at("2026-06-01T02:00:00Z")).rule,
            "us-evening"
        );
        assert_eq!(rules.route(&a, at("2026-06-01T05:00:00Z")).rule, "default");
        assert_eq!(rules.route(&a, at("2026-05-31T22:59:59Z")).rule, "default");
        assert_eq!(
            rules.route(&a, at("2026-05-31T23:00:00Z")).rule,
            "us-evening"
        );
    }

    #[test]
    fn specific_days_override_general_keys_and_holidays_are_local_dates() {
        let queues = r#"
[[queue]]
name = "support"
[queue.hours]
utc_offset = "+08:00"
every_day = ["08:00-20:00"]
weekend = ["10:00-16:00"]
sun = []
holidays = ["2026-10-01"]
"#;
        let rules = load(queues, DEFAULT).unwrap();
        let open = |t: &str| rules.is_open("support", at(t));
        assert!(open("2026-06-01T19:59:00+08:00"));
        assert!(!open("2026-06-06T19:00:00+08:00"));
        assert!(open("2026-06-06T15:00:00+08:00"));
        assert!(!open("2026-06-07T15:00:00+08:00"));
        // 2026-10-01 local starts at 2026-09-30T16:00Z.
        assert!(open("2026-09-30T11:00:00Z"));
        assert!(!open("2026-09-30T16:00:00Z"));
        assert!(open("2026-10-02T08:00:00+08:00"));
    }

    #[test]
    fn every_error_names_file_and_line() {
        let q = "[[queue]]\nname = \"support\"\n";
        let cases: &[(&str, &str, (&str, usize), &str)] = &[
            (q, "[[rule]]\nname = \"a\"\nqueue = \"support\"\ncontinue = true\n", ("routing.toml", 3), "cannot choose a queue"),
            (q, "[[rule]]\nname = \"a\"\ncontinue = true\n\n[[rule]]\nname = \"b\"\nqueue = \"support\"\n", ("routing.toml", 1), "does nothing"),
            (q, "[[rule]]\nname = \"a\"\ntier = \"vip\"\n", ("routing.toml", 1), "needs a queue"),
            (q, "[[rule]]\nname = \"a b\"\nqueue = \"support\"\n", ("routing.toml", 2), "bad rule name"),
            (q, "[[rule]]\nname = \"a\"\ntags = [\"x\", \" \"]\nqueue = \"support\"\n", ("routing.toml", 3), "empty tags"),
            (q, "[[rule]]\nname = \"a\"\ntime = { utc_offset = \"+08:00\" }\nqueue = \"support\"\n", ("routing.toml", 3), "lists no hours"),
            ("[[queue]]\nname = \"support\"\n[queue.hours]\nutc_offset = \"+08:00\"\n", DEFAULT, ("queues.toml", 3), "no opening time"),
            ("[[queue]]\nname = \"support\"\n[queue.hours]\nmon = [\"09:00-10:00\"]\n", DEFAULT, ("queues.toml", 3), "missing field `utc_offset`"),
            ("[[queue]]\nname = \"support\"\nskills = [\"a:1\", \"a:2\"]\n", DEFAULT, ("queues.toml", 3), "listed twice"),
            ("[[queue]]\nname = \"support\"\naging_per_minute = -1\n", DEFAULT, ("queues.toml", 3), "negative"),
            ("[[queue]]\nname = \"support\"\nshort_abandon_secs = 30\n", DEFAULT, ("queues.toml", 3), "below service_level_secs"),
            ("[[queue]]\nname = \"support\"\n[[queue.overflow]]\nafter_secs = 0\nskills = []\n", DEFAULT, ("queues.toml", 4), "at least 1"),
            ("bogus = 1\n", DEFAULT, ("queues.toml", 1), "unknown field `bogus`"),
        ];
        for (queues, routing, (file, line), reason) in cases {
            let e = load(queues, routing).unwrap_err();
            assert_eq!((e.file.as_str(), e.line), (*file, *line), "{e}");
            assert!(e.reason.contains(reason), "{e} lacks {reason:?}");
        }
        let e = RuleSet::load(&[]).unwrap_err();
        assert_eq!(e.line, 0);
    }

    #[test]
    fn a_single_string_stands_for_a_list_of_one() {
        let routing = "[[rule]]\nname = \"a\"\nchannel = \"fax\"\ntags = \"投诉\"\nqueue = \"support\"\n\n[[rule]]\nname = \"b\"\nqueue = \"support\"\n";
        let rules = load("[[queue]]\nname = \"support\"\n", routing).unwrap();
        let mut a = ContactAttributes::new(Channel::Fax);
        a.tags = vec!["投诉".into()];
        assert_eq!(rules.route(&a, 0).rule, "a");
        a.channel = Channel::Email;
        assert_eq!(rules.route(&a, 0).rule, "b");
        // A bad single value points at the key's line.
        let routing = "[[rule]]\nname = \"a\"\n\nchannel = \"telex\"\nqueue = \"support\"\n";
        let e = load("[[queue]]\nname = \"support\"\n", routing).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("routing.toml", 4), "{e}");
    }
}
