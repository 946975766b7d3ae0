//! What a host writes in the decisions bucket, and how a peer reads it: bounded in size, checked
//! field by field, and turned into a local decision of origin `fleet` held by the maker's host
//! and original origin.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::decision::{Action, ChallengeRate, Decision, Factor, Holder, Origin};

/// Wire format version; a peer ignores (and counts) values of other versions.
pub const VERSION: u32 = 1;

/// Largest value accepted from the bucket.
pub const MAX_VALUE: usize = 16 << 10;

/// Longest reason kept from a peer.
const MAX_REASON: usize = 512;

/// Score factors kept from a peer, and the longest name of one.
const MAX_FACTORS: usize = 16;
const MAX_FACTOR_NAME: usize = 128;

/// One shared decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    pub v: u32,
    /// The host that made it.
    pub host: String,
    pub origin: Origin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub prefix: IpNet,
    pub action: Action,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub factors: Vec<Factor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<ChallengeRate>,
    pub created_unix_ms: u64,
    pub expires_unix_ms: Option<u64>,
}

/// Why a value from the bucket was not applied.
#[derive(Debug, Error)]
pub enum WireError {
    #[error("value of {0} bytes, over the {MAX_VALUE}-byte limit")]
    TooLarge(usize),
    #[error("unreadable value: {0}")]
    Json(#[from] serde_json::Error),
    #[error("wire version {0}, this build reads {VERSION}")]
    Version(u32),
    #[error("a {0} decision is never shared")]
    Origin(Origin),
    #[error("a challenge without a rate of at least 1 pps")]
    Rate,
}

impl Shared {
    /// What `host` shares of its decision `d`.
    pub fn of(host: &str, d: &Decision) -> Self {
        Self {
            v: VERSION,
            host: host.to_owned(),
            origin: d.origin,
            source: d.source.as_deref().map(str::to_owned),
            prefix: d.prefix,
            action: d.action,
            reason: d.reason.to_string(),
            score: d.score,
            factors: d.factors.to_vec(),
            rate: d.rate,
            created_unix_ms: d.created_unix_ms,
            expires_unix_ms: d.expires_unix_ms,
        }
    }

    /// Reads a value from the bucket.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_VALUE {
            return Err(WireError::TooLarge(bytes.len()));
        }
        let s: Self = serde_json::from_slice(bytes)?;
        if s.v != VERSION {
            return Err(WireError::Version(s.v));
        }
        if matches!(s.origin, Origin::Fleet | Origin::Crowdsec) {
            return Err(WireError::Origin(s.origin));
        }
        if s.action == Action::Challenge && s.rate.is_none_or(|r| r.pps == 0 || r.burst == 0) {
            return Err(WireError::Rate);
        }
        Ok(s)
    }

    /// The holder a peer's decision has here: `fleet`, named by the maker's host and original
    /// origin (so that a host's velocity and manual decisions on one prefix stay apart).
    pub fn holder(host: &str, origin: Origin) -> Holder {
        Holder::named(Origin::Fleet, format!("{host}/{origin}"))
    }

    /// The local decision: origin `fleet`, the maker's reason, score and expiry kept within
    /// this host's bounds: an expiry at most `max_ttl` from `now_ms` (a peer's permanent
    /// decision is not permanent here), at most [`MAX_FACTORS`] factors, names and reason cut.
    pub fn into_decision(self, max_ttl: std::time::Duration, now_ms: u64) -> Decision {
        let mut reason = format!("fleet: {} {}: {}", self.host, self.origin, self.reason);
        truncate(&mut reason, MAX_REASON);
        let latest = now_ms.saturating_add(max_ttl.as_millis() as u64);
        let expires = self.expires_unix_ms.map_or(latest, |e| e.min(latest));
        let factors = self
            .factors
            .into_iter()
            .take(MAX_FACTORS)
            .map(|mut f| {
                truncate(&mut f.name, MAX_FACTOR_NAME);
                f
            })
            .collect();
        let mut d = Decision::new(
            self.prefix,
            self.action,
            Self::holder(&super::keys::token(&self.host), self.origin),
            reason,
            self.created_unix_ms,
            None,
        );
        d.expires_unix_ms = Some(expires);
        d.score = self.score;
        d.factors = factors;
        d.rate = self.rate.or(d.rate);
        d
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn decision(origin: Origin) -> Decision {
        Decision::block(
            "203.0.113.7/32".parse().unwrap(),
            Holder::of(origin),
            "heavy hitter: 4000 pps",
            1_000,
            Some(Duration::from_secs(600)),
        )
    }

    #[test]
    fn a_shared_decision_arrives_as_the_makers_fleet_decision() {
        let bytes = serde_json::to_vec(&Shared::of("edge-a", &decision(Origin::Velocity))).unwrap();
        let d = Shared::parse(&bytes).unwrap().into_decision(
            Duration::from_secs(7 * 86400),
            crate::decision::now_unix_ms(),
        );
        assert_eq!(d.origin, Origin::Fleet);
        assert_eq!(d.source.as_deref(), Some("edge-a/velocity"));
        assert_eq!(
            (d.created_unix_ms, d.expires_unix_ms),
            (1_000, Some(601_000))
        );
        assert_eq!(&*d.reason, "fleet: edge-a velocity: heavy hitter: 4000 pps");
    }

    #[test]
    fn bad_values_are_errors_never_panics() {
        let ok = Shared::of("edge-a", &decision(Origin::Manual));
        let mut wrong_version = ok.clone();
        wrong_version.v = 2;
        let mut relayed = ok.clone();
        relayed.origin = Origin::Fleet;
        let mut no_rate = ok.clone();
        (no_rate.action, no_rate.rate) = (Action::Challenge, None);
        for (value, what) in [
            (serde_json::to_vec(&wrong_version).unwrap(), "version 2"),
            (serde_json::to_vec(&relayed).unwrap(), "never shared"),
            (serde_json::to_vec(&no_rate).unwrap(), "rate"),
            (b"{".to_vec(), "unreadable"),
            (b"null".to_vec(), "unreadable"),
            (vec![b' '; MAX_VALUE + 1], "limit"),
        ] {
            let err = Shared::parse(&value).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
        let mut long = ok;
        long.reason = "é".repeat(2000);
        let d = Shared::parse(&serde_json::to_vec(&long).unwrap())
            .unwrap()
            .into_decision(Duration::from_secs(3600), 1_000);
        assert!(d.reason.len() <= MAX_REASON);
    }

    #[test]
    fn a_peers_value_is_kept_within_this_hosts_bounds() {
        let now = 10_000_000;
        let mut s = Shared::of("edge-a", &decision(Origin::Manual));
        // A permanent decision is not permanent here, a far one is cut to max_ttl.
        s.expires_unix_ms = None;
        let d = s.clone().into_decision(Duration::from_secs(3600), now);
        assert_eq!(d.expires_unix_ms, Some(now + 3_600_000));
        s.expires_unix_ms = Some(u64::MAX);
        let d = s.clone().into_decision(Duration::from_secs(3600), now);
        assert_eq!(d.expires_unix_ms, Some(now + 3_600_000));
        s.factors = (0..100)
            .map(|i| Factor {
                name: format!("{i}").repeat(500),
                weight: 1,
            })
            .collect();
        let d = s.into_decision(Duration::from_secs(3600), now);
        assert_eq!(d.factors.len(), MAX_FACTORS);
        assert!(d.factors.iter().all(|f| f.name.len() <= MAX_FACTOR_NAME));
    }
}
