//! [`IvrSession`]: one call walking through a [`Flow`], sans-IO. The call handling feeds it
//! inputs with the time ([`IvrSession::handle`], [`IvrSession::handle_timeout`]) and carries
//! out what [`IvrSession::poll_output`] returns; [`IvrSession::poll_timeout`] says when to call
//! back. It ends in exactly one of queue, voicemail, callback, transfer or hang-up (or the
//! caller hanging up); after that it emits nothing.
//!
//! Digits: while a barge-in prompt plays, a digit stops it (`StopPlayback`) and counts as the
//! first digit of the menu; while a prompt without barge-in plays (or the lookup runs), digits
//! are kept and the next menu takes them without replaying its prompt (type-ahead).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;

use crate::acd::rules::hours_open;
use crate::acd::types::Millis;

use super::flow::{
    Change, Collect, Condition, Flow, IvrConfig, NodeId, NodeKind, PromptItem, Service,
};
use super::{
    glob_match, is_key, language_match, CallAttributes, CallerInfo, Language, Playback, PromptRef,
};

/// Digits kept while no menu listens (more are dropped).
pub const TYPE_AHEAD: usize = 32;

/// What happens on the call, as the call handling reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrInput {
    /// A DTMF key (RFC 4733, SIP INFO or in-band); keys other than 0-9 * # are ignored.
    Dtmf(char),
    /// The last `Play` finished by itself (media `PlaybackDone { completed: true }`). Do not
    /// report playbacks ended by `StopPlayback` or replaced by the next `Play`.
    PlaybackDone,
    /// The answer to `IvrAction::Lookup`: the customer with the caller's number, if any.
    LookupResult(Option<CallerInfo>),
    CallerHungUp,
}

/// How the IVR part of a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IvrOutcome {
    Queued,
    Voicemail,
    Callback,
    Transferred,
    /// The flow hung up (after a goodbye, or a self-service step).
    HungUp,
    /// The caller hung up in the IVR.
    CallerHungUp,
}

/// A step for the call record (`contact_events`: [`IvrEvent::kind`] and [`IvrEvent::data`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IvrEvent {
    Started {
        flow: String,
        language: Language,
    },
    NodeEntered {
        node: String,
        node_type: String,
    },
    /// A digit stopped a prompt.
    BargeIn {
        node: String,
    },
    /// Digits accepted by a menu or collect node (`***` for masked nodes).
    Digits {
        node: String,
        digits: String,
    },
    InvalidInput {
        node: String,
        digits: String,
        attempt: u32,
    },
    /// Nothing pressed before the first-digit timeout.
    NoInput {
        node: String,
        attempt: u32,
    },
    /// Retries used up: the call goes to the node's fallback.
    Fallback {
        node: String,
        target: String,
    },
    LookupDone {
        known: bool,
        tier: Option<String>,
    },
    /// The archive did not answer in time; the caller is treated as unknown.
    LookupTimedOut,
    AttributeSet {
        name: String,
        value: String,
    },
    SelfServiceDone {
        service: String,
    },
    SelfServiceUnavailable {
        service: String,
    },
    /// A prompt never reported its end; the flow went on.
    PromptTimedOut {
        node: String,
    },
    /// The call ended in the IVR after self-service: counted as IVR-contained.
    Contained {
        service: String,
    },
    Ended {
        outcome: IvrOutcome,
        contained: bool,
        /// The node the call was in.
        node: String,
    },
}

impl IvrEvent {
    /// The `contact_events.kind` of this event (`ivr_node_entered` …).
    pub fn kind(&self) -> &'static str {
        match self {
            IvrEvent::Started { .. } => "ivr_started",
            IvrEvent::NodeEntered { .. } => "ivr_node_entered",
            IvrEvent::BargeIn { .. } => "ivr_barge_in",
            IvrEvent::Digits { .. } => "ivr_digits",
            IvrEvent::InvalidInput { .. } => "ivr_invalid_input",
            IvrEvent::NoInput { .. } => "ivr_no_input",
            IvrEvent::Fallback { .. } => "ivr_fallback",
            IvrEvent::LookupDone { .. } => "ivr_lookup",
            IvrEvent::LookupTimedOut => "ivr_lookup_timeout",
            IvrEvent::AttributeSet { .. } => "ivr_attribute_set",
            IvrEvent::SelfServiceDone { .. } => "ivr_self_service",
            IvrEvent::SelfServiceUnavailable { .. } => "ivr_self_service_unavailable",
            IvrEvent::PromptTimedOut { .. } => "ivr_prompt_timeout",
            IvrEvent::Contained { .. } => "ivr_contained",
            IvrEvent::Ended { .. } => "ivr_ended",
        }
    }

    /// The `contact_events.data` JSON (the event's fields, `kind` included).
    pub fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What the call handling must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrAction {
    /// Play to the caller, replacing whatever plays; report `PlaybackDone` when it ends.
    Play(Playback),
    /// Stop the current playback (a digit barged in).
    StopPlayback,
    /// Look the number up in the archive and answer with `IvrInput::LookupResult`.
    Lookup { number: String },
    /// Hand the call to the ACD (route `attributes.contact_attributes()`).
    Queue { attributes: CallAttributes },
    /// Record a message for `queue`'s mailbox and store it as a contact.
    Voicemail {
        queue: String,
        attributes: CallAttributes,
    },
    /// Create a callback contact for the caller's number, then end the call.
    Callback { attributes: CallAttributes },
    /// Transfer the call to `number`.
    Transfer {
        number: String,
        attributes: CallAttributes,
    },
    /// End the call; `contained` = served by self-service alone.
    Hangup { contained: bool },
    /// Append to the call record.
    Event(IvrEvent),
}

#[derive(Debug, Clone, PartialEq)]
enum Finish {
    Queue,
    Voicemail(String),
    Callback,
    Transfer(String),
    Hangup,
}

/// What follows the playback in progress.
#[derive(Debug, Clone, PartialEq)]
enum Then {
    Goto(NodeId),
    /// Listen for the digits of this node.
    Collect(NodeId),
    /// A self-service step was heard; go on.
    Served(Service, NodeId),
    Finish(Finish),
}

#[derive(Debug, Clone, PartialEq)]
enum Wait {
    Playing {
        node: NodeId,
        deadline: Millis,
        barge_in: bool,
        then: Then,
    },
    Collecting {
        node: NodeId,
        digits: String,
        deadline: Millis,
    },
    Lookup {
        next: NodeId,
        deadline: Millis,
    },
    /// Between two steps, or for good once `outcome` is set.
    Idle,
}

/// One call in the IVR.
#[derive(Debug, Clone)]
pub struct IvrSession {
    flow: Arc<Flow>,
    attrs: CallAttributes,
    /// The caller (or the flow) picked the language; the archive's no longer overrides it.
    language_chosen: bool,
    customer: Option<CallerInfo>,
    looked_up: bool,
    vars: BTreeMap<String, String>,
    last_digits: String,
    type_ahead: VecDeque<char>,
    wait: Wait,
    attempts: u32,
    /// The node last entered.
    current: NodeId,
    self_served: Option<Service>,
    outcome: Option<IvrOutcome>,
    out: VecDeque<IvrAction>,
    now: Millis,
}

impl IvrSession {
    /// A call from `caller` to `called` answered at `now`, in the flow for `called`.
    pub fn new(config: Arc<IvrConfig>, caller: &str, called: &str, now: Millis) -> IvrSession {
        let flow = config.flow_for(called).clone();
        IvrSession::with_flow(flow, caller, called, now)
    }

    /// A call in a given flow (tests, or a flow picked by other means).
    pub fn with_flow(flow: Arc<Flow>, caller: &str, called: &str, now: Millis) -> IvrSession {
        let mut s = IvrSession {
            attrs: CallAttributes {
                caller: caller.trim().to_string(),
                called: called.trim().to_string(),
                language: flow.language,
                ivr_choice: None,
                product: None,
                tags: Vec::new(),
                priority_boost: 0,
                tier: None,
                customer_id: None,
            },
            language_chosen: false,
            customer: None,
            looked_up: false,
            vars: BTreeMap::new(),
            last_digits: String::new(),
            type_ahead: VecDeque::new(),
            wait: Wait::Idle,
            attempts: 0,
            current: flow.start,
            self_served: None,
            outcome: None,
            out: VecDeque::new(),
            now,
            flow,
        };
        s.event(IvrEvent::Started {
            flow: s.flow.name.clone(),
            language: s.attrs.language,
        });
        let start = s.flow.start;
        s.advance(Some(start));
        s
    }

    pub fn handle(&mut self, now: Millis, input: IvrInput) {
        if self.outcome.is_some() {
            return;
        }
        self.now = self.now.max(now);
        let next = match input {
            IvrInput::Dtmf(d) => self.dtmf(d),
            IvrInput::PlaybackDone => match &self.wait {
                Wait::Playing { .. } => self.playback_ended(),
                _ => None,
            },
            IvrInput::LookupResult(info) => match self.wait {
                Wait::Lookup { next, .. } => {
                    self.wait = Wait::Idle;
                    self.lookup_answered(info);
                    Some(next)
                }
                // Late (after the timeout) or unasked: the call went on without it.
                _ => None,
            },
            IvrInput::CallerHungUp => {
                self.end(IvrOutcome::CallerHungUp);
                None
            }
        };
        self.advance(next);
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        if self.outcome.is_some() {
            return;
        }
        self.now = self.now.max(now);
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if self.now < deadline {
            return;
        }
        let next = match std::mem::replace(&mut self.wait, Wait::Idle) {
            Wait::Playing { node, then, .. } => {
                // The media never said the prompt ended: stop it and go on.
                self.out.push_back(IvrAction::StopPlayback);
                self.event(IvrEvent::PromptTimedOut {
                    node: self.flow.node(node).name.clone(),
                });
                self.after(then)
            }
            Wait::Collecting { node, digits, .. } => {
                if digits.is_empty() {
                    self.no_input(node)
                } else {
                    self.evaluate(node, digits)
                }
            }
            Wait::Lookup { next, .. } => {
                self.looked_up = true;
                self.event(IvrEvent::LookupTimedOut);
                Some(next)
            }
            Wait::Idle => None,
        };
        self.advance(next);
    }

    pub fn poll_output(&mut self) -> Option<IvrAction> {
        self.out.pop_front()
    }

    /// When to call [`IvrSession::handle_timeout`] (unix ms), if anything is timed.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match &self.wait {
            Wait::Playing { deadline, .. }
            | Wait::Collecting { deadline, .. }
            | Wait::Lookup { deadline, .. } => Some(*deadline),
            Wait::Idle => None,
        }
    }

    /// What the call has collected so far (the final value travels in the last action).
    pub fn attributes(&self) -> &CallAttributes {
        &self.attrs
    }

    pub fn language(&self) -> Language {
        self.attrs.language
    }

    pub fn customer(&self) -> Option<&CallerInfo> {
        self.customer.as_ref()
    }

    /// Digits a `collect` node stored under its `variable`.
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn outcome(&self) -> Option<IvrOutcome> {
        self.outcome
    }

    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    pub fn flow(&self) -> &Arc<Flow> {
        &self.flow
    }

    /// The node the call waits in (`None` once finished).
    pub fn current_node(&self) -> Option<&str> {
        (!self.is_finished()).then(|| self.flow.node(self.current).name.as_str())
    }

    // --------------------------------------------------------------------------------------

    fn event(&mut self, e: IvrEvent) {
        self.out.push_back(IvrAction::Event(e));
    }

    /// Enters nodes until the call waits for something; feeds type-ahead to a listening menu.
    fn advance(&mut self, mut next: Option<NodeId>) {
        // A validated flow has no silent loop, so this bound is never reached; it keeps a
        // broken flow from spinning.
        let mut budget = self.flow.nodes.len() * 4 + 16;
        loop {
            if self.outcome.is_some() {
                return;
            }
            if let Some(n) = next.take() {
                if budget == 0 {
                    self.end(IvrOutcome::HungUp);
                    self.out.push_back(IvrAction::Hangup { contained: false });
                    return;
                }
                budget -= 1;
                next = self.enter(n);
                continue;
            }
            if matches!(self.wait, Wait::Collecting { .. }) {
                if let Some(d) = self.type_ahead.pop_front() {
                    next = self.collect_digit(d);
                    continue;
                }
            }
            return;
        }
    }

    fn enter(&mut self, id: NodeId) -> Option<NodeId> {
        let flow = self.flow.clone();
        let node = flow.node(id);
        self.current = id;
        self.event(IvrEvent::NodeEntered {
            node: node.name.clone(),
            node_type: node.kind.type_name().to_string(),
        });
        match &node.kind {
            NodeKind::Play {
                prompts,
                barge_in,
                next,
            } => self.play(id, prompts, *barge_in, Then::Goto(*next)),
            NodeKind::Menu(c) | NodeKind::Collect(c) | NodeKind::CallbackOffer(c) => {
                self.attempts = 0;
                self.listen(id, c, &[])
            }
            NodeKind::Branch { cases, default } => Some(
                cases
                    .iter()
                    .find(|(cond, _)| self.holds(cond))
                    .map(|(_, t)| *t)
                    .unwrap_or(*default),
            ),
            NodeKind::Set { changes, next } => {
                for ch in changes {
                    self.apply(ch);
                }
                Some(*next)
            }
            NodeKind::Lookup { timeout_ms, next } => {
                if self.looked_up {
                    return Some(*next);
                }
                if !dialable(&self.attrs.caller) {
                    // Withheld or malformed number: nobody to look up.
                    self.looked_up = true;
                    self.event(IvrEvent::LookupDone {
                        known: false,
                        tier: None,
                    });
                    return Some(*next);
                }
                self.out.push_back(IvrAction::Lookup {
                    number: self.attrs.caller.clone(),
                });
                self.wait = Wait::Lookup {
                    next: *next,
                    deadline: self.now + timeout_ms,
                };
                None
            }
            NodeKind::SelfService {
                service,
                prompts,
                credit_prompts,
                next,
                unavailable,
            } => {
                let balance = self.customer.as_ref().and_then(|c| c.balance_fen);
                match (service, balance) {
                    (Service::Balance, Some(b)) => {
                        let items = if b < 0 { credit_prompts } else { prompts };
                        self.play(id, items, true, Then::Served(*service, *next))
                    }
                    (Service::Balance, None) => {
                        self.event(IvrEvent::SelfServiceUnavailable {
                            service: service.name().into(),
                        });
                        Some(*unavailable)
                    }
                }
            }
            NodeKind::Queue { prompts } => {
                self.play(id, prompts, false, Then::Finish(Finish::Queue))
            }
            NodeKind::Voicemail { queue, prompts } => self.play(
                id,
                prompts,
                false,
                Then::Finish(Finish::Voicemail(queue.clone())),
            ),
            NodeKind::Transfer { number, prompts } => self.play(
                id,
                prompts,
                false,
                Then::Finish(Finish::Transfer(number.clone())),
            ),
            NodeKind::Hangup { prompts } => {
                self.play(id, prompts, false, Then::Finish(Finish::Hangup))
            }
        }
    }

    /// Plays `items`, then `then`; with nothing to say, `then` at once.
    fn play(
        &mut self,
        node: NodeId,
        items: &[PromptItem],
        barge_in: bool,
        then: Then,
    ) -> Option<NodeId> {
        let prompts = self.resolve(items);
        if prompts.is_empty() {
            return self.after(then);
        }
        self.out.push_back(IvrAction::Play(Playback {
            language: self.attrs.language,
            prompts,
            barge_in,
            looping: false,
        }));
        self.wait = Wait::Playing {
            node,
            deadline: self.now + self.flow.prompt_timeout_ms,
            barge_in,
            then,
        };
        None
    }

    fn resolve(&self, items: &[PromptItem]) -> Vec<PromptRef> {
        items
            .iter()
            .filter_map(|i| match i {
                PromptItem::Key(k) => Some(PromptRef::Prompt(k.clone())),
                PromptItem::Balance => {
                    self.customer
                        .as_ref()
                        .and_then(|c| c.balance_fen)
                        .map(|b| PromptRef::Money {
                            fen: b.unsigned_abs(),
                        })
                }
                PromptItem::Digits => (!self.last_digits.is_empty())
                    .then(|| PromptRef::Digits(self.last_digits.clone())),
                PromptItem::Beep => Some(PromptRef::Beep),
                PromptItem::Pause => Some(PromptRef::Silence { ms: 500 }),
            })
            .collect()
    }

    fn after(&mut self, then: Then) -> Option<NodeId> {
        match then {
            Then::Goto(n) => Some(n),
            Then::Collect(node) => {
                self.wait = Wait::Collecting {
                    node,
                    digits: String::new(),
                    deadline: self.now + self.collect_of(node).first_digit_timeout_ms,
                };
                None
            }
            Then::Served(service, next) => {
                self.self_served = Some(service);
                self.event(IvrEvent::SelfServiceDone {
                    service: service.name().into(),
                });
                Some(next)
            }
            Then::Finish(f) => {
                self.finish(f);
                None
            }
        }
    }

    fn playback_ended(&mut self) -> Option<NodeId> {
        match std::mem::replace(&mut self.wait, Wait::Idle) {
            Wait::Playing { then, .. } => self.after(then),
            other => {
                self.wait = other;
                None
            }
        }
    }

    fn collect_of(&self, node: NodeId) -> &Collect {
        collect_in(&self.flow, node)
    }

    /// Starts listening at a collecting node: type-ahead digits go straight in; otherwise
    /// `prelude` (a retry prompt) and the node's prompts play first.
    fn listen(&mut self, id: NodeId, c: &Collect, prelude: &[PromptItem]) -> Option<NodeId> {
        if !self.type_ahead.is_empty() {
            return self.after(Then::Collect(id));
        }
        let mut items = prelude.to_vec();
        if prelude.is_empty() || c.reprompt {
            items.extend(c.prompts.iter().cloned());
        }
        self.play(id, &items, c.barge_in, Then::Collect(id))
    }

    fn dtmf(&mut self, d: char) -> Option<NodeId> {
        if !is_key(d) {
            return None;
        }
        match &self.wait {
            Wait::Playing {
                node,
                barge_in: true,
                ..
            } => {
                let node = *node;
                self.out.push_back(IvrAction::StopPlayback);
                self.event(IvrEvent::BargeIn {
                    node: self.flow.node(node).name.clone(),
                });
                let Wait::Playing { then, .. } = std::mem::replace(&mut self.wait, Wait::Idle)
                else {
                    unreachable!()
                };
                if let Then::Collect(n) = then {
                    self.after(Then::Collect(n));
                    self.collect_digit(d)
                } else {
                    self.keep(d);
                    self.after(then)
                }
            }
            Wait::Playing { .. } | Wait::Lookup { .. } => {
                self.keep(d);
                None
            }
            Wait::Collecting { .. } => self.collect_digit(d),
            Wait::Idle => None,
        }
    }

    fn keep(&mut self, d: char) {
        if self.type_ahead.len() < TYPE_AHEAD {
            self.type_ahead.push_back(d);
        }
    }

    fn collect_digit(&mut self, d: char) -> Option<NodeId> {
        let Wait::Collecting { node, digits, .. } = &mut self.wait else {
            return None;
        };
        let node = *node;
        let flow = self.flow.clone();
        let c = match &flow.node(node).kind {
            NodeKind::Menu(c) | NodeKind::Collect(c) | NodeKind::CallbackOffer(c) => c,
            _ => return None,
        };
        if Some(d) == c.terminator {
            let digits = std::mem::take(digits);
            return self.evaluate(node, digits);
        }
        digits.push(d);
        let so_far = digits.clone();
        let len = so_far.chars().count() as u32;
        // Done at max_digits; a menu also as soon as no longer key starts with the digits
        // (a full key is taken at once, a wrong one refused at once).
        let decided = len >= c.max_digits
            || (!matches!(flow.node(node).kind, NodeKind::Collect(_))
                && !menu_keys(c)
                    .iter()
                    .any(|k| k.len() > so_far.len() && k.starts_with(&so_far)));
        if decided {
            return self.evaluate(node, so_far);
        }
        if let Wait::Collecting { deadline, .. } = &mut self.wait {
            *deadline = self.now + c.inter_digit_timeout_ms;
        }
        None
    }

    /// The digits are complete (a full key, max digits, terminator or inter-digit timeout).
    fn evaluate(&mut self, node: NodeId, digits: String) -> Option<NodeId> {
        let flow = self.flow.clone();
        let n = flow.node(node);
        let c = collect_in(&flow, node);
        let len = digits.chars().count() as u32;
        let is_collect = matches!(n.kind, NodeKind::Collect(_));
        let valid = if is_collect {
            len >= c.min_digits && len <= c.max_digits
        } else {
            menu_keys(c).contains(&digits.as_str())
        };
        if !valid {
            return self.invalid(node, digits);
        }
        self.wait = Wait::Idle;
        self.event(IvrEvent::Digits {
            node: n.name.clone(),
            digits: if c.mask { "***".into() } else { digits.clone() },
        });
        if is_collect {
            if let Some(v) = &c.variable {
                self.vars.insert(v.clone(), digits.clone());
            }
            self.last_digits = digits;
            return c.next;
        }
        if c.accept.as_deref() == Some(digits.as_str()) {
            let confirm = c.confirm_prompts.clone();
            return self.play(node, &confirm, false, Then::Finish(Finish::Callback));
        }
        c.choices
            .iter()
            .find(|(k, _)| *k == digits)
            .map(|(_, t)| *t)
    }

    fn invalid(&mut self, node: NodeId, digits: String) -> Option<NodeId> {
        self.attempts += 1;
        let name = self.flow.node(node).name.clone();
        self.event(IvrEvent::InvalidInput {
            node: name,
            digits: if self.collect_of(node).mask {
                "***".into()
            } else {
                digits
            },
            attempt: self.attempts,
        });
        let prelude = self.collect_of(node).invalid_prompts.clone();
        self.retry(node, &prelude)
    }

    fn no_input(&mut self, node: NodeId) -> Option<NodeId> {
        self.attempts += 1;
        self.event(IvrEvent::NoInput {
            node: self.flow.node(node).name.clone(),
            attempt: self.attempts,
        });
        let prelude = self.collect_of(node).timeout_prompts.clone();
        self.retry(node, &prelude)
    }

    fn retry(&mut self, node: NodeId, prelude: &[PromptItem]) -> Option<NodeId> {
        // A confused caller starts afresh: what they typed ahead is dropped.
        self.type_ahead.clear();
        self.wait = Wait::Idle;
        let flow = self.flow.clone();
        let c = self.collect_of(node).clone();
        if self.attempts > c.retries {
            self.event(IvrEvent::Fallback {
                node: flow.node(node).name.clone(),
                target: flow.node(c.fallback).name.clone(),
            });
            return Some(c.fallback);
        }
        self.listen(node, &c, prelude)
    }

    fn holds(&self, c: &Condition) -> bool {
        let one_of = |list: &[String], value: Option<&str>, eq: &dyn Fn(&str, &str) -> bool| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|p| eq(p, v.trim())))
        };
        let exact = |p: &str, v: &str| p.eq_ignore_ascii_case(v);
        let known = self.customer.is_some();
        let a = &self.attrs;
        c.known.is_none_or(|k| k == known)
            && one_of(&c.tier, a.tier.as_deref(), &exact)
            && one_of(&c.language, Some(a.language.tag()), &language_match)
            && one_of(&c.caller, Some(&a.caller), &glob_match)
            && one_of(&c.called, Some(&a.called), &glob_match)
            && one_of(&c.ivr_choice, a.ivr_choice.as_deref(), &exact)
            && one_of(&c.product, a.product.as_deref(), &exact)
            && (c.tags.is_empty()
                || a.tags
                    .iter()
                    .any(|t| c.tags.iter().any(|p| p.eq_ignore_ascii_case(t))))
            && c.queue_open
                .iter()
                .all(|(_, hours, want)| hours_open(hours, self.now) == *want)
            && c.time.as_ref().is_none_or(|w| w.contains(self.now))
    }

    fn apply(&mut self, ch: &Change) {
        let (name, value) = match ch {
            Change::Language(l) => {
                self.attrs.language = *l;
                self.language_chosen = true;
                ("language", l.tag().to_string())
            }
            Change::IvrChoice(v) => {
                self.attrs.ivr_choice = Some(v.clone());
                ("ivr_choice", v.clone())
            }
            Change::Product(v) => {
                self.attrs.product = Some(v.clone());
                ("product", v.clone())
            }
            Change::AddTags(tags) => {
                for t in tags {
                    if !self.attrs.tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                        self.attrs.tags.push(t.clone());
                    }
                }
                ("tags", tags.join(","))
            }
            Change::PriorityBoost(b) => {
                self.attrs.priority_boost = self.attrs.priority_boost.saturating_add(*b);
                ("priority_boost", self.attrs.priority_boost.to_string())
            }
        };
        self.event(IvrEvent::AttributeSet {
            name: name.into(),
            value,
        });
    }

    fn lookup_answered(&mut self, info: Option<CallerInfo>) {
        self.looked_up = true;
        self.event(IvrEvent::LookupDone {
            known: info.is_some(),
            tier: info.as_ref().map(|c| c.tier.clone()),
        });
        let Some(c) = info else { return };
        self.attrs.customer_id = Some(c.customer_id);
        if !c.tier.trim().is_empty() {
            self.attrs.tier = Some(c.tier.trim().to_string());
        }
        for t in &c.tags {
            if !self.attrs.tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                self.attrs.tags.push(t.clone());
            }
        }
        if self.flow.use_customer_language && !self.language_chosen {
            let lang = c.language.as_deref().and_then(Language::from_tag);
            if let Some(l) = lang.filter(|l| self.flow.languages.contains(l)) {
                if l != self.attrs.language {
                    self.attrs.language = l;
                    self.event(IvrEvent::AttributeSet {
                        name: "language".into(),
                        value: l.tag().into(),
                    });
                }
            }
        }
        self.customer = Some(c);
    }

    fn finish(&mut self, f: Finish) {
        let attributes = self.attrs.clone();
        let (outcome, action) = match f {
            Finish::Queue => (IvrOutcome::Queued, IvrAction::Queue { attributes }),
            Finish::Voicemail(queue) => (
                IvrOutcome::Voicemail,
                IvrAction::Voicemail { queue, attributes },
            ),
            Finish::Callback => (IvrOutcome::Callback, IvrAction::Callback { attributes }),
            Finish::Transfer(number) => (
                IvrOutcome::Transferred,
                IvrAction::Transfer { number, attributes },
            ),
            Finish::Hangup => (
                IvrOutcome::HungUp,
                IvrAction::Hangup {
                    contained: self.self_served.is_some(),
                },
            ),
        };
        self.end(outcome);
        self.out.push_back(action);
    }

    /// Records the end (and containment) and stops accepting input.
    fn end(&mut self, outcome: IvrOutcome) {
        let contained = matches!(outcome, IvrOutcome::HungUp | IvrOutcome::CallerHungUp)
            && self.self_served.is_some();
        if contained {
            if let Some(s) = self.self_served {
                self.event(IvrEvent::Contained {
                    service: s.name().into(),
                });
            }
        }
        self.event(IvrEvent::Ended {
            outcome,
            contained,
            node: self.flow.node(self.current).name.clone(),
        });
        self.outcome = Some(outcome);
        self.wait = Wait::Idle;
    }
}

fn collect_in(flow: &Flow, node: NodeId) -> &Collect {
    match &flow.node(node).kind {
        NodeKind::Menu(c) | NodeKind::Collect(c) | NodeKind::CallbackOffer(c) => c,
        _ => unreachable!("only menu, collect and callback_offer nodes collect digits"),
    }
}

/// Keys a menu or callback offer accepts.
fn menu_keys(c: &Collect) -> Vec<&str> {
    c.choices
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(c.accept.as_deref())
        .collect()
}

/// A number worth looking up: `+` and digits, or digits (no "anonymous", no SIP URIs).
fn dialable(number: &str) -> bool {
    let d = number.strip_prefix('+').unwrap_or(number);
    d.len() >= 3 && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::rules::RuleSet;

    fn config(text: &str) -> Arc<IvrConfig> {
        let rules = RuleSet::load(&[(
            "q.toml".into(),
            "[[queue]]\nname = \"support\"\n[[rule]]\nname = \"default\"\nqueue = \"support\"\n"
                .into(),
        )])
        .unwrap();
        Arc::new(IvrConfig::load("t.toml", text, &rules).unwrap_or_else(|e| panic!("{e}")))
    }

    fn drain(s: &mut IvrSession) -> Vec<IvrAction> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    const SETS: &str = r#"
[[flow]]
name = "f"
languages = ["zh-CN", "en"]
start = "pick"

[flow.node.pick]
type = "set"
language = "en"
priority_boost = 5
tags = ["a"]
next = "more"

[flow.node.more]
type = "set"
priority_boost = 7
tags = ["A", "b"]
next = "who"

[flow.node.who]
type = "lookup"
next = "menu"

[flow.node.menu]
type = "menu"
prompts = ["welcome"]
choices = { 1 = "q" }
fallback = "q"

[flow.node.q]
type = "queue"
"#;

    #[test]
    fn sets_accumulate_and_a_chosen_language_beats_the_archive() {
        let mut s = IvrSession::new(config(SETS), "+8613800138000", "+1", 0);
        let a = drain(&mut s);
        assert!(a.contains(&IvrAction::Lookup {
            number: "+8613800138000".into()
        }));
        s.handle(
            10,
            IvrInput::LookupResult(Some(CallerInfo {
                customer_id: 9,
                tier: "  ".into(),
                language: Some("zh-CN".into()),
                tags: vec!["b".into(), "vip-reseller".into()],
                ..CallerInfo::default()
            })),
        );
        let a = drain(&mut s);
        let Some(IvrAction::Play(p)) = a.iter().find(|x| matches!(x, IvrAction::Play(_))) else {
            panic!("{a:?}")
        };
        assert_eq!(p.language, Language::En, "set before the lookup wins");
        s.handle(20, IvrInput::PlaybackDone);
        s.handle(30, IvrInput::Dtmf('1'));
        let a = drain(&mut s);
        let Some(IvrAction::Queue { attributes }) = a.last() else {
            panic!("{a:?}")
        };
        assert_eq!(attributes.priority_boost, 12);
        assert_eq!(attributes.tags, vec!["a", "b", "vip-reseller"]);
        assert_eq!(attributes.tier, None, "a blank tier is no tier");
        assert_eq!(attributes.customer_id, Some(9));
    }

    #[test]
    fn stray_inputs_are_ignored() {
        let mut s = IvrSession::new(config(SETS), "anonymous", "+1", 0);
        let a = drain(&mut s);
        assert!(!a.iter().any(|x| matches!(x, IvrAction::Lookup { .. })));
        assert_eq!(s.current_node(), Some("menu"));
        // An unasked lookup answer, keys that are not DTMF, an early timeout.
        s.handle(1, IvrInput::LookupResult(None));
        s.handle(2, IvrInput::Dtmf('A'));
        s.handle(3, IvrInput::Dtmf('x'));
        s.handle_timeout(4);
        assert!(drain(&mut s).is_empty());
        s.handle(5, IvrInput::PlaybackDone);
        // A second PlaybackDone while listening changes nothing.
        s.handle(6, IvrInput::PlaybackDone);
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(5 + 5_000));
    }

    #[test]
    fn type_ahead_is_bounded() {
        let text = SETS.replace("type = \"lookup\"", "type = \"lookup\"\ntimeout_secs = 1");
        let mut s = IvrSession::new(config(&text), "+8613800138000", "+1", 0);
        for i in 0..1_000 {
            s.handle(i, IvrInput::Dtmf('7'));
        }
        assert!(s.type_ahead.len() <= TYPE_AHEAD);
        s.handle_timeout(2_000);
        let a = drain(&mut s);
        // 32 wrong keys are at most a few invalid attempts, then the fallback.
        let invalid = a
            .iter()
            .filter(|x| matches!(x, IvrAction::Event(IvrEvent::InvalidInput { .. })))
            .count();
        assert_eq!(
            invalid, 1,
            "the kept keys are dropped after the first wrong one"
        );
    }

    #[test]
    fn event_kinds_are_distinct_and_data_carries_them() {
        let events = [
            IvrEvent::Started {
                flow: "f".into(),
                language: Language::En,
            },
            IvrEvent::NodeEntered {
                node: "n".into(),
                node_type: "menu".into(),
            },
            IvrEvent::BargeIn { node: "n".into() },
            IvrEvent::Digits {
                node: "n".into(),
                digits: "1".into(),
            },
            IvrEvent::InvalidInput {
                node: "n".into(),
                digits: "1".into(),
                attempt: 1,
            },
            IvrEvent::NoInput {
                node: "n".into(),
                attempt: 1,
            },
            IvrEvent::Fallback {
                node: "n".into(),
                target: "m".into(),
            },
            IvrEvent::LookupDone {
                known: false,
                tier: None,
            },
            IvrEvent::LookupTimedOut,
            IvrEvent::AttributeSet {
                name: "a".into(),
                value: "b".into(),
            },
            IvrEvent::SelfServiceDone {
                service: "balance".into(),
            },
            IvrEvent::SelfServiceUnavailable {
                service: "balance".into(),
            },
            IvrEvent::PromptTimedOut { node: "n".into() },
            IvrEvent::Contained {
                service: "balance".into(),
            },
            IvrEvent::Ended {
                outcome: IvrOutcome::Queued,
                contained: false,
                node: "n".into(),
            },
        ];
        let mut kinds: Vec<&str> = events.iter().map(IvrEvent::kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), events.len());
        for e in &events {
            let d = e.data();
            let tag = d["kind"].as_str().unwrap();
            assert!(e.kind().starts_with("ivr_") && !tag.is_empty(), "{d}");
        }
    }

    #[test]
    fn numbers_worth_looking_up() {
        assert!(dialable("+8613800138000"));
        assert!(dialable("8001"));
        for n in [
            "",
            "anonymous",
            "+",
            "sip:alice@example.com",
            "+86 138",
            "+1234567890123456",
        ] {
            assert!(!dialable(n), "{n}");
        }
    }
}
