//! `[[notify]]`: webhooks told of each new decision.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::{ConfigError, url::Url};
use crate::decision::{Action, Origin};

/// `[[notify]]`: a URL that each new decision of the chosen origins and actions is POSTed to
/// as JSON (a chat hook, a ticket system). Renewals (a feed's refresh) are not new.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Names the hook in the log and `status`.
    pub name: String,
    /// `https://…` or `http://…`. It is shown in `config show` and the log's errors name its
    /// host only; put a secret in `token_file`, never in the URL.
    pub url: Url,
    /// A file (mode 0600) whose one line is sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Origins told [default: manual, velocity, ipasis, crowdsec; feeds and fleet peers renew
    /// whole sets and would flood a chat].
    #[serde(default = "NotifyConfig::default_origins")]
    pub origins: Vec<Origin>,
    /// Actions told [default: block].
    #[serde(default = "NotifyConfig::default_actions")]
    pub actions: Vec<Action>,
    /// Decisions waiting to be posted, at most; more are dropped and counted.
    #[serde(default = "NotifyConfig::default_queue")]
    pub queue: usize,
    /// Retries of a failed post (doubling waits from 0.5 s).
    #[serde(default = "NotifyConfig::default_retries")]
    pub retries: u32,
    /// One post's whole time.
    #[serde(with = "humantime_serde", default = "NotifyConfig::default_timeout")]
    pub timeout: Duration,
}

impl NotifyConfig {
    fn default_origins() -> Vec<Origin> {
        vec![
            Origin::Manual,
            Origin::Velocity,
            Origin::Ipasis,
            Origin::Crowdsec,
        ]
    }

    fn default_actions() -> Vec<Action> {
        vec![Action::Block]
    }

    fn default_queue() -> usize {
        1024
    }

    fn default_retries() -> u32 {
        3
    }

    fn default_timeout() -> Duration {
        Duration::from_secs(5)
    }

    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(invalid("notify.name", "must be 1 to 64 characters"));
        }
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(invalid("notify.url", "must be an http:// or https:// URL"));
        }
        if self.url.has_credentials() {
            return Err(invalid(
                "notify.url",
                "must not carry a user or password: put a token in token_file",
            ));
        }
        if !(1..=65_536).contains(&self.queue) {
            return Err(invalid("notify.queue", "must be between 1 and 65536"));
        }
        if self.retries > 10 {
            return Err(invalid("notify.retries", "must be at most 10"));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err(invalid("notify.timeout", "must be between 1ms and 60s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(hook: &str) -> Result<Config, String> {
        Config::parse(&format!("[[notify]]\nname = \"chat\"\n{hook}"), "test")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_bounds() {
        let cfg = parse("url = \"https://hooks.example.net/x\"\n").unwrap();
        let hook = &cfg.notify[0];
        assert_eq!(hook.actions, vec![crate::decision::Action::Block]);
        assert!(!hook.origins.contains(&crate::decision::Origin::Feed));
        for (bad, key) in [
            ("url = \"file:/tmp/x\"\n", "notify.url"),
            (
                "url = \"https://user:pw@hooks.example.net/x\"\n",
                "notify.url",
            ),
            (
                "url = \"https://h.example.net/\"\nqueue = 0\n",
                "notify.queue",
            ),
            (
                "url = \"https://h.example.net/\"\nretries = 11\n",
                "notify.retries",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(key), "{bad}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
        let two = Config::parse(
            "[[notify]]\nname = \"a\"\nurl = \"https://h.example.net/\"\n[[notify]]\nname = \"a\"\nurl = \"https://h.example.net/\"\n",
            "test",
        );
        assert!(two.unwrap_err().to_string().contains("names two hooks"));
    }
}
