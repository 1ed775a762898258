//! What the IVR names ([`PromptRef`]) as the media engine plays it (files and tones), in the
//! caller's language.

use channel_media::{
    prompts::number_names, Language as MediaLanguage, PlayItem, PlaySpec, Prompts,
};

use crate::ivr::{Language, PromptRef};

pub fn media_language(l: Language) -> MediaLanguage {
    match l {
        Language::ZhCn => MediaLanguage::ZhCn,
        Language::ZhTw => MediaLanguage::ZhTw,
        Language::En => MediaLanguage::En,
    }
}

/// The files and tones for a playlist. A prompt the set does not have is skipped with a warning
/// (a missing recording must not stop the call).
pub fn specs(prompts: &Prompts, lang: Language, items: &[PromptRef]) -> Vec<PlaySpec> {
    let l = media_language(lang);
    let file = |name: &str| -> Option<PlaySpec> {
        let path = prompts.path(l, name);
        if path.is_file() {
            Some(PlaySpec::File(path))
        } else {
            tracing::warn!(
                prompt = name,
                language = lang.tag(),
                "a prompt has no recording; skipped"
            );
            None
        }
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            PromptRef::Prompt(key) => out.extend(file(key)),
            PromptRef::Number(n) => {
                for name in number_names(l, *n) {
                    out.extend(file(&name));
                }
            }
            PromptRef::Money { fen } => {
                let yuan = (fen / 100) as u32;
                let jiao = ((fen / 10) % 10) as u32;
                let fen = (fen % 10) as u32;
                for name in number_names(l, yuan) {
                    out.extend(file(&name));
                }
                out.extend(file("yuan"));
                for (n, unit) in [(jiao, "jiao"), (fen, "fen")] {
                    if n > 0 {
                        for name in number_names(l, n) {
                            out.extend(file(&name));
                        }
                        out.extend(file(unit));
                    }
                }
            }
            PromptRef::Digits(d) => {
                for c in d.chars().filter(|c| c.is_ascii_digit()) {
                    out.extend(file(&c.to_string()));
                }
            }
            PromptRef::MusicOnHold => {
                let path = prompts.music_on_hold();
                if path.is_file() {
                    out.push(PlaySpec::File(path));
                } else {
                    // Without the music file callers still hear that they are held.
                    out.push(
                        PlayItem::Tone {
                            freq: 440.0,
                            second: None,
                            amplitude: 1500.0,
                            ms: 300,
                        }
                        .into(),
                    );
                    out.push(PlayItem::Silence { ms: 3700 }.into());
                }
            }
            PromptRef::Beep => out.push(PlayItem::beep().into()),
            PromptRef::Silence { ms } => out.push(PlayItem::Silence { ms: *ms }.into()),
        }
    }
    if out.is_empty() {
        // Nothing playable: a short silence, so the flow still hears its playback end.
        out.push(PlayItem::Silence { ms: 200 }.into());
    }
    out
}
