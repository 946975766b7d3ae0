//! `[dataplane]`: map sizes, attach mode and monitor mode.

use serde::Deserialize;

use super::ConfigError;
use crate::dataplane::{AttachMode, Capacities};

/// `[dataplane]`: how the XDP program is attached and sized.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
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
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        for (key, v) in [
            ("dataplane.max_sources", self.max_sources),
            ("dataplane.max_blocks", self.max_blocks),
            ("dataplane.max_block_prefixes", self.max_block_prefixes),
            ("dataplane.max_allow", self.max_allow),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }

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
#[derive(Clone, Copy, Debug, Default, serde::Serialize, Deserialize, PartialEq, Eq)]
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
