//! `[scoring]`: the weighted risk model and its thresholds.

use serde::Deserialize;

use super::ConfigError;

/// `[scoring]`: the weighted model turning an answer into block / challenge / allow.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    pub hosting_or_crawler: i32,
    pub proxy_or_tor: i32,
    pub vpn: i32,
    pub abusive_vpn: i32,
    pub high_risk_operator: i32,
    pub velocity: i32,
    /// Rate above which the velocity weight applies; 0 means 5 x detection.pps_threshold.
    pub velocity_pps: u64,
    pub block_at: i32,
    pub challenge_at: i32,
    pub tor_always_block: bool,
    pub high_risk_operators: Vec<String>,
    pub high_risk_asns: Vec<u32>,
    pub abusive_vpn_operators: Vec<String>,
    pub challenge_pps: u32,
    pub challenge_burst: u32,
    /// IPASIS calls the source a residential or mobile line, but its SYNs look like a server's
    /// stack or come from implausibly far (see `fingerprint`).
    pub residential_proxy_suspect: i32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            hosting_or_crawler: 50,
            proxy_or_tor: 30,
            vpn: 0,
            abusive_vpn: 30,
            high_risk_operator: 20,
            velocity: 20,
            velocity_pps: 0,
            block_at: 80,
            challenge_at: 50,
            tor_always_block: true,
            high_risk_operators: Vec::new(),
            high_risk_asns: Vec::new(),
            abusive_vpn_operators: Vec::new(),
            challenge_pps: crate::decision::ChallengeRate::DEFAULT.pps,
            challenge_burst: crate::decision::ChallengeRate::DEFAULT.burst,
            residential_proxy_suspect: 30,
        }
    }
}

impl ScoringConfig {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.challenge_at > self.block_at {
            return Err(invalid(
                "scoring.challenge_at",
                "must not exceed scoring.block_at",
            ));
        }
        if self.challenge_pps == 0 || self.challenge_burst == 0 {
            return Err(invalid(
                "scoring.challenge_pps",
                "and scoring.challenge_burst must be greater than 0",
            ));
        }
        Ok(())
    }
}
