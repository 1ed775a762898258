//! The IVR: what a caller hears and presses between the call being answered and being queued,
//! and what they hear while they wait.
//!
//! - [`flow`]: `routing-rules/ivr/ivr.toml` → validated call flows ([`IvrConfig`]), with file,
//!   line and reason on every error (the format is in `routing-rules/README.md`).
//! - [`machine`]: [`IvrSession`], one per call, sans-IO: inputs (digits, playback done, the
//!   caller lookup's answer, hang-up, time) in, [`IvrAction`]s out.
//! - [`queue`]: [`QueueExperience`], the sans-IO schedule of what a waiting caller hears: music
//!   on hold, position and expected-wait announcements, comfort messages, the callback key, and
//!   voicemail when the queue closes or overflows.
//! - [`cases`]: runs `ivr.cases.toml` (digits and caller facts → queue and attributes) through
//!   the IVR and the routing rules.
//!
//! Nothing here does IO except [`IvrConfig::missing_prompt_files`] (file existence checks).
//!
//! ## Prompts
//!
//! The hub root package does not depend on `channel-media`, so prompts are named here by
//! [`PromptRef`] and the call handling maps them onto the media crate's vocabulary:
//!
//! | `PromptRef` | `channel_media` |
//! |---|---|
//! | `Prompt(key)` | `Prompts::prompt(lang, key)` (file `<dir>/<lang>/<key>.wav`) |
//! | `Number(n)` | `prompts::number_names(lang, n)`, each a `Prompts::prompt` |
//! | `Money { fen }` | `number_names(yuan)` + `"yuan"`, then `number_names(jiao)` + `"jiao"` and `number_names(fen)` + `"fen"` when not zero (`Prompts::balance` without its leading `balance_is`) |
//! | `Digits(s)` | each digit `Prompts::prompt(lang, "0"…"9")` |
//! | `MusicOnHold` | `Prompts::music_on_hold()` |
//! | `Beep` | `PlayItem::Tone { freq: 1000.0, second: None, amplitude: 0.3, ms: 400 }` |
//! | `Silence { ms }` | `PlayItem::Silence { ms }` |
//!
//! [`Playback::looping`] maps to the `looping` argument of `MediaEngine::play`.

pub mod cases;
pub mod flow;
pub mod machine;
pub mod queue;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::acd::rules::ContactAttributes;
use crate::domain::Channel;

pub use flow::{IvrConfig, QueueExperienceConfig};
pub use machine::{IvrAction, IvrEvent, IvrInput, IvrOutcome, IvrSession};
pub use queue::{QueueAction, QueueEvent, QueueExperience, QueueInput};

/// A language the prompts are recorded in (the media crate's `Language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Language {
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "zh-TW")]
    ZhTw,
    #[serde(rename = "en")]
    En,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::ZhCn, Language::ZhTw, Language::En];

    /// The BCP 47 tag, also the prompt directory name (`zh-CN`, `zh-TW`, `en`).
    pub fn tag(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::ZhTw => "zh-TW",
            Language::En => "en",
        }
    }

    /// From a tag such as `zh-Hant-TW`, `zh-HK`, `zh-CN`, `en-US` (as the media crate reads it).
    pub fn from_tag(tag: &str) -> Option<Language> {
        let t = tag.trim().to_ascii_lowercase();
        if t == "en" || t.starts_with("en-") || t.starts_with("en_") {
            Some(Language::En)
        } else if t == "zh" || t.starts_with("zh-") || t.starts_with("zh_") {
            let traditional = ["tw", "hk", "mo", "hant"].iter().any(|s| t.contains(s));
            Some(if traditional {
                Language::ZhTw
            } else {
                Language::ZhCn
            })
        } else {
            None
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// One item of what a caller hears (see the module docs for the media mapping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptRef {
    /// A recorded prompt by key: `<prompts>/<language>/<key>.wav`.
    Prompt(String),
    /// A number spoken in the language (0–999 in words, larger digit by digit).
    Number(u32),
    /// An amount of money in fen: "12 yuan 3 jiao 4 fen".
    Money {
        fen: u64,
    },
    /// Digits read one by one (what the caller typed).
    Digits(String),
    /// The music-on-hold file (played with `looping`).
    MusicOnHold,
    /// The tone before a voicemail recording.
    Beep,
    Silence {
        ms: u32,
    },
}

impl fmt::Display for PromptRef {
    /// The compact form the cases files use in `heard`: `welcome`, `number:3`, `money:12345`,
    /// `digits:1234`, `music`, `beep`, `silence:500`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptRef::Prompt(k) => f.write_str(k),
            PromptRef::Number(n) => write!(f, "number:{n}"),
            PromptRef::Money { fen } => write!(f, "money:{fen}"),
            PromptRef::Digits(d) => write!(f, "digits:{d}"),
            PromptRef::MusicOnHold => f.write_str("music"),
            PromptRef::Beep => f.write_str("beep"),
            PromptRef::Silence { ms } => write!(f, "silence:{ms}"),
        }
    }
}

/// A playback request for the caller's leg. A new `Play` replaces whatever plays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Playback {
    pub language: Language,
    pub prompts: Vec<PromptRef>,
    /// A digit stops it (the session sends `StopPlayback` and takes the digit as input).
    pub barge_in: bool,
    /// Loop until replaced or stopped (music on hold); never reports `PlaybackDone`.
    pub looping: bool,
}

/// What the archive knows about the caller (the answer to `IvrAction::Lookup`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerInfo {
    pub customer_id: i64,
    pub name: String,
    /// Value tier, e.g. "vip", "important", "ordinary".
    pub tier: String,
    /// BCP 47 tag from the customer record.
    pub language: Option<String>,
    /// Owed by the customer in fen (negative = credit); `None` when unknown or not in CNY.
    pub balance_fen: Option<i64>,
    pub tags: Vec<String>,
}

/// What the IVR learned and set, handed to the ACD with the call (and to voicemail/callback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallAttributes {
    /// The calling number (E.164) as the trunk gave it.
    pub caller: String,
    /// The number dialled (E.164).
    pub called: String,
    /// The language the caller heard (chosen, from the archive, or the flow's default).
    pub language: Language,
    /// Menu choice as routing.toml's `ivr_choice` matches it ("1", "2", "3" …).
    pub ivr_choice: Option<String>,
    /// Product or topic for reports and the screen-pop ("sales", "billing" …).
    pub product: Option<String>,
    /// Tags set by the flow plus the customer's own.
    pub tags: Vec<String>,
    /// Added to the routing priority.
    pub priority_boost: i64,
    pub tier: Option<String>,
    pub customer_id: Option<i64>,
}

impl CallAttributes {
    /// The routing rules' view of this call (`RuleSet::route`); add `priority_boost` to the
    /// decision's priority.
    pub fn contact_attributes(&self) -> ContactAttributes {
        ContactAttributes {
            channel: Channel::Voice,
            called: Some(self.called.clone()).filter(|c| !c.is_empty()),
            ivr_choice: self.ivr_choice.clone(),
            tier: self.tier.clone(),
            language: Some(self.language.tag().to_string()),
            tags: self.tags.clone(),
        }
    }
}

/// A DTMF key the IVR understands (`0`–`9`, `*`, `#`; `A`–`D` are ignored).
pub(crate) fn is_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

/// `*` matches any run of characters; anything else itself, ignoring ASCII case.
pub(crate) fn glob_match(pattern: &str, value: &str) -> bool {
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

/// `zh` matches `zh`, `zh-CN`, `zh_TW`; `zh-CN` only `zh-CN` (ignoring case), as in routing.
pub(crate) fn language_match(pattern: &str, value: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_read_like_the_media_crate() {
        assert_eq!(Language::from_tag("zh-Hant-TW"), Some(Language::ZhTw));
        assert_eq!(Language::from_tag("zh-HK"), Some(Language::ZhTw));
        assert_eq!(Language::from_tag("zh"), Some(Language::ZhCn));
        assert_eq!(Language::from_tag("zh-CN"), Some(Language::ZhCn));
        assert_eq!(Language::from_tag("en-US"), Some(Language::En));
        assert_eq!(Language::from_tag("english"), None);
        assert_eq!(Language::from_tag("fr"), None);
        for l in Language::ALL {
            assert_eq!(Language::from_tag(l.tag()), Some(l));
        }
    }

    #[test]
    fn globs_and_language_patterns() {
        assert!(glob_match("+86400800*", "+864008001234"));
        assert!(!glob_match("+86400800*", "+861065550200"));
        assert!(glob_match("*", ""));
        assert!(language_match("zh", "zh-TW"));
        assert!(!language_match("zh-CN", "zh-TW"));
        assert!(!language_match("z", "zh"));
    }

    #[test]
    fn attributes_become_routing_attributes() {
        let a = CallAttributes {
            caller: "+8613800138000".into(),
            called: "+864008001234".into(),
            language: Language::En,
            ivr_choice: Some("3".into()),
            product: Some("billing".into()),
            tags: vec!["self_service".into()],
            priority_boost: 5,
            tier: Some("vip".into()),
            customer_id: Some(7),
        };
        let c = a.contact_attributes();
        assert_eq!(c.channel, Channel::Voice);
        assert_eq!(c.called.as_deref(), Some("+864008001234"));
        assert_eq!(c.ivr_choice.as_deref(), Some("3"));
        assert_eq!(c.language.as_deref(), Some("en"));
        assert_eq!(c.tier.as_deref(), Some("vip"));
        assert_eq!(c.tags, vec!["self_service".to_string()]);
    }
}
