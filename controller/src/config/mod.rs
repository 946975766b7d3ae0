//! The daemon's configuration: TOML, one struct per section, every key defaulted, unknown keys
//! rejected. `dist/ipwarden.toml` documents every key and is also the embedded default, so the
//! example can never drift from what the code accepts (a unit test parses it).

use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

mod allow;
mod crowdsec;
mod daemon;
mod dataplane;
mod decisions;
mod detection;
mod error;
mod feeds;
mod fleet;
mod ipasis;
mod notify;
mod scoring;
mod synproxy;
mod url;
mod verdict;

pub use allow::{AllowConfig, BUILTIN_ALLOW};
pub use crowdsec::CrowdsecConfig;
pub use daemon::{DEFAULT_SOCKET, DaemonConfig, FingerprintsConfig, MetricsConfig};
pub use dataplane::{AttachModeConfig, DataplaneSection};
pub use decisions::DecisionsConfig;
pub use detection::{AggregateConfig, DetectionConfig, HeavyHitterAction};
pub use error::ConfigError;
pub use feeds::{FeedConfig, FeedUse, Format, Tag};
pub use fleet::{FleetConfig, PeerAnswers};
pub use ipasis::{IpasisConfig, OnError};
pub use notify::NotifyConfig;
pub use scoring::ScoringConfig;
pub use synproxy::{MAX_PORTS as SYNPROXY_MAX_PORTS, SynproxySection, SynproxyWhen};
pub use url::Url;
pub use verdict::VerdictConfig;

use crate::allowlist::AllowOrigin;

/// Where `ipwarden run` looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/ipwarden/ipwarden.toml";

/// The commented example configuration, equal to the built-in defaults.
pub const EXAMPLE: &str = include_str!("../../dist/ipwarden.toml");

/// The whole configuration.
#[derive(Clone, Debug, Default, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub dataplane: DataplaneSection,
    pub detection: DetectionConfig,
    pub decisions: DecisionsConfig,
    pub allow: AllowConfig,
    pub ipasis: IpasisConfig,
    pub scoring: ScoringConfig,
    pub fleet: Option<FleetConfig>,
    pub crowdsec: Option<CrowdsecConfig>,
    pub feeds: Vec<FeedConfig>,
    pub metrics: MetricsConfig,
    pub fingerprints: FingerprintsConfig,
    pub verdict: Option<VerdictConfig>,
    pub notify: Vec<NotifyConfig>,
    pub synproxy: Option<SynproxySection>,
}

impl Config {
    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Reads `path`. A missing file at the default path means built-in defaults; a missing file
    /// named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Range checks that serde cannot express: each section checks itself.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            origin: origin.to_owned(),
            key,
            message: message.to_owned(),
        };
        self.daemon.validate(&invalid)?;
        self.dataplane.validate(&invalid)?;
        self.detection.validate(&invalid)?;
        self.decisions.validate(&invalid)?;
        self.allow.validate(&invalid)?;
        self.ipasis.validate(&invalid)?;
        self.scoring.validate(&invalid)?;
        if let Some(f) = &self.fleet {
            f.validate(&invalid)?;
        }
        if let Some(c) = &self.crowdsec {
            c.validate(&invalid)?;
        }
        if let Some(v) = &self.verdict {
            v.validate(&invalid)?;
        }
        if let Some(s) = &self.synproxy {
            s.validate(&invalid)?;
        }
        let mut names = std::collections::BTreeSet::new();
        for f in &self.feeds {
            f.validate(&invalid)?;
            if !names.insert(&f.name) {
                return Err(invalid(
                    "feeds.name",
                    &format!("`{}` names two feeds", f.name),
                ));
            }
        }
        let mut hooks = std::collections::BTreeSet::new();
        for n in &self.notify {
            n.validate(&invalid)?;
            if !hooks.insert(&n.name) {
                return Err(invalid(
                    "notify.name",
                    &format!("`{}` names two hooks", n.name),
                ));
            }
        }
        Ok(())
    }

    /// The rate above which the scorer's velocity weight applies.
    pub fn velocity_pps(&self) -> u64 {
        if self.scoring.velocity_pps == 0 {
            self.detection.pps_threshold.saturating_mul(5)
        } else {
            self.scoring.velocity_pps
        }
    }

    /// The configured allowlist: builtin entries (unless disabled) and `allow.prefixes`.
    pub fn allow_prefixes(&self) -> Vec<(IpNet, AllowOrigin)> {
        let mut out = Vec::new();
        if self.allow.builtin {
            out.extend(BUILTIN_ALLOW.iter().map(|p| {
                (
                    p.parse().expect("builtin prefixes parse"),
                    AllowOrigin::Builtin,
                )
            }));
        }
        out.extend(
            self.allow
                .prefixes
                .iter()
                .map(|p| (p.trunc(), AllowOrigin::Config)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_example_file_is_the_default() {
        assert_eq!(
            Config::parse(EXAMPLE, "dist/ipwarden.toml").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn an_empty_file_means_defaults() {
        assert_eq!(Config::parse("", "x").unwrap(), Config::default());
    }

    #[test]
    fn durations_are_strings() {
        let c = Config::parse(
            "[detection]\npoll_interval = \"500ms\"\nwindow = \"2s\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.detection.poll_interval, Duration::from_millis(500));
        assert_eq!(c.detection.window, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_are_rejected_with_line_numbers() {
        let err = Config::parse(
            "[detection]\npps_threshold = 5\npps_treshold = 6\n",
            "f.toml",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("f.toml: "), "{msg}");
        assert!(
            msg.contains("pps_treshold") && msg.contains("line 3"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_types_and_ranges_name_the_key() {
        let msg = Config::parse("[detection]\nwindow = 10\n", "f")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("window") && msg.contains("line 2"), "{msg}");
        let msg = Config::parse(
            "[detection]\npoll_interval = \"2s\"\nwindow = \"1s\"\n",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("`detection.window`"), "{msg}");
        let msg = Config::parse("[allow]\nprefixes = [\"0.0.0.0/0\"]\n", "f")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`allow.prefixes`"), "{msg}");
        let msg = Config::parse("[allow]\nprefixes = [\"10.0.0.300/8\"]\n", "f")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn the_fleet_section_reads_one_or_many_servers_and_refuses_what_it_must() {
        let c = Config::parse("[fleet]\nurl = \"nats://192.0.2.1:4222\"\n", "f").unwrap();
        let f = c.fleet.expect("fleet on");
        assert_eq!(f.url, vec!["nats://192.0.2.1:4222"]);
        // Feeds are not published by default (every host loads them itself).
        assert_eq!(f.publish.len(), 3);
        assert!(f.apply && f.share_enrichment);
        let c = Config::parse(
            "[fleet]\nurl = [\"nats://192.0.2.1:4222\", \"tls://192.0.2.2:4222\"]\nhost_id = \"edge-1\"\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.fleet.as_ref().unwrap().url.len(), 2);
        assert_eq!(c.fleet.unwrap().host(), "edge-1");
        for (bad, says) in [
            ("[fleet]\n", "needs at least one server"),
            (
                "[fleet]\nurl = \"192.0.2.1:4222\"\n",
                "must start with nats://",
            ),
            (
                "[fleet]\nurl = \"nats://me:hunter2@192.0.2.1\"\n",
                "must not carry credentials",
            ),
            (
                "[fleet]\nurl = \"nats://a\"\npublish = [\"fleet\"]\n",
                "never re-published",
            ),
            (
                "[fleet]\nurl = \"nats://a\"\nbucket_prefix = \"a.b\"\n",
                "bucket_prefix",
            ),
            (
                "[fleet]\nurl = \"nats://a\"\ntoken_file = \"/t\"\ncreds_file = \"/c\"\n",
                "alternatives",
            ),
            // `edge.1` and `edge-1` would share a key: ids are key tokens as they are.
            (
                "[fleet]\nurl = \"nats://a\"\nhost_id = \"edge.1\"\n",
                "fleet.host_id",
            ),
            (
                "[fleet]\nurl = \"nats://a\"\nmax_share = 0\n",
                "fleet.max_share",
            ),
        ] {
            let msg = Config::parse(bad, "f").unwrap_err().to_string();
            assert!(msg.contains(says), "{bad}: {msg}");
            assert!(!msg.contains("hunter2"), "a secret was echoed: {msg}");
        }
    }

    #[test]
    fn a_missing_default_file_is_fine_a_missing_explicit_one_is_not() {
        let missing = Path::new("/nonexistent/ipwarden.toml");
        assert_eq!(Config::load(missing, false).unwrap(), Config::default());
        assert!(matches!(
            Config::load(missing, true),
            Err(ConfigError::Read { .. })
        ));
    }
}
