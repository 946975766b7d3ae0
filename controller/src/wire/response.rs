//! What the daemon answers.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::views::{AllowView, ExplainView, InterfaceStats, LookupView, StatusView, TopRow};
use crate::decision::{Decision, Ended};

/// Every answer. Internally tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The request failed; `message` is one line for the operator.
    Error {
        message: String,
    },
    /// A plain acknowledgement.
    Done {
        message: String,
    },
    Status(StatusView),
    /// The decision a `block` created.
    Blocked {
        decision: Decision,
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
    History {
        entries: Vec<Ended>,
    },
    Decisions {
        decisions: Vec<Decision>,
        /// When paging: where the next page starts (`null` on the last page).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<IpNet>,
    },
    /// What an import did.
    Imported {
        enacted: usize,
        refused: usize,
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
