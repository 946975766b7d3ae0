//! `[allow]`: prefixes that are never blocked.

use ipnet::IpNet;
use serde::Deserialize;

use super::ConfigError;

/// `[allow]`: prefixes that are never blocked.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AllowConfig {
    /// Loopback and link-local are never blocked.
    pub builtin: bool,
    /// The management path is never blocked: the default gateways, the IPASIS endpoint and
    /// the fleet's servers (found at start and every 30 s). Its own setting, on by default:
    /// turning off `builtin` does not turn it off, and `status` warns while it is off.
    pub protect_management: bool,
    pub prefixes: Vec<IpNet>,
}

impl Default for AllowConfig {
    fn default() -> Self {
        Self {
            builtin: true,
            protect_management: true,
            prefixes: Vec::new(),
        }
    }
}

/// Loopback and link-local: allowlisted unless `allow.builtin = false`.
pub const BUILTIN_ALLOW: [&str; 4] = ["127.0.0.0/8", "169.254.0.0/16", "::1/128", "fe80::/10"];

impl AllowConfig {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Some(p) = self.prefixes.iter().find(|p| p.prefix_len() == 0) {
            return Err(invalid(
                "allow.prefixes",
                &format!("contains {p}, which would disable all blocking"),
            ));
        }
        Ok(())
    }
}
