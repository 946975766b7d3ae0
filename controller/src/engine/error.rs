//! Why an engine request was refused or failed.

use ipnet::IpNet;
use thiserror::Error;

use crate::{
    allowlist::AllowOrigin,
    dataplane::DataplaneError,
    decision::{Holder, Origin},
    store::StoreError,
};

/// Why a request was refused or failed. Refusals name what to do instead.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error(
        "refusing to block {prefix}: it overlaps the allowlisted {allow} ({origin}); remove that allow entry first if you really mean it"
    )]
    AllowlistConflict {
        prefix: IpNet,
        allow: IpNet,
        origin: AllowOrigin,
    },
    #[error("refusing to {op} {prefix}: a /0 covers every address")]
    Everything { op: &'static str, prefix: IpNet },
    #[error("{prefix} is not blocked (see `ipwarden list`)")]
    NotBlocked { prefix: IpNet },
    #[error(
        "{prefix} has no {holder} decision; it is held by {held_by}: lift one with --origin, or all with --all-origins"
    )]
    NotHeld {
        prefix: IpNet,
        holder: Holder,
        held_by: String,
    },
    #[error("{origin} decisions are made by the daemon's sources, not on the command line")]
    NotOperatorOrigin { origin: Origin },
    #[error("{prefix} is not a runtime allowlist entry (see `ipwarden allow list`)")]
    NotAllowed { prefix: IpNet },
    #[error("{prefix} is allowlisted by {origin}; change it in the configuration file and reload")]
    ConfiguredAllow { prefix: IpNet, origin: AllowOrigin },
    #[error(
        "a source's full set was not replaced, nothing it held was withdrawn: a part failed ({why})"
    )]
    ReplacementAborted { why: String },
    #[error(
        "refusing {origin}'s decision on {prefix}: wider than /{widest}, the widest a remote source may decide on ({setting})"
    )]
    TooWide {
        prefix: IpNet,
        origin: Origin,
        widest: u8,
        setting: &'static str,
    },
    #[error(
        "refusing a challenge on {prefix} at {} pps, burst {}: rates are 1 to {} pps with a burst of at least 1",
        rate.pps,
        rate.burst,
        crate::decision::ChallengeRate::MAX_PPS
    )]
    BadRate {
        prefix: IpNet,
        rate: crate::decision::ChallengeRate,
    },
    #[error(
        "refusing a decision of fleet peer {host}: it holds its share ({limit}, fleet.max_share of decisions.max_decisions)"
    )]
    PeerFull { host: String, limit: usize },
    #[error("the decision limit ({limit}, decisions.max_decisions) is reached")]
    Full { limit: usize },
    #[error(
        "{map} is full ({capacity} entries): raise {setting} (applies at the next start, without a gap); what the map holds stays enforced"
    )]
    MapFull {
        map: &'static str,
        capacity: usize,
        setting: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {iface}")]
    Dataplane {
        iface: String,
        #[source]
        source: DataplaneError,
    },
    #[error(
        "interfaces out of sync with the store: {ifaces} (rebuilt at the next poll; see `ipwarden status`)"
    )]
    OutOfSync { ifaces: String },
}
