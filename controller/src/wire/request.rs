//! What the CLI asks the daemon.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::decision::{Action, Origin};

fn default_history_limit() -> usize {
    1000
}

/// Everything the CLI can ask the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Block {
        prefix: IpNet,
        /// Seconds; `None` means the configured default TTL unless `permanent`.
        ttl_secs: Option<u64>,
        #[serde(default)]
        permanent: bool,
        /// Set the TTL even when it shortens the holder's existing block (otherwise the later
        /// expiry is kept).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replace: bool,
        reason: Option<String>,
        /// Who holds it: `manual` (the default) or `feed` (with `source`, a list the operator
        /// loads by hand).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// Challenge instead of block: each covered source may send this many packets a
        /// second (with bursts of `challenge_burst`, default `scoring.challenge_burst`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        challenge_pps: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        challenge_burst: Option<u32>,
    },
    /// Lifts the manual decision on exactly `prefix` (or `origin`/`source`'s, or every one).
    Unblock {
        prefix: IpNet,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all_origins: bool,
    },
    /// Lifts, in one transaction, every decision inside `range` and/or of `origin` (and
    /// `source`): bulk removal. At least one of `range` and `origin` is required.
    UnblockWhere {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<IpNet>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    List {
        /// Only this origin's decisions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
        /// A page: prefixes after this one (the previous page's `next`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<IpNet>,
        /// At most about this many decisions (a prefix's holders are never split); without it,
        /// every decision (which a million of would not fit in one answer: the CLI pages).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Many decisions in one durable transaction (`ipwarden import`).
    Import {
        decisions: Vec<ImportEntry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// TTL of entries without their own; `None`: `decisions.default_ttl`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_secs: Option<u64>,
    },
    /// Expired and lifted decisions, newest last.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<IpNet>,
        #[serde(default = "default_history_limit")]
        limit: usize,
    },
    AllowAdd {
        prefix: IpNet,
    },
    AllowRm {
        prefix: IpNet,
    },
    AllowList,
    Top {
        n: usize,
    },
    Stats,
    Explain {
        addr: IpAddr,
    },
    Reload,
    /// The configuration in force, defaults filled in (`config show`).
    ConfigShow,
    /// What IPASIS says about an address: the cached answer, or a fresh lookup.
    Lookup {
        addr: IpAddr,
        #[serde(default)]
        fresh: bool,
    },
}

/// One decision to import (`ipwarden import` reads them from a file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportEntry {
    pub prefix: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Its own TTL, if the input said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
