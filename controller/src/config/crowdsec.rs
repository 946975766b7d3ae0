//! `[crowdsec]`: ipwarden as a CrowdSec bouncer (and watcher).

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{ConfigError, url::Url};

/// `[crowdsec]`: enforce a CrowdSec local API's decisions (ipwarden as its bouncer). Absent:
/// no connection is made.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrowdsecConfig {
    /// The LAPI, e.g. `http://127.0.0.1:8080`.
    pub lapi_url: Url,
    /// The bouncer key from `cscli bouncers add NAME` (mode 0600).
    pub api_key_file: PathBuf,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A full resync (`startup=true`) this often heals deltas the LAPI lost.
    #[serde(with = "humantime_serde")]
    pub resync_interval: Duration,
    /// Only decisions of these LAPI origins (empty: all), e.g. `crowdsec`, `cscli`, `CAPI`, `lists`.
    pub origins: Vec<String>,
    /// Decision scopes applied (`Ip`, `Range`); others are ignored and counted.
    pub scopes: Vec<String>,
    /// Decision types and what they become (`block` or `challenge`); others are ignored and
    /// counted.
    pub types: std::collections::BTreeMap<String, crate::decision::Action>,
    /// Enforce an IPv6 /128 as it is instead of per /64 (it would fill the LPM trie).
    pub v6_exact: bool,
    /// Largest stream answer read.
    pub max_body: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Report ipwarden's own velocity and IPASIS decisions to the LAPI as alerts (watcher).
    pub push: bool,
    /// The watcher's machine name (`cscli machines add NAME`).
    pub login: String,
    /// Its password, in a file (mode 0600).
    pub password_file: Option<PathBuf>,
}

impl Default for CrowdsecConfig {
    fn default() -> Self {
        Self {
            lapi_url: Url::parse("http://127.0.0.1:8080").expect("the default URL parses"),
            api_key_file: PathBuf::from("/etc/ipwarden/crowdsec.key"),
            poll_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(600),
            origins: Vec::new(),
            scopes: vec!["Ip".into(), "Range".into()],
            types: [
                ("ban".to_owned(), crate::decision::Action::Block),
                ("captcha".to_owned(), crate::decision::Action::Challenge),
            ]
            .into(),
            v6_exact: false,
            max_body: 256 << 20,
            timeout: Duration::from_secs(60),
            push: false,
            login: String::new(),
            password_file: None,
        }
    }
}

impl CrowdsecConfig {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if !matches!(self.lapi_url.scheme(), "http" | "https") {
            return Err(invalid(
                "crowdsec.lapi_url",
                "must start with http:// or https://",
            ));
        }
        if self.lapi_url.has_credentials() || self.lapi_url.url().query().is_some() {
            return Err(invalid(
                "crowdsec.lapi_url",
                "must carry no credentials or query: the key goes in crowdsec.api_key_file",
            ));
        }
        if self.poll_interval < Duration::from_millis(200) {
            return Err(invalid("crowdsec.poll_interval", "must be at least 200ms"));
        }
        if self.resync_interval < self.poll_interval {
            return Err(invalid(
                "crowdsec.resync_interval",
                "must be at least crowdsec.poll_interval",
            ));
        }
        if self.types.is_empty() {
            return Err(invalid(
                "crowdsec.types",
                "maps no decision type: nothing would be enforced",
            ));
        }
        if self.push && (self.login.is_empty() || self.password_file.is_none()) {
            return Err(invalid(
                "crowdsec.push",
                "needs crowdsec.login and crowdsec.password_file (from `cscli machines add`)",
            ));
        }
        if self.max_body < 1024 || self.timeout.is_zero() {
            return Err(invalid(
                "crowdsec.max_body",
                "must be at least 1024, and crowdsec.timeout greater than 0",
            ));
        }
        Ok(())
    }
}
