//! The daemon's core, synchronous and single-owner: the decision book, the allowlist, velocity
//! detection, and their projection into every enforcement point.
//!
//! Decisions come from sources (an operator, velocity, IPASIS, and the feeds, CrowdSec and
//! fleet to come) through one interface ([`sources`]): a source proposes and withdraws
//! decisions under its holder; the engine checks the allowlist, stores, projects and logs.
//!
//! Ordering rule, the same in every path ([`Engine::commit`]): a change is written to the store
//! (durably), then to the planes, then to memory, before the caller is answered. An
//! acknowledged change survives a crash; a crash between store and planes is repaired by
//! `restore`, and a plane that fails is rebuilt from the book at the next tick.
//!
//! Modules: `book` (decisions by prefix and holder), `enforce` (the enforcement trait and the
//! every-interface wrapper), `memory` (an in-memory enforcer for tests), `sources` (propose,
//! withdraw, replace), `detection` (poll ticks, velocity events, expiry), `enrichment` (IPASIS
//! answers to decisions), `handlers` (control requests to views).

mod allow;
mod book;
mod detection;
pub mod enforce;
mod enrichment;
mod error;
mod fingerprints;
mod handlers;
pub mod memory;
pub mod sources;
mod tags;
#[cfg(test)]
mod tests;
mod votes;

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use ipwarden_common::BlockEntry;

pub use book::Book;
pub use enforce::{AttachKind, Enforcer, Plane, Planes};
pub use enrichment::EnrichmentState;
pub use error::EngineError;
pub use memory::MemoryEnforcer;
pub use sources::{Applied, BlockRequest, CHUNK, Lift, Scope, SourceEvent};

use crate::{
    allowlist::Allowlist,
    config::Config,
    decision::{Decision, End, Ended, Origin, now_unix_ms},
    detect::Detector,
    enrich::Pipeline,
    net::host_prefix,
    store::Store,
};

/// A place decisions go besides the data plane (the fleet, metrics): told every committed
/// change, after the store and the planes. It must not block: the engine holds its lock.
pub trait Sink: Send {
    fn changed(&mut self, put: &[Decision], ended: &[Ended]);
}

/// What `restore` did, for the startup log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub decisions: usize,
    pub expired: usize,
    pub allow: usize,
}

/// How many warnings `status` keeps.
const WARNINGS: usize = 20;

/// How often expired history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub struct Engine {
    cfg: Config,
    config_path: Option<PathBuf>,
    store: Store,
    planes: Planes,
    book: Book,
    allow: Allowlist,
    detector: Detector,
    /// Heavy aggregates waiting for their busiest members' IPASIS verdicts.
    votes: HashMap<IpNet, votes::Vote>,
    /// SYN fingerprint rules (shipped, after the operator's).
    fingerprint_rules: crate::fingerprint::Rules,
    /// The data plane's SYN signatures, read at most once per poll.
    sig_index: fingerprints::SigIndex,
    /// Networks judged as a whole (`[detection.aggregate]`).
    aggregates: crate::aggregate::Aggregates,
    started: Instant,
    polls: u64,
    last_poll: Duration,
    /// Polls that took longer than the interval, and when that was last warned about.
    late_polls: u64,
    last_late_warning_ms: u64,
    warnings: VecDeque<String>,
    /// Conditions that hold for the daemon's whole life (no gateway found, pins that end with
    /// the process): shown first by `status`, never pushed out by newer warnings.
    standing: Vec<String>,
    /// Set while no default gateway is found (re-read with the routes).
    gateway_warning: Option<String>,
    /// Whether `restore` has made the planes equal to the store (before, changes are recorded
    /// only).
    restored: bool,
    enrich: Option<Arc<Pipeline>>,
    enrichment_state: EnrichmentState,
    /// Sources whose failed enrichment is retried (their episode reset) at this Unix ms. Keyed
    /// by attacker-chosen addresses: std's seeded hasher.
    retry_at: HashMap<IpNet, u64>,
    last_prune_ms: u64,
    sinks: Vec<Box<dyn Sink>>,
    fleet: Option<Arc<crate::fleet::Link>>,
    crowdsec: Option<Arc<crate::crowdsec::Link>>,
    feeds: Option<Arc<crate::feeds::Views>>,
    tags: tags::Tags,
    /// Replacements in progress (`SourceEvent::ReplaceBegin`), with what they kept so far.
    replacing: Vec<(
        Scope,
        std::collections::HashSet<(IpNet, crate::decision::Holder)>,
    )>,
}

impl Engine {
    pub fn new(
        cfg: Config,
        config_path: Option<PathBuf>,
        store: Store,
        planes: Vec<Plane>,
    ) -> Self {
        let detector = Detector::new(cfg.detection.clone());
        let aggregates = crate::aggregate::Aggregates::new(
            cfg.detection.aggregate.clone(),
            cfg.detection.window,
        );
        let mut allow = Allowlist::default();
        allow.set_configured(cfg.allow_prefixes());
        Self {
            cfg,
            config_path,
            store,
            planes: Planes::new(planes),
            book: Book::default(),
            allow,
            detector,
            aggregates,
            votes: HashMap::new(),
            sig_index: fingerprints::SigIndex::default(),
            fingerprint_rules: crate::fingerprint::Rules::load(None)
                .expect("the shipped fingerprint rules parse (a unit test checks them)"),
            started: Instant::now(),
            polls: 0,
            last_poll: Duration::ZERO,
            late_polls: 0,
            last_late_warning_ms: 0,
            warnings: VecDeque::new(),
            standing: Vec::new(),
            gateway_warning: None,
            restored: false,
            enrich: None,
            enrichment_state: EnrichmentState::VelocityOnly,
            retry_at: HashMap::new(),
            last_prune_ms: 0,
            sinks: Vec::new(),
            fleet: None,
            crowdsec: None,
            feeds: None,
            tags: tags::Tags::default(),
            replacing: Vec::new(),
        }
    }

    /// Adds a place every committed change goes to.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// The feeds' states, for `status`.
    pub fn set_feeds(&mut self, views: Arc<crate::feeds::Views>) {
        self.feeds = Some(views);
    }

    /// The CrowdSec link, for `status`.
    pub fn set_crowdsec(&mut self, link: Arc<crate::crowdsec::Link>) {
        self.crowdsec = Some(link);
    }

    /// The fleet link, for `status`.
    pub fn set_fleet(&mut self, link: Arc<crate::fleet::Link>) {
        self.fleet = Some(link);
    }

    /// Addresses that must never be blocked (default gateways, the API's addresses).
    /// Sets the protected prefixes (gateways, the API's and peers' addresses). Before the
    /// restore this only records them; later, what changed is applied to every plane.
    pub fn set_protected(&mut self, protected: crate::allowlist::Protected) {
        self.gateway_warning = (!protected.gateway_found).then(|| {
            "no default gateway found in this network namespace's routes: none is protected from blocking".to_owned()
        });
        let old: std::collections::BTreeSet<IpNet> =
            self.allow.protected().iter().copied().collect();
        let new: std::collections::BTreeSet<IpNet> = protected.prefixes.iter().copied().collect();
        if old == new {
            return;
        }
        self.allow.set_protected(protected.prefixes);
        if !self.restored {
            return;
        }
        let added: Vec<IpNet> = new.difference(&old).copied().collect();
        let removed: Vec<IpNet> = old.difference(&new).copied().collect();
        for p in &added {
            self.plane_change("protecting an address", |e| e.allow(*p));
        }
        let entries = self.allow.entries();
        for p in removed.iter().filter(|p| !entries.contains_key(p)) {
            self.plane_change("unprotecting an address", |e| e.disallow(*p));
        }
        tracing::info!(
            ?added,
            ?removed,
            "protected addresses changed (routes or DNS)"
        );
    }

    /// Write transactions the store has begun (each one fsync).
    pub fn store_writes(&self) -> u64 {
        self.store.write_transactions()
    }

    /// Every live decision.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Problems worth an operator's attention, newest last.
    pub fn warnings(&self) -> impl Iterator<Item = &String> {
        self.gateway_warning
            .iter()
            .chain(self.standing.iter())
            .chain(self.warnings.iter())
    }

    /// Records a problem for `status` (and the log).
    pub fn warn_now(&mut self, message: String) {
        self.warn(message);
    }

    /// One line for the service manager's `STATUS=` (shown by `systemctl status`).
    pub fn summary(&self) -> String {
        let warnings = self.warnings().count();
        let (tracked, heavy) = self.detector.counts();
        format!(
            "{} decisions, {tracked} sources tracked, {heavy} heavy hitters{}",
            self.book.len(),
            if warnings == 0 {
                String::new()
            } else {
                format!(", {warnings} warnings (ipwarden status)")
            }
        )
    }

    /// Records a condition that lasts as long as the daemon: `status` always shows it.
    pub fn warn_standing(&mut self, message: String) {
        tracing::error!("{message}");
        self.standing.push(message);
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push_back(message);
        while self.warnings.len() > WARNINGS {
            self.warnings.pop_front();
        }
    }

    /// The wanted kernel state: the enforced decision of every prefix, and the allowlist.
    fn wanted(&self, now_ms: u64) -> (Vec<(IpNet, BlockEntry)>, Vec<IpNet>) {
        let rules = self
            .book
            .effective_all()
            .map(|d| (d.prefix, d.kernel_entry(now_ms)))
            .collect();
        (rules, self.allow.entries().into_keys().collect())
    }

    /// Makes the planes equal to the engine's state: every plane with `all`, else those out of
    /// sync.
    fn resync(&mut self, all: bool) -> Vec<enforce::PlaneFailure> {
        if !all && !self.planes.any_out_of_sync() {
            return Vec::new();
        }
        let (rules, allow) = self.wanted(now_unix_ms());
        self.planes
            .resync(all, &rules, &allow, self.cfg.dataplane.monitor)
    }

    /// Loads the store and makes every plane equal to it: stored decisions and allow entries
    /// in, anything else (left by an older daemon or `ipwarden map` commands) out. Expired
    /// decisions go to the history. A plane that cannot be made equal fails the start.
    pub fn restore(&mut self) -> Result<Restored, EngineError> {
        let now = now_unix_ms();
        let mut report = Restored::default();
        let mut ended = Vec::new();
        for d in self.store.decisions()? {
            if d.expired(now) {
                ended.push(Ended {
                    decision: d,
                    end: End::Expired,
                    ended_unix_ms: now,
                });
            } else {
                self.book.insert(d);
            }
        }
        report.expired = ended.len();
        self.store.end_decisions(&ended)?;
        self.allow.set_runtime(self.store.allows()?);
        report.decisions = self.book.len();
        report.allow = self.allow.len();
        self.sync_all()?;
        self.restored = true;
        Ok(report)
    }

    /// Makes every plane equal to the book, or fails naming the planes that could not be.
    fn sync_all(&mut self) -> Result<(), EngineError> {
        let failures = self.resync(true);
        if failures.is_empty() {
            return Ok(());
        }
        let ifaces = failures
            .iter()
            .map(|f| format!("{} ({})", f.iface, enforce::error_chain(&f.error)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(EngineError::OutOfSync { ifaces })
    }

    /// Rebuilds the store from the first plane's maps (after an unreadable database was moved
    /// aside): every live entry becomes a decision of the origin its reason code names, with
    /// its remaining time; every allow entry that is not configured becomes a runtime entry.
    /// Returns (decisions, allow).
    pub fn import_from_maps(&mut self) -> Result<(usize, usize), EngineError> {
        let Some(plane) = self.planes.first() else {
            return Ok((0, 0));
        };
        let read_err = |source| EngineError::Dataplane {
            iface: plane.iface.clone(),
            source,
        };
        let now_ms = now_unix_ms();
        let now_ns = crate::clock::monotonic_ns();
        let mut decisions = Vec::new();
        for rule in plane.enforcer.rules().map_err(read_err)? {
            if !rule.entry.is_live(now_ns) {
                continue;
            }
            let origin = Origin::from_reason_code(rule.entry.reason).unwrap_or(Origin::Manual);
            let challenge = rule.entry.action == ipwarden_common::Action::CHALLENGE;
            let ttl = crate::clock::remaining(rule.entry.expires_at_ns);
            let reason = "rebuilt from the data plane after the state database was lost";
            let d = if challenge {
                Decision::new(
                    rule.net,
                    crate::decision::Action::Challenge,
                    crate::decision::Holder::of(origin),
                    reason,
                    now_ms,
                    ttl,
                )
                .with_rate(crate::decision::ChallengeRate {
                    pps: (1_000_000_000 / rule.entry.interval_ns.max(1)).max(1),
                    burst: rule.entry.burst,
                })
            } else {
                Decision::block(
                    rule.net,
                    crate::decision::Holder::of(origin),
                    reason,
                    now_ms,
                    ttl,
                )
            };
            decisions.push(d);
        }
        let configured = self.allow.entries();
        let mut allow = 0;
        for net in plane.enforcer.allows().map_err(read_err)? {
            if !configured.contains_key(&net) {
                self.store.put_allow(net)?;
                allow += 1;
            }
        }
        self.store
            .put_decisions(&decisions.iter().collect::<Vec<_>>())?;
        Ok((decisions.len(), allow))
    }

    /// The one path every change takes: `put` decisions (each replacing its holder's earlier
    /// one on the prefix) and `ended` ones, written to the store in one durable transaction,
    /// then the strongest remaining decision of every touched prefix to the planes, then the
    /// book. A plane that fails is marked out of sync (rebuilt at the next tick) and warned
    /// about; the change stands, since it is stored.
    fn commit(&mut self, mut put: Vec<Decision>, mut ended: Vec<Ended>) -> Result<(), EngineError> {
        if put.is_empty() && ended.is_empty() {
            return Ok(());
        }
        self.store.write(&put.iter().collect::<Vec<_>>(), &ended)?;
        let now = now_unix_ms();
        put.sort_by_key(|d| d.prefix);
        ended.sort_by_key(|e| e.decision.prefix);
        let (puts, removes) = self.projection(&put, &ended, now);
        self.plane_change("applying decisions", |e| {
            e.remove_rules(&removes)?;
            e.put_rules(&puts)
        });
        for sink in &mut self.sinks {
            sink.changed(&put, &ended);
        }
        for e in ended {
            let d = &e.decision;
            self.book.remove(&d.prefix, &d.holder());
            if !self.book.contains_prefix(&d.prefix) {
                // A new episode: the source is judged afresh if it floods again.
                self.detector.reset(&d.prefix);
            }
        }
        for d in put {
            self.book.insert(d);
        }
        Ok(())
    }

    /// The kernel entries to put and the prefixes to remove once `put` and `ended` (both
    /// sorted by prefix) are applied to the book.
    fn projection(
        &self,
        put: &[Decision],
        ended: &[Ended],
        now: u64,
    ) -> (Vec<(IpNet, BlockEntry)>, Vec<IpNet>) {
        let mut touched: Vec<IpNet> = put
            .iter()
            .map(|d| d.prefix)
            .chain(ended.iter().map(|e| e.decision.prefix))
            .collect();
        touched.sort();
        touched.dedup();
        let group = |p: &IpNet| {
            let new = range_of(put, |d| d.prefix.cmp(p));
            let gone = range_of(ended, |e| e.decision.prefix.cmp(p));
            (new, gone)
        };
        let (mut puts, mut removes) = (Vec::new(), Vec::new());
        for p in touched {
            let (new, gone) = group(&p);
            let kept = self.book.holders(&p).iter().filter(|d| {
                !gone.iter().any(|e| e.decision.held_by(&d.holder()))
                    && !new.iter().any(|n| n.held_by(&d.holder()))
            });
            let best = kept
                .chain(new.iter())
                .reduce(|best, d| if d.stronger_than(best) { d } else { best });
            match best {
                Some(d) => puts.push((p, d.kernel_entry(now))),
                None => removes.push(p),
            }
        }
        (puts, removes)
    }

    /// Applies a new configuration. Sections that only take effect at start are reported.
    pub fn reload(&mut self, cfg: Config) -> Result<Vec<String>, EngineError> {
        // Checked before anything changes: a bad rule file refuses the whole reload.
        let rules = crate::fingerprint::Rules::load(cfg.fingerprints.rules.as_deref())?;
        let mut notes = Vec::new();
        if cfg.daemon != self.cfg.daemon {
            notes.push("[daemon] changes apply at the next start".to_owned());
        }
        if cfg.metrics != self.cfg.metrics {
            notes.push("[metrics] changes apply at the next start".to_owned());
        }
        let mut new_dp = cfg.dataplane.clone();
        new_dp.monitor = self.cfg.dataplane.monitor;
        if new_dp != self.cfg.dataplane {
            notes.push("[dataplane] sizes and attach mode apply at the next attach".to_owned());
        }
        if cfg.ipasis != self.cfg.ipasis {
            notes.push("[ipasis] changes apply at the next start".to_owned());
        }
        self.detector.reconfigure(cfg.detection.clone());
        self.aggregates
            .reconfigure(cfg.detection.aggregate.clone(), cfg.detection.window);
        self.allow.set_configured(cfg.allow_prefixes());
        self.fingerprint_rules = rules;
        self.cfg = cfg;
        self.sync_all()?;
        tracing::info!("configuration reloaded");
        Ok(notes)
    }

    /// The current poll period (reloadable).
    pub fn poll_interval(&self) -> Duration {
        self.cfg.detection.poll_interval
    }

    /// The path the configuration was loaded from.
    pub fn config_path(&self) -> Option<&PathBuf> {
        self.config_path.as_ref()
    }

    /// The source unit (/32, /64) of an address, as the detector keys it.
    pub fn source_of(addr: std::net::IpAddr) -> IpNet {
        host_prefix(addr)
    }

    /// Prunes the history now and then (`decisions.history_retention`).
    fn prune_history(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_prune_ms) < PRUNE_EVERY.as_millis() as u64 {
            return;
        }
        self.last_prune_ms = now_ms;
        let cutoff = now_ms.saturating_sub(self.cfg.decisions.history_retention.as_millis() as u64);
        match self.store.prune_history(cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "history pruned"),
            Err(e) => self.warn(format!("pruning the decision history: {e}")),
        }
    }
}

/// The elements of `sorted` for which `cmp` is `Equal` (a run in a sorted slice).
fn range_of<T>(sorted: &[T], cmp: impl Fn(&T) -> std::cmp::Ordering) -> &[T] {
    let start = sorted.partition_point(|x| cmp(x).is_lt());
    let len = sorted[start..].partition_point(|x| cmp(x).is_eq());
    &sorted[start..start + len]
}
