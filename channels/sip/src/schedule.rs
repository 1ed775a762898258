//! When to send the next outbound REGISTER to a carrier, sans-IO: refresh before the granted
//! expiry, back off exponentially after failures.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RegistrationSchedule {
    next: Instant,
    failures: u32,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl RegistrationSchedule {
    /// First attempt at `now`.
    pub fn new(now: Instant) -> Self {
        RegistrationSchedule {
            next: now,
            failures: 0,
            min_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
        }
    }

    /// When the next REGISTER is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// The registrar granted `expires` seconds: refresh at 80% of it, but at least 5 s
    /// before it runs out (and never sooner than 1 s).
    pub fn on_success(&mut self, now: Instant, expires: u32) {
        self.failures = 0;
        let expires = Duration::from_secs(u64::from(expires));
        let refresh = (expires * 4 / 5)
            .min(expires.saturating_sub(Duration::from_secs(5)))
            .max(Duration::from_secs(1));
        self.next = now + refresh;
    }

    /// The attempt failed (timeout, 4xx/5xx, 403): retry after 2, 4, 8 ... 300 s.
    pub fn on_failure(&mut self, now: Instant) {
        let backoff = self
            .min_backoff
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.max_backoff);
        self.failures = self.failures.saturating_add(1);
        self.next = now + backoff;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_before_expiry_and_back_off() {
        let t0 = Instant::now();
        let mut s = RegistrationSchedule::new(t0);
        assert_eq!(s.poll_timeout(), t0);
        s.on_success(t0, 3600);
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(2880));
        s.on_success(t0, 20);
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(15));
        s.on_success(t0, 2);
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(1));
        let mut waits = Vec::new();
        for _ in 0..10 {
            s.on_failure(t0);
            waits.push((s.poll_timeout() - t0).as_secs());
        }
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        s.on_success(t0, 600);
        assert_eq!(s.failures(), 0);
        s.on_failure(t0);
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(2));
    }
}
