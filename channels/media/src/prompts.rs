//! The default prompt set shipped in `prompts/{en,zh-CN,zh-TW}/` and phrases built from it
//! ("you are number" + "23" + "in line").

use crate::engine::PlaySpec;
use std::path::{Path, PathBuf};

/// The prompts directory of this crate's source tree (deployments point the hub elsewhere).
pub const DEFAULT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/prompts");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    En,
    ZhCn,
    ZhTw,
}

impl Language {
    pub fn dir_name(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::ZhCn => "zh-CN",
            Language::ZhTw => "zh-TW",
        }
    }

    /// From a BCP 47 tag such as `zh-Hant-TW`, `zh-CN`, `en-US`.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let t = tag.to_ascii_lowercase();
        if t.starts_with("en") {
            Some(Language::En)
        } else if t.starts_with("zh") {
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

/// Prompt names in the shipped set (besides numbers).
pub const NAMES: &[&str] = &[
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

/// A prompt library rooted at a directory.
#[derive(Debug, Clone)]
pub struct Prompts {
    root: PathBuf,
}

impl Default for Prompts {
    fn default() -> Self {
        Prompts::new(DEFAULT_DIR)
    }
}

impl Prompts {
    pub fn new(root: impl AsRef<Path>) -> Self {
        Prompts {
            root: root.as_ref().to_owned(),
        }
    }

    pub fn path(&self, lang: Language, name: &str) -> PathBuf {
        self.root.join(lang.dir_name()).join(format!("{name}.wav"))
    }

    pub fn music_on_hold(&self) -> PathBuf {
        self.root.join("moh.wav")
    }

    fn specs(&self, lang: Language, names: Vec<String>) -> Vec<PlaySpec> {
        names
            .iter()
            .map(|n| PlaySpec::File(self.path(lang, n)))
            .collect()
    }

    /// "You are number N in line."
    pub fn queue_position(&self, lang: Language, n: u32) -> Vec<PlaySpec> {
        let mut names = vec!["you_are_number".to_string()];
        names.extend(number_names(lang, n));
        names.push("in_line".into());
        self.specs(lang, names)
    }

    /// "Your expected wait is about N minutes."
    pub fn expected_wait(&self, lang: Language, minutes: u32) -> Vec<PlaySpec> {
        let mut names = vec!["expected_wait".to_string()];
        names.extend(number_names(lang, minutes));
        names.push("minutes".into());
        self.specs(lang, names)
    }

    /// "Your balance is Y yuan" (with jiao/fen when there are cents).
    pub fn balance(&self, lang: Language, fen_total: u64) -> Vec<PlaySpec> {
        let yuan = (fen_total / 100).min(u64::from(u32::MAX)) as u32;
        let jiao = ((fen_total / 10) % 10) as u32;
        let fen = (fen_total % 10) as u32;
        let mut names = vec!["balance_is".to_string()];
        names.extend(number_names(lang, yuan));
        names.push("yuan".into());
        if jiao > 0 {
            names.extend(number_names(lang, jiao));
            names.push("jiao".into());
        }
        if fen > 0 {
            names.extend(number_names(lang, fen));
            names.push("fen".into());
        }
        self.specs(lang, names)
    }

    pub fn prompt(&self, lang: Language, name: &str) -> PlaySpec {
        PlaySpec::File(self.path(lang, name))
    }
}

/// Prompt file names that speak `n`: English in thousands ("12 thousand 3 hundred 40 5"),
/// Chinese in 万 and 亿 sections with 零 where a place is skipped ("1 ten_thousand 0 5" =
/// 一万零五).
pub fn number_names(lang: Language, n: u32) -> Vec<String> {
    let mut out = Vec::new();
    match lang {
        Language::En => {
            let groups = [
                (n / 1_000_000_000, Some("billion")),
                ((n / 1_000_000) % 1000, Some("million")),
                ((n / 1000) % 1000, Some("thousand")),
                (n % 1000, None),
            ];
            for (g, unit) in groups {
                if g > 0 {
                    en_below_1000(g, &mut out);
                    out.extend(unit.map(String::from));
                }
            }
            if out.is_empty() {
                out.push("0".into());
            }
        }
        Language::ZhCn | Language::ZhTw => {
            let sections = [
                (n / 100_000_000, Some("hundred_million")),
                ((n / 10_000) % 10_000, Some("ten_thousand")),
                (n % 10_000, None),
            ];
            let mut gap = false;
            for (sec, unit) in sections {
                if sec == 0 {
                    gap = !out.is_empty();
                    continue;
                }
                // 零 where places are skipped between sections: this one lacks its thousands
                // (一万零五十) or a whole section was zero (二亿零一千).
                if !out.is_empty() && (sec < 1000 || gap) {
                    out.push("0".into());
                }
                gap = false;
                zh_below_10000(sec, out.is_empty(), &mut out);
                out.extend(unit.map(String::from));
            }
            if out.is_empty() {
                out.push("0".into());
            }
        }
    }
    out
}

fn en_below_1000(n: u32, out: &mut Vec<String>) {
    let (h, rest) = (n / 100, n % 100);
    if h > 0 {
        out.push(h.to_string());
        out.push("hundred".into());
        if rest == 0 {
            return;
        }
    }
    if rest < 20 {
        out.push(rest.to_string());
    } else {
        out.push((rest / 10 * 10).to_string());
        if rest % 10 > 0 {
            out.push((rest % 10).to_string());
        }
    }
}

/// 1..=9999 with 千 百 十; `leading`: the number's first section, where 10..19 say 十 alone.
fn zh_below_10000(n: u32, leading: bool, out: &mut Vec<String>) {
    let digits = [n / 1000, (n / 100) % 10, (n / 10) % 10, n % 10];
    let units = [Some("thousand"), Some("hundred"), Some("10"), None];
    let mut spoken = false;
    let mut zero = false;
    for (d, unit) in digits.into_iter().zip(units) {
        if d == 0 {
            zero = spoken;
            continue;
        }
        if zero {
            out.push("0".into());
            zero = false;
        }
        // 十五, not 一十五, when ten is the number's first place.
        let ten_alone = d == 1 && unit == Some("10") && !spoken && leading;
        if !ten_alone {
            out.push(d.to_string());
        }
        out.extend(unit.map(String::from));
        spoken = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_each_language() {
        let en = |n| number_names(Language::En, n).join(" ");
        assert_eq!(en(0), "0");
        assert_eq!(en(13), "13");
        assert_eq!(en(40), "40");
        assert_eq!(en(42), "40 2");
        assert_eq!(en(300), "3 hundred");
        assert_eq!(en(305), "3 hundred 5");
        assert_eq!(en(1234), "1 thousand 2 hundred 30 4");
        assert_eq!(en(12_000), "12 thousand");
        assert_eq!(en(2_000_017), "2 million 17");
        assert_eq!(
            en(u32::MAX),
            "4 billion 2 hundred 90 4 million 9 hundred 60 7 thousand 2 hundred 90 5"
        );
        let zh = |n| number_names(Language::ZhCn, n).join(" ");
        assert_eq!(zh(7), "7");
        assert_eq!(zh(10), "10");
        assert_eq!(zh(15), "10 5");
        assert_eq!(zh(23), "2 10 3");
        assert_eq!(zh(105), "1 hundred 0 5");
        assert_eq!(zh(115), "1 hundred 1 10 5");
        assert_eq!(zh(200), "2 hundred");
        assert_eq!(zh(1005), "1 thousand 0 5");
        assert_eq!(zh(1050), "1 thousand 0 5 10");
        assert_eq!(zh(1234), "1 thousand 2 hundred 3 10 4");
        assert_eq!(zh(10_005), "1 ten_thousand 0 5");
        assert_eq!(zh(10_050), "1 ten_thousand 0 5 10");
        assert_eq!(zh(12_345), "1 ten_thousand 2 thousand 3 hundred 4 10 5");
        assert_eq!(zh(150_000), "10 5 ten_thousand");
        assert_eq!(zh(100_010), "10 ten_thousand 0 1 10");
        assert_eq!(zh(300_000_000), "3 hundred_million");
        assert_eq!(zh(200_001_000), "2 hundred_million 0 1 thousand");
    }

    #[test]
    fn every_phrase_refers_to_a_shipped_file() {
        let p = Prompts::default();
        for lang in [Language::En, Language::ZhCn, Language::ZhTw] {
            for name in NAMES {
                assert!(p.path(lang, name).exists(), "{lang:?} {name}");
            }
            for n in [0, 7, 10, 15, 23, 99, 105, 115, 999, 4321] {
                for spec in p
                    .queue_position(lang, n)
                    .into_iter()
                    .chain(p.expected_wait(lang, n))
                {
                    let PlaySpec::File(f) = spec else { panic!() };
                    assert!(f.exists(), "{lang:?} {n}: {}", f.display());
                }
            }
            for spec in p
                .balance(lang, 12_345)
                .into_iter()
                .chain(p.balance(lang, 123_456_789_012))
            {
                let PlaySpec::File(f) = spec else { panic!() };
                assert!(f.exists(), "{}", f.display());
            }
        }
        assert!(p.music_on_hold().exists());
        assert_eq!(Language::from_tag("zh-Hant-TW"), Some(Language::ZhTw));
        assert_eq!(Language::from_tag("zh-CN"), Some(Language::ZhCn));
        assert_eq!(Language::from_tag("en-US"), Some(Language::En));
    }

    #[test]
    fn shipped_prompts_load_and_music_loops() {
        let p = Prompts::default();
        let clip = crate::wav::load(&p.path(Language::En, "welcome")).unwrap();
        assert!(clip.duration() > std::time::Duration::from_millis(500));
        let moh = crate::wav::load(&p.music_on_hold()).unwrap();
        let secs = moh.duration().as_secs();
        assert!((20..=30).contains(&secs), "{secs}");
    }
}
