//! `ivr.cases.toml`: scripted calls (who calls which number when, what the archive knows,
//! what they press) and where they must end up. A queued call is routed through the real
//! routing rules, so a case proves the IVR's attributes reach the intended queue.
//!
//! [`simulate`] is the driver the cases use and tests may use: every prompt is heard to its end
//! (3 s each), the lookup answers at once (or never), digits come 0.3 s apart once the call
//! listens, and when the script runs out the call is left silent until it ends.

use std::sync::Arc;

use chrono::DateTime;
use serde::Deserialize;
use toml::Spanned;

use crate::acd::rules::{CaseOutcome, RuleError, RuleSet};
use crate::acd::types::Millis;

use super::machine::{IvrAction, IvrEvent, IvrInput, IvrOutcome, IvrSession};
use super::{CallAttributes, CallerInfo, IvrConfig};

/// What the simulated caller does when the call next waits for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Press these keys, 0.3 s apart.
    Digits(String),
    /// Stay silent until the pending timeout fires.
    Wait,
    HangUp,
}

impl Step {
    /// `"12#"` → digits, `"wait"`, `"hangup"`.
    pub fn parse(s: &str) -> Option<Step> {
        let t = s.trim();
        match t {
            "wait" => Some(Step::Wait),
            "hangup" => Some(Step::HangUp),
            _ if !t.is_empty() && t.chars().all(super::is_key) => Some(Step::Digits(t.into())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Script {
    pub at: Millis,
    pub caller: String,
    pub called: String,
    /// The archive's answer; `None` = unknown caller.
    pub customer: Option<CallerInfo>,
    /// `false`: the lookup never answers (a slow store).
    pub lookup_answers: bool,
    pub steps: Vec<Step>,
}

/// What happened on a simulated call.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub actions: Vec<(Millis, IvrAction)>,
    /// Every prompt played, in order (`PromptRef` display form).
    pub heard: Vec<String>,
    /// Nodes entered, in order.
    pub path: Vec<String>,
    pub outcome: Option<IvrOutcome>,
    /// The hand-over action (queue, voicemail, callback, transfer, hangup).
    pub last: Option<IvrAction>,
    pub ended_at: Millis,
}

impl Trace {
    pub fn attributes(&self) -> Option<&CallAttributes> {
        match &self.last {
            Some(
                IvrAction::Queue { attributes }
                | IvrAction::Voicemail { attributes, .. }
                | IvrAction::Callback { attributes }
                | IvrAction::Transfer { attributes, .. },
            ) => Some(attributes),
            _ => None,
        }
    }

    pub fn events(&self) -> impl Iterator<Item = &IvrEvent> {
        self.actions.iter().filter_map(|(_, a)| match a {
            IvrAction::Event(e) => Some(e),
            _ => None,
        })
    }
}

/// Bound on simulated steps: a call that has not ended by then is reported as stuck.
const MAX_STEPS: usize = 10_000;

struct Driver {
    session: IvrSession,
    now: Millis,
    trace: Trace,
    playing: bool,
    lookup: bool,
}

impl Driver {
    fn drain(&mut self) {
        while let Some(a) = self.session.poll_output() {
            match &a {
                IvrAction::Play(p) => {
                    self.playing = true;
                    self.trace
                        .heard
                        .extend(p.prompts.iter().map(|p| p.to_string()));
                }
                IvrAction::StopPlayback => self.playing = false,
                IvrAction::Lookup { .. } => self.lookup = true,
                IvrAction::Event(IvrEvent::NodeEntered { node, .. }) => {
                    self.trace.path.push(node.clone())
                }
                IvrAction::Event(_) => {}
                _ => self.trace.last = Some(a.clone()),
            }
            self.trace.actions.push((self.now, a));
        }
    }

    fn handle(&mut self, input: IvrInput) {
        self.session.handle(self.now, input);
        self.drain();
    }
}

/// Runs `script` through a new session of `config`.
pub fn simulate(config: Arc<IvrConfig>, script: &Script) -> Trace {
    let mut d = Driver {
        session: IvrSession::new(config, &script.caller, &script.called, script.at),
        now: script.at,
        trace: Trace::default(),
        playing: false,
        lookup: false,
    };
    d.drain();
    let mut steps = script.steps.iter();
    for _ in 0..MAX_STEPS {
        if d.session.is_finished() {
            break;
        }
        if d.lookup {
            d.lookup = false;
            if script.lookup_answers {
                d.now += 200;
                d.handle(IvrInput::LookupResult(script.customer.clone()));
            } else if let Some(t) = d.session.poll_timeout() {
                // The store never answers: the caller hears nothing until the lookup times out.
                d.now = d.now.max(t);
                d.session.handle_timeout(d.now);
                d.drain();
            }
            continue;
        }
        if d.playing {
            d.playing = false;
            d.now += 3_000;
            d.handle(IvrInput::PlaybackDone);
            continue;
        }
        match steps.next() {
            Some(Step::Digits(keys)) => {
                for k in keys.chars() {
                    d.now += 300;
                    d.handle(IvrInput::Dtmf(k));
                }
            }
            Some(Step::HangUp) => d.handle(IvrInput::CallerHungUp),
            Some(Step::Wait) | None => match d.session.poll_timeout() {
                Some(t) => {
                    d.now = d.now.max(t);
                    d.session.handle_timeout(d.now);
                    d.drain();
                }
                None => break,
            },
        }
    }
    d.trace.outcome = d.session.outcome();
    d.trace.ended_at = d.now;
    d.trace
}

// ------------------------------------------------------------------------------------------
// The cases file
// ------------------------------------------------------------------------------------------

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
    at: Spanned<toml::value::Datetime>,
    called: String,
    caller: Option<String>,
    customer: Option<RawCustomer>,
    #[serde(default)]
    lookup_timeout: bool,
    #[serde(default)]
    input: Vec<Spanned<String>>,
    expect: RawExpect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustomer {
    id: Option<i64>,
    name: Option<String>,
    tier: Option<String>,
    language: Option<String>,
    balance_fen: Option<i64>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    outcome: Spanned<String>,
    flow: Option<String>,
    queue: Option<String>,
    priority: Option<i64>,
    ivr_choice: Option<String>,
    product: Option<String>,
    language: Option<String>,
    tier: Option<String>,
    tags: Option<Vec<String>>,
    contained: Option<bool>,
    transfer: Option<String>,
    voicemail: Option<String>,
    heard: Option<Vec<String>>,
    not_heard: Option<Vec<String>>,
    path: Option<Vec<String>>,
}

fn line(text: &str, span: &std::ops::Range<usize>) -> usize {
    let end = span.start.min(text.len());
    let end = (0..=end)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[..end].matches('\n').count() + 1
}

/// `want` appears in `got` in order (other items may come between).
fn subsequence(want: &[String], got: &[String]) -> Result<(), String> {
    let mut it = got.iter();
    for w in want {
        if !it.any(|g| g == w) {
            return Err(w.clone());
        }
    }
    Ok(())
}

const OUTCOMES: &str = "queue, voicemail, callback, transfer, hangup, caller_hung_up";

/// Runs every `[[case]]` of a cases file. A malformed file is a [`RuleError`]; a case whose
/// call ends differently is an outcome with a `failure`.
pub fn run_cases(
    config: &Arc<IvrConfig>,
    rules: &RuleSet,
    file: &str,
    text: &str,
) -> Result<Vec<CaseOutcome>, RuleError> {
    let err = |span: &std::ops::Range<usize>, reason: String| {
        RuleError::new(file, line(text, span), reason)
    };
    let raw: RawCases = toml::from_str(text).map_err(|e| {
        let l = e.span().map(|s| line(text, &s)).unwrap_or(1);
        RuleError::new(file, l, e.message().trim().to_string())
    })?;
    let mut out = Vec::with_capacity(raw.case.len());
    for case in &raw.case {
        let c = case.get_ref();
        let dt = c.at.get_ref();
        if dt.date.is_none() || dt.time.is_none() || dt.offset.is_none() {
            return Err(err(
                &c.at.span(),
                "at needs a date, a time and a UTC offset, e.g. at = 2026-06-01T10:00:00+08:00"
                    .into(),
            ));
        }
        let at = DateTime::parse_from_rfc3339(&dt.to_string())
            .map(|t| t.timestamp_millis())
            .map_err(|e| err(&c.at.span(), format!("bad time {dt}: {e}")))?;
        let mut steps = Vec::new();
        for s in &c.input {
            steps.push(Step::parse(s.get_ref()).ok_or_else(|| {
                err(
                    &s.span(),
                    format!(
                        "bad input {:?}: write keys (\"1\", \"123#\"), \"wait\" or \"hangup\"",
                        s.get_ref()
                    ),
                )
            })?);
        }
        let outcome = match c.expect.outcome.get_ref().trim() {
            "queue" => IvrOutcome::Queued,
            "voicemail" => IvrOutcome::Voicemail,
            "callback" => IvrOutcome::Callback,
            "transfer" => IvrOutcome::Transferred,
            "hangup" => IvrOutcome::HungUp,
            "caller_hung_up" => IvrOutcome::CallerHungUp,
            o => {
                return Err(err(
                    &c.expect.outcome.span(),
                    format!("unknown outcome {o:?}: use one of {OUTCOMES}"),
                ))
            }
        };
        let customer = c.customer.as_ref().map(|k| CallerInfo {
            customer_id: k.id.unwrap_or(1),
            name: k.name.clone().unwrap_or_default(),
            tier: k.tier.clone().unwrap_or_else(|| "ordinary".into()),
            language: k.language.clone(),
            balance_fen: k.balance_fen,
            tags: k.tags.clone(),
        });
        let script = Script {
            at,
            caller: c.caller.clone().unwrap_or_else(|| "+8613800000000".into()),
            called: c.called.clone(),
            customer,
            lookup_answers: !c.lookup_timeout,
            steps,
        };
        let trace = simulate(config.clone(), &script);
        let diffs = compare(config, rules, &script, &trace, outcome, &c.expect);
        out.push(CaseOutcome {
            name: c.name.clone(),
            file: file.to_string(),
            line: line(text, &case.span()),
            failure: (!diffs.is_empty()).then(|| diffs.join("; ")),
        });
    }
    Ok(out)
}

fn compare(
    config: &IvrConfig,
    rules: &RuleSet,
    script: &Script,
    trace: &Trace,
    outcome: IvrOutcome,
    e: &RawExpect,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, want: &Option<String>, got: Option<&str>| {
        if let Some(w) = want {
            if got != Some(w.as_str()) {
                diffs.push(format!("{what}: expected {w:?}, got {got:?}"));
            }
        }
    };
    check(
        "flow",
        &e.flow,
        Some(config.flow_for(&script.called).name.as_str()),
    );
    let attrs = trace.attributes();
    check(
        "ivr_choice",
        &e.ivr_choice,
        attrs.and_then(|a| a.ivr_choice.as_deref()),
    );
    check(
        "product",
        &e.product,
        attrs.and_then(|a| a.product.as_deref()),
    );
    check("language", &e.language, attrs.map(|a| a.language.tag()));
    check("tier", &e.tier, attrs.and_then(|a| a.tier.as_deref()));
    let (transfer, voicemail) = match &trace.last {
        Some(IvrAction::Transfer { number, .. }) => (Some(number.as_str()), None),
        Some(IvrAction::Voicemail { queue, .. }) => (None, Some(queue.as_str())),
        _ => (None, None),
    };
    check("transfer", &e.transfer, transfer);
    check("voicemail", &e.voicemail, voicemail);
    if trace.outcome != Some(outcome) {
        diffs.push(format!(
            "outcome: expected {outcome:?}, got {:?} (path: {})",
            trace.outcome,
            trace.path.join(" → ")
        ));
    }
    if e.queue.is_some() || e.priority.is_some() {
        match (&trace.last, attrs) {
            (Some(IvrAction::Queue { .. }), Some(a)) => {
                let d = rules.route(&a.contact_attributes(), trace.ended_at);
                if let Some(q) = &e.queue {
                    if &d.queue != q {
                        diffs.push(format!(
                            "queue: expected {q:?}, got {:?} (rule {:?})",
                            d.queue, d.rule
                        ));
                    }
                }
                if let Some(p) = e.priority {
                    let got = d.priority.saturating_add(a.priority_boost);
                    if got != p {
                        diffs.push(format!("priority: expected {p}, got {got}"));
                    }
                }
            }
            _ => diffs.push("queue/priority: the call was not queued".into()),
        }
    }
    if let Some(tags) = &e.tags {
        let mut want = tags.clone();
        let mut got = attrs.map(|a| a.tags.clone()).unwrap_or_default();
        want.sort();
        got.sort();
        if want != got {
            diffs.push(format!("tags: expected {want:?}, got {got:?}"));
        }
    }
    if let Some(want) = e.contained {
        let got = trace
            .events()
            .any(|ev| matches!(ev, IvrEvent::Contained { .. }));
        if got != want {
            diffs.push(format!("contained: expected {want}, got {got}"));
        }
    }
    if let Some(h) = &e.heard {
        if let Err(missing) = subsequence(h, &trace.heard) {
            diffs.push(format!(
                "heard: {missing:?} missing (in order) from {}",
                trace.heard.join(" ")
            ));
        }
    }
    if let Some(h) = &e.not_heard {
        for p in h {
            if trace.heard.contains(p) {
                diffs.push(format!("not_heard: {p:?} was played"));
            }
        }
    }
    if let Some(p) = &e.path {
        if let Err(missing) = subsequence(p, &trace.path) {
            diffs.push(format!(
                "path: {missing:?} missing (in order) from {}",
                trace.path.join(" → ")
            ));
        }
    }
    diffs
}
