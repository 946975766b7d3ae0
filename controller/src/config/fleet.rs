//! `[fleet]`: sharing decisions and IPASIS answers over NATS JetStream.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{ConfigError, url::Url};
use crate::decision::Origin;

/// `[fleet]`: share decisions and IPASIS answers with the other hosts over NATS JetStream.
/// Absent: nothing is shared and no connection is made.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Server URLs (`nats://10.0.0.5:4222`); one string or a list (a cluster, or a local leaf
    /// node first).
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<Url>,
    /// This host's name in the fleet: 1 to 64 letters, digits, `-` or `_` [default: the host
    /// name, other characters as `-`].
    pub host_id: Option<String>,
    /// A file holding the server's token (mode 0600).
    pub token_file: Option<PathBuf>,
    /// A NATS credentials file (JWT and NKey seed; mode 0600).
    pub creds_file: Option<PathBuf>,
    /// A file holding this host's NKey seed (`SU…`; mode 0600): the server's config names the
    /// public key with the subjects this host may write (docs/fleet.md, "Fleet permissions").
    pub nkey_file: Option<PathBuf>,
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
    /// The share of `decisions.max_decisions` one peer's decisions may take here: a peer
    /// cannot fill the table for the others.
    pub max_share: f64,
    /// What a peer's shared IPASIS answer may decide here: `challenge` (at most) or `block`.
    pub peer_answers: PeerAnswers,
    /// Limits set on the decisions bucket when this host creates it (`max_bytes`, `max_msgs`):
    /// the server refuses writes beyond them.
    pub bucket_max_bytes: i64,
    pub bucket_max_msgs: i64,
}

/// What a peer's shared IPASIS answer may decide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerAnswers {
    /// At most a challenge: a peer's word alone never blocks here.
    #[default]
    Challenge,
    /// Whatever this host's own answer would.
    Block,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            url: Vec::new(),
            host_id: None,
            token_file: None,
            creds_file: None,
            nkey_file: None,
            ca_file: None,
            bucket_prefix: "ipwarden".into(),
            // Feeds are not published: every host loads its feeds itself, and 20 hosts each
            // publishing the same 50 000-entry feed would hold a million copies in the bucket.
            publish: vec![Origin::Manual, Origin::Velocity, Origin::Ipasis],
            apply: true,
            share_enrichment: true,
            claim_ttl: Duration::from_secs(5),
            claim_wait: Duration::from_secs(8),
            max_share: 0.25,
            peer_answers: PeerAnswers::Challenge,
            bucket_max_bytes: 1 << 30,
            bucket_max_msgs: 2_000_000,
        }
    }
}

impl FleetConfig {
    pub(super) fn validate(
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
            if !matches!(u.scheme(), "nats" | "tls") {
                return Err(invalid(
                    "fleet.url",
                    &format!("`{u:?}` must start with nats:// or tls://"),
                ));
            }
            if u.has_credentials() {
                // Not echoed: the part before `@` is a secret.
                return Err(invalid(
                    "fleet.url",
                    "must not carry credentials (user:password@); use fleet.token_file, fleet.creds_file or fleet.nkey_file",
                ));
            }
            if u.url().host_str().is_none_or(str::is_empty) {
                return Err(invalid("fleet.url", &format!("`{u}` names no server")));
            }
        }
        let ways = [&self.token_file, &self.creds_file, &self.nkey_file];
        if ways.iter().filter(|w| w.is_some()).count() > 1 {
            return Err(invalid(
                "fleet.token_file",
                "fleet.creds_file and fleet.nkey_file are alternatives: set one",
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
            .find(|o| matches!(o, Origin::ChallengePass))
        {
            return Err(invalid(
                "fleet.publish",
                &format!("cannot share `{o}` decisions: a pass is for this host's site only"),
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
        // Ids are NATS key tokens as they are: two ids never share a key, and a server's
        // per-host publish permission (`$KV.<prefix>-decisions.<host_id>.>`) names it exactly.
        if let Some(h) = self.host_id.as_deref() {
            let ok = !h.is_empty()
                && h.len() <= 64
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(invalid(
                    "fleet.host_id",
                    "must be 1 to 64 letters, digits, `-` or `_`",
                ));
            }
        }
        if !(self.max_share > 0.0 && self.max_share <= 1.0) {
            return Err(invalid(
                "fleet.max_share",
                "must be greater than 0 and at most 1",
            ));
        }
        if self.bucket_max_bytes < 1 << 20 || self.bucket_max_msgs < 1000 {
            return Err(invalid(
                "fleet.bucket_max_bytes",
                "must be at least 1 MiB (and fleet.bucket_max_msgs at least 1000)",
            ));
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
        match crate::net::host_name() {
            Some(h) => h
                .chars()
                .take(64)
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect(),
            None => "unnamed-host".to_owned(),
        }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Url>, D::Error> {
    struct Servers;
    fn server<E: serde::de::Error>(text: &str) -> Result<Url, E> {
        Url::parse(text).map_err(|_| {
            if text.contains('@') {
                // Not echoed: the part before `@` is a secret.
                E::custom("a server that carries credentials and does not parse")
            } else {
                E::custom(format!("`{text}` must start with nats:// or tls://"))
            }
        })
    }
    impl<'de> serde::de::Visitor<'de> for Servers {
        type Value = Vec<Url>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a server URL or a list of them")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![server(v)?])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(text) = seq.next_element::<String>()? {
                out.push(server(&text)?);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Servers)
}
