//! `[[feeds]]`: lists fetched on a schedule, as blocks or tags.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, url::Url};

/// What a feed is used for.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeedUse {
    /// Its prefixes are blocked (held as `feed:<name>`).
    #[default]
    Block,
    /// Its prefixes carry `tag` for the scorer.
    Tag,
}

/// A tag a feed gives its prefixes: the scorer counts it like IPASIS's flag of that name.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Serialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Tag {
    Hosting,
    Tor,
    Proxy,
}

impl Tag {
    pub fn name(self) -> &'static str {
        crate::names::of(&self)
    }
}

/// `[[feeds]]`: a threat feed or a published range list.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Names the feed's decisions (`feed:<name>`) and its copy in the state directory.
    pub name: String,
    /// `https://…`, `http://…`, or `file:/path`.
    pub url: Url,
    pub format: Format,
    #[serde(rename = "use", default)]
    pub use_: FeedUse,
    /// With `use = "tag"`: `hosting`, `tor` or `proxy`.
    #[serde(default)]
    pub tag: Option<Tag>,
    #[serde(with = "humantime_serde", default = "FeedConfig::default_refresh")]
    pub refresh: Duration,
    /// Lifetime of a block, renewed at each refresh [default: 2 × refresh].
    #[serde(with = "humantime_serde", default)]
    pub ttl: Option<Duration>,
    /// A refresh that loses more than this share of the prefixes at once is held.
    #[serde(default = "FeedConfig::default_max_shrink")]
    pub max_shrink: f64,
    #[serde(default = "FeedConfig::default_max_body")]
    pub max_body: usize,
    #[serde(with = "humantime_serde", default = "FeedConfig::default_timeout")]
    pub timeout: Duration,
}

impl FeedConfig {
    fn default_refresh() -> Duration {
        Duration::from_secs(3600)
    }

    fn default_max_shrink() -> f64 {
        0.5
    }

    fn default_max_body() -> usize {
        64 << 20
    }

    fn default_timeout() -> Duration {
        Duration::from_secs(60)
    }

    /// A block's lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl.unwrap_or(self.refresh * 2)
    }

    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(invalid(
                "feeds.name",
                &format!(
                    "`{}` must be 1 to 64 letters, digits, `-` or `_`",
                    self.name
                ),
            ));
        }
        if !matches!(self.url.scheme(), "https" | "http" | "file") {
            return Err(invalid(
                "feeds.url",
                &format!(
                    "feed {}: must start with https://, http:// or file:",
                    self.name
                ),
            ));
        }
        if self.url.has_credentials() {
            return Err(invalid(
                "feeds.url",
                &format!("feed {}: must carry no credentials", self.name),
            ));
        }
        if self.url.scheme() == "http" {
            tracing::warn!(feed = %self.name, url = %self.url, "a feed over plain http can be altered on the way: prefer https");
        }
        if (self.use_ == FeedUse::Tag) != self.tag.is_some() {
            return Err(invalid(
                "feeds.tag",
                &format!(
                    "feed {}: set tag (hosting, tor, proxy) exactly when use = \"tag\"",
                    self.name
                ),
            ));
        }
        if self.refresh < Duration::from_secs(1) || self.ttl() < self.refresh {
            return Err(invalid(
                "feeds.refresh",
                &format!(
                    "feed {}: refresh must be at least 1s and ttl at least refresh",
                    self.name
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.max_shrink) {
            return Err(invalid("feeds.max_shrink", "must be between 0 and 1"));
        }
        Ok(())
    }
}

/// What a feed looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One address or prefix per line; `#` and `;` start comments.
    CidrList,
    /// Spamhaus DROP / DROPv6: text (`1.10.16.0/20 ; SBL256894`) or JSON lines
    /// (`{"cidr":"1.10.16.0/20","sblid":"SBL256894"}`, a final metadata line).
    SpamhausDrop,
    /// The Tor Project's exit list: bulk (one address per line) or the detailed one
    /// (`ExitAddress 1.2.3.4 2024-01-01 00:00:00`).
    TorExitList,
    /// AWS `ip-ranges.json`: `prefixes[].ip_prefix`, `ipv6_prefixes[].ipv6_prefix`.
    AwsIpRanges,
    /// Google Cloud `cloud.json`: `prefixes[].ipv4Prefix` / `ipv6Prefix`.
    GcpCloud,
}
