//! One function per control-socket request, each turning engine state into a protocol view.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use ipwarden_common::GlobalCounter;

use super::{Engine, sources::BlockRequest, sources::Lift};
use crate::{
    config::{Config, DEFAULT_PATH},
    decision::{Action, Decision, Holder, Origin},
    detect::SourceView,
    wire::{
        AllowView, ExplainView, InterfaceStats, InterfaceView, LookupView, Request, Response,
        StatusView, TopRow,
    },
};

/// The decision an imported entry becomes under `holder`.
fn imported(
    e: crate::wire::ImportEntry,
    holder: &Holder,
    now_ms: u64,
    default_ttl: Duration,
    rate: crate::decision::ChallengeRate,
) -> Decision {
    let ttl = e.ttl_secs.map_or(default_ttl, Duration::from_secs);
    let reason = e.reason.unwrap_or_else(|| format!("imported ({holder})"));
    Decision::new(
        e.prefix,
        e.action.unwrap_or(Action::Block),
        holder.clone(),
        reason,
        now_ms,
        Some(ttl),
    )
    .with_rate(rate)
}

/// The program attached to an interface, as `status` shows it.
fn program_view(p: crate::dataplane::Program) -> crate::wire::ProgramView {
    let stamp = p.stamp;
    crate::wire::ProgramView {
        version: stamp
            .map(|s| s.version_str().to_owned())
            .unwrap_or_default(),
        build: stamp.map_or_else(|| "unstamped".into(), |s| format!("{:016x}", s.build)),
        layout: stamp.map_or(1, |s| s.layout),
        program_id: p.program_id,
        current: p.is_current(),
    }
}

fn error(e: impl std::fmt::Display) -> Response {
    Response::Error {
        message: e.to_string(),
    }
}

fn holder(origin: Option<Origin>, source: Option<String>) -> Holder {
    Holder {
        origin: origin.unwrap_or(Origin::Manual),
        source,
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
                origin,
                source,
            } => self.handle_block(
                BlockRequest {
                    prefix,
                    ttl: ttl_secs.map(Duration::from_secs),
                    permanent,
                    reason,
                },
                holder(origin, source),
            ),
            Request::Unblock {
                prefix,
                origin,
                source,
                all_origins,
            } => self.handle_unblock(prefix, origin, source, all_origins),
            Request::List {
                origin,
                after,
                limit,
            } => {
                let (page, next) = self.book.page(after, limit.unwrap_or(usize::MAX), |d| {
                    origin.is_none_or(|o| d.origin == o)
                });
                Response::Decisions {
                    decisions: page.into_iter().cloned().collect(),
                    next,
                }
            }
            Request::Import {
                decisions,
                origin,
                source,
                ttl_secs,
            } => self.handle_import(decisions, holder(origin, source), ttl_secs),
            Request::History { prefix, limit } => {
                match self.store.history(prefix.map(|p| p.trunc()), limit) {
                    Ok(entries) => Response::History { entries },
                    Err(e) => error(e),
                }
            }
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
            Request::Top { n } => {
                let mut rows: Vec<TopRow> = self
                    .detector
                    .top(n)
                    .into_iter()
                    .map(|s| self.row(s))
                    .collect();
                let sources: Vec<IpNet> = rows.iter().map(|r| r.source).collect();
                for (row, os) in rows.iter_mut().zip(self.os_guesses(&sources)) {
                    row.os = os;
                }
                Response::Top { sources: rows }
            }
            Request::Stats => self.handle_stats(),
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

    fn handle_import(
        &mut self,
        entries: Vec<crate::wire::ImportEntry>,
        holder: Holder,
        ttl_secs: Option<u64>,
    ) -> Response {
        if !matches!(holder.origin, Origin::Manual | Origin::Feed) {
            return error(super::EngineError::NotOperatorOrigin {
                origin: holder.origin,
            });
        }
        let now = crate::decision::now_unix_ms();
        let default_ttl = ttl_secs
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.decisions.default_ttl);
        let rate = crate::decision::ChallengeRate {
            pps: self.cfg.scoring.challenge_pps,
            burst: self.cfg.scoring.challenge_burst,
        };
        let decisions = entries
            .into_iter()
            .map(|e| imported(e, &holder, now, default_ttl, rate))
            .collect();
        match self.propose_batch(decisions) {
            Ok(a) => Response::Imported {
                enacted: a.enacted,
                refused: a.refused,
            },
            Err(e) => error(e),
        }
    }

    fn handle_block(&mut self, req: BlockRequest, holder: Holder) -> Response {
        match self.block(req, holder) {
            Ok(decision) => Response::Blocked { decision },
            Err(e) => error(e),
        }
    }

    fn handle_unblock(
        &mut self,
        prefix: IpNet,
        origin: Option<Origin>,
        source: Option<String>,
        all: bool,
    ) -> Response {
        let what = if all {
            Lift::All
        } else {
            Lift::Holder(holder(origin, source))
        };
        match self.unblock(prefix, what) {
            Ok((lifted, still)) => match lifted.first() {
                Some(first) => Response::Unblocked {
                    decision: first.clone(),
                    lifted,
                    still,
                },
                None => error(format!("{} is not blocked", prefix.trunc())),
            },
            Err(e) => error(e),
        }
    }

    /// The cached answer for an address's source unit, as `lookup` and `explain` show it.
    pub fn lookup_view(&self, addr: IpAddr) -> Option<LookupView> {
        let source = Self::source_of(addr);
        let a = self.cached_answer(source)?;
        Some(LookupView {
            addr,
            source,
            cached: true,
            age_secs: crate::decision::now_unix_ms().saturating_sub(a.fetched_unix_ms) / 1000,
            record: a.record,
        })
    }

    fn allow_views(&self) -> Vec<AllowView> {
        self.allow
            .entries()
            .into_iter()
            .map(|(prefix, origin)| AllowView { prefix, origin })
            .collect()
    }

    fn row(&self, s: SourceView) -> TopRow {
        let decision = self
            .book
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
            os: None,
        }
    }

    fn status(&self) -> StatusView {
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
                    attach: p.attach.name().to_owned(),
                    monitor: p.enforcer.monitor().unwrap_or(false),
                    out_of_sync: p.out_of_sync().map(str::to_owned),
                    program: p.enforcer.program().map(program_view),
                })
                .collect(),
            decisions: self.book.len(),
            decisions_by_origin: self
                .book
                .count_by_origin()
                .into_iter()
                .map(|(o, n)| (o.name().to_owned(), n))
                .collect(),
            allow: self.allow.len(),
            tracked_sources: tracked,
            heavy_hitters: heavy,
            polls: self.polls,
            late_polls: self.late_polls,
            aggregates_tracked: self.aggregates.counts().0,
            heavy_aggregates: self.aggregates.counts().1,
            last_poll_ms: (self.last_poll.as_secs_f64() * 1e4).round() / 10.0,
            enrichment: self.enrichment_state.to_string(),
            ipasis: self.enrichment().map(|p| p.view()),
            warnings: self.warnings().cloned().collect(),
            fleet: self.fleet.as_ref().map(|l| Box::new(l.view())),
            crowdsec: self.crowdsec.as_ref().map(|l| Box::new(l.view())),
            feeds: self.feeds.as_ref().map(|f| f.all()).unwrap_or_default(),
        }
    }

    fn handle_stats(&self) -> Response {
        match self.planes.globals() {
            Ok(by_iface) => Response::Stats {
                interfaces: by_iface
                    .into_iter()
                    .map(|(iface, g)| InterfaceStats {
                        iface,
                        counters: GlobalCounter::ALL
                            .iter()
                            .map(|c| (c.name().to_owned(), g.get(*c)))
                            .collect(),
                    })
                    .collect(),
            },
            Err(f) => error(format!(
                "reading {}: {}",
                f.iface,
                super::enforce::error_chain(&f.error)
            )),
        }
    }

    fn explain(&self, addr: IpAddr) -> ExplainView {
        let source = Self::source_of(addr);
        let allow: Vec<AllowView> = self
            .allow
            .covering(addr)
            .into_iter()
            .map(|(prefix, origin)| AllowView { prefix, origin })
            .collect();
        let decisions: Vec<Decision> = self.book.covering_all(addr).into_iter().cloned().collect();
        let verdict = match (allow.is_empty(), decisions.first().map(|d| d.action)) {
            (false, _) => "allowed",
            (true, Some(Action::Block)) => "blocked",
            (true, Some(Action::Challenge)) => "challenged",
            (true, None) => "no decision",
        };
        ExplainView {
            addr,
            source,
            verdict: verdict.to_owned(),
            allow,
            decisions,
            rates: self.rates_of(addr).map(|s| self.row(s)),
            enrichment: self.lookup_view(addr),
            aggregates: self.aggregates.containing(addr),
            fingerprints: self.fingerprints_of(source),
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

impl Engine {
    /// What a metrics scrape shows: `status`, `stats` and the decisions by origin and action.
    /// `None` when the counters cannot be read (the scrape then carries the build info only).
    pub fn metrics_snapshot(&self) -> Option<crate::metrics::Snapshot> {
        let Response::Stats { interfaces } = self.handle_stats() else {
            return None;
        };
        let decisions = self
            .book
            .count_by_origin_action()
            .into_iter()
            .map(|((o, a), n)| ((o.name().to_owned(), a.to_owned()), n))
            .collect();
        Some(crate::metrics::Snapshot {
            status: self.status(),
            stats: interfaces,
            decisions,
        })
    }
}
