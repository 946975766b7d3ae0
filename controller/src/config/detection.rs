//! `[detection]` and `[detection.aggregate]`: polls, windows and thresholds.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[detection]`: how heavy hitters are found.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub pps_threshold: u64,
    pub syn_pps_threshold: u64,
    pub on_heavy_hitter: HeavyHitterAction,
    pub hard_pps_limit: u64,
    #[serde(with = "humantime_serde")]
    pub hard_for: Duration,
    #[serde(with = "humantime_serde")]
    pub hard_ttl: Duration,
    /// How long a source the program hints is loud (see `ipwarden_common::loud`) is measured
    /// before it is judged against `pps_threshold` and `syn_pps_threshold`, without waiting for
    /// the next poll. 0 turns hints off (polls only).
    #[serde(with = "humantime_serde")]
    pub fast_window: Duration,
    /// A source gets an exact per-source counter once its estimated rate (the data plane's
    /// sketch, see `ipwarden_common::admit`) reaches this fraction of the lowest per-source
    /// threshold; below it only the sketch and the aggregate cells count it, so a spray of
    /// one-packet sources costs no table insert and no poll time. 0 tracks every source.
    pub admission: f64,
    pub aggregate: AggregateConfig,
}

/// `[detection.aggregate]`: floods spread over many sources of one network.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateConfig {
    /// IPv4 prefix lengths judged as aggregates (of those the data plane counts: 24, 16).
    pub v4_levels: Vec<u8>,
    /// IPv6 prefix lengths judged as aggregates (of 48, 32).
    pub v6_levels: Vec<u8>,
    /// An aggregate above this packet rate (or `syn_pps` SYNs)...
    pub pps: u64,
    pub syn_pps: u64,
    /// ...with at least this many distinct active members is a heavy hitter.
    pub min_sources: usize,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        Self {
            v4_levels: vec![24, 16],
            v6_levels: vec![48, 32],
            pps: 5000,
            syn_pps: 1000,
            min_sources: 16,
        }
    }
}

impl AggregateConfig {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.v4_levels.iter().any(|l| ![24, 16].contains(l)) {
            return Err(invalid(
                "detection.aggregate.v4_levels",
                "may list 24 and 16 only (the levels the data plane counts)",
            ));
        }
        if self.v6_levels.iter().any(|l| ![48, 32].contains(l)) {
            return Err(invalid(
                "detection.aggregate.v6_levels",
                "may list 48 and 32 only (the levels the data plane counts)",
            ));
        }
        if self.pps == 0 || self.syn_pps == 0 {
            return Err(invalid(
                "detection.aggregate.pps",
                "and syn_pps must be greater than 0 (empty levels turn aggregates off)",
            ));
        }
        if self.min_sources < 2 {
            return Err(invalid(
                "detection.aggregate.min_sources",
                "must be at least 2 (one source is judged by itself)",
            ));
        }
        Ok(())
    }

    /// The configured levels, narrowest first within each family.
    pub fn levels(&self) -> Vec<ipwarden_common::aggregate::Level> {
        let mut out: Vec<_> = self
            .v4_levels
            .iter()
            .filter_map(|l| ipwarden_common::aggregate::Level::of(false, *l))
            .chain(
                self.v6_levels
                    .iter()
                    .filter_map(|l| ipwarden_common::aggregate::Level::of(true, *l)),
            )
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            window: Duration::from_secs(10),
            pps_threshold: 1000,
            syn_pps_threshold: 200,
            on_heavy_hitter: HeavyHitterAction::Block,
            hard_pps_limit: 20_000,
            hard_for: Duration::from_secs(5),
            hard_ttl: Duration::from_secs(600),
            fast_window: Duration::from_millis(50),
            admission: 0.5,
            aggregate: AggregateConfig::default(),
        }
    }
}

/// What the velocity-only policy does with a new heavy hitter.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeavyHitterAction {
    /// Block it for `hard_ttl` (velocity evidence alone may be spoofed: keep it short).
    #[default]
    Block,
    /// Only record and log it (`ipwarden top` shows it).
    Observe,
}

impl DetectionConfig {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.poll_interval < Duration::from_millis(50) {
            return Err(invalid("detection.poll_interval", "must be at least 50ms"));
        }
        if !(0.0..=1.0).contains(&self.admission) {
            return Err(invalid(
                "detection.admission",
                "must be between 0 (track every source) and 1 (a fraction of the lowest threshold)",
            ));
        }
        if self.window < self.poll_interval {
            return Err(invalid(
                "detection.window",
                "must be at least detection.poll_interval",
            ));
        }
        for (key, v) in [
            ("detection.pps_threshold", self.pps_threshold),
            ("detection.syn_pps_threshold", self.syn_pps_threshold),
            ("detection.hard_pps_limit", self.hard_pps_limit),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.hard_ttl.is_zero() {
            return Err(invalid("detection.hard_ttl", "must be greater than 0"));
        }
        if !self.fast_window.is_zero()
            && (self.fast_window < Duration::from_millis(10)
                || self.fast_window > self.poll_interval)
        {
            return Err(invalid(
                "detection.fast_window",
                "must be 0 (off), or between 10ms and detection.poll_interval",
            ));
        }
        self.aggregate.validate(invalid)
    }
}
