//! The synproxy's part of `status` (see `crate::synproxy`).

use serde::{Deserialize, Serialize};

/// The synproxy in `status` (`[synproxy]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SynproxyView {
    pub ports: Vec<u16>,
    /// `always` or `under_attack`.
    pub when: String,
    /// Whether SYNs are answered now.
    pub answering: bool,
    /// SYNs per second to the protected ports at the last poll (all interfaces).
    pub syn_pps: f64,
    /// Times answering started and stopped.
    pub entered: u64,
    pub left: u64,
    pub mss_v4: u16,
    pub mss_v6: u16,
    /// 255: the listener does not scale.
    pub wscale: u8,
    /// Why answering is off although it should be on (the nftables table is missing), if so.
    pub problem: Option<String>,
    pub counts: SynproxyCountsView,
}

/// What the program did with SYNs and handshake ACKs to the protected ports (summed over
/// interfaces).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynproxyCountsView {
    /// SYNs to protected ports, answered or not.
    pub syns: u64,
    /// SYNs answered with a cookie SYN-ACK.
    pub answered: u64,
    /// SYNs passed on: a connection held their 4-tuple.
    pub existing: u64,
    /// SYNs passed on: nothing listened on their port.
    pub no_listener: u64,
    /// Handshake ACKs whose cookie checked out (SYNPROXY then opened the connection).
    pub accepted: u64,
    /// ACKs with no connection and no valid cookie: dropped.
    pub refused: u64,
    /// SYNs passed on unanswered (IPv4 options, IPv6 extension headers).
    pub unfit: u64,
}
