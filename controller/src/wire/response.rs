//! What the daemon answers.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::views::{AllowView, ExplainView, Hits, InterfaceStats, LookupView, StatusView, TopRow};
use crate::decision::{Decision, Ended};

/// Every answer. Internally tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The request failed; `message` is one line for the operator, `kind` what a program (and
    /// the CLI's exit code) can tell from it.
    Error {
        message: String,
        #[serde(default)]
        kind: ErrorKind,
    },
    /// A plain acknowledgement.
    Done {
        message: String,
    },
    Status(StatusView),
    /// The decision a `block` created.
    Blocked {
        decision: Decision,
        /// The holder's existing block lasted longer and its expiry was kept (no `replace`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        kept_longer: bool,
    },
    /// What an `unblock` removed: `decision` is the first (the one before several holders
    /// existed), `lifted` all of them, `still` the decisions that still hold the prefix.
    Unblocked {
        decision: Decision,
        #[serde(default)]
        lifted: Vec<Decision>,
        #[serde(default)]
        still: Vec<Decision>,
    },
    /// The configuration in force, as TOML that `config check` accepts.
    Config {
        toml: String,
    },
    /// How many decisions a bulk `unblock` lifted.
    LiftedMany {
        lifted: usize,
    },
    History {
        entries: Vec<Ended>,
    },
    Decisions {
        decisions: Vec<Decision>,
        /// When paging: where the next page starts (`null` on the last page).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<IpNet>,
        /// On the first page only (the hit tables are read once per listing): what each
        /// enforced decision of the listing dropped, for those that dropped anything.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        hits: Vec<Hits>,
    },
    /// What an import did; `reasons` says why entries were refused (entries refused for the
    /// same reason, such as a full map, once, with their count).
    Imported {
        enacted: usize,
        refused: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reasons: Vec<String>,
        /// The first refused entries' prefixes (at most 20), so that the CLI can name their
        /// lines.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused_prefixes: Vec<IpNet>,
    },
    Allow {
        allow: Vec<AllowView>,
    },
    Top {
        sources: Vec<TopRow>,
    },
    Stats {
        interfaces: Vec<InterfaceStats>,
    },
    Explain(ExplainView),
    Lookup(LookupView),
}

/// Why a request failed, for programs: the message is for people.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request cannot be read or names something impossible (exit code 2).
    Invalid,
    /// What it names is not there (not blocked, not allowlisted, no cached answer).
    NotFound,
    /// It is refused by a rule (the allowlist, a /0, an origin the CLI may not give).
    Refused,
    /// A limit is reached (`decisions.max_decisions`).
    Full,
    /// A part it needs is off or unreachable (IPASIS).
    Unavailable,
    /// The daemon failed (its store, the data plane); also what an answer without a kind
    /// means.
    #[default]
    Internal,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        crate::names::of(&self)
    }

    /// The CLI's exit code for it: 2 for a request that cannot be made (bad usage or input),
    /// 1 for every other failure (3, the daemon unreachable, is the client's own).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Invalid => 2,
            _ => 1,
        }
    }
}
