//! `[daemon]`, `[metrics]` and `[fingerprints]`: the process, its endpoints and rule files.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use crate::dataplane::DEFAULT_BPFFS;

/// The daemon's default control socket (`daemon.socket`, and the CLI's `--socket` default).
pub const DEFAULT_SOCKET: &str = "/run/ipwarden/ipwarden.sock";

/// `[fingerprints]`: TCP SYN signature rules.
#[derive(Clone, Debug, Default, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintsConfig {
    /// An operator's rule file, tried before the shipped rules (`dist/fingerprints.toml`).
    pub rules: Option<PathBuf>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, Default, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics` is served (e.g. `127.0.0.1:9720`); off when absent. Read at start only.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[daemon]`: where the daemon runs and what it attaches to.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
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

impl DaemonConfig {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        for iface in &self.ifaces {
            if iface.is_empty() || iface.len() > 15 || iface.contains('/') {
                return Err(invalid(
                    "daemon.ifaces",
                    &format!("has an invalid interface name `{iface}`"),
                ));
            }
        }
        Ok(())
    }
}
