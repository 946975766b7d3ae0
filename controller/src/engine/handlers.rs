//! One function per control-socket request, each turning engine state into a protocol view.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use ipwarden_common::GlobalCounter;

use super::{BlockRequest, Engine};
use crate::{
    config::{Config, DEFAULT_PATH},
    decision::Decision,
    detect::SourceView,
    ipc::protocol::{
        AllowView, ExplainView, InterfaceStats, InterfaceView, Request, Response, StatusView,
        TopRow,
    },
};

fn error(e: impl std::fmt::Display) -> Response {
    Response::Error {
        message: e.to_string(),
    }
}

impl Engine {
    /// Answers one request. Never panics on bad input: every failure is a `Response::Error`.
    pub fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(self.status()),
            Request::Block {
                prefix,
                ttl_secs,
                permanent,
                reason,
            } => match self.block(BlockRequest {
                prefix,
                ttl: ttl_secs.map(Duration::from_secs),
                permanent,
                reason,
            }) {
                Ok(decision) => Response::Blocked { decision },
                Err(e) => error(e),
            },
            Request::Unblock { prefix } => match self.unblock(prefix) {
                Ok(decision) => Response::Unblocked { decision },
                Err(e) => error(e),
            },
            Request::List => Response::Decisions {
                decisions: self.decisions.values().cloned().collect(),
            },
            Request::AllowAdd { prefix } => match self.allow_add(prefix) {
                Ok(()) => Response::Done {
                    message: format!("allowlisted {}", prefix.trunc()),
                },
                Err(e) => error(e),
            },
            Request::AllowRm { prefix } => match self.allow_rm(prefix) {
                Ok(()) => Response::Done {
                    message: format!("removed {} from the allowlist", prefix.trunc()),
                },
                Err(e) => error(e),
            },
            Request::AllowList => Response::Allow {
                allow: self.allow_views(),
            },
            Request::Top { n } => Response::Top {
                sources: self
                    .detector
                    .top(n)
                    .into_iter()
                    .map(|s| self.row(s))
                    .collect(),
            },
            Request::Stats => match self.stats() {
                Ok(interfaces) => Response::Stats { interfaces },
                Err(e) => error(e),
            },
            Request::Explain { addr } => Response::Explain(self.explain(addr)),
            Request::Reload => self.reload_from_file(),
            Request::Lookup { addr, .. } => {
                // The daemon answers fresh lookups itself, outside the engine lock; here only
                // the cache is consulted.
                match self.lookup_view(addr) {
                    Some(v) => Response::Lookup(v),
                    None => error(format!("no cached IPASIS answer for {addr}")),
                }
            }
        }
    }

    /// The cached answer for an address's source unit, as `lookup` and `explain` show it.
    pub fn lookup_view(&self, addr: IpAddr) -> Option<crate::ipc::protocol::LookupView> {
        let source = Self::source_of(addr);
        let a = self.cached_answer(source)?;
        Some(crate::ipc::protocol::LookupView {
            addr,
            source,
            cached: true,
            age_secs: crate::decision::now_unix_ms().saturating_sub(a.fetched_unix_ms) / 1000,
            record: a.record,
        })
    }

    fn allow_views(&self) -> Vec<AllowView> {
        self.allowlist()
            .into_iter()
            .map(|(prefix, origin)| AllowView {
                prefix,
                origin: origin.to_owned(),
            })
            .collect()
    }

    fn row(&self, s: SourceView) -> TopRow {
        let decision = self
            .covering(s.source.network())
            .first()
            .map(|d| d.action.name().to_owned());
        TopRow {
            source: s.source,
            pps: (s.rates.pps * 10.0).round() / 10.0,
            syn_pps: (s.rates.syn_pps * 10.0).round() / 10.0,
            packets: s.packets,
            bytes: s.bytes,
            heavy: s.heavy,
            decision,
        }
    }

    fn status(&self) -> StatusView {
        let mut by_origin: BTreeMap<String, usize> = BTreeMap::new();
        for d in self.decisions.values() {
            *by_origin.entry(d.origin.name().to_owned()).or_default() += 1;
        }
        let (tracked, heavy) = self.detector.counts();
        StatusView {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            config: self.config_path.as_ref().map(|p| p.display().to_string()),
            state_db: self.store.path().display().to_string(),
            interfaces: self
                .planes
                .iter()
                .map(|p| InterfaceView {
                    iface: p.iface.clone(),
                    attach: p.attach.clone(),
                    monitor: p.dp.monitor().unwrap_or(false),
                })
                .collect(),
            decisions: self.decisions.len(),
            decisions_by_origin: by_origin,
            allow: self.allowlist().len(),
            tracked_sources: tracked,
            heavy_hitters: heavy,
            polls: self.polls,
            last_poll_ms: (self.last_poll.as_secs_f64() * 1e4).round() / 10.0,
            enrichment: self.enrichment_state.clone(),
            ipasis: self.enrichment().map(|p| p.view()),
            warnings: self.warnings.clone(),
        }
    }

    fn stats(&self) -> Result<Vec<InterfaceStats>, super::EngineError> {
        self.planes
            .iter()
            .map(|p| {
                let g = p.dp.globals().map_err(Self::plane_err(&p.iface))?;
                Ok(InterfaceStats {
                    iface: p.iface.clone(),
                    counters: GlobalCounter::ALL
                        .iter()
                        .map(|c| (c.name().to_owned(), g.get(*c)))
                        .collect(),
                })
            })
            .collect()
    }

    fn explain(&self, addr: IpAddr) -> ExplainView {
        let source = Self::source_of(addr);
        let allow: Vec<AllowView> = self
            .allow_views()
            .into_iter()
            .filter(|a| a.prefix.contains(&addr))
            .collect();
        let decisions: Vec<Decision> = self.covering(addr).into_iter().cloned().collect();
        let verdict = match (allow.is_empty(), decisions.first().map(|d| d.action)) {
            (false, _) => "allowed",
            (true, Some(crate::decision::Action::Block)) => "blocked",
            (true, Some(crate::decision::Action::Challenge)) => "challenged",
            (true, None) => "no decision",
        };
        ExplainView {
            addr,
            source,
            verdict: verdict.to_owned(),
            allow,
            decisions,
            rates: self.detector.get(&source).map(|s| self.row(s)),
            enrichment: self.lookup_view(addr),
        }
    }

    fn reload_from_file(&mut self) -> Response {
        let path = self
            .config_path
            .clone()
            .unwrap_or_else(|| DEFAULT_PATH.into());
        let explicit = self.config_path.is_some();
        let mut cfg = match Config::load(&path, explicit) {
            Ok(c) => c,
            Err(e) => {
                return error(format!(
                    "configuration not reloaded, the old one stays: {e}"
                ));
            }
        };
        // Command-line overrides given at start stay in force.
        cfg.daemon = self.cfg.daemon.clone();
        match self.reload(cfg) {
            Ok(notes) if notes.is_empty() => Response::Done {
                message: format!("reloaded {}", path.display()),
            },
            Ok(notes) => Response::Done {
                message: format!("reloaded {} ({})", path.display(), notes.join("; ")),
            },
            Err(e) => error(e),
        }
    }
}
