//! Requests and responses on the control socket, and their framing.
//!
//! Framing: one JSON object per line in each direction (debuggable with `socat - UNIX:PATH`),
//! at most [`MAX_FRAME`] bytes. A request is `{"version": 1, "cmd": "...", ...}`; the response
//! payloads are also what the CLI prints for `--json`, so their shape is the documented,
//! stable JSON schema.

mod request;
mod response;
mod synproxy;
mod views;

use serde::{Deserialize, Serialize};

pub use request::{ImportEntry, Request};
pub use response::ErrorKind;
pub use response::Response;
pub use synproxy::{SynproxyCountsView, SynproxyView};
pub use views::{
    AdmissionView, AggregateView, AllowView, CrowdsecView, EnrichStats, EnrichmentState,
    ExplainView, FeedView, FingerprintView, FleetView, HintsView, Hits, HookView, InterfaceStats,
    InterfaceView, LookupView, MapView, NotEnforced, OriginCounts, OriginDrops, PipelineView,
    PolicyView, ProgramView, RefusalView, StatusView, TopRow, UNRECORDED_SIGNATURES, UntrackedView,
    Verdict, VerdictView,
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

/// A request with its protocol version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

impl Envelope {
    /// Reads a request line. An import line is read as a plain struct: the flattened, tagged
    /// request first gathers the whole object into serde's generic buffer, which for a million
    /// entries held 320 MB besides the entries themselves.
    pub fn parse(line: &[u8]) -> serde_json::Result<Self> {
        if !line.starts_with(IMPORT_START) {
            return serde_json::from_slice(line);
        }
        let l: ImportLine = serde_json::from_slice(line)?;
        Ok(Self {
            version: l.version,
            request: Request::Import {
                decisions: l.decisions,
                origin: l.origin,
                source: l.source,
                ttl_secs: l.ttl_secs,
            },
        })
    }
}

/// [`Request::Import`]'s line, field for field (`cmd` is known from [`IMPORT_START`]).
#[derive(Deserialize)]
struct ImportLine {
    version: u32,
    decisions: Vec<ImportEntry>,
    #[serde(default)]
    origin: Option<crate::decision::Origin>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
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
                replace: false,
                reason: None,
                origin: None,
                source: None,
                challenge_pps: None,
                challenge_burst: None,
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

    /// An import of nothing, as the CLI would send it.
    fn empty_import() -> Envelope {
        Envelope {
            version: PROTOCOL_VERSION,
            request: Request::Import {
                decisions: Vec::new(),
                origin: None,
                source: None,
                ttl_secs: None,
            },
        }
    }

    #[test]
    fn an_import_line_starts_as_the_server_expects() {
        let e = empty_import();
        assert!(serde_json::to_vec(&e).unwrap().starts_with(IMPORT_START));
    }

    #[test]
    fn an_import_line_reads_as_the_generic_parse_reads_it() {
        let entry = |p: &str, reason: Option<&str>| ImportEntry {
            prefix: p.parse().unwrap(),
            action: Some(crate::decision::Action::Challenge),
            ttl_secs: Some(60),
            reason: reason.map(str::to_owned),
        };
        for e in [
            Envelope {
                version: PROTOCOL_VERSION,
                request: Request::Import {
                    decisions: vec![
                        entry("203.0.113.0/24", Some("a \"quoted\" reason")),
                        entry("2001:db8::/48", None),
                    ],
                    origin: Some(crate::decision::Origin::Feed),
                    source: Some("list".into()),
                    ttl_secs: Some(600),
                },
            },
            empty_import(),
            Envelope {
                version: PROTOCOL_VERSION,
                request: Request::Status,
            },
        ] {
            let line = serde_json::to_vec(&e).unwrap();
            assert_eq!(Envelope::parse(&line).unwrap(), e);
            assert_eq!(serde_json::from_slice::<Envelope>(&line).unwrap(), e);
        }
        // Malformed entries are refused by both.
        let bad = br#"{"version":1,"cmd":"import","decisions":[{"prefix":"nope"}]}"#;
        assert!(Envelope::parse(bad).is_err());
        assert!(serde_json::from_slice::<Envelope>(bad).is_err());
    }

    #[test]
    fn errors_carry_a_kind_and_an_older_daemons_answer_still_reads() {
        let e = Response::Error {
            message: "203.0.113.7/32 is not blocked".into(),
            kind: ErrorKind::NotFound,
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"type":"error","message":"203.0.113.7/32 is not blocked","kind":"not_found"}"#
        );
        let old: Response = serde_json::from_str(r#"{"type":"error","message":"x"}"#).unwrap();
        assert_eq!(
            old,
            Response::Error {
                message: "x".into(),
                kind: ErrorKind::Internal
            }
        );
        assert_eq!(ErrorKind::Invalid.exit_code(), 2);
        assert_eq!(ErrorKind::NotFound.exit_code(), 1);
        assert_eq!(ErrorKind::Full.name(), "full");
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
