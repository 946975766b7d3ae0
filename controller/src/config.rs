//! The daemon's configuration: TOML, one struct per section, every key defaulted, unknown keys
//! rejected. `dist/ipwarden.toml` documents every key and is also the embedded default, so the
//! example can never drift from what the code accepts (a unit test parses it).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    allowlist::AllowOrigin,
    dataplane::{AttachMode, Capacities, DEFAULT_BPFFS},
    decision::Origin,
};

/// Where `ipwarden run` looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/ipwarden/ipwarden.toml";

/// The daemon's default control socket (`daemon.socket`, and the CLI's `--socket` default).
pub const DEFAULT_SOCKET: &str = "/run/ipwarden/ipwarden.sock";

/// The commented example configuration, equal to the built-in defaults.
pub const EXAMPLE: &str = include_str!("../dist/ipwarden.toml");

/// A configuration that cannot be used. Messages name the file and the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type (the message has line and column).
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// A value of the right type but out of range.
    #[error("{origin}: `{key}` {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
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
}

/// `[fingerprints]`: TCP SYN signature rules.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintsConfig {
    /// An operator's rule file, tried before the shipped rules (`dist/fingerprints.toml`).
    pub rules: Option<PathBuf>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics` is served (e.g. `127.0.0.1:9720`); off when absent. Read at start only.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[daemon]`: where the daemon runs and what it attaches to.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    pub ifaces: Vec<String>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub detach_on_stop: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            ifaces: Vec::new(),
            socket: PathBuf::from(DEFAULT_SOCKET),
            state_dir: PathBuf::from("/var/lib/ipwarden"),
            bpffs: PathBuf::from(DEFAULT_BPFFS),
            detach_on_stop: false,
        }
    }
}

/// `[dataplane]`: how the XDP program is attached and sized.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    pub attach_mode: AttachModeConfig,
    pub monitor: bool,
    pub max_sources: u32,
    pub max_blocks: u32,
    pub max_block_prefixes: u32,
    pub max_allow: u32,
}

impl Default for DataplaneSection {
    fn default() -> Self {
        let c = Capacities::default();
        Self {
            attach_mode: AttachModeConfig::Auto,
            monitor: false,
            max_sources: c.src_v4,
            max_blocks: c.block_v4,
            max_block_prefixes: c.block_net_v4,
            max_allow: c.allow,
        }
    }
}

impl DataplaneSection {
    /// The map sizes to attach with.
    pub fn capacities(&self) -> Capacities {
        Capacities {
            block_v4: self.max_blocks,
            block_v6: self.max_blocks,
            block_net_v4: self.max_block_prefixes,
            block_net_v6: self.max_block_prefixes,
            allow: self.max_allow,
            src_v4: self.max_sources,
            src_v6: self.max_sources,
            buckets: Capacities::default().buckets,
        }
    }
}

/// `attach_mode` values.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttachModeConfig {
    #[default]
    Auto,
    Driver,
    Skb,
}

impl From<AttachModeConfig> for AttachMode {
    fn from(m: AttachModeConfig) -> Self {
        match m {
            AttachModeConfig::Auto => AttachMode::Auto,
            AttachModeConfig::Driver => AttachMode::Driver,
            AttachModeConfig::Skb => AttachMode::Skb,
        }
    }
}

/// `[detection]`: how heavy hitters are found.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
    pub aggregate: AggregateConfig,
}

/// `[detection.aggregate]`: floods spread over many sources of one network.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
            aggregate: AggregateConfig::default(),
        }
    }
}

/// What the velocity-only policy does with a new heavy hitter.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeavyHitterAction {
    /// Block it for `hard_ttl` (velocity evidence alone may be spoofed: keep it short).
    #[default]
    Block,
    /// Only record and log it (`ipwarden top` shows it).
    Observe,
}

/// `[decisions]`: lifetimes and limits of decisions.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
        }
    }
}

/// What a feed is used for.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
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
        match self {
            Self::Hosting => "hosting",
            Self::Tor => "tor",
            Self::Proxy => "proxy",
        }
    }
}

/// `[[feeds]]`: a threat feed or a published range list.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Names the feed's decisions (`feed:<name>`) and its copy in the state directory.
    pub name: String,
    /// `https://…`, `http://…`, or `file:/path`.
    pub url: String,
    pub format: crate::feeds::Format,
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

    fn validate(
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
        if !["https://", "http://", "file:"]
            .iter()
            .any(|s| self.url.starts_with(s))
        {
            return Err(invalid(
                "feeds.url",
                &format!(
                    "feed {}: must start with https://, http:// or file:",
                    self.name
                ),
            ));
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

/// `[crowdsec]`: enforce a CrowdSec local API's decisions (ipwarden as its bouncer). Absent:
/// no connection is made.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrowdsecConfig {
    /// The LAPI, e.g. `http://127.0.0.1:8080`.
    pub lapi_url: String,
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
            lapi_url: "http://127.0.0.1:8080".into(),
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
    fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let Some(rest) = self
            .lapi_url
            .strip_prefix("http://")
            .or_else(|| self.lapi_url.strip_prefix("https://"))
        else {
            return Err(invalid(
                "crowdsec.lapi_url",
                "must start with http:// or https://",
            ));
        };
        if rest.contains('@') || rest.contains('?') {
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

/// `[fleet]`: share decisions and IPASIS answers with the other hosts over NATS JetStream.
/// Absent: nothing is shared and no connection is made.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Server URLs (`nats://10.0.0.5:4222`); one string or a list (a cluster, or a local leaf
    /// node first).
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// This host's name in the fleet [default: the host name].
    pub host_id: Option<String>,
    /// A file holding the server's token (mode 0600).
    pub token_file: Option<PathBuf>,
    /// A NATS credentials file (JWT and NKey seed; mode 0600).
    pub creds_file: Option<PathBuf>,
    /// A CA bundle: the server must speak TLS with a certificate it signed.
    pub ca_file: Option<PathBuf>,
    /// Buckets are `<prefix>-decisions`, `<prefix>-enrich` and `<prefix>-claims`.
    pub bucket_prefix: String,
    /// Local origins shared with the fleet (never `fleet` or `crowdsec`).
    pub publish: Vec<Origin>,
    /// Whether peers' decisions are enforced here.
    pub apply: bool,
    /// Whether IPASIS answers are shared (one request per address per fleet).
    pub share_enrichment: bool,
    /// How long a lookup claim lives (the claims bucket's age limit).
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// How long a host waits for the claimer's answer before asking IPASIS itself.
    #[serde(with = "humantime_serde")]
    pub claim_wait: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            url: Vec::new(),
            host_id: None,
            token_file: None,
            creds_file: None,
            ca_file: None,
            bucket_prefix: "ipwarden".into(),
            publish: vec![
                Origin::Manual,
                Origin::Velocity,
                Origin::Ipasis,
                Origin::Feed,
            ],
            apply: true,
            share_enrichment: true,
            claim_ttl: Duration::from_secs(5),
            claim_wait: Duration::from_secs(8),
        }
    }
}

impl FleetConfig {
    fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.url.is_empty() {
            return Err(invalid(
                "fleet.url",
                "needs at least one server (nats://HOST:PORT)",
            ));
        }
        for u in &self.url {
            let Some(rest) = u
                .strip_prefix("nats://")
                .or_else(|| u.strip_prefix("tls://"))
            else {
                return Err(invalid(
                    "fleet.url",
                    &format!("`{u}` must start with nats:// or tls://"),
                ));
            };
            if rest.contains('@') {
                // Not echoed: the part before `@` is a secret.
                return Err(invalid(
                    "fleet.url",
                    "must not carry credentials (user:password@); use fleet.token_file or fleet.creds_file",
                ));
            }
            if rest.is_empty() {
                return Err(invalid("fleet.url", &format!("`{u}` names no server")));
            }
        }
        if self.token_file.is_some() && self.creds_file.is_some() {
            return Err(invalid(
                "fleet.token_file",
                "and fleet.creds_file are alternatives: set one",
            ));
        }
        let prefix_ok = !self.bucket_prefix.is_empty()
            && self.bucket_prefix.len() <= 32
            && self
                .bucket_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !prefix_ok {
            return Err(invalid(
                "fleet.bucket_prefix",
                "must be 1 to 32 letters, digits, `-` or `_`",
            ));
        }
        if let Some(o) = self
            .publish
            .iter()
            .find(|o| matches!(o, Origin::Fleet | Origin::Crowdsec))
        {
            return Err(invalid(
                "fleet.publish",
                &format!(
                    "cannot share `{o}` decisions: they came from elsewhere and are never re-published"
                ),
            ));
        }
        if self
            .host_id
            .as_deref()
            .is_some_and(|h| h.trim().is_empty() || h.len() > 64)
        {
            return Err(invalid("fleet.host_id", "must be 1 to 64 characters"));
        }
        if self.claim_ttl < Duration::from_millis(500) || self.claim_wait.is_zero() {
            return Err(invalid(
                "fleet.claim_ttl",
                "must be at least 500ms, and fleet.claim_wait greater than 0",
            ));
        }
        Ok(())
    }

    /// `host_id`, or the host name.
    pub fn host(&self) -> String {
        if let Some(h) = &self.host_id {
            return h.clone();
        }
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
        let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        match (r, std::str::from_utf8(&buf[..end])) {
            (0, Ok(h)) if !h.is_empty() => h.to_owned(),
            _ => "unnamed-host".to_owned(),
        }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// `[allow]`: prefixes that are never blocked.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AllowConfig {
    pub builtin: bool,
    pub prefixes: Vec<IpNet>,
}

impl Default for AllowConfig {
    fn default() -> Self {
        Self {
            builtin: true,
            prefixes: Vec::new(),
        }
    }
}

/// `[ipasis]`: the IP-intelligence API.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IpasisConfig {
    pub enabled: bool,
    pub base_url: String,
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
            base_url: "https://api.ipasis.com".into(),
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
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// No enrichment decision; only the velocity rules apply.
    #[default]
    Open,
    /// Block it for `closed_ttl` with reason `enrichment-failed`.
    Closed,
}

/// `[scoring]`: the weighted model turning an answer into block / challenge / allow.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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

/// Loopback and link-local: allowlisted unless `allow.builtin = false`.
pub const BUILTIN_ALLOW: [&str; 4] = ["127.0.0.0/8", "169.254.0.0/16", "::1/128", "fe80::/10"];

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

    /// Range checks that serde cannot express.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            origin: origin.to_owned(),
            key,
            message: message.to_owned(),
        };
        let d = &self.detection;
        if d.poll_interval < Duration::from_millis(50) {
            return Err(invalid("detection.poll_interval", "must be at least 50ms"));
        }
        if d.window < d.poll_interval {
            return Err(invalid(
                "detection.window",
                "must be at least detection.poll_interval",
            ));
        }
        for (key, v) in [
            ("detection.pps_threshold", d.pps_threshold),
            ("detection.syn_pps_threshold", d.syn_pps_threshold),
            ("detection.hard_pps_limit", d.hard_pps_limit),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if d.hard_ttl.is_zero() {
            return Err(invalid("detection.hard_ttl", "must be greater than 0"));
        }
        let a = &d.aggregate;
        if a.v4_levels.iter().any(|l| ![24, 16].contains(l)) {
            return Err(invalid(
                "detection.aggregate.v4_levels",
                "may list 24 and 16 only (the levels the data plane counts)",
            ));
        }
        if a.v6_levels.iter().any(|l| ![48, 32].contains(l)) {
            return Err(invalid(
                "detection.aggregate.v6_levels",
                "may list 48 and 32 only (the levels the data plane counts)",
            ));
        }
        if a.pps == 0 || a.syn_pps == 0 {
            return Err(invalid(
                "detection.aggregate.pps",
                "and syn_pps must be greater than 0 (empty levels turn aggregates off)",
            ));
        }
        if a.min_sources < 2 {
            return Err(invalid(
                "detection.aggregate.min_sources",
                "must be at least 2 (one source is judged by itself)",
            ));
        }
        if self.decisions.default_ttl.is_zero() {
            return Err(invalid("decisions.default_ttl", "must be greater than 0"));
        }
        if self.decisions.max_decisions == 0 {
            return Err(invalid("decisions.max_decisions", "must be greater than 0"));
        }
        if self.decisions.recidive_factor == 0 {
            return Err(invalid(
                "decisions.recidive_factor",
                "must be at least 1 (1 turns longer TTLs for repeat offenders off)",
            ));
        }
        if self.decisions.max_ttl.is_zero() {
            return Err(invalid("decisions.max_ttl", "must be greater than 0"));
        }
        let dp = &self.dataplane;
        for (key, v) in [
            ("dataplane.max_sources", dp.max_sources),
            ("dataplane.max_blocks", dp.max_blocks),
            ("dataplane.max_block_prefixes", dp.max_block_prefixes),
            ("dataplane.max_allow", dp.max_allow),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        for iface in &self.daemon.ifaces {
            if iface.is_empty() || iface.len() > 15 || iface.contains('/') {
                return Err(invalid(
                    "daemon.ifaces",
                    &format!("has an invalid interface name `{iface}`"),
                ));
            }
        }
        let ip = &self.ipasis;
        if !ip.path.contains("{ip}") {
            return Err(invalid("ipasis.path", "must contain {ip}"));
        }
        if !(ip.base_url.starts_with("http://") || ip.base_url.starts_with("https://")) {
            return Err(invalid(
                "ipasis.base_url",
                "must start with http:// or https://",
            ));
        }
        if reqwest::header::HeaderName::from_bytes(ip.auth_header.as_bytes()).is_err() {
            return Err(invalid(
                "ipasis.auth_header",
                "is not a valid HTTP header name",
            ));
        }
        for (key, v) in [
            ("ipasis.concurrency", ip.concurrency as u64),
            ("ipasis.requests_per_second", ip.requests_per_second as u64),
            ("ipasis.daily_quota", ip.daily_quota),
            ("ipasis.queue_size", ip.queue_size as u64),
            ("ipasis.max_body", ip.max_body as u64),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if ip.timeout.is_zero() {
            return Err(invalid("ipasis.timeout", "must be greater than 0"));
        }
        let sc = &self.scoring;
        if sc.challenge_at > sc.block_at {
            return Err(invalid(
                "scoring.challenge_at",
                "must not exceed scoring.block_at",
            ));
        }
        if sc.challenge_pps == 0 || sc.challenge_burst == 0 {
            return Err(invalid(
                "scoring.challenge_pps",
                "and scoring.challenge_burst must be greater than 0",
            ));
        }
        if let Some(p) = self.allow.prefixes.iter().find(|p| p.prefix_len() == 0) {
            return Err(invalid(
                "allow.prefixes",
                &format!("contains {p}, which would disable all blocking"),
            ));
        }
        if let Some(f) = &self.fleet {
            f.validate(&invalid)?;
        }
        if let Some(c) = &self.crowdsec {
            c.validate(&invalid)?;
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
        assert_eq!(f.publish.len(), 4);
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
