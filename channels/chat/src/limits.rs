//! Rate limits for what customers send, with time as an input.

use std::collections::HashMap;
use std::hash::Hash;

use crate::conversation::Millis;

/// A token bucket: `burst` tokens, refilled at `per_minute` per minute.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    at: Millis,
}

#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Bucket {
    pub fn new(rate: Rate, now: Millis) -> Bucket {
        Bucket {
            tokens: rate.burst as f64,
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: Rate, now: Millis) -> bool {
        let elapsed = (now - self.at).max(0) as f64;
        self.tokens =
            (self.tokens + elapsed * rate.per_minute as f64 / 60_000.0).min(rate.burst as f64);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn full_at(&self, rate: Rate) -> Millis {
        if rate.per_minute == 0 {
            return Millis::MAX;
        }
        let missing = (rate.burst as f64 - self.tokens).max(0.0);
        self.at + (missing * 60_000.0 / rate.per_minute as f64) as Millis
    }
}

/// Buckets per key (a session, an address); full buckets are forgotten so the map stays small.
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    buckets: HashMap<K, Bucket>,
    last_sweep: Millis,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            buckets: HashMap::new(),
            last_sweep: 0,
        }
    }

    pub fn allow(&mut self, key: &K, now: Millis) -> bool {
        if now - self.last_sweep > 60_000 {
            self.last_sweep = now;
            let rate = self.rate;
            self.buckets.retain(|_, b| b.full_at(rate) > now);
        }
        let rate = self.rate;
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::new(rate, now))
            .take(rate, now)
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let rate = Rate {
            per_minute: 60,
            burst: 3,
        };
        let mut b = Bucket::new(rate, 0);
        assert!(b.take(rate, 0));
        assert!(b.take(rate, 0));
        assert!(b.take(rate, 0));
        assert!(!b.take(rate, 0));
        assert!(!b.take(rate, 500));
        assert!(b.take(rate, 1_000));
        assert!(!b.take(rate, 1_100));
    }

    #[test]
    fn limiter_keeps_keys_apart_and_forgets_idle_ones() {
        let mut l = Limiter::new(Rate {
            per_minute: 6,
            burst: 1,
        });
        assert!(l.allow(&"a", 0));
        assert!(!l.allow(&"a", 1));
        assert!(l.allow(&"b", 1));
        assert_eq!(l.len(), 2);
        assert!(l.allow(&"c", 120_000));
        assert_eq!(l.len(), 1, "a and b refilled long ago");
    }
}
