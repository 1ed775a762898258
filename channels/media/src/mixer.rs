//! Conference mixer: who hears whom by role, mixed in i32 with saturation, each participant
//! gets the mix minus itself.

use crate::codec::{Frame, FRAME_SAMPLES};
use crate::playback::AudioSource;

/// A participant's role in a conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<K> {
    /// Hears all others, heard by all.
    Normal,
    /// Supervisor monitor: hears everyone, heard by no one.
    Listen,
    /// Supervisor coaching: heard only by `to` (the agent), hears everyone.
    Whisper { to: K },
    /// Supervisor joins the call: like Normal.
    Barge,
}

struct Participant<K> {
    key: K,
    role: Role<K>,
    hold: Option<Box<dyn AudioSource>>,
}

/// N-party mixer keyed by participant id `K`.
pub struct Mixer<K> {
    participants: Vec<Participant<K>>,
}

impl<K> Default for Mixer<K> {
    fn default() -> Self {
        Mixer {
            participants: Vec::new(),
        }
    }
}

impl<K: Copy + Eq + std::fmt::Debug> Mixer<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a participant or changes its role.
    pub fn set(&mut self, key: K, role: Role<K>) {
        match self.participants.iter_mut().find(|p| p.key == key) {
            Some(p) => p.role = role,
            None => self.participants.push(Participant {
                key,
                role,
                hold: None,
            }),
        }
    }

    pub fn remove(&mut self, key: K) -> bool {
        let before = self.participants.len();
        self.participants.retain(|p| p.key != key);
        for p in &mut self.participants {
            if matches!(p.role, Role::Whisper { to } if to == key) {
                // Whispering to someone who left is listening.
                p.role = Role::Listen;
            }
        }
        before != self.participants.len()
    }

    pub fn role(&self, key: K) -> Option<Role<K>> {
        self.participants
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.role)
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.participants.iter().map(|p| p.key)
    }

    /// Puts a participant on hold with `source` (music): it hears the source and nobody
    /// hears it. `None` takes it off hold.
    pub fn set_hold(&mut self, key: K, source: Option<Box<dyn AudioSource>>) {
        if let Some(p) = self.participants.iter_mut().find(|p| p.key == key) {
            p.hold = source;
        }
    }

    pub fn on_hold(&self, key: K) -> bool {
        self.participants
            .iter()
            .any(|p| p.key == key && p.hold.is_some())
    }

    /// Whether `listener` hears `speaker`.
    pub fn hears(&self, listener: K, speaker: K) -> bool {
        if listener == speaker {
            return false;
        }
        let (Some(l), Some(s)) = (
            self.participants.iter().find(|p| p.key == listener),
            self.participants.iter().find(|p| p.key == speaker),
        ) else {
            return false;
        };
        if l.hold.is_some() || s.hold.is_some() {
            return false;
        }
        match s.role {
            Role::Normal | Role::Barge => true,
            Role::Listen => false,
            Role::Whisper { to } => to == listener,
        }
    }

    /// Mixes one tick. `input(key)` is each participant's 20 ms of audio (None = silent);
    /// `output(key, frame)` receives what each participant hears.
    pub fn mix(
        &mut self,
        mut input: impl FnMut(K) -> Option<Frame>,
        mut output: impl FnMut(K, &Frame),
    ) {
        let n = self.participants.len();
        let inputs: Vec<Option<Frame>> = self
            .participants
            .iter()
            .map(|p| if p.hold.is_some() { None } else { input(p.key) })
            .collect();
        // Sum of everyone heard by all.
        let mut public = [0i32; FRAME_SAMPLES];
        for (p, f) in self.participants.iter().zip(&inputs) {
            if let (Role::Normal | Role::Barge, Some(f)) = (p.role, f) {
                for (acc, &s) in public.iter_mut().zip(f.iter()) {
                    *acc += s as i32;
                }
            }
        }
        for i in 0..n {
            let key = self.participants[i].key;
            if let Some(src) = self.participants[i].hold.as_mut() {
                let f = src.next_frame().unwrap_or([0; FRAME_SAMPLES]);
                output(key, &f);
                continue;
            }
            let mut acc = public;
            if let (Role::Normal | Role::Barge, Some(own)) = (self.participants[i].role, &inputs[i])
            {
                for (a, &s) in acc.iter_mut().zip(own.iter()) {
                    *a -= s as i32;
                }
            }
            for (j, p) in self.participants.iter().enumerate() {
                if j == i {
                    continue;
                }
                if let (Role::Whisper { to }, Some(f)) = (p.role, &inputs[j]) {
                    if to == key {
                        for (a, &s) in acc.iter_mut().zip(f.iter()) {
                            *a += s as i32;
                        }
                    }
                }
            }
            let mut out = [0i16; FRAME_SAMPLES];
            for (o, a) in out.iter_mut().zip(acc.iter()) {
                *o = (*a).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            }
            output(key, &out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(m: &mut Mixer<u8>, inputs: &[(u8, i16)]) -> HashMap<u8, i16> {
        let map: HashMap<u8, i16> = inputs.iter().copied().collect();
        let mut out = HashMap::new();
        m.mix(
            |k| map.get(&k).map(|&v| [v; FRAME_SAMPLES]),
            |k, f| {
                out.insert(k, f[0]);
            },
        );
        out
    }

    // Levels are powers of two so each sum tells who was heard.
    const C: u8 = 1; // customer
    const A: u8 = 2; // agent
    const S: u8 = 3; // supervisor

    #[test]
    fn normal_three_way_hears_all_but_self() {
        let mut m = Mixer::new();
        m.set(C, Role::Normal);
        m.set(A, Role::Normal);
        m.set(S, Role::Normal);
        let out = run(&mut m, &[(C, 1), (A, 2), (S, 4)]);
        assert_eq!(out[&C], 6);
        assert_eq!(out[&A], 5);
        assert_eq!(out[&S], 3);
    }

    #[test]
    fn listen_whisper_barge() {
        let mut m = Mixer::new();
        m.set(C, Role::Normal);
        m.set(A, Role::Normal);
        m.set(S, Role::Listen);
        let out = run(&mut m, &[(C, 1), (A, 2), (S, 4)]);
        assert_eq!((out[&C], out[&A], out[&S]), (2, 1, 3));

        m.set(S, Role::Whisper { to: A });
        let out = run(&mut m, &[(C, 1), (A, 2), (S, 4)]);
        assert_eq!((out[&C], out[&A], out[&S]), (2, 5, 3));
        assert!(m.hears(A, S) && !m.hears(C, S) && m.hears(S, C));

        m.set(S, Role::Barge);
        let out = run(&mut m, &[(C, 1), (A, 2), (S, 4)]);
        assert_eq!((out[&C], out[&A], out[&S]), (6, 5, 3));

        m.set(S, Role::Whisper { to: A });
        m.remove(A);
        assert_eq!(m.role(S), Some(Role::Listen));
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let mut m = Mixer::new();
        for k in 1..=4 {
            m.set(k, Role::Normal);
        }
        let out = run(&mut m, &[(1, 30000), (2, 30000), (3, 30000), (4, -5)]);
        assert_eq!(out[&4], i16::MAX);
        let out = run(&mut m, &[(1, -30000), (2, -30000), (3, -30000)]);
        assert_eq!(out[&4], i16::MIN);
    }

    struct Const(i16);
    impl AudioSource for Const {
        fn next_frame(&mut self) -> Option<Frame> {
            Some([self.0; FRAME_SAMPLES])
        }
    }

    #[test]
    fn held_participant_hears_music_and_is_not_heard() {
        let mut m = Mixer::new();
        m.set(C, Role::Normal);
        m.set(A, Role::Normal);
        m.set(S, Role::Normal);
        m.set_hold(C, Some(Box::new(Const(99))));
        let out = run(&mut m, &[(C, 1), (A, 2), (S, 4)]);
        assert_eq!((out[&C], out[&A], out[&S]), (99, 4, 2));
        m.set_hold(C, None);
        let out = run(&mut m, &[(C, 1), (A, 2), (S, 4)]);
        assert_eq!(out[&C], 6);
    }
}
