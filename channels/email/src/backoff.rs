//! Retry timing as a pure schedule: exponential back-off, capped, with a maximum number of
//! attempts. Used for outbound sends and IMAP reconnects.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySchedule {
    /// Wait after the first failed attempt.
    pub initial: Duration,
    /// Each further wait is this many times the previous one.
    pub factor: u32,
    pub max_delay: Duration,
    /// Attempts in all (the first one included); `0` means no limit.
    pub max_attempts: u32,
}

impl Default for RetrySchedule {
    /// 30 s, 1 min, 2 min, ... capped at 1 h, 12 attempts (about 7 hours in all).
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(30),
            factor: 2,
            max_delay: Duration::from_secs(3600),
            max_attempts: 12,
        }
    }
}

impl RetrySchedule {
    /// The wait after `attempts` failed attempts (`attempts >= 1`).
    pub fn delay(&self, attempts: u32) -> Duration {
        let mut d = self.initial;
        for _ in 1..attempts.max(1) {
            d = d.saturating_mul(self.factor.max(1));
            if d >= self.max_delay {
                return self.max_delay;
            }
        }
        d.min(self.max_delay)
    }

    /// When to try again after `attempts` attempts failed, or `None` when they are used up.
    pub fn next_attempt(&self, now: DateTime<Utc>, attempts: u32) -> Option<DateTime<Utc>> {
        if self.max_attempts != 0 && attempts >= self.max_attempts {
            return None;
        }
        let delay = chrono::Duration::from_std(self.delay(attempts)).ok()?;
        now.checked_add_signed(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn exponential_capped_and_bounded() {
        let s = RetrySchedule {
            initial: Duration::from_secs(10),
            factor: 3,
            max_delay: Duration::from_secs(200),
            max_attempts: 5,
        };
        let delays: Vec<u64> = (1..=5).map(|a| s.delay(a).as_secs()).collect();
        assert_eq!(delays, [10, 30, 90, 200, 200]);
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        assert_eq!(
            s.next_attempt(now, 1),
            Some(now + chrono::Duration::seconds(10))
        );
        assert_eq!(
            s.next_attempt(now, 4),
            Some(now + chrono::Duration::seconds(200))
        );
        assert_eq!(s.next_attempt(now, 5), None);
        let unlimited = RetrySchedule {
            max_attempts: 0,
            ..s
        };
        assert!(unlimited.next_attempt(now, 1000).is_some());
        assert_eq!(unlimited.delay(u32::MAX), Duration::from_secs(200));
    }
}
