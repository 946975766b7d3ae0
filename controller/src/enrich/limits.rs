//! Keeping enrichment inside the vendor's limits: requests per second (token bucket), requests
//! per UTC day (quota), and pauses after 429 (Retry-After), 401/403 (bad key) and 402 (quota).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why no request may be made now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The next request slot opens at this instant.
    Until(Instant),
    /// The daily quota is used up; it resets at the next UTC midnight.
    Quota,
}

/// Rate, quota and pause state.
#[derive(Debug)]
pub struct Limits {
    rps: u32,
    tokens: f64,
    refilled: Instant,
    quota: u64,
    used: u64,
    day: u64,
    paused_until: Option<Instant>,
    /// Why requests are paused, for `status` (None when requests flow).
    pub pause_reason: Option<String>,
}

fn utc_day() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

impl Limits {
    pub fn new(rps: u32, quota: u64) -> Self {
        Self {
            rps,
            tokens: rps as f64,
            refilled: Instant::now(),
            quota,
            used: 0,
            day: utc_day(),
            paused_until: None,
            pause_reason: None,
        }
    }

    /// Takes one request slot, or says how long to hold.
    pub fn acquire(&mut self, now: Instant) -> Result<(), Hold> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(Hold::Until(until));
            }
            self.paused_until = None;
            self.pause_reason = None;
        }
        let day = utc_day();
        if day != self.day {
            self.day = day;
            self.used = 0;
        }
        if self.used >= self.quota {
            return Err(Hold::Quota);
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rps as f64).min(self.rps as f64);
        self.refilled = now;
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / self.rps as f64;
            return Err(Hold::Until(now + Duration::from_secs_f64(wait)));
        }
        self.tokens -= 1.0;
        self.used += 1;
        Ok(())
    }

    /// Stops all requests for `pause` (429 with Retry-After, bad key, quota exhausted).
    pub fn pause(&mut self, now: Instant, pause: Duration, reason: String) {
        let until = now + pause;
        if self.paused_until.is_none_or(|u| u < until) {
            self.paused_until = Some(until);
            self.pause_reason = Some(reason);
        }
    }

    /// Seconds until requests resume, if paused.
    pub fn paused_for(&self, now: Instant) -> Option<Duration> {
        self.paused_until
            .filter(|u| *u > now)
            .map(|u| u.saturating_duration_since(now))
    }

    /// Requests made today (UTC) and the quota.
    pub fn usage(&self) -> (u64, u64) {
        (self.used, self.quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_quota() {
        let t0 = Instant::now();
        let mut l = Limits::new(2, 3);
        assert!(l.acquire(t0).is_ok());
        assert!(l.acquire(t0).is_ok());
        assert!(matches!(l.acquire(t0), Err(Hold::Until(_))));
        assert!(l.acquire(t0 + Duration::from_millis(600)).is_ok());
        assert_eq!(l.acquire(t0 + Duration::from_secs(5)), Err(Hold::Quota));
        assert_eq!(l.usage(), (3, 3));
    }

    #[test]
    fn pauses_hold_everything_until_they_end() {
        let t0 = Instant::now();
        let mut l = Limits::new(100, 100);
        l.pause(t0, Duration::from_secs(30), "429".into());
        assert!(matches!(
            l.acquire(t0 + Duration::from_secs(29)),
            Err(Hold::Until(_))
        ));
        assert_eq!(l.pause_reason.as_deref(), Some("429"));
        assert!(l.acquire(t0 + Duration::from_secs(31)).is_ok());
        assert_eq!(l.pause_reason, None);
    }
}
