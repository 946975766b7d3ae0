//! `[verdict]`: the forward-auth endpoint for proxies, its challenge page and passes.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde::Deserialize;

use super::ConfigError;

/// `[verdict]`: answer proxies' forward-auth subrequests (nginx `auth_request`, Caddy
/// `forward_auth`, Traefik ForwardAuth, HAProxy) with ipwarden's verdict on the client, serve a
/// proof-of-work challenge to challenged clients and give those who solve it a pass. Absent:
/// nothing listens.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictConfig {
    /// Where the endpoint listens (plain HTTP/1.1 for the proxy in front: keep it on loopback
    /// or a private address). Read at start only.
    pub listen: SocketAddr,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` is believed. From any other peer, the peer's
    /// own address is the client, whatever its headers say.
    pub trusted_proxies: Vec<IpNet>,
    /// Leading zero bits the challenge's SHA-256 proof of work needs (each bit doubles the
    /// work: 20 is about a million hashes, about a second in a browser).
    pub difficulty: u8,
    /// How long a served challenge may be solved.
    #[serde(with = "humantime_serde")]
    pub challenge_ttl: Duration,
    /// How long a pass lasts: its cookie is accepted, and the source's XDP rate limit is lifted
    /// (a `challenge-pass` decision), for this long.
    #[serde(with = "humantime_serde")]
    pub pass_ttl: Duration,
    /// Passes one source unit (IPv4 address, IPv6 /64) may earn in an hour: a bot that solves
    /// the puzzle once cannot buy passes without end.
    pub passes_per_hour: u32,
    /// The HMAC key signing challenges and passes (32 random bytes, made at first start, mode
    /// 0600) [default: `verdict.key` in `daemon.state_dir`].
    pub key_file: Option<PathBuf>,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9721)),
            trusted_proxies: vec![
                "127.0.0.0/8".parse().expect("valid"),
                "::1/128".parse().expect("valid"),
            ],
            difficulty: 20,
            challenge_ttl: Duration::from_secs(300),
            pass_ttl: Duration::from_secs(3600),
            passes_per_hour: 3,
            key_file: None,
        }
    }
}

impl VerdictConfig {
    /// Hardest puzzle accepted: 2^28 hashes is minutes in a browser.
    pub const MAX_DIFFICULTY: u8 = 28;

    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if !(1..=Self::MAX_DIFFICULTY).contains(&self.difficulty) {
            return Err(invalid(
                "verdict.difficulty",
                &format!("must be 1 to {} bits", Self::MAX_DIFFICULTY),
            ));
        }
        if self.challenge_ttl < Duration::from_secs(10) {
            return Err(invalid("verdict.challenge_ttl", "must be at least 10s"));
        }
        if self.pass_ttl < Duration::from_secs(1) {
            return Err(invalid("verdict.pass_ttl", "must be at least 1s"));
        }
        if self.passes_per_hour == 0 {
            return Err(invalid(
                "verdict.passes_per_hour",
                "must be at least 1 (remove [verdict] to serve no challenge)",
            ));
        }
        Ok(())
    }

    /// The key file: `key_file`, else `verdict.key` in the state directory.
    pub fn key_path(&self, state_dir: &std::path::Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| state_dir.join("verdict.key"))
    }
}
