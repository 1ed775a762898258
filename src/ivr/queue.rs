//! [`QueueExperience`]: what a caller hears while queued, sans-IO. Music on hold loops between
//! prompts; the position and expected wait are announced when the ACD first reports them and
//! again every `reannounce_secs` when they changed; a comfort message plays every
//! `comfort_secs` of music; the callback key (default `*`) asks for a callback that keeps the
//! caller's place; a queue that closes or overflows sends the caller to voicemail (or a
//! callback, per the queue's `closed_handling`).

use std::collections::VecDeque;

use serde::Serialize;

use crate::acd::types::{ClosedHandling, Millis};

use super::flow::{PromptItem, QueueExperienceConfig};
use super::{is_key, Language, Playback, PromptRef};

/// A prompt that never reports its end is given up after this long.
const PROMPT_TIMEOUT_MS: Millis = 120_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueInput {
    /// From the ACD: the caller's place (1 = next) and the expected wait, when known.
    Position {
        position: u32,
        expected_wait_secs: Option<u32>,
    },
    Dtmf(char),
    /// The last non-looping `Play` ended by itself.
    PlaybackDone,
    /// The queue cannot keep the caller (closed, full, or waited too long): its
    /// `closed_handling` from queues.toml.
    Closed {
        handling: ClosedHandling,
    },
    /// An agent takes the call: stop what plays.
    AgentConnected,
    CallerHungUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// Replace what the caller hears (music has `looping`).
    Play(Playback),
    StopPlayback,
    /// Turn the queued call into a callback contact that keeps its place, then hang up.
    Callback,
    /// Record a message for `queue`'s mailbox (store it as a contact), then hang up.
    Voicemail {
        queue: String,
    },
    Event(QueueEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueEvent {
    PositionAnnounced {
        position: u32,
        wait_minutes: Option<u32>,
    },
    ComfortPlayed {
        message: usize,
    },
    CallbackRequested {
        position: Option<u32>,
    },
    /// Closed or overflowing: the caller is sent to voicemail or a callback.
    QueueClosed {
        handling: ClosedHandling,
    },
    Left {
        reason: LeftReason,
    },
}

impl QueueEvent {
    /// The `contact_events.kind` of this event.
    pub fn kind(&self) -> &'static str {
        match self {
            QueueEvent::PositionAnnounced { .. } => "queue_position_announced",
            QueueEvent::ComfortPlayed { .. } => "queue_comfort_played",
            QueueEvent::CallbackRequested { .. } => "queue_callback_requested",
            QueueEvent::QueueClosed { .. } => "queue_closed_handling",
            QueueEvent::Left { .. } => "queue_experience_ended",
        }
    }

    pub fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    AgentConnected,
    CallerHungUp,
    Callback,
    Voicemail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sound {
    Nothing,
    Music,
    /// A prompt; the time it gives up waiting for its end.
    Prompt(Millis),
}

fn prompt_free(s: Sound) -> bool {
    !matches!(s, Sound::Prompt(_))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Callback,
    Voicemail,
}

/// One waiting caller.
#[derive(Debug, Clone)]
pub struct QueueExperience {
    cfg: QueueExperienceConfig,
    queue: String,
    language: Language,
    sound: Sound,
    /// Latest (position, expected wait in minutes) from the ACD, and the last announced.
    latest: Option<(u32, Option<u32>)>,
    announced: Option<(u32, Option<u32>)>,
    announce_pending: bool,
    comfort_pending: bool,
    next_reannounce: Option<Millis>,
    next_comfort: Option<Millis>,
    comfort_index: usize,
    /// After the prompt in progress: the callback or voicemail hand-over.
    ending: Option<Ending>,
    finished: bool,
    out: VecDeque<QueueAction>,
    now: Millis,
}

impl QueueExperience {
    /// A caller entering `queue` at `now`, hearing `language` (what the IVR used).
    pub fn new(
        cfg: &QueueExperienceConfig,
        queue: &str,
        language: Language,
        now: Millis,
    ) -> QueueExperience {
        let mut q = QueueExperience {
            cfg: cfg.clone(),
            queue: queue.to_string(),
            language,
            sound: Sound::Nothing,
            latest: None,
            announced: None,
            announce_pending: false,
            comfort_pending: false,
            next_reannounce: None,
            next_comfort: None,
            comfort_index: 0,
            ending: None,
            finished: false,
            out: VecDeque::new(),
            now,
        };
        q.schedule_comfort();
        let greeting = q.cfg.greeting.clone();
        if !q.play(&greeting) {
            q.kick();
        }
        q
    }

    pub fn handle(&mut self, now: Millis, input: QueueInput) {
        if self.finished {
            return;
        }
        self.now = self.now.max(now);
        match input {
            QueueInput::Position {
                position,
                expected_wait_secs,
            } => {
                if position == 0 {
                    return;
                }
                let minutes = expected_wait_secs
                    .filter(|s| *s > 0)
                    .map(|s| s.div_ceil(60).max(1));
                self.latest = Some((position, minutes));
                if self.announced.is_none() && self.announces() {
                    self.announce_pending = true;
                }
                self.kick();
            }
            QueueInput::Dtmf(d) => {
                if is_key(d) && Some(d) == self.cfg.callback_key && self.ending.is_none() {
                    self.out
                        .push_back(QueueAction::Event(QueueEvent::CallbackRequested {
                            position: self.latest.map(|l| l.0),
                        }));
                    self.end_with(Ending::Callback);
                }
            }
            QueueInput::PlaybackDone => {
                if matches!(self.sound, Sound::Prompt(_)) {
                    self.prompt_ended();
                }
            }
            QueueInput::Closed { handling } => {
                if self.ending.is_some() {
                    return;
                }
                self.out
                    .push_back(QueueAction::Event(QueueEvent::QueueClosed { handling }));
                self.end_with(match handling {
                    ClosedHandling::Callback => Ending::Callback,
                    // A caller cannot be "acknowledged and kept": take a message.
                    ClosedHandling::Voicemail | ClosedHandling::Acknowledge => Ending::Voicemail,
                });
            }
            QueueInput::AgentConnected => {
                if self.sound != Sound::Nothing {
                    self.out.push_back(QueueAction::StopPlayback);
                }
                self.leave(LeftReason::AgentConnected);
            }
            QueueInput::CallerHungUp => self.leave(LeftReason::CallerHungUp),
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        if self.finished {
            return;
        }
        self.now = self.now.max(now);
        if let Sound::Prompt(deadline) = self.sound {
            if self.now >= deadline {
                self.prompt_ended();
                if self.finished {
                    return;
                }
            }
        }
        if self.next_reannounce.is_some_and(|t| self.now >= t) {
            self.next_reannounce = Some(self.now + self.cfg.reannounce_secs as Millis * 1000);
            if self.latest != self.announced {
                self.announce_pending = true;
            }
        }
        if prompt_free(self.sound) && self.next_comfort.is_some_and(|t| self.now >= t) {
            self.next_comfort = None;
            self.comfort_pending = true;
        }
        self.kick();
    }

    pub fn poll_output(&mut self) -> Option<QueueAction> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.finished {
            return None;
        }
        let prompt = match self.sound {
            Sound::Prompt(t) => Some(t),
            _ => None,
        };
        if self.ending.is_some() {
            return prompt;
        }
        // Comfort counts music only: its clock restarts when a prompt ends.
        let comfort = self.next_comfort.filter(|_| prompt.is_none());
        [prompt, self.next_reannounce, comfort]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    // --------------------------------------------------------------------------------------

    fn announces(&self) -> bool {
        self.cfg.announce_position || self.cfg.announce_wait
    }

    fn schedule_comfort(&mut self) {
        self.next_comfort =
            (self.cfg.comfort_secs > 0).then(|| self.now + self.cfg.comfort_secs as Millis * 1000);
    }

    /// When only music (or nothing) plays: a due announcement, else a due comfort message,
    /// else the music.
    fn kick(&mut self) {
        if self.finished || self.ending.is_some() || matches!(self.sound, Sound::Prompt(_)) {
            return;
        }
        if self.announce_pending {
            self.announce_pending = false;
            if self.announce() {
                return;
            }
        }
        if self.comfort_pending {
            self.comfort_pending = false;
            if !self.cfg.comfort.is_empty() {
                let i = self.comfort_index % self.cfg.comfort.len();
                self.comfort_index += 1;
                let mut items = self.cfg.comfort[i].clone();
                if self.cfg.callback_key.is_some() {
                    items.extend(self.cfg.callback_prompts.iter().cloned());
                }
                if self.play(&items) {
                    self.out
                        .push_back(QueueAction::Event(QueueEvent::ComfortPlayed { message: i }));
                    return;
                }
            }
            self.schedule_comfort();
        }
        if self.sound != Sound::Music && self.cfg.music_on_hold {
            self.out.push_back(QueueAction::Play(Playback {
                language: self.language,
                prompts: vec![PromptRef::MusicOnHold],
                barge_in: true,
                looping: true,
            }));
            self.sound = Sound::Music;
        }
    }

    fn announce(&mut self) -> bool {
        let Some((position, minutes)) = self.latest else {
            return false;
        };
        let mut prompts = Vec::new();
        if self.cfg.announce_position {
            prompts.extend([
                PromptRef::Prompt("you_are_number".into()),
                PromptRef::Number(position),
                PromptRef::Prompt("in_line".into()),
            ]);
        }
        if let (true, Some(m)) = (self.cfg.announce_wait, minutes) {
            prompts.extend([
                PromptRef::Prompt("expected_wait".into()),
                PromptRef::Number(m),
                PromptRef::Prompt("minutes".into()),
            ]);
        }
        self.announced = self.latest;
        self.next_reannounce = (self.cfg.reannounce_secs > 0)
            .then(|| self.now + self.cfg.reannounce_secs as Millis * 1000);
        if prompts.is_empty() {
            return false;
        }
        if self.cfg.callback_key.is_some() {
            prompts.extend(self.resolve(&self.cfg.callback_prompts.clone()));
        }
        self.out
            .push_back(QueueAction::Event(QueueEvent::PositionAnnounced {
                position,
                wait_minutes: if self.cfg.announce_wait {
                    minutes
                } else {
                    None
                },
            }));
        self.start(prompts);
        true
    }

    fn resolve(&self, items: &[PromptItem]) -> Vec<PromptRef> {
        items
            .iter()
            .filter_map(|i| match i {
                PromptItem::Key(k) => Some(PromptRef::Prompt(k.clone())),
                PromptItem::Beep => Some(PromptRef::Beep),
                PromptItem::Pause => Some(PromptRef::Silence { ms: 500 }),
                // Nothing to read out while queued.
                PromptItem::Balance | PromptItem::Digits => None,
            })
            .collect()
    }

    /// Plays `items` as a prompt; false when there is nothing to say.
    fn play(&mut self, items: &[PromptItem]) -> bool {
        let prompts = self.resolve(items);
        if prompts.is_empty() {
            return false;
        }
        self.start(prompts);
        true
    }

    fn start(&mut self, prompts: Vec<PromptRef>) {
        self.out.push_back(QueueAction::Play(Playback {
            language: self.language,
            prompts,
            // The callback key must be heard at once; other keys are ignored anyway.
            barge_in: false,
            looping: false,
        }));
        self.sound = Sound::Prompt(self.now + PROMPT_TIMEOUT_MS);
    }

    fn prompt_ended(&mut self) {
        self.sound = Sound::Nothing;
        match self.ending {
            Some(Ending::Callback) => {
                self.out.push_back(QueueAction::Callback);
                self.leave(LeftReason::Callback);
            }
            Some(Ending::Voicemail) => {
                self.out.push_back(QueueAction::Voicemail {
                    queue: self.queue.clone(),
                });
                self.leave(LeftReason::Voicemail);
            }
            None => {
                // Comfort comes a full interval after any prompt, never right behind one.
                self.comfort_pending = false;
                self.schedule_comfort();
                self.kick();
            }
        }
    }

    fn end_with(&mut self, ending: Ending) {
        self.ending = Some(ending);
        let items = match ending {
            Ending::Callback => self.cfg.callback_confirm.clone(),
            Ending::Voicemail => self.cfg.voicemail_prompts.clone(),
        };
        if !self.play(&items) {
            if self.sound != Sound::Nothing {
                self.out.push_back(QueueAction::StopPlayback);
            }
            self.prompt_ended();
        }
    }

    fn leave(&mut self, reason: LeftReason) {
        self.out
            .push_back(QueueAction::Event(QueueEvent::Left { reason }));
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: QueueExperienceConfig) -> QueueExperience {
        QueueExperience::new(&cfg, "support", Language::ZhCn, 0)
    }

    fn drain(q: &mut QueueExperience) -> Vec<QueueAction> {
        std::iter::from_fn(|| q.poll_output()).collect()
    }

    fn spoken(a: &[QueueAction]) -> Vec<String> {
        a.iter()
            .filter_map(|x| match x {
                QueueAction::Play(p) => Some(p.prompts.iter().map(|p| p.to_string())),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn the_wait_is_rounded_up_to_whole_minutes_and_left_out_when_unknown() {
        let cfg = QueueExperienceConfig {
            greeting: Vec::new(),
            callback_key: None,
            ..QueueExperienceConfig::default()
        };
        for (secs, said) in [
            (Some(59), Some("number:1")),
            (Some(61), Some("number:2")),
            (Some(0), None),
            (None, None),
        ] {
            let mut q = run(cfg.clone());
            drain(&mut q);
            q.handle(
                1,
                QueueInput::Position {
                    position: 4,
                    expected_wait_secs: secs,
                },
            );
            let s = spoken(&drain(&mut q));
            assert_eq!(&s[..3], ["you_are_number", "number:4", "in_line"]);
            match said {
                Some(n) => assert_eq!(&s[3..], ["expected_wait", n, "minutes"]),
                None => assert_eq!(s.len(), 3, "{s:?}"),
            }
        }
    }

    #[test]
    fn without_music_comfort_and_announcements_still_come() {
        let mut q = run(QueueExperienceConfig {
            music_on_hold: false,
            greeting: Vec::new(),
            ..QueueExperienceConfig::default()
        });
        assert!(drain(&mut q).is_empty(), "no greeting, no music");
        assert_eq!(q.poll_timeout(), Some(45_000));
        q.handle(
            10,
            QueueInput::Position {
                position: 0,
                expected_wait_secs: None,
            },
        );
        assert!(drain(&mut q).is_empty(), "position 0 means unknown");
        q.handle_timeout(45_000);
        assert_eq!(
            spoken(&drain(&mut q)),
            ["please_hold", "press_star_callback"]
        );
        q.handle(47_000, QueueInput::PlaybackDone);
        assert!(drain(&mut q).is_empty());
        assert_eq!(q.poll_timeout(), Some(92_000));
    }

    #[test]
    fn nothing_timed_without_comfort_or_announcements() {
        let mut q = run(QueueExperienceConfig {
            greeting: Vec::new(),
            comfort_secs: 0,
            ..QueueExperienceConfig::default()
        });
        let a = drain(&mut q);
        assert!(matches!(&a[0], QueueAction::Play(p) if p.looping));
        assert_eq!(q.poll_timeout(), None);
    }

    #[test]
    fn a_prompt_that_never_ends_is_given_up() {
        let mut q = run(QueueExperienceConfig::default());
        drain(&mut q);
        assert_eq!(q.poll_timeout(), Some(PROMPT_TIMEOUT_MS));
        q.handle_timeout(PROMPT_TIMEOUT_MS);
        let a = drain(&mut q);
        assert!(
            a.iter()
                .any(|x| matches!(x, QueueAction::Play(p) if p.looping)),
            "{a:?}"
        );
    }
}
