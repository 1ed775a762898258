//! The IVR file (`ivr.toml`): call flows per called number, a prompt catalog, menu defaults and
//! the queue experience per queue, turned into validated [`IvrConfig`]. Pure: text in, value or
//! [`RuleError`] (file, line, reason) out; the format is in `routing-rules/README.md`.
//!
//! Validation refuses unknown node targets and queues, a node with fields of another node type,
//! loops that need no caller input (they would never end on a silent line), languages a flow
//! does not speak, and prompts without text for a language a flow speaks. Nodes no path reaches
//! are kept and reported as warnings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::acd::rules::{RuleError, RuleSet, TimeWindow};
use crate::acd::types::BusinessHours;

use super::{glob_match, is_key, Language};

/// Index of a node in its [`Flow`].
pub type NodeId = usize;

/// Prompt keys shipped by `channel-media` in every language (`channel_media::prompts::NAMES`):
/// flows may play them without a `[prompts]` entry.
pub const SHIPPED_PROMPTS: &[&str] = &[
    "welcome",
    "press1",
    "please_hold",
    "you_are_number",
    "in_line",
    "expected_wait",
    "minutes",
    "press_star_callback",
    "callback_confirm",
    "leave_message",
    "closed",
    "goodbye",
    "balance_is",
    "yuan",
    "jiao",
    "fen",
    "point",
];

/// Longest digit string a menu or collect node takes.
pub const MAX_DIGITS: u32 = 32;

// ------------------------------------------------------------------------------------------
// The compiled model
// ------------------------------------------------------------------------------------------

/// One thing to say: a recorded prompt, or a phrase filled in when played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptItem {
    Key(String),
    /// `$balance`: the caller's balance as money (its absolute value; credit prompts say which).
    Balance,
    /// `$digits`: the digits last collected, one by one.
    Digits,
    /// `$beep`: the tone before a recording.
    Beep,
    /// `$pause`: half a second of silence.
    Pause,
}

/// Digit collection shared by `menu`, `collect` and `callback_offer` nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Collect {
    pub prompts: Vec<PromptItem>,
    pub barge_in: bool,
    /// Menu choices: digits → node. Empty for `collect`.
    pub choices: Vec<(String, NodeId)>,
    /// `callback_offer`: the key that accepts the callback.
    pub accept: Option<String>,
    pub confirm_prompts: Vec<PromptItem>,
    pub min_digits: u32,
    pub max_digits: u32,
    pub terminator: Option<char>,
    pub first_digit_timeout_ms: i64,
    pub inter_digit_timeout_ms: i64,
    /// Attempts after the first before `fallback`.
    pub retries: u32,
    pub invalid_prompts: Vec<PromptItem>,
    pub timeout_prompts: Vec<PromptItem>,
    /// Replay `prompts` after a retry prompt.
    pub reprompt: bool,
    pub fallback: NodeId,
    /// `collect`: where the digits go, and the node after.
    pub variable: Option<String>,
    pub next: Option<NodeId>,
    /// Keep the digits out of the call record (PINs).
    pub mask: bool,
}

/// A branch case: every condition it has must hold (absent ones hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Condition {
    /// The caller was found in the archive.
    pub known: Option<bool>,
    pub tier: Vec<String>,
    /// Language of the call so far (`zh` matches `zh-CN` and `zh-TW`).
    pub language: Vec<String>,
    /// Glob patterns on the calling / called number.
    pub caller: Vec<String>,
    pub called: Vec<String>,
    pub ivr_choice: Vec<String>,
    pub product: Vec<String>,
    /// Any of these tags (the flow's or the customer's).
    pub tags: Vec<String>,
    /// Queues that must be open (`queue_open`) or closed (`queue_closed`) now, with their
    /// hours as queues.toml gives them.
    pub queue_open: Vec<(String, BusinessHours, bool)>,
    pub time: Option<TimeWindow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Language(Language),
    IvrChoice(String),
    Product(String),
    AddTags(Vec<String>),
    PriorityBoost(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Read the customer's balance from the archive.
    Balance,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Balance => "balance",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Play {
        prompts: Vec<PromptItem>,
        barge_in: bool,
        next: NodeId,
    },
    Menu(Collect),
    Collect(Collect),
    CallbackOffer(Collect),
    Branch {
        cases: Vec<(Condition, NodeId)>,
        default: NodeId,
    },
    Set {
        changes: Vec<Change>,
        next: NodeId,
    },
    Lookup {
        timeout_ms: i64,
        next: NodeId,
    },
    SelfService {
        service: Service,
        prompts: Vec<PromptItem>,
        credit_prompts: Vec<PromptItem>,
        next: NodeId,
        unavailable: NodeId,
    },
    Queue {
        prompts: Vec<PromptItem>,
    },
    Voicemail {
        queue: String,
        prompts: Vec<PromptItem>,
    },
    Transfer {
        number: String,
        prompts: Vec<PromptItem>,
    },
    Hangup {
        prompts: Vec<PromptItem>,
    },
}

impl NodeKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Play { .. } => "play",
            NodeKind::Menu(_) => "menu",
            NodeKind::Collect(_) => "collect",
            NodeKind::CallbackOffer(_) => "callback_offer",
            NodeKind::Branch { .. } => "branch",
            NodeKind::Set { .. } => "set",
            NodeKind::Lookup { .. } => "lookup",
            NodeKind::SelfService { .. } => "self_service",
            NodeKind::Queue { .. } => "queue",
            NodeKind::Voicemail { .. } => "voicemail",
            NodeKind::Transfer { .. } => "transfer",
            NodeKind::Hangup { .. } => "hangup",
        }
    }

    /// Targets, each with whether reaching it takes caller input (a choice or collected
    /// digits) or can happen on a silent line (everything else, fallbacks included).
    pub fn edges(&self) -> Vec<(NodeId, bool)> {
        let collect_edges = |c: &Collect| {
            let mut e: Vec<(NodeId, bool)> = c.choices.iter().map(|(_, n)| (*n, true)).collect();
            e.extend(c.next.map(|n| (n, true)));
            e.push((c.fallback, false));
            e
        };
        match self {
            NodeKind::Play { next, .. }
            | NodeKind::Set { next, .. }
            | NodeKind::Lookup { next, .. } => vec![(*next, false)],
            NodeKind::Menu(c) | NodeKind::Collect(c) | NodeKind::CallbackOffer(c) => {
                collect_edges(c)
            }
            NodeKind::Branch { cases, default } => cases
                .iter()
                .map(|(_, n)| (*n, false))
                .chain([(*default, false)])
                .collect(),
            NodeKind::SelfService {
                next, unavailable, ..
            } => vec![(*next, false), (*unavailable, false)],
            NodeKind::Queue { .. }
            | NodeKind::Voicemail { .. }
            | NodeKind::Transfer { .. }
            | NodeKind::Hangup { .. } => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub line: usize,
    pub kind: NodeKind,
}

/// One call flow: the nodes a call on its numbers walks through.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub name: String,
    /// Called-number patterns (`*` = any run); empty = the default flow.
    pub called: Vec<String>,
    pub line: usize,
    pub start: NodeId,
    /// Languages callers may hear; the first prompt is in `language`.
    pub languages: Vec<Language>,
    pub language: Language,
    /// Switch to the customer's archive language when the flow speaks it (unless chosen).
    pub use_customer_language: bool,
    pub prompt_timeout_ms: i64,
    pub nodes: Vec<Node>,
}

impl Flow {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// What a waiting caller hears in one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueExperienceConfig {
    pub music_on_hold: bool,
    /// Played once on entering the queue.
    pub greeting: Vec<PromptItem>,
    pub announce_position: bool,
    pub announce_wait: bool,
    /// Re-announce position / wait this often when they changed (0 = only at the start).
    pub reannounce_secs: u32,
    /// A comfort message this often (0 = none); the list rotates.
    pub comfort_secs: u32,
    pub comfort: Vec<Vec<PromptItem>>,
    /// The key that asks for a callback (`None` = no callback offer).
    pub callback_key: Option<char>,
    /// Said after every announcement and comfort message when a callback key is set.
    pub callback_prompts: Vec<PromptItem>,
    pub callback_confirm: Vec<PromptItem>,
    pub voicemail_prompts: Vec<PromptItem>,
}

impl Default for QueueExperienceConfig {
    fn default() -> Self {
        let key = |k: &str| PromptItem::Key(k.to_string());
        QueueExperienceConfig {
            music_on_hold: true,
            greeting: vec![key("please_hold")],
            announce_position: true,
            announce_wait: true,
            reannounce_secs: 60,
            comfort_secs: 45,
            comfort: vec![vec![key("please_hold")]],
            callback_key: Some('*'),
            callback_prompts: vec![key("press_star_callback")],
            callback_confirm: vec![key("callback_confirm")],
            voicemail_prompts: vec![key("leave_message"), PromptItem::Beep],
        }
    }
}

/// A validated IVR file.
#[derive(Debug, Clone, PartialEq)]
pub struct IvrConfig {
    pub file: String,
    flows: Vec<Arc<Flow>>,
    default_flow: usize,
    catalog: BTreeMap<String, BTreeMap<Language, String>>,
    queue_default: QueueExperienceConfig,
    queues: BTreeMap<String, QueueExperienceConfig>,
    warnings: Vec<RuleError>,
}

impl IvrConfig {
    /// Parses and validates `text` (named `file` in messages). Queue names (`voicemail`,
    /// `queue_open`, `[queue_experience.<queue>]`) must be queues of `rules`, whose business
    /// hours `queue_open` conditions use: reload the IVR when the rules change.
    pub fn load(file: &str, text: &str, rules: &RuleSet) -> Result<IvrConfig, RuleError> {
        compile(Src { file, text }, rules)
    }

    /// Reads and loads `path` (the only file IO of this module besides the prompt check).
    pub fn load_path(path: &Path, rules: &RuleSet) -> Result<IvrConfig, RuleError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let text = std::fs::read_to_string(path)
            .map_err(|e| RuleError::new(&name, 0, format!("cannot read: {e}")))?;
        IvrConfig::load(&name, &text, rules)
    }

    /// Findings that do not refuse the file (unreachable nodes, unused prompts).
    pub fn warnings(&self) -> &[RuleError] {
        &self.warnings
    }

    pub fn flows(&self) -> &[Arc<Flow>] {
        &self.flows
    }

    pub fn flow(&self, name: &str) -> Option<&Arc<Flow>> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The first flow (in file order) whose `called` matches, else the default flow.
    pub fn flow_for(&self, called: &str) -> &Arc<Flow> {
        let called = called.trim();
        self.flows
            .iter()
            .find(|f| f.called.iter().any(|p| glob_match(p, called)))
            .unwrap_or(&self.flows[self.default_flow])
    }

    /// `[queue_experience.<queue>]` over `[queue_experience.default]` over built-in defaults.
    pub fn queue_experience(&self, queue: &str) -> &QueueExperienceConfig {
        self.queues.get(queue).unwrap_or(&self.queue_default)
    }

    /// The `[prompts]` text of `key` in `lang` (for recording or generating the prompt).
    pub fn prompt_text(&self, key: &str, lang: Language) -> Option<&str> {
        self.catalog
            .get(key)
            .and_then(|t| t.get(&lang))
            .map(String::as_str)
    }

    /// Every prompt key the flows, defaults and queue experiences may play, sorted.
    pub fn prompt_keys(&self) -> Vec<String> {
        let mut keys = BTreeSet::new();
        let mut add = |items: &[PromptItem]| {
            for i in items {
                if let PromptItem::Key(k) = i {
                    keys.insert(k.clone());
                }
            }
        };
        for f in &self.flows {
            for n in &f.nodes {
                for list in node_prompt_lists(&n.kind) {
                    add(list);
                }
            }
        }
        for q in std::iter::once(&self.queue_default).chain(self.queues.values()) {
            for list in queue_prompt_lists(q) {
                add(list);
            }
        }
        keys.into_iter().collect()
    }

    /// Prompt files `<dir>/<lang>/<key>.wav` that the flows need and `dir` lacks, for every
    /// language some flow speaks (a startup check; the media crate's prompt directory layout).
    pub fn missing_prompt_files(&self, dir: &Path) -> Vec<PathBuf> {
        let langs: BTreeSet<Language> = self
            .flows
            .iter()
            .flat_map(|f| f.languages.iter().copied())
            .collect();
        let mut missing = Vec::new();
        for lang in langs {
            for key in self.prompt_keys() {
                let path = dir.join(lang.tag()).join(format!("{key}.wav"));
                if !path.is_file() {
                    missing.push(path);
                }
            }
        }
        missing
    }
}

fn node_prompt_lists(kind: &NodeKind) -> Vec<&[PromptItem]> {
    match kind {
        NodeKind::Play { prompts, .. }
        | NodeKind::Queue { prompts }
        | NodeKind::Voicemail { prompts, .. }
        | NodeKind::Transfer { prompts, .. }
        | NodeKind::Hangup { prompts } => vec![prompts],
        NodeKind::Menu(c) | NodeKind::Collect(c) | NodeKind::CallbackOffer(c) => vec![
            &c.prompts,
            &c.invalid_prompts,
            &c.timeout_prompts,
            &c.confirm_prompts,
        ],
        NodeKind::SelfService {
            prompts,
            credit_prompts,
            ..
        } => vec![prompts, credit_prompts],
        NodeKind::Branch { .. } | NodeKind::Set { .. } | NodeKind::Lookup { .. } => Vec::new(),
    }
}

fn queue_prompt_lists(q: &QueueExperienceConfig) -> Vec<&[PromptItem]> {
    let mut v: Vec<&[PromptItem]> = vec![
        &q.greeting,
        &q.callback_prompts,
        &q.callback_confirm,
        &q.voicemail_prompts,
    ];
    v.extend(q.comfort.iter().map(Vec::as_slice));
    v
}

// ------------------------------------------------------------------------------------------
// The file format (serde side)
// ------------------------------------------------------------------------------------------

type Keys = Option<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: Option<RawDefaults>,
    #[serde(default)]
    prompts: BTreeMap<String, Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    flow: Vec<Spanned<RawFlow>>,
    #[serde(default)]
    queue_experience: BTreeMap<String, Spanned<RawQueueExperience>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    first_digit_timeout_secs: Option<Spanned<f64>>,
    inter_digit_timeout_secs: Option<Spanned<f64>>,
    retries: Option<Spanned<u32>>,
    terminator: Option<Spanned<String>>,
    invalid_prompts: Keys,
    timeout_prompts: Keys,
    lookup_timeout_secs: Option<Spanned<f64>>,
    prompt_timeout_secs: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: Spanned<String>,
    called: Option<Spanned<StrList>>,
    start: Spanned<String>,
    language: Option<Spanned<String>>,
    languages: Option<Vec<Spanned<String>>>,
    use_customer_language: Option<bool>,
    #[serde(default)]
    node: BTreeMap<String, Spanned<RawNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    next: Option<Spanned<String>>,
    prompts: Keys,
    barge_in: Option<bool>,
    choices: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    accept: Option<Spanned<String>>,
    confirm_prompts: Keys,
    min_digits: Option<Spanned<u32>>,
    max_digits: Option<Spanned<u32>>,
    terminator: Option<Spanned<String>>,
    first_digit_timeout_secs: Option<Spanned<f64>>,
    inter_digit_timeout_secs: Option<Spanned<f64>>,
    retries: Option<Spanned<u32>>,
    invalid_prompts: Keys,
    timeout_prompts: Keys,
    reprompt: Option<bool>,
    fallback: Option<Spanned<String>>,
    variable: Option<Spanned<String>>,
    mask: Option<bool>,
    case: Option<Vec<Spanned<RawCase>>>,
    default: Option<Spanned<String>>,
    language: Option<Spanned<String>>,
    ivr_choice: Option<Spanned<String>>,
    product: Option<Spanned<String>>,
    tags: Keys,
    priority_boost: Option<Spanned<i64>>,
    timeout_secs: Option<Spanned<f64>>,
    service: Option<Spanned<String>>,
    credit_prompts: Keys,
    unavailable: Option<Spanned<String>>,
    queue: Option<Spanned<String>>,
    number: Option<Spanned<String>>,
}

impl RawNode {
    /// Every optional field and whether it is written, for "does not belong here" errors.
    fn present(&self) -> [(&'static str, bool); 31] {
        [
            ("next", self.next.is_some()),
            ("prompts", self.prompts.is_some()),
            ("barge_in", self.barge_in.is_some()),
            ("choices", self.choices.is_some()),
            ("accept", self.accept.is_some()),
            ("confirm_prompts", self.confirm_prompts.is_some()),
            ("min_digits", self.min_digits.is_some()),
            ("max_digits", self.max_digits.is_some()),
            ("terminator", self.terminator.is_some()),
            (
                "first_digit_timeout_secs",
                self.first_digit_timeout_secs.is_some(),
            ),
            (
                "inter_digit_timeout_secs",
                self.inter_digit_timeout_secs.is_some(),
            ),
            ("retries", self.retries.is_some()),
            ("invalid_prompts", self.invalid_prompts.is_some()),
            ("timeout_prompts", self.timeout_prompts.is_some()),
            ("reprompt", self.reprompt.is_some()),
            ("fallback", self.fallback.is_some()),
            ("variable", self.variable.is_some()),
            ("mask", self.mask.is_some()),
            ("case", self.case.is_some()),
            ("default", self.default.is_some()),
            ("language", self.language.is_some()),
            ("ivr_choice", self.ivr_choice.is_some()),
            ("product", self.product.is_some()),
            ("tags", self.tags.is_some()),
            ("priority_boost", self.priority_boost.is_some()),
            ("timeout_secs", self.timeout_secs.is_some()),
            ("service", self.service.is_some()),
            ("credit_prompts", self.credit_prompts.is_some()),
            ("unavailable", self.unavailable.is_some()),
            ("queue", self.queue.is_some()),
            ("number", self.number.is_some()),
        ]
    }
}

const COLLECT_FIELDS: &[&str] = &[
    "prompts",
    "barge_in",
    "min_digits",
    "max_digits",
    "terminator",
    "first_digit_timeout_secs",
    "inter_digit_timeout_secs",
    "retries",
    "invalid_prompts",
    "timeout_prompts",
    "reprompt",
    "fallback",
];

/// Fields a node type takes besides `type`.
fn allowed_fields(kind: &str) -> Option<Vec<&'static str>> {
    let with = |extra: &[&'static str]| {
        let mut v = COLLECT_FIELDS.to_vec();
        v.extend_from_slice(extra);
        v
    };
    Some(match kind {
        "play" => vec!["prompts", "barge_in", "next"],
        "menu" => with(&["choices"]),
        "collect" => with(&["variable", "mask", "next"]),
        "callback_offer" => with(&["accept", "confirm_prompts", "choices"]),
        "branch" => vec!["case", "default"],
        "set" => vec![
            "language",
            "ivr_choice",
            "product",
            "tags",
            "priority_boost",
            "next",
        ],
        "lookup" => vec!["timeout_secs", "next"],
        "self_service" => vec![
            "service",
            "prompts",
            "credit_prompts",
            "next",
            "unavailable",
        ],
        "queue" => vec!["prompts"],
        "voicemail" => vec!["queue", "prompts"],
        "transfer" => vec!["number", "prompts"],
        "hangup" => vec!["prompts"],
        _ => return None,
    })
}

const NODE_TYPES: &str = "play, menu, collect, callback_offer, branch, set, lookup, self_service, queue, voicemail, transfer, hangup";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    next: Spanned<String>,
    known: Option<bool>,
    tier: Option<Spanned<StrList>>,
    language: Option<Spanned<StrList>>,
    caller: Option<Spanned<StrList>>,
    called: Option<Spanned<StrList>>,
    ivr_choice: Option<Spanned<StrList>>,
    product: Option<Spanned<StrList>>,
    tags: Option<Spanned<StrList>>,
    queue_open: Option<Spanned<StrList>>,
    queue_closed: Option<Spanned<StrList>>,
    time: Option<Spanned<RawWindow>>,
}

type Intervals = Option<Vec<Spanned<String>>>;

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueExperience {
    music_on_hold: Option<bool>,
    greeting: Keys,
    announce_position: Option<bool>,
    announce_wait: Option<bool>,
    reannounce_secs: Option<u32>,
    comfort_secs: Option<u32>,
    comfort: Option<Vec<Spanned<StrList>>>,
    callback_key: Option<Spanned<String>>,
    callback_prompts: Keys,
    callback_confirm: Keys,
    voicemail_prompts: Keys,
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
// Compiling
// ------------------------------------------------------------------------------------------

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

    /// The item's own span, or `outer` when the item has none (a lone string in a StrList).
    fn item_err(
        &self,
        item: &Range<usize>,
        outer: &Range<usize>,
        reason: impl Into<String>,
    ) -> RuleError {
        self.err(if item.is_empty() { outer } else { item }, reason)
    }
}

/// Menu and lookup settings every node starts from.
struct Defaults {
    first_digit_timeout_ms: i64,
    inter_digit_timeout_ms: i64,
    retries: u32,
    terminator: Option<char>,
    /// Written lists, parsed again where a node uses them (so their lines are checked).
    invalid_prompts: Keys,
    timeout_prompts: Keys,
    lookup_timeout_ms: i64,
    prompt_timeout_ms: i64,
}

/// A prompt key written somewhere, to check its texts once the languages are known.
struct PromptUse {
    key: String,
    line: usize,
    /// The languages it must exist in.
    languages: Vec<Language>,
}

struct Compiler<'a> {
    src: Src<'a>,
    rules: &'a RuleSet,
    uses: Vec<PromptUse>,
    warnings: Vec<RuleError>,
}

fn compile(src: Src, rules: &RuleSet) -> Result<IvrConfig, RuleError> {
    let raw: RawFile = toml::from_str(src.text).map_err(|e| {
        let line = e.span().map(|s| src.line(&s)).unwrap_or(1);
        RuleError::new(src.file, line, e.message().trim().to_string())
    })?;
    let mut c = Compiler {
        src,
        rules,
        uses: Vec::new(),
        warnings: Vec::new(),
    };
    let catalog = c.catalog(&raw.prompts)?;
    let defaults = c.defaults(raw.defaults.as_ref())?;

    if raw.flow.is_empty() {
        return Err(RuleError::new(
            src.file,
            0,
            "no [[flow]]: add at least the default flow (one without called)",
        ));
    }
    let mut flows = Vec::with_capacity(raw.flow.len());
    let mut default_flow: Option<(usize, usize)> = None;
    for (i, rf) in raw.flow.iter().enumerate() {
        let line = src.line(&rf.span());
        let name = rf.get_ref().name.get_ref().trim();
        if let Some(first) = raw.flow[..i]
            .iter()
            .find(|f| f.get_ref().name.get_ref().trim() == name)
        {
            return Err(src.err(
                &rf.get_ref().name.span(),
                format!(
                    "duplicate flow {name:?} (first defined at {}:{})",
                    src.file,
                    src.line(&first.span())
                ),
            ));
        }
        let flow = c.flow(rf.get_ref(), line, &defaults)?;
        if flow.called.is_empty() {
            if let Some((_, first_line)) = default_flow {
                return Err(RuleError::new(
                    src.file,
                    line,
                    format!(
                        "flow {name:?} has no called numbers, but flow at {}:{first_line} is already the default: give one of them called = [...]",
                        src.file
                    ),
                ));
            }
            default_flow = Some((i, line));
        }
        flows.push(Arc::new(flow));
    }
    let Some((default_flow, _)) = default_flow else {
        return Err(RuleError::new(
            src.file,
            src.line(&raw.flow[raw.flow.len() - 1].span()),
            "no default flow: one [[flow]] must have no called numbers (it takes every other call)",
        ));
    };

    // Queue experience: built-in defaults, then [queue_experience.default], then per queue.
    let all_languages: Vec<Language> = {
        let set: BTreeSet<Language> = flows
            .iter()
            .flat_map(|f| f.languages.iter().copied())
            .collect();
        set.into_iter().collect()
    };
    let mut queue_default = QueueExperienceConfig::default();
    if let Some(d) = raw.queue_experience.get("default") {
        queue_default = c.queue_experience(d, &queue_default, &all_languages)?;
    }
    let mut queues = BTreeMap::new();
    for (name, q) in &raw.queue_experience {
        if name == "default" {
            continue;
        }
        if rules.queue(name).is_none() {
            return Err(src.err(
                &q.span(),
                format!(
                    "unknown queue {name:?} in [queue_experience.{name}] (defined queues: {})",
                    queue_names(rules)
                ),
            ));
        }
        let cfg = c.queue_experience(q, &queue_default, &all_languages)?;
        queues.insert(name.clone(), cfg);
    }
    for list in queue_prompt_lists(&queue_default) {
        c.use_items(list, 0, &all_languages);
    }

    // Prompt texts: every key played must be shipped or have text in its languages.
    for u in &c.uses {
        if SHIPPED_PROMPTS.contains(&u.key.as_str()) {
            continue;
        }
        let Some(texts) = catalog.get(&u.key) else {
            return Err(RuleError::new(
                src.file,
                u.line,
                format!(
                    "unknown prompt {:?}: add it to [prompts] with its text in {} (or use a shipped prompt: {})",
                    u.key,
                    tags(&u.languages),
                    SHIPPED_PROMPTS.join(", ")
                ),
            ));
        };
        if let Some(lang) = u.languages.iter().find(|l| !texts.contains_key(l)) {
            return Err(RuleError::new(
                src.file,
                u.line,
                format!(
                    "prompt {:?} has no {lang} text in [prompts], but callers may hear it in {}",
                    u.key,
                    tags(&u.languages)
                ),
            ));
        }
    }
    let used: BTreeSet<&str> = c.uses.iter().map(|u| u.key.as_str()).collect();
    for (key, texts) in &raw.prompts {
        if !used.contains(key.as_str()) {
            c.warnings
                .push(src.err(&texts.span(), format!("prompt {key:?} is never played")));
        }
    }

    let mut warnings = c.warnings;
    warnings.sort_by_key(|w| w.line);
    Ok(IvrConfig {
        file: src.file.to_string(),
        flows,
        default_flow,
        catalog,
        queue_default,
        queues,
        warnings,
    })
}

fn queue_names(rules: &RuleSet) -> String {
    let mut names: Vec<&str> = rules.queues.iter().map(|q| q.name.as_str()).collect();
    names.sort();
    names.join(", ")
}

fn tags(langs: &[Language]) -> String {
    langs.iter().map(|l| l.tag()).collect::<Vec<_>>().join(", ")
}

fn parse_language(src: Src, s: &Spanned<String>) -> Result<Language, RuleError> {
    let t = s.get_ref().trim();
    Language::ALL
        .into_iter()
        .find(|l| l.tag().eq_ignore_ascii_case(t))
        .ok_or_else(|| {
            src.err(
                &s.span(),
                format!("unknown language {t:?}: prompts are recorded in zh-CN, zh-TW and en"),
            )
        })
}

fn secs_to_ms(src: Src, s: &Spanned<f64>, what: &str) -> Result<i64, RuleError> {
    let v = *s.get_ref();
    if !(v > 0.0 && v <= 3600.0) {
        return Err(src.err(
            &s.span(),
            format!("{what} must be more than 0 and at most 3600 seconds, not {v}"),
        ));
    }
    Ok((v * 1000.0).round() as i64)
}

fn parse_terminator(src: Src, s: &Spanned<String>) -> Result<Option<char>, RuleError> {
    let t = s.get_ref().trim();
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) if c == '#' || c == '*' => Ok(Some(c)),
        _ => Err(src.err(
            &s.span(),
            format!("bad terminator {t:?}: write \"#\", \"*\" or \"\" for none"),
        )),
    }
}

impl Compiler<'_> {
    fn catalog(
        &mut self,
        raw: &BTreeMap<String, Spanned<BTreeMap<String, Spanned<String>>>>,
    ) -> Result<BTreeMap<String, BTreeMap<Language, String>>, RuleError> {
        let src = self.src;
        let mut out = BTreeMap::new();
        for (key, texts) in raw {
            if !valid_key(key) {
                return Err(src.err(
                    &texts.span(),
                    format!(
                        "bad prompt key {key:?}: use letters, digits, _ and - (it names a file)"
                    ),
                ));
            }
            let mut by_lang = BTreeMap::new();
            for (tag, text) in texts.get_ref() {
                let lang = parse_language(src, &Spanned::new(text.span(), tag.clone()))?;
                if text.get_ref().trim().is_empty() {
                    return Err(src.err(
                        &text.span(),
                        format!("prompt {key:?} has an empty {tag} text"),
                    ));
                }
                by_lang.insert(lang, text.get_ref().trim().to_string());
            }
            if by_lang.is_empty() {
                return Err(src.err(
                    &texts.span(),
                    format!(
                        "prompt {key:?} has no text: write e.g. {{ zh-CN = \"…\", en = \"…\" }}"
                    ),
                ));
            }
            out.insert(key.clone(), by_lang);
        }
        Ok(out)
    }

    fn defaults(&mut self, raw: Option<&RawDefaults>) -> Result<Defaults, RuleError> {
        let src = self.src;
        let empty = RawDefaults::default();
        let raw = raw.unwrap_or(&empty);
        let ms = |v: &Option<Spanned<f64>>, what: &str, default: i64| match v {
            Some(s) => secs_to_ms(src, s, what),
            None => Ok(default),
        };
        Ok(Defaults {
            first_digit_timeout_ms: ms(
                &raw.first_digit_timeout_secs,
                "first_digit_timeout_secs",
                5_000,
            )?,
            inter_digit_timeout_ms: ms(
                &raw.inter_digit_timeout_secs,
                "inter_digit_timeout_secs",
                3_000,
            )?,
            retries: match &raw.retries {
                Some(r) => self.retries(r)?,
                None => 2,
            },
            terminator: match &raw.terminator {
                Some(t) => parse_terminator(src, t)?,
                None => Some('#'),
            },
            // Without retry prompts a menu just says itself again.
            invalid_prompts: match &raw.invalid_prompts {
                Some(p) => {
                    self.items(p)?;
                    Some(p.clone())
                }
                None => None,
            },
            timeout_prompts: match &raw.timeout_prompts {
                Some(p) => {
                    self.items(p)?;
                    Some(p.clone())
                }
                None => None,
            },
            lookup_timeout_ms: ms(&raw.lookup_timeout_secs, "lookup_timeout_secs", 3_000)?,
            prompt_timeout_ms: ms(&raw.prompt_timeout_secs, "prompt_timeout_secs", 120_000)?,
        })
    }

    fn retries(&self, r: &Spanned<u32>) -> Result<u32, RuleError> {
        if *r.get_ref() > 9 {
            return Err(self.src.err(
                &r.span(),
                format!("retries = {} is too many: at most 9", r.get_ref()),
            ));
        }
        Ok(*r.get_ref())
    }

    /// Prompt items from strings: keys, or `$balance`, `$digits`, `$beep`, `$pause`.
    fn items(&self, list: &[Spanned<String>]) -> Result<Vec<PromptItem>, RuleError> {
        list.iter()
            .map(|s| {
                let t = s.get_ref().trim();
                match t.strip_prefix('$') {
                    Some("balance") => Ok(PromptItem::Balance),
                    Some("digits") => Ok(PromptItem::Digits),
                    Some("beep") => Ok(PromptItem::Beep),
                    Some("pause") => Ok(PromptItem::Pause),
                    Some(v) => Err(self.src.err(
                        &s.span(),
                        format!("unknown variable ${v}: use $balance, $digits, $beep or $pause"),
                    )),
                    None if valid_key(t) => Ok(PromptItem::Key(t.to_string())),
                    None => Err(self.src.err(
                        &s.span(),
                        format!(
                            "bad prompt key {t:?}: use letters, digits, _ and - (it names a file)"
                        ),
                    )),
                }
            })
            .collect()
    }

    /// [`Self::items`], recording each key at its own line as needing text in `languages`.
    fn used(
        &mut self,
        list: &[Spanned<String>],
        languages: &[Language],
    ) -> Result<Vec<PromptItem>, RuleError> {
        let items = self.items(list)?;
        for (item, raw) in items.iter().zip(list) {
            if let PromptItem::Key(k) = item {
                self.uses.push(PromptUse {
                    key: k.clone(),
                    line: self.src.line(&raw.span()),
                    languages: languages.to_vec(),
                });
            }
        }
        Ok(items)
    }

    /// Records the keys of `items` as needing text in `languages` (line: where they are used).
    fn use_items(&mut self, items: &[PromptItem], line: usize, languages: &[Language]) {
        for i in items {
            if let PromptItem::Key(k) = i {
                self.uses.push(PromptUse {
                    key: k.clone(),
                    line,
                    languages: languages.to_vec(),
                });
            }
        }
    }

    fn flow(&mut self, rf: &RawFlow, line: usize, d: &Defaults) -> Result<Flow, RuleError> {
        let src = self.src;
        let name = rf.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(src.err(&rf.name.span(), "a flow needs a name"));
        }
        let mut called = Vec::new();
        if let Some(list) = &rf.called {
            if list.get_ref().0.is_empty() {
                return Err(src.err(
                    &list.span(),
                    "called = [] matches nothing: leave it out for the default flow",
                ));
            }
            for p in &list.get_ref().0 {
                let t = p.get_ref().trim();
                if t.is_empty() {
                    return Err(src.item_err(&p.span(), &list.span(), "empty called pattern"));
                }
                called.push(t.to_string());
            }
        }
        let language = match &rf.language {
            Some(l) => parse_language(src, l)?,
            None => Language::ZhCn,
        };
        let languages = match &rf.languages {
            Some(list) => {
                let mut out = Vec::new();
                for l in list {
                    let lang = parse_language(src, l)?;
                    if out.contains(&lang) {
                        return Err(src.err(&l.span(), format!("language {lang} is listed twice")));
                    }
                    out.push(lang);
                }
                if !out.contains(&language) {
                    let at = rf.language.as_ref().map(|l| l.span()).unwrap_or(0..0);
                    return Err(RuleError::new(
                        src.file,
                        if at.is_empty() { line } else { src.line(&at) },
                        format!(
                            "flow {name:?} starts in {language}, which is not in its languages ({})",
                            tags(&out)
                        ),
                    ));
                }
                out
            }
            None => vec![language],
        };

        // Nodes in file order, so ids and messages follow the text.
        let mut raw_nodes: Vec<(&String, &Spanned<RawNode>)> = rf.node.iter().collect();
        raw_nodes.sort_by_key(|(_, n)| n.span().start);
        if raw_nodes.is_empty() {
            return Err(RuleError::new(
                src.file,
                line,
                format!("flow {name:?} has no nodes: add [flow.node.<name>] tables"),
            ));
        }
        let names: Vec<String> = raw_nodes.iter().map(|(n, _)| (*n).clone()).collect();
        let resolve = |t: &Spanned<String>| -> Result<NodeId, RuleError> {
            let want = t.get_ref().trim();
            names.iter().position(|n| n == want).ok_or_else(|| {
                src.err(
                    &t.span(),
                    format!(
                        "unknown node {want:?} in flow {name:?} (its nodes: {})",
                        names.join(", ")
                    ),
                )
            })
        };
        let start = resolve(&rf.start)?;

        let mut nodes = Vec::with_capacity(raw_nodes.len());
        for (node_name, rn) in &raw_nodes {
            let node_line = src.line(&rn.span());
            let kind = self.node(node_name, rn, node_line, d, &languages, &resolve)?;
            nodes.push(Node {
                name: (*node_name).clone(),
                line: node_line,
                kind,
            });
        }

        let flow = Flow {
            name,
            called,
            line,
            start,
            languages,
            language,
            use_customer_language: rf.use_customer_language.unwrap_or(true),
            prompt_timeout_ms: d.prompt_timeout_ms,
            nodes,
        };
        self.check_graph(&flow)?;
        Ok(flow)
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        node_name: &str,
        rn: &Spanned<RawNode>,
        line: usize,
        d: &Defaults,
        languages: &[Language],
        resolve: &dyn Fn(&Spanned<String>) -> Result<NodeId, RuleError>,
    ) -> Result<NodeKind, RuleError> {
        let src = self.src;
        let span = rn.span();
        let r = rn.get_ref();
        let kind = r.kind.get_ref().trim();
        let Some(allowed) = allowed_fields(kind) else {
            return Err(src.err(
                &r.kind.span(),
                format!(
                    "unknown node type {kind:?} for node {node_name:?}: use one of {NODE_TYPES}"
                ),
            ));
        };
        if let Some((field, _)) = r
            .present()
            .into_iter()
            .find(|(f, set)| *set && !allowed.contains(f))
        {
            return Err(src.err(
                &span,
                format!(
                    "{field} does not belong to a {kind} node ({node_name:?} takes: type, {})",
                    allowed.join(", ")
                ),
            ));
        }
        let need = |v: &Option<Spanned<String>>, field: &str| -> Result<NodeId, RuleError> {
            match v {
                Some(t) => resolve(t),
                None => Err(src.err(
                    &span,
                    format!("{kind} node {node_name:?} needs {field} = \"<node>\""),
                )),
            }
        };
        let prompts_or = |this: &mut Self,
                          v: &Keys,
                          default: Vec<PromptItem>|
         -> Result<Vec<PromptItem>, RuleError> {
            match v {
                Some(p) => this.used(p, languages),
                None => {
                    this.use_items(&default, line, languages);
                    Ok(default)
                }
            }
        };
        let required_prompts = |this: &mut Self| -> Result<Vec<PromptItem>, RuleError> {
            match &r.prompts {
                Some(p) if !p.is_empty() => this.used(p, languages),
                _ => Err(src.err(
                    &span,
                    format!("{kind} node {node_name:?} needs prompts = [\"<prompt>\", …]"),
                )),
            }
        };

        Ok(match kind {
            "play" => NodeKind::Play {
                prompts: required_prompts(self)?,
                barge_in: r.barge_in.unwrap_or(false),
                next: need(&r.next, "next")?,
            },
            "menu" | "collect" | "callback_offer" => {
                let prompts = required_prompts(self)?;
                let c = self.collect(node_name, kind, r, &span, d, languages, resolve, prompts)?;
                match kind {
                    "menu" => NodeKind::Menu(c),
                    "collect" => NodeKind::Collect(c),
                    _ => NodeKind::CallbackOffer(c),
                }
            }
            "branch" => {
                let mut cases = Vec::new();
                for case in r.case.iter().flatten() {
                    let cond = self.condition(case)?;
                    cases.push((cond, resolve(&case.get_ref().next)?));
                }
                if cases.is_empty() {
                    return Err(src.err(
                        &span,
                        format!("branch node {node_name:?} has no [[…case]]: use a set or play node to go on"),
                    ));
                }
                NodeKind::Branch {
                    cases,
                    default: need(&r.default, "default")?,
                }
            }
            "set" => {
                let mut changes = Vec::new();
                if let Some(l) = &r.language {
                    let lang = parse_language(src, l)?;
                    if !languages.contains(&lang) {
                        return Err(src.err(
                            &l.span(),
                            format!("this flow does not speak {lang}: add it to the flow's languages ({})", tags(languages)),
                        ));
                    }
                    changes.push(Change::Language(lang));
                }
                if let Some(v) = &r.ivr_choice {
                    changes.push(Change::IvrChoice(non_empty(src, v, "ivr_choice")?));
                }
                if let Some(v) = &r.product {
                    changes.push(Change::Product(non_empty(src, v, "product")?));
                }
                if let Some(t) = &r.tags {
                    let tags = t
                        .iter()
                        .map(|s| non_empty(src, s, "tag"))
                        .collect::<Result<Vec<_>, _>>()?;
                    changes.push(Change::AddTags(tags));
                }
                if let Some(p) = &r.priority_boost {
                    if p.get_ref().abs() > 1000 {
                        return Err(
                            src.err(&p.span(), "priority_boost must be between -1000 and 1000")
                        );
                    }
                    changes.push(Change::PriorityBoost(*p.get_ref()));
                }
                if changes.is_empty() {
                    return Err(src.err(
                        &span,
                        format!("set node {node_name:?} sets nothing: give language, ivr_choice, product, tags or priority_boost"),
                    ));
                }
                NodeKind::Set {
                    changes,
                    next: need(&r.next, "next")?,
                }
            }
            "lookup" => NodeKind::Lookup {
                timeout_ms: match &r.timeout_secs {
                    Some(t) => secs_to_ms(src, t, "timeout_secs")?,
                    None => d.lookup_timeout_ms,
                },
                next: need(&r.next, "next")?,
            },
            "self_service" => {
                let service = match r.service.as_ref().map(|s| (s.get_ref().trim(), s.span())) {
                    Some(("balance", _)) => Service::Balance,
                    Some((other, sp)) => {
                        return Err(src.err(
                            &sp,
                            format!("unknown service {other:?}: the IVR offers \"balance\""),
                        ))
                    }
                    None => {
                        return Err(src.err(
                            &span,
                            format!("self_service node {node_name:?} needs service = \"balance\""),
                        ))
                    }
                };
                let default = vec![PromptItem::Key("balance_is".into()), PromptItem::Balance];
                let prompts = prompts_or(self, &r.prompts, default)?;
                let credit_prompts = prompts_or(self, &r.credit_prompts, prompts.clone())?;
                NodeKind::SelfService {
                    service,
                    prompts,
                    credit_prompts,
                    next: need(&r.next, "next")?,
                    unavailable: need(&r.unavailable, "unavailable")?,
                }
            }
            "queue" => NodeKind::Queue {
                prompts: prompts_or(self, &r.prompts, Vec::new())?,
            },
            "voicemail" => {
                let Some(q) = &r.queue else {
                    return Err(src.err(&span, format!("voicemail node {node_name:?} needs queue = \"<queue>\" (whose mailbox)")));
                };
                NodeKind::Voicemail {
                    queue: self.queue_name(q)?,
                    prompts: prompts_or(
                        self,
                        &r.prompts,
                        vec![PromptItem::Key("leave_message".into()), PromptItem::Beep],
                    )?,
                }
            }
            "transfer" => {
                let Some(n) = &r.number else {
                    return Err(src.err(
                        &span,
                        format!("transfer node {node_name:?} needs number = \"+86…\""),
                    ));
                };
                let t = n.get_ref().trim();
                let digits = t.strip_prefix('+').unwrap_or(t);
                if digits.len() < 3
                    || digits.len() > 15
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(src.err(
                        &n.span(),
                        format!(
                            "bad number {t:?}: write E.164 (+ and up to 15 digits) or an extension"
                        ),
                    ));
                }
                NodeKind::Transfer {
                    number: t.to_string(),
                    prompts: prompts_or(self, &r.prompts, Vec::new())?,
                }
            }
            "hangup" => NodeKind::Hangup {
                prompts: prompts_or(self, &r.prompts, Vec::new())?,
            },
            _ => unreachable!("allowed_fields knows every node type"),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn collect(
        &mut self,
        node_name: &str,
        kind: &str,
        r: &RawNode,
        span: &Range<usize>,
        d: &Defaults,
        languages: &[Language],
        resolve: &dyn Fn(&Spanned<String>) -> Result<NodeId, RuleError>,
        prompts: Vec<PromptItem>,
    ) -> Result<Collect, RuleError> {
        let src = self.src;
        let terminator = match &r.terminator {
            Some(t) => parse_terminator(src, t)?,
            None => d.terminator,
        };
        let check_key = |k: &str, at: &Range<usize>| -> Result<(), RuleError> {
            if k.is_empty() || !k.chars().all(is_key) {
                return Err(src.err(at, format!("bad key {k:?}: use the digits 0-9, * and #")));
            }
            if let Some(t) = terminator.filter(|t| k.contains(*t)) {
                return Err(src.err(
                    at,
                    format!("key {k:?} contains the terminator {t:?}: set terminator = \"\" (or another) on this node"),
                ));
            }
            Ok(())
        };
        let mut choices = Vec::new();
        if let Some(map) = &r.choices {
            for (k, target) in map.get_ref() {
                check_key(k, &target.span())?;
                choices.push((k.clone(), resolve(target)?));
            }
            if map.get_ref().is_empty() && kind == "menu" {
                return Err(src.err(&map.span(), "choices = {} offers nothing"));
            }
        } else if kind == "menu" {
            return Err(src.err(
                span,
                format!("menu node {node_name:?} needs choices = {{ 1 = \"<node>\", … }}"),
            ));
        }
        let accept = if kind == "callback_offer" {
            let k = r
                .accept
                .as_ref()
                .map(|a| (a.get_ref().trim().to_string(), a.span()))
                .unwrap_or(("1".into(), span.clone()));
            check_key(&k.0, &k.1)?;
            if choices.iter().any(|(c, _)| *c == k.0) {
                return Err(src.err(
                    &k.1,
                    format!("key {:?} both accepts the callback and is a choice", k.0),
                ));
            }
            choices.sort_by(|a, b| a.0.cmp(&b.0));
            Some(k.0)
        } else {
            None
        };
        let longest = choices
            .iter()
            .map(|(k, _)| k.chars().count() as u32)
            .chain(accept.as_ref().map(|a| a.chars().count() as u32))
            .max()
            .unwrap_or(1);
        let max_digits = match &r.max_digits {
            Some(m) => {
                let v = *m.get_ref();
                if v == 0 || v > MAX_DIGITS {
                    return Err(src.err(&m.span(), format!("max_digits must be 1 to {MAX_DIGITS}")));
                }
                if v < longest {
                    return Err(src.err(
                        &m.span(),
                        format!(
                            "max_digits = {v} is shorter than the longest key ({longest} digits)"
                        ),
                    ));
                }
                v
            }
            None if kind == "collect" => {
                return Err(src.err(span, format!("collect node {node_name:?} needs max_digits")));
            }
            None => longest,
        };
        let min_digits = match &r.min_digits {
            Some(m) if *m.get_ref() == 0 || *m.get_ref() > max_digits => {
                return Err(src.err(
                    &m.span(),
                    format!("min_digits must be 1 to max_digits ({max_digits})"),
                ));
            }
            Some(m) => *m.get_ref(),
            None => 1,
        };
        let ms = |v: &Option<Spanned<f64>>, what: &str, default: i64| match v {
            Some(s) => secs_to_ms(src, s, what),
            None => Ok(default),
        };
        // A node's own list, else the [defaults] one (checked at its own line).
        let items_or =
            |this: &mut Self, v: &Keys, default: &Keys| -> Result<Vec<PromptItem>, RuleError> {
                match v.as_ref().or(default.as_ref()) {
                    Some(p) => this.used(p, languages),
                    None => Ok(Vec::new()),
                }
            };
        let invalid_prompts = items_or(self, &r.invalid_prompts, &d.invalid_prompts)?;
        let timeout_prompts = items_or(self, &r.timeout_prompts, &d.timeout_prompts)?;
        let confirm_prompts = match (kind, &r.confirm_prompts) {
            ("callback_offer", Some(p)) => self.used(p, languages)?,
            ("callback_offer", None) => vec![PromptItem::Key("callback_confirm".into())],
            _ => Vec::new(),
        };
        let Some(fallback) = &r.fallback else {
            return Err(src.err(
                span,
                format!("{kind} node {node_name:?} needs fallback = \"<node>\" (where the call goes after the last retry)"),
            ));
        };
        let (variable, next) = if kind == "collect" {
            let Some(next) = &r.next else {
                return Err(src.err(
                    span,
                    format!("collect node {node_name:?} needs next = \"<node>\""),
                ));
            };
            let var = match &r.variable {
                Some(v) => Some(non_empty(src, v, "variable")?),
                None => None,
            };
            (var, Some(resolve(next)?))
        } else {
            (None, None)
        };
        Ok(Collect {
            prompts,
            barge_in: r.barge_in.unwrap_or(true),
            choices,
            accept,
            confirm_prompts,
            min_digits,
            max_digits,
            terminator,
            first_digit_timeout_ms: ms(
                &r.first_digit_timeout_secs,
                "first_digit_timeout_secs",
                d.first_digit_timeout_ms,
            )?,
            inter_digit_timeout_ms: ms(
                &r.inter_digit_timeout_secs,
                "inter_digit_timeout_secs",
                d.inter_digit_timeout_ms,
            )?,
            retries: match &r.retries {
                Some(v) => self.retries(v)?,
                None => d.retries,
            },
            invalid_prompts,
            timeout_prompts,
            reprompt: r.reprompt.unwrap_or(true),
            fallback: resolve(fallback)?,
            variable,
            next,
            mask: r.mask.unwrap_or(false),
        })
    }

    fn queue_name(&self, q: &Spanned<String>) -> Result<String, RuleError> {
        let name = q.get_ref().trim();
        if self.rules.queue(name).is_none() {
            return Err(self.src.err(
                &q.span(),
                format!(
                    "unknown queue {name:?} (defined queues: {})",
                    queue_names(self.rules)
                ),
            ));
        }
        Ok(name.to_string())
    }

    fn condition(&self, case: &Spanned<RawCase>) -> Result<Condition, RuleError> {
        let src = self.src;
        let c = case.get_ref();
        let list = |v: &Option<Spanned<StrList>>, what: &str| -> Result<Vec<String>, RuleError> {
            let Some(l) = v else { return Ok(Vec::new()) };
            if l.get_ref().0.is_empty() {
                return Err(src.err(
                    &l.span(),
                    format!("{what} = [] matches nothing: leave it out to match anything"),
                ));
            }
            l.get_ref()
                .0
                .iter()
                .map(|s| {
                    let t = s.get_ref().trim();
                    if t.is_empty() {
                        Err(src.item_err(&s.span(), &l.span(), format!("empty {what}")))
                    } else {
                        Ok(t.to_string())
                    }
                })
                .collect()
        };
        let mut queue_open = Vec::new();
        for (v, want) in [(&c.queue_open, true), (&c.queue_closed, false)] {
            let Some(l) = v else { continue };
            for q in &l.get_ref().0 {
                let at = if q.span().is_empty() {
                    l.span()
                } else {
                    q.span()
                };
                let name = self.queue_name(&Spanned::new(at, q.get_ref().clone()))?;
                let hours = self
                    .rules
                    .queue(&name)
                    .map(|q| q.hours.clone())
                    .unwrap_or_default();
                queue_open.push((name, hours, want));
            }
        }
        let cond = Condition {
            known: c.known,
            tier: list(&c.tier, "tier")?,
            language: list(&c.language, "language")?,
            caller: list(&c.caller, "caller")?,
            called: list(&c.called, "called")?,
            ivr_choice: list(&c.ivr_choice, "ivr_choice")?,
            product: list(&c.product, "product")?,
            tags: list(&c.tags, "tags")?,
            queue_open,
            time: match &c.time {
                Some(w) => Some(compile_window(src, w)?),
                None => None,
            },
        };
        if cond == Condition::default() {
            return Err(src.err(
                &case.span(),
                "a case without conditions always matches: put its target in default",
            ));
        }
        Ok(cond)
    }

    fn queue_experience(
        &mut self,
        raw: &Spanned<RawQueueExperience>,
        base: &QueueExperienceConfig,
        languages: &[Language],
    ) -> Result<QueueExperienceConfig, RuleError> {
        let src = self.src;
        let r = raw.get_ref();
        let mut out = base.clone();
        let items =
            |this: &mut Self, v: &Keys, slot: &mut Vec<PromptItem>| -> Result<(), RuleError> {
                if let Some(p) = v {
                    *slot = this.used(p, languages)?;
                }
                Ok(())
            };
        items(self, &r.greeting, &mut out.greeting)?;
        items(self, &r.callback_prompts, &mut out.callback_prompts)?;
        items(self, &r.callback_confirm, &mut out.callback_confirm)?;
        items(self, &r.voicemail_prompts, &mut out.voicemail_prompts)?;
        if let Some(list) = &r.comfort {
            let mut messages = Vec::new();
            for m in list {
                let keys: Vec<Spanned<String>> = m
                    .get_ref()
                    .0
                    .iter()
                    .map(|s| {
                        Spanned::new(
                            if s.span().is_empty() {
                                m.span()
                            } else {
                                s.span()
                            },
                            s.get_ref().clone(),
                        )
                    })
                    .collect();
                let msg = self.used(&keys, languages)?;
                if msg.is_empty() {
                    return Err(src.err(&m.span(), "an empty comfort message"));
                }
                messages.push(msg);
            }
            out.comfort = messages;
        }
        if let Some(v) = r.music_on_hold {
            out.music_on_hold = v;
        }
        if let Some(v) = r.announce_position {
            out.announce_position = v;
        }
        if let Some(v) = r.announce_wait {
            out.announce_wait = v;
        }
        if let Some(v) = r.reannounce_secs {
            out.reannounce_secs = v;
        }
        if let Some(v) = r.comfort_secs {
            out.comfort_secs = v;
        }
        if let Some(k) = &r.callback_key {
            let t = k.get_ref().trim();
            let mut chars = t.chars();
            out.callback_key = match (chars.next(), chars.next()) {
                (None, _) => None,
                (Some(c), None) if is_key(c) => Some(c),
                _ => {
                    return Err(src.err(
                        &k.span(),
                        format!("bad callback_key {t:?}: one key of 0-9, * or #, or \"\" for no callback offer"),
                    ))
                }
            };
        }
        if out.comfort_secs > 0 && out.comfort.is_empty() {
            return Err(src.err(
                &raw.span(),
                "comfort_secs is set but comfort = [] has no message",
            ));
        }
        Ok(out)
    }

    /// Loops on a silent line are errors; nodes no path reaches are warnings.
    fn check_graph(&mut self, flow: &Flow) -> Result<(), RuleError> {
        let src = self.src;
        let n = flow.nodes.len();
        // Depth-first search over the edges a silent caller can take.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut mark = vec![Mark::New; n];
        for root in 0..n {
            if mark[root] != Mark::New {
                continue;
            }
            let mut stack: Vec<(NodeId, usize)> = vec![(root, 0)];
            mark[root] = Mark::Open;
            while let Some(&mut (node, ref mut i)) = stack.last_mut() {
                let silent: Vec<NodeId> = flow.nodes[node]
                    .kind
                    .edges()
                    .into_iter()
                    .filter(|(_, input)| !input)
                    .map(|(t, _)| t)
                    .collect();
                if *i < silent.len() {
                    let t = silent[*i];
                    *i += 1;
                    match mark[t] {
                        Mark::New => {
                            mark[t] = Mark::Open;
                            stack.push((t, 0));
                        }
                        Mark::Open => {
                            let from = stack.iter().position(|(s, _)| *s == t).unwrap_or(0);
                            let mut path: Vec<&str> = stack[from..]
                                .iter()
                                .map(|(s, _)| flow.nodes[*s].name.as_str())
                                .collect();
                            path.push(&flow.nodes[t].name);
                            // At the node whose target closes the loop.
                            return Err(RuleError::new(
                                src.file,
                                flow.nodes[node].line,
                                format!(
                                    "loop without caller input in flow {:?}: {} (a silent caller would never leave it; route a fallback elsewhere)",
                                    flow.name,
                                    path.join(" → ")
                                ),
                            ));
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
        // Reachability over every edge.
        let mut seen = vec![false; n];
        let mut todo = vec![flow.start];
        seen[flow.start] = true;
        while let Some(node) = todo.pop() {
            for (t, _) in flow.nodes[node].kind.edges() {
                if !seen[t] {
                    seen[t] = true;
                    todo.push(t);
                }
            }
        }
        for (node, reached) in flow.nodes.iter().zip(seen) {
            if !reached {
                self.warnings.push(RuleError::new(
                    src.file,
                    node.line,
                    format!(
                        "node {:?} of flow {:?} is never reached from start {:?}",
                        node.name, flow.name, flow.nodes[flow.start].name
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn non_empty(src: Src, s: &Spanned<String>, what: &str) -> Result<String, RuleError> {
    let t = s.get_ref().trim();
    if t.is_empty() {
        return Err(src.err(&s.span(), format!("empty {what}")));
    }
    Ok(t.to_string())
}

// ------------------------------------------------------------------------------------------
// Time windows (the routing rules' `time` format)
// ------------------------------------------------------------------------------------------

fn compile_window(src: Src, w: &Spanned<RawWindow>) -> Result<TimeWindow, RuleError> {
    let r = w.get_ref();
    let offset = parse_offset(src, &r.utc_offset)?;
    // In order of precedence: a more specific key replaces a general one for its days.
    let keys: [(&Intervals, &[usize]); 10] = [
        (&r.every_day, &[0, 1, 2, 3, 4, 5, 6]),
        (&r.weekdays, &[0, 1, 2, 3, 4]),
        (&r.weekend, &[5, 6]),
        (&r.mon, &[0]),
        (&r.tue, &[1]),
        (&r.wed, &[2]),
        (&r.thu, &[3]),
        (&r.fri, &[4]),
        (&r.sat, &[5]),
        (&r.sun, &[6]),
    ];
    let mut week: [Vec<(u16, u16)>; 7] = Default::default();
    let mut any = false;
    for (list, days) in keys {
        let Some(list) = list else { continue };
        any = true;
        let mut intervals = Vec::new();
        for s in list {
            intervals.push(parse_interval(src, s)?);
        }
        intervals.sort();
        for &d in days {
            week[d] = intervals.clone();
        }
    }
    if !any {
        return Err(src.err(
            &w.span(),
            "a time window needs intervals, e.g. time = { utc_offset = \"+08:00\", weekdays = [\"09:00-18:00\"] }",
        ));
    }
    Ok(TimeWindow {
        utc_offset_minutes: offset,
        week,
    })
}

fn parse_offset(src: Src, s: &Spanned<String>) -> Result<i32, RuleError> {
    let t = s.get_ref().trim();
    let bad = || {
        src.err(
            &s.span(),
            format!("bad utc_offset {t:?}: write +HH:MM or -HH:MM, e.g. \"+08:00\""),
        )
    };
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let Some((h, m)) = rest.split_once(':') else {
        return Err(bad());
    };
    match (h.len(), m.len(), h.parse::<i32>(), m.parse::<i32>()) {
        (2, 2, Ok(h), Ok(m)) if m < 60 && h * 60 + m <= 14 * 60 => Ok(sign * (h * 60 + m)),
        _ => Err(bad()),
    }
}

fn parse_interval(src: Src, s: &Spanned<String>) -> Result<(u16, u16), RuleError> {
    let t = s.get_ref().trim();
    let clock = |c: &str, end: bool| -> Option<u16> {
        let (h, m) = c.trim().split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
        match (h, m) {
            (24, 0) if end => Some(24 * 60),
            (0..=23, 0..=59) => Some(h * 60 + m),
            _ => None,
        }
    };
    let parsed = t
        .split_once('-')
        .and_then(|(a, b)| Some((clock(a, false)?, clock(b, true)?)));
    match parsed {
        Some((from, to)) if from < to => Ok((from, to)),
        Some(_) => Err(src.err(
            &s.span(),
            format!("interval {t:?} ends before it starts; split a night across two days"),
        )),
        None => Err(src.err(
            &s.span(),
            format!("bad interval {t:?}: write \"HH:MM-HH:MM\" (24:00 only as an end), e.g. \"09:00-18:00\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RuleSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("routing-rules");
        crate::acd::rules::load_dir(&dir).expect("shipped routing rules")
    }

    const MINIMAL: &str = r#"
[[flow]]
name = "main"
start = "menu"

[flow.node.menu]
type = "menu"
prompts = ["welcome"]
choices = { 1 = "q" }
fallback = "q"

[flow.node.q]
type = "queue"
"#;

    fn load(text: &str) -> Result<IvrConfig, RuleError> {
        IvrConfig::load("ivr.toml", text, &rules())
    }

    #[test]
    fn the_shipped_file_loads_without_warnings() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("routing-rules/ivr/ivr.toml");
        let cfg = IvrConfig::load_path(&path, &rules()).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
        assert_eq!(cfg.flow_for("+864008001234").name, "hotline");
        assert_eq!(cfg.flow_for("+864008009999").name, "vip-line");
        assert_eq!(cfg.flow_for("+864008002001").name, "default");
        assert_eq!(cfg.flow_for("").name, "default");
        assert_eq!(cfg.queue_experience("vip").comfort_secs, 30);
        assert!(!cfg.queue_experience("billing").announce_wait);
        // Queues without their own table get [queue_experience.default].
        assert_eq!(cfg.queue_experience("support").comfort.len(), 2);
        assert_eq!(
            cfg.prompt_text("other_language", Language::ZhCn),
            Some("For English, press 8.")
        );
        let keys = cfg.prompt_keys();
        assert!(keys.contains(&"main_menu".to_string()) && keys.contains(&"goodbye".to_string()));
    }

    #[test]
    fn a_minimal_flow_loads_with_defaults() {
        let cfg = load(MINIMAL).unwrap();
        let f = cfg.flow_for("+861234");
        assert_eq!((f.name.as_str(), f.language), ("main", Language::ZhCn));
        let NodeKind::Menu(c) = &f.node(f.start).kind else {
            panic!()
        };
        assert_eq!(
            (
                c.max_digits,
                c.retries,
                c.terminator,
                c.first_digit_timeout_ms
            ),
            (1, 2, Some('#'), 5_000)
        );
        assert!(c.invalid_prompts.is_empty() && c.reprompt && c.barge_in);
        assert_eq!(
            cfg.queue_experience("sales"),
            &QueueExperienceConfig::default()
        );
    }

    /// Each bad file names the line of the fault and says why.
    #[test]
    fn errors_name_the_line_and_the_reason() {
        let cases: &[(&str, &str, usize, &str)] = &[
            // (replace, with, line, reason contains)
            (
                "fallback = \"q\"",
                "fallback = \"nowhere\"",
                10,
                "unknown node \"nowhere\" in flow \"main\" (its nodes: menu, q)",
            ),
            (
                "type = \"menu\"",
                "type = \"meny\"",
                7,
                "unknown node type \"meny\"",
            ),
            (
                "choices = { 1 = \"q\" }",
                "choices = { 1 = \"q\" }\nnext = \"q\"",
                6,
                "next does not belong to a menu node",
            ),
            (
                "prompts = [\"welcome\"]",
                "prompts = [\"welcom\"]",
                8,
                "unknown prompt \"welcom\"",
            ),
            (
                "prompts = [\"welcome\"]",
                "prompts = [\"$balanse\"]",
                8,
                "unknown variable $balanse",
            ),
            (
                "fallback = \"q\"",
                "fallback = \"menu\"",
                6,
                "loop without caller input in flow \"main\": menu → menu",
            ),
            ("fallback = \"q\"\n", "", 6, "needs fallback"),
            (
                "choices = { 1 = \"q\" }",
                "choices = { \"1#\" = \"q\" }",
                9,
                "contains the terminator",
            ),
            (
                "type = \"queue\"",
                "type = \"voicemail\"\nqueue = \"salse\"",
                14,
                "unknown queue \"salse\" (defined queues: billing, sales, support, vip)",
            ),
            (
                "start = \"menu\"",
                "start = \"menu\"\nlanguage = \"fr\"",
                5,
                "unknown language \"fr\"",
            ),
            (
                "start = \"menu\"",
                "start = \"menu\"\nlanguages = [\"en\"]",
                2,
                "starts in zh-CN, which is not in its languages (en)",
            ),
            (
                "name = \"main\"",
                "name = \"main\"\ncolour = \"blue\"",
                4,
                "unknown field `colour`",
            ),
            (
                "choices = { 1 = \"q\" }",
                "choices = { 1 = \"q\" }\nretries = 12",
                10,
                "at most 9",
            ),
            (
                "choices = { 1 = \"q\" }",
                "choices = { 1 = \"q\" }\nfirst_digit_timeout_secs = 0",
                10,
                "more than 0",
            ),
            (
                "choices = { 1 = \"q\" }",
                "choices = { 1 = \"q\", 12 = \"q\" }\nmax_digits = 1",
                10,
                "shorter than the longest key",
            ),
        ];
        let mut wrong = Vec::new();
        for (from, to, line, reason) in cases {
            assert!(MINIMAL.contains(from), "{from}");
            let text = MINIMAL.replacen(from, to, 1);
            match load(&text) {
                Ok(_) => wrong.push(format!("{to:?}: accepted")),
                Err(e) if e.file != "ivr.toml" || e.line != *line || !e.reason.contains(reason) => {
                    wrong.push(format!("{to:?}: {e} (expected line {line}: {reason})"))
                }
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn files_without_a_default_flow_or_with_two_are_refused() {
        let e = load(&MINIMAL.replace("start = \"menu\"", "start = \"menu\"\ncalled = \"+86*\""))
            .unwrap_err();
        assert!(e.reason.contains("no default flow"), "{e}");
        let two = format!("{MINIMAL}\n{}", MINIMAL.replace("\"main\"", "\"other\""));
        let e = load(&two).unwrap_err();
        assert_eq!(e.line, 16, "{e}");
        assert!(e.reason.contains("already the default"), "{e}");
        let e = load("").unwrap_err();
        assert_eq!(e.line, 0);
    }

    #[test]
    fn prompts_need_text_in_every_language_the_flow_speaks() {
        let with_catalog = MINIMAL.replace("[\"welcome\"]", "[\"menu_en\"]").replace(
            "start = \"menu\"",
            "start = \"menu\"\nlanguages = [\"zh-CN\", \"en\"]",
        );
        let e = load(&format!(
            "[prompts]\nmenu_en = {{ en = \"Press 1.\" }}\n{with_catalog}"
        ))
        .unwrap_err();
        assert_eq!(e.line, 11, "{e}");
        assert!(e.reason.contains("has no zh-CN text"), "{e}");
        let ok = load(&format!(
            "[prompts]\nmenu_en = {{ en = \"Press 1.\", zh-CN = \"请按1。\" }}\n{with_catalog}"
        ))
        .unwrap();
        assert_eq!(ok.prompt_text("menu_en", Language::En), Some("Press 1."));
        let e = load(&format!("[prompts]\nx = {{ fr = \"Bonjour\" }}\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn unreachable_nodes_and_unused_prompts_are_warnings() {
        let text = format!(
            "[prompts]\nspare = {{ zh-CN = \"备用\" }}\n{MINIMAL}\n[flow.node.orphan]\ntype = \"hangup\"\n"
        );
        let cfg = load(&text).unwrap();
        let w: Vec<String> = cfg.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(
            w,
            vec![
                "ivr.toml:2: prompt \"spare\" is never played".to_string(),
                "ivr.toml:17: node \"orphan\" of flow \"main\" is never reached from start \"menu\"".to_string(),
            ]
        );
    }

    #[test]
    fn a_loop_through_a_menu_choice_is_fine_but_not_through_its_fallback() {
        let ok = MINIMAL.replace(
            "choices = { 1 = \"q\" }",
            "choices = { 1 = \"q\", 9 = \"again\" }",
        )
            + "\n[flow.node.again]\ntype = \"play\"\nprompts = [\"welcome\"]\nnext = \"menu\"\n";
        load(&ok).unwrap();
        let bad = ok.replace("fallback = \"q\"", "fallback = \"again\"");
        let e = load(&bad).unwrap_err();
        assert!(e.reason.contains("menu → again → menu"), "{e}");
    }

    #[test]
    fn queue_experience_tables_inherit_and_check_queues() {
        let text = format!(
            "{MINIMAL}\n[queue_experience.default]\ncomfort_secs = 20\n\n[queue_experience.sales]\ncallback_key = \"\"\n"
        );
        let cfg = load(&text).unwrap();
        assert_eq!(cfg.queue_experience("sales").comfort_secs, 20);
        assert_eq!(cfg.queue_experience("sales").callback_key, None);
        assert_eq!(cfg.queue_experience("vip").callback_key, Some('*'));
        let e = load(&format!(
            "{MINIMAL}\n[queue_experience.saels]\ncomfort_secs = 20\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 15, "{e}");
        assert!(e.reason.contains("unknown queue \"saels\""), "{e}");
        let e = load(&format!(
            "{MINIMAL}\n[queue_experience.sales]\ncallback_key = \"**\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 16, "{e}");
    }

    #[test]
    fn time_windows_and_queue_hours_in_branches() {
        let text = MINIMAL.replace("start = \"menu\"", "start = \"hours\"")
            + r#"
[flow.node.hours]
type = "branch"
default = "menu"

[[flow.node.hours.case]]
time = { utc_offset = "+08:00", weekdays = ["09:00-25:00"] }
next = "q"
"#;
        let e = load(&text).unwrap_err();
        assert_eq!(e.line, 20, "{e}");
        assert!(e.reason.contains("bad interval \"09:00-25:00\""), "{e}");
        let good = text.replace("25:00", "18:00");
        let cfg = load(&good).unwrap();
        let f = cfg.flow_for("x");
        let NodeKind::Branch { cases, .. } = &f.node(f.start).kind else {
            panic!()
        };
        let w = cases[0].0.time.as_ref().unwrap();
        assert_eq!(
            (w.utc_offset_minutes, &w.week[0], &w.week[5]),
            (480, &vec![(540, 1080)], &vec![])
        );
        let e = load(&good.replace("time = {", "queue_open = \"nope\"\ntime = {")).unwrap_err();
        assert!(e.reason.contains("unknown queue \"nope\""), "{e}");
    }
}
