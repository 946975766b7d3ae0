//! A decision: what the daemon has decided about a prefix, why, and until when. Decisions are
//! the daemon's source of truth; the block maps are their projection into the kernel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use ipwarden_common::{BlockEntry, Reason};
use serde::{Deserialize, Serialize};

/// What the data plane does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Drop every packet.
    Block,
    /// Step-up: rate-limit each covered source (see `rate`); an L7 proxy serves it a CAPTCHA
    /// or MFA step.
    Challenge,
}

impl Action {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Challenge => "challenge",
        }
    }
}

/// The rate a challenged source may keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRate {
    pub pps: u32,
    pub burst: u32,
}

/// Who made the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// An operator, through the CLI.
    Manual,
    /// The daemon's velocity rules.
    Velocity,
    /// IP intelligence.
    Ipasis,
    /// An external feed.
    Feed,
}

impl Origin {
    /// The kernel's reason code.
    pub fn reason_code(self) -> u32 {
        match self {
            Self::Manual => Reason::MANUAL,
            Self::Velocity => Reason::VELOCITY,
            Self::Ipasis => Reason::IPASIS,
            Self::Feed => Reason::FEED,
        }
    }

    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Velocity => "velocity",
            Self::Ipasis => "ipasis",
            Self::Feed => "feed",
        }
    }
}

/// One decision, as stored and as shown by `list --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub prefix: IpNet,
    pub action: Action,
    pub origin: Origin,
    /// Human-readable reason, e.g. "heavy hitter: 4200 pps".
    pub reason: String,
    /// Risk score when the scorer made the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i32>,
    /// The score's contributions, for `explain`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub factors: Vec<crate::score::Factor>,
    /// For `challenge`: the rate each covered source keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<ChallengeRate>,
    /// Wall-clock creation time, Unix milliseconds.
    pub created_unix_ms: u64,
    /// Wall-clock expiry, Unix milliseconds; `None` for a permanent decision.
    pub expires_unix_ms: Option<u64>,
}

/// Wall-clock now in Unix milliseconds.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Decision {
    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_unix_ms.is_some_and(|e| e <= now_ms)
    }

    /// Time left at `now_ms`; `None` when permanent.
    pub fn remaining(&self, now_ms: u64) -> Option<Duration> {
        self.expires_unix_ms
            .map(|e| Duration::from_millis(e.saturating_sub(now_ms)))
    }

    /// The kernel entry: the wall-clock expiry re-expressed on the kernel's monotonic clock.
    /// Done at every (re)insertion, so decisions restored after a reboot get correct deadlines.
    pub fn kernel_entry(&self, now_ms: u64) -> BlockEntry {
        let deadline = crate::clock::deadline_ns(self.remaining(now_ms));
        match self.action {
            Action::Block => BlockEntry::block(self.origin.reason_code(), deadline),
            Action::Challenge => {
                let rate = self.rate.unwrap_or(ChallengeRate { pps: 50, burst: 20 });
                BlockEntry::challenge(self.origin.reason_code(), deadline, rate.pps, rate.burst)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(expires: Option<u64>) -> Decision {
        Decision {
            prefix: "203.0.113.7/32".parse().unwrap(),
            action: Action::Block,
            origin: Origin::Manual,
            reason: "test".into(),
            score: None,
            factors: Vec::new(),
            rate: None,
            created_unix_ms: 1000,
            expires_unix_ms: expires,
        }
    }

    #[test]
    fn expiry_and_remaining_time() {
        assert!(!d(None).expired(u64::MAX));
        assert!(d(Some(2000)).expired(2000));
        assert!(!d(Some(2000)).expired(1999));
        assert_eq!(d(Some(5000)).remaining(2000), Some(Duration::from_secs(3)));
        assert_eq!(d(Some(5000)).remaining(9000), Some(Duration::ZERO));
    }

    #[test]
    fn kernel_entries_carry_reason_and_a_monotonic_deadline() {
        let now = now_unix_ms();
        let e = d(Some(now + 60_000)).kernel_entry(now);
        assert_eq!(e.reason, Reason::MANUAL);
        let left = crate::clock::remaining(e.expires_at_ns).unwrap();
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
        assert_eq!(d(None).kernel_entry(now).expires_at_ns, BlockEntry::NEVER);
    }

    #[test]
    fn json_round_trip() {
        let x = d(Some(5));
        let s = serde_json::to_string(&x).unwrap();
        assert!(s.contains("\"origin\":\"manual\""), "{s}");
        assert_eq!(serde_json::from_str::<Decision>(&s).unwrap(), x);
    }
}
