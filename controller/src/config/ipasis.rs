//! `[ipasis]`: the IP intelligence API.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{ConfigError, url::Url};

/// `[ipasis]`: the IP-intelligence API.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IpasisConfig {
    pub enabled: bool,
    pub base_url: Url,
    pub path: String,
    pub auth_header: String,
    pub key_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    pub max_body: usize,
    pub concurrency: usize,
    pub requests_per_second: u32,
    pub daily_quota: u64,
    pub queue_size: usize,
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    pub on_error: OnError,
    #[serde(with = "humantime_serde")]
    pub closed_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_failed_after: Duration,
    #[serde(with = "humantime_serde")]
    pub unauthorized_cooldown: Duration,
    #[serde(with = "humantime_serde")]
    pub quota_cooldown: Duration,
}

impl Default for IpasisConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: Url::parse("https://api.ipasis.com").expect("the default URL parses"),
            path: "/v1/lookup?ip={ip}".into(),
            auth_header: "X-API-Key".into(),
            key_file: None,
            timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(250),
            max_body: 64 * 1024,
            concurrency: 4,
            requests_per_second: 5,
            daily_quota: 1000,
            queue_size: 1024,
            cache_ttl: Duration::from_secs(24 * 3600),
            on_error: OnError::Open,
            closed_ttl: Duration::from_secs(600),
            retry_failed_after: Duration::from_secs(60),
            unauthorized_cooldown: Duration::from_secs(600),
            quota_cooldown: Duration::from_secs(3600),
        }
    }
}

/// What happens to a heavy hitter whose enrichment failed.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// No enrichment decision; only the velocity rules apply.
    #[default]
    Open,
    /// Block it for `closed_ttl` with reason `enrichment-failed`.
    Closed,
}

impl IpasisConfig {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if !self.path.contains("{ip}") {
            return Err(invalid("ipasis.path", "must contain {ip}"));
        }
        if !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(invalid(
                "ipasis.base_url",
                "must start with http:// or https://",
            ));
        }
        if self.base_url.has_credentials() {
            return Err(invalid(
                "ipasis.base_url",
                "must carry no credentials: the key goes in ipasis.key_file",
            ));
        }
        if reqwest::header::HeaderName::from_bytes(self.auth_header.as_bytes()).is_err() {
            return Err(invalid(
                "ipasis.auth_header",
                "is not a valid HTTP header name",
            ));
        }
        for (key, v) in [
            ("ipasis.concurrency", self.concurrency as u64),
            (
                "ipasis.requests_per_second",
                self.requests_per_second as u64,
            ),
            ("ipasis.daily_quota", self.daily_quota),
            ("ipasis.queue_size", self.queue_size as u64),
            ("ipasis.max_body", self.max_body as u64),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.timeout.is_zero() {
            return Err(invalid("ipasis.timeout", "must be greater than 0"));
        }
        Ok(())
    }
}
