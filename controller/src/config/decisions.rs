//! `[decisions]`: TTLs, the decision limit, repeat offenders.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[decisions]`: lifetimes and limits of decisions.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionsConfig {
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    pub max_decisions: usize,
    /// A source blocked again by velocity or enrichment within this window is a repeat
    /// offender: its TTL is multiplied by `recidive_factor` per earlier block.
    #[serde(with = "humantime_serde")]
    pub recidive_window: Duration,
    pub recidive_factor: u32,
    /// Upper bound of a repeat offender's TTL.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// How long expired and lifted decisions are kept for `ipwarden history` (and recidive).
    #[serde(with = "humantime_serde")]
    pub history_retention: Duration,
    /// The widest IPv4 prefix a remote source (a feed, CrowdSec, a fleet peer, an import) may
    /// decide on; wider ones are refused and counted.
    pub remote_widest_v4: u8,
    /// The same for IPv6.
    pub remote_widest_v6: u8,
}

impl Default for DecisionsConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(24 * 3600),
            max_decisions: 1_000_000,
            recidive_window: Duration::from_secs(24 * 3600),
            recidive_factor: 2,
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            history_retention: Duration::from_secs(7 * 24 * 3600),
            remote_widest_v4: 8,
            remote_widest_v6: 20,
        }
    }
}

impl DecisionsConfig {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.default_ttl.is_zero() {
            return Err(invalid("decisions.default_ttl", "must be greater than 0"));
        }
        if self.max_decisions == 0 {
            return Err(invalid("decisions.max_decisions", "must be greater than 0"));
        }
        if self.recidive_factor == 0 {
            return Err(invalid(
                "decisions.recidive_factor",
                "must be at least 1 (1 turns longer TTLs for repeat offenders off)",
            ));
        }
        if self.max_ttl.is_zero() {
            return Err(invalid("decisions.max_ttl", "must be greater than 0"));
        }
        if !(1..=32).contains(&self.remote_widest_v4) || !(1..=128).contains(&self.remote_widest_v6)
        {
            return Err(invalid(
                "decisions.remote_widest_v4",
                "must be 1 to 32 (and remote_widest_v6 1 to 128): /0 is never accepted",
            ));
        }
        Ok(())
    }
}
