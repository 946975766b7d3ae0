//! Requests and responses on the control socket, and their framing.
//!
//! Framing: one JSON object per line in each direction (debuggable with `socat - UNIX:PATH`),
//! at most [`MAX_FRAME`] bytes. A request is `{"version": 1, "cmd": "...", ...}`; the response
//! payloads are also what the CLI prints for `--json`, so their shape is the documented,
//! stable JSON schema.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    decision::{Decision, Origin},
    store::Ended,
};

/// Bumped on incompatible changes; the daemon refuses other versions with a clear error.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest request or response line, newline included.
pub const MAX_FRAME: usize = 16 << 20;

/// Largest request line the daemon reads (requests are small; this bounds a hostile peer).
pub const MAX_REQUEST: usize = 64 << 10;

/// Largest `import` request: a million prefixes are about 50 MB. Only a line that starts as an
/// import (`IMPORT_START`, as the CLI writes it) may grow past [`MAX_REQUEST`].
pub const MAX_IMPORT: usize = 128 << 20;

/// How an import request line starts.
pub const IMPORT_START: &[u8] = br#"{"version":1,"cmd":"import","#;

fn default_history_limit() -> usize {
    1000
}

/// A request with its protocol version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
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
        reason: Option<String>,
        /// Who holds it: `manual` (the default) or `feed` (with `source`, a list the operator
        /// loads by hand).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
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
        decisions: Vec<crate::import::Entry>,
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
    /// What IPASIS says about an address: the cached answer, or a fresh lookup.
    Lookup {
        addr: IpAddr,
        #[serde(default)]
        fresh: bool,
    },
}

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

/// An IPASIS answer and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LookupView {
    pub addr: IpAddr,
    /// The unit answers are cached and decisions made for.
    pub source: IpNet,
    pub cached: bool,
    pub age_secs: u64,
    /// `null` when IPASIS rejected the address (400).
    pub record: Option<crate::enrich::Record>,
}

/// `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub config: Option<String>,
    pub state_db: String,
    pub interfaces: Vec<InterfaceView>,
    pub decisions: usize,
    /// Decisions per origin (`manual`, `velocity`, `ipasis`, `feed`, `crowdsec`, `fleet`).
    pub decisions_by_origin: BTreeMap<String, usize>,
    pub allow: usize,
    pub tracked_sources: usize,
    pub heavy_hitters: usize,
    pub polls: u64,
    pub last_poll_ms: f64,
    /// Polls that took longer than `detection.poll_interval` (the next started late).
    #[serde(default)]
    pub late_polls: u64,
    /// Aggregates (networks) tracked, and how many are heavy now.
    #[serde(default)]
    pub aggregates_tracked: usize,
    #[serde(default)]
    pub heavy_aggregates: usize,
    /// `on`, or `off` with the reason (no API key, disabled).
    pub enrichment: String,
    /// The enrichment stage, when on.
    pub ipasis: Option<crate::enrich::pipeline::PipelineView>,
    /// Problems worth an operator's attention, newest last.
    pub warnings: Vec<String>,
    /// The fleet link, when `[fleet]` is configured (boxed: most hosts have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Box<crate::fleet::FleetView>>,
    /// The CrowdSec link, when `[crowdsec]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<Box<crate::crowdsec::CrowdsecView>>,
    /// Every `[[feeds]]` entry's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<crate::feeds::FeedView>,
}

/// One attachment in `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceView {
    pub iface: String,
    /// `driver`, `skb`, or `adopted` when the daemon reused an existing attachment.
    pub attach: String,
    pub monitor: bool,
    /// Why the interface's maps differ from the store, until the next poll rebuilds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_sync: Option<String>,
    /// The attached program: which build and layout stamped the pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramView>,
}

/// The XDP program attached to an interface, from its pins' stamp and its link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramView {
    /// The ipwarden version that attached (or last upgraded) it; empty when unstamped.
    pub version: String,
    /// The data plane build id (16 hex digits); `unstamped` for pins of a release before stamps.
    pub build: String,
    pub layout: u32,
    /// The kernel's program id (`bpftool prog show id N`); 0 if the link could not be read.
    pub program_id: u32,
    /// Whether it is this binary's build.
    pub current: bool,
}

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct AllowView {
    pub prefix: IpNet,
    /// `builtin` (loopback, link-local), `protected` (default gateways, the API's addresses),
    /// `config` (`allow.prefixes`) or `runtime` (`allow add`).
    pub origin: crate::allowlist::AllowOrigin,
}

/// One row of `top`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopRow {
    pub source: IpNet,
    pub pps: f64,
    pub syn_pps: f64,
    pub packets: u64,
    pub bytes: u64,
    pub heavy: bool,
    /// The action of the decision covering the source, if any.
    pub decision: Option<String>,
    /// The OS family its TCP SYNs look like (several joined with `+`), if it sent any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// Global counters of one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStats {
    pub iface: String,
    pub counters: BTreeMap<String, u64>,
}

/// `explain`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainView {
    pub addr: IpAddr,
    /// The unit the address is counted and judged as: its /32 or /64.
    pub source: IpNet,
    /// `allowed`, `blocked`, `challenged` or `no decision`.
    pub verdict: String,
    pub allow: Vec<AllowView>,
    /// Every holder's decision on the prefixes covering the address: most specific prefix
    /// first, the enforced one first within a prefix.
    pub decisions: Vec<Decision>,
    pub rates: Option<TopRow>,
    /// The cached IPASIS answer for the source, if any.
    pub enrichment: Option<LookupView>,
    /// The networks holding the address that detection tracks as aggregates, narrowest first.
    #[serde(default)]
    pub aggregates: Vec<crate::aggregate::AggregateView>,
    /// The TCP SYN signatures its source sent, classified.
    #[serde(default)]
    pub fingerprints: Vec<crate::fingerprint::FingerprintView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_flat_json_objects() {
        let e = Envelope {
            version: PROTOCOL_VERSION,
            request: Request::Block {
                prefix: "203.0.113.0/24".parse().unwrap(),
                ttl_secs: Some(60),
                permanent: false,
                reason: None,
                origin: None,
                source: None,
            },
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"version":1,"cmd":"block","prefix":"203.0.113.0/24","ttl_secs":60,"permanent":false,"reason":null}"#
        );
        assert_eq!(serde_json::from_str::<Envelope>(&s).unwrap(), e);
        let top: Envelope = serde_json::from_str(r#"{"version":1,"cmd":"top","n":5}"#).unwrap();
        assert_eq!(top.request, Request::Top { n: 5 });
        // What the previous release's CLI sends still reads.
        let list: Envelope = serde_json::from_str(r#"{"version":1,"cmd":"list"}"#).unwrap();
        assert_eq!(
            list.request,
            Request::List {
                origin: None,
                after: None,
                limit: None
            }
        );
        let unblock: Envelope =
            serde_json::from_str(r#"{"version":1,"cmd":"unblock","prefix":"203.0.113.7/32"}"#)
                .unwrap();
        assert!(matches!(
            unblock.request,
            Request::Unblock {
                origin: None,
                all_origins: false,
                ..
            }
        ));
    }

    #[test]
    fn an_import_line_starts_as_the_server_expects() {
        let e = Envelope {
            version: PROTOCOL_VERSION,
            request: Request::Import {
                decisions: Vec::new(),
                origin: None,
                source: None,
                ttl_secs: None,
            },
        };
        assert!(serde_json::to_vec(&e).unwrap().starts_with(IMPORT_START));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{",
            "null",
            r#"{"version":1}"#,
            r#"{"version":1,"cmd":"launch_missiles"}"#,
            r#"{"version":1,"cmd":"block","prefix":"300.0.0.0/8"}"#,
            r#"{"version":"one","cmd":"status"}"#,
        ] {
            assert!(serde_json::from_str::<Envelope>(bad).is_err(), "{bad}");
        }
    }
}
