//! `[synproxy]`: SYN cookies in XDP for the listeners on the protected ports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// When SYNs to the protected ports are answered with cookies.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SynproxyWhen {
    /// Every SYN, always: no handshake reaches a listener's SYN queue unproven.
    #[default]
    Always,
    /// Once the SYNs to the protected ports reach `syn_pps`, until they stay below it for
    /// `calm`: clients keep every TCP option while there is no flood.
    UnderAttack,
}

/// `[synproxy]`: the program answers SYNs to `ports` with SYN cookies (XDP_TX), so a spoofed
/// SYN flood never fills a listener's SYN queue; netfilter's SYNPROXY (an nftables table the
/// daemon installs) completes proven handshakes with the listener. Absent: off.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SynproxySection {
    /// The TCP ports protected, IPv4 and IPv6 (at most 64 of them: the nftables rule lists
    /// them).
    pub ports: Vec<u16>,
    /// `always` or `under_attack`.
    pub when: SynproxyWhen,
    /// SYNs per second to the protected ports, all interfaces together, that start answering
    /// them (`under_attack`).
    pub syn_pps: u64,
    /// How long the SYN rate must stay below `syn_pps` before answering stops (`under_attack`).
    #[serde(with = "humantime_serde")]
    pub calm: Duration,
    /// The MSS SYN-ACKs advertise over IPv4 [default 0: the smallest attached interface's MTU
    /// less 40]; over IPv6 it is 20 less.
    pub mss: u16,
    /// The listener's receive window scale, advertised to clients [default: computed as the
    /// kernel does from net.ipv4.tcp_rmem and net.core.rmem_max]. Set it if the listener sets
    /// a small SO_RCVBUF or TCP_WINDOW_CLAMP: SYNPROXY does not translate window scales.
    pub wscale: Option<u8>,
}

/// Ports the nftables rule may list.
pub const MAX_PORTS: usize = 64;

impl Default for SynproxySection {
    fn default() -> Self {
        Self {
            ports: Vec::new(),
            when: SynproxyWhen::Always,
            syn_pps: 1000,
            calm: Duration::from_secs(120),
            mss: 0,
            wscale: None,
        }
    }
}

impl SynproxySection {
    pub(super) fn validate(
        &self,
        invalid: &impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.ports.is_empty() {
            return Err(invalid(
                "synproxy.ports",
                "no port given: list the TCP ports to protect, or remove [synproxy]",
            ));
        }
        if self.ports.len() > MAX_PORTS {
            return Err(invalid("synproxy.ports", "at most 64 ports"));
        }
        if self.ports.contains(&0) {
            return Err(invalid("synproxy.ports", "port 0 is not a port"));
        }
        if self.when == SynproxyWhen::UnderAttack && self.syn_pps == 0 {
            return Err(invalid(
                "synproxy.syn_pps",
                "must be above 0 with when = \"under_attack\" (or use when = \"always\")",
            ));
        }
        if self.calm < Duration::from_secs(1) {
            return Err(invalid("synproxy.calm", "at least 1s"));
        }
        if self.mss != 0 && !(536..=9000).contains(&self.mss) {
            return Err(invalid(
                "synproxy.mss",
                "536 to 9000, or 0 for the interface's",
            ));
        }
        if self.wscale.is_some_and(|w| w > 14) {
            return Err(invalid("synproxy.wscale", "0 to 14 (RFC 7323)"));
        }
        Ok(())
    }
}
