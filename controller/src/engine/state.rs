//! The engine's state and the one path every change takes ([`Engine::commit`]): a change is
//! written to the store (durably), then to memory and the planes, before the caller is
//! answered (a large one is written to the store beside the others: `bulk`). An acknowledged
//! change survives a crash; a crash between store and planes is repaired by `restore`, and a
//! plane that fails is rebuilt from the book at the next tick.

use std::{collections::VecDeque, time::Duration};

use ipnet::IpNet;
use ipwarden_common::BlockEntry;

use super::{
    Book, EngineError, Planes,
    events::Replacement,
    planes::{self, Plane},
    projection::{MapFill, Projection},
    refusals::Refusals,
    sink::Sink,
};
use crate::{
    allowlist::Allowlist,
    config::Config,
    decision::{Decision, End, Ended, Holder, Origin, now_unix_ms},
    store::{CachedAnswer, Store},
};

/// What `restore` did, for the startup log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub decisions: usize,
    pub expired: usize,
    pub allow: usize,
}

/// What [`super::Engine::enter_book_and_planes`] did, for an undo.
pub(super) struct Taken {
    /// The prefixes touched, in order, once each.
    pub touched: Vec<IpNet>,
    /// The decisions the change replaced (only when asked to keep them).
    pub replaced: Vec<Decision>,
}

/// A commit putting at least this many decisions takes the bulk path (`bulk`): below, a thread
/// costs more than it saves. Unit tests take it from a few decisions, so that theirs cover it.
#[cfg(not(test))]
pub(super) const BULK_FROM: usize = super::book::COMPACT_FROM;
#[cfg(test)]
pub(super) const BULK_FROM: usize = 64;

/// Tells every sink of a committed change. A function of the sinks alone, so that a bulk
/// commit can tell them of decisions it reads from the book.
pub(super) fn tell(sinks: &mut [Box<dyn Sink>], put: &[&Decision], ended: &[Ended]) {
    for sink in sinks {
        sink.changed(put, ended);
    }
}

/// How many warnings `status` keeps.
const WARNINGS: usize = 20;

/// How often expired history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A commit of at least this many decisions, and at least a quarter of the book, compacts the
/// book afterwards (see [`super::Book::compact`]).
const COMPACT_FROM: usize = super::book::COMPACT_FROM;

pub struct Engine {
    pub(super) cfg: Config,
    /// Shared with the thread that writes a bulk change (see `bulk`).
    pub(super) store: std::sync::Arc<Store>,
    pub(super) planes: Planes,
    pub(super) book: Book,
    pub(super) allow: Allowlist,
    pub(super) warnings: VecDeque<String>,
    /// Conditions that hold for the daemon's whole life (no gateway found, pins that end with
    /// the process): shown first by `status`, never pushed out by newer warnings.
    standing: Vec<String>,
    /// Set while no default gateway is found (re-read with the routes).
    pub(super) gateway_warning: Option<String>,
    /// Whether `restore` has made the planes equal to the store (before, changes are recorded
    /// only).
    pub(super) restored: bool,
    last_prune_ms: u64,
    pub(super) sinks: Vec<Box<dyn Sink>>,
    /// What the kernel holds of the book (shadowed and left-out prefixes, map fill).
    pub(super) projection: Projection,
    /// Replacements in progress (`SourceEvent::ReplaceBegin`), with what they kept so far.
    pub(super) replacing: Vec<Replacement>,
    /// Decisions refused, by origin and why.
    pub(super) refusals: Refusals,
    /// Fleet decisions held, by peer host (each within `fleet.max_share`).
    pub(super) per_peer: std::collections::HashMap<String, usize>,
    /// Set when a replacement failed: the next checkpoint is not stored (a restart then reads
    /// again what this one may have missed), with why.
    pub(super) checkpoint_held: Option<String>,
    /// Prefixes whose last decision ended since [`Engine::take_ended`]: a source there starts a
    /// new episode (detection judges it afresh if it floods again).
    pub(super) ended: Vec<IpNet>,
}

impl Engine {
    pub fn new(cfg: Config, store: Store, planes: Vec<Plane>) -> Self {
        let mut allow = Allowlist::default();
        allow.set_configured(cfg.allow_prefixes());
        let planes = Planes::new(planes);
        let projection = Projection::new(&planes.capacities());
        Self {
            projection,
            cfg,
            store: std::sync::Arc::new(store),
            planes,
            book: Book::default(),
            allow,
            warnings: VecDeque::new(),
            standing: Vec::new(),
            gateway_warning: None,
            restored: false,
            last_prune_ms: 0,
            sinks: Vec::new(),
            replacing: Vec::new(),
            checkpoint_held: None,
            refusals: Refusals::default(),
            per_peer: Default::default(),
            ended: Vec::new(),
        }
    }

    /// Adds a place every committed change goes to.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
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
        self.allow_changed();
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

    /// Records a condition that lasts as long as the daemon: `status` always shows it.
    pub fn warn_standing(&mut self, message: String) {
        tracing::error!("{message}");
        self.standing.push(message);
    }

    pub fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push_back(message);
        while self.warnings.len() > WARNINGS {
            self.warnings.pop_front();
        }
    }

    /// The wanted kernel state: the enforced decision of every prefix that is not shadowed
    /// and fits, the strongest first, and the allowlist.
    fn wanted(&mut self, now_ms: u64) -> (Vec<(IpNet, BlockEntry)>, Vec<IpNet>) {
        let rules = self.projection.full(&self.book, now_ms);
        let left_out: Vec<String> = self
            .projection
            .fills()
            .into_iter()
            .filter(|f| f.left_out > 0)
            .map(|f| {
                format!(
                    "{} decisions are not enforced: {} is full ({} entries); raise {}",
                    f.left_out,
                    f.map.name(),
                    f.capacity,
                    f.map.setting()
                )
            })
            .collect();
        for w in left_out {
            self.warn(w);
        }
        (rules, self.allow.entries().into_keys().collect())
    }

    /// Makes the planes equal to the engine's state: every plane with `all`, else those out of
    /// sync.
    fn resync(&mut self, mut all: bool) -> Vec<planes::PlaneFailure> {
        // Decisions left out of a full map come back once others made room.
        all |= self.restored && self.projection.wants_resync();
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
        let stored = self.store.decisions()?;
        // In the store's order (its keys' text order, not the prefixes'): the batch sorts them.
        let mut batch = self.book.batch(stored.len());
        for d in super::shed::shed(stored) {
            if d.expired(now) {
                ended.push(Ended {
                    decision: d,
                    end: End::Expired,
                    ended_unix_ms: now,
                });
            } else {
                super::peers::count_peer(&mut self.per_peer, d.peer(), 1);
                let prefix = d.prefix;
                if batch.insert_noting(d).1 {
                    self.projection.added(&prefix);
                }
            }
        }
        batch.finish();
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
            .map(|f| format!("{} ({})", f.iface, planes::error_chain(&f.error)))
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
    /// told to the sinks, moved into the book (which owns them: no copy), then what that
    /// changes of the kernel's projection (see `projection`) to the planes. A plane that fails
    /// is marked out of sync (rebuilt at the next tick) and warned about; the change stands,
    /// since it is stored. A large change takes [`Engine::commit_bulk`]: the same steps, with
    /// the store's write beside the book's and the planes'.
    pub(super) fn commit(
        &mut self,
        put: Vec<Decision>,
        ended: Vec<Ended>,
    ) -> Result<(), EngineError> {
        if put.is_empty() && ended.is_empty() {
            return Ok(());
        }
        if put.len() >= BULK_FROM {
            return self.commit_bulk(put, ended);
        }
        self.commit_in_turn(put, ended)
    }

    /// [`Engine::commit`]'s ordinary path: the store, the sinks, the book and the planes in turn.
    pub(super) fn commit_in_turn(
        &mut self,
        put: Vec<Decision>,
        ended: Vec<Ended>,
    ) -> Result<(), EngineError> {
        let refs: Vec<&Decision> = put.iter().collect();
        self.store.write(&refs, &ended)?;
        // The sinks hear of what is durable first: then the book takes the decisions.
        tell(&mut self.sinks, &refs, &ended);
        drop(refs);
        self.enter_book_and_planes(put, &ended, false);
        Ok(())
    }

    /// A change's book and planes part (see [`Engine::commit`]): the decisions `put` replaced
    /// when `keep_replaced` (to undo it), and the prefixes it touched, in order.
    pub(super) fn enter_book_and_planes(
        &mut self,
        put: Vec<Decision>,
        ended: &[Ended],
        keep_replaced: bool,
    ) -> Taken {
        let now = now_unix_ms();
        let mut touched: Vec<IpNet> = Vec::with_capacity(put.len() + ended.len());
        for e in ended {
            let d = &e.decision;
            if self.book.remove(&d.prefix, &d.holder()).is_some() {
                self.peer_count(d.peer(), -1);
            }
            if !self.book.contains_prefix(&d.prefix) {
                self.projection.removed(&d.prefix);
                self.ended.push(d.prefix);
            }
            touched.push(d.prefix);
        }
        let bulk = put.len() >= COMPACT_FROM && put.len() * 4 >= self.book.len();
        let mut replaced = Vec::new();
        let mut batch = self.book.batch(put.len());
        for d in super::shed::shed(put) {
            let prefix = d.prefix;
            touched.push(prefix);
            let peer = d.peer().map(str::to_owned);
            let (old, fresh) = batch.insert_noting(d);
            if fresh {
                self.projection.added(&prefix);
            }
            match old {
                None => super::peers::count_peer(&mut self.per_peer, peer.as_deref(), 1),
                Some(old) if keep_replaced => replaced.push(old),
                Some(_) => {}
            }
        }
        let built = batch.finish();
        if bulk && !built {
            self.book.compact();
        }
        touched.sort();
        touched.dedup();
        let (puts, removes) = self.projection.delta(&self.book, &touched, now);
        self.plane_change("applying decisions", |e| {
            e.remove_rules(&removes)?;
            e.put_rules(&puts)
        });
        if bulk {
            drop((puts, removes));
            crate::heap::give_back();
        }
        Taken { touched, replaced }
    }

    /// Applies a new configuration: the decision limits, the configured allowlist and the
    /// monitor mode take effect at once (every plane is resynced).
    pub fn reconfigure(&mut self, cfg: Config) -> Result<(), EngineError> {
        self.allow.set_configured(cfg.allow_prefixes());
        self.allow_changed();
        self.cfg = cfg;
        self.sync_all()
    }

    /// Every allowlisted prefix, whatever put it there.
    pub fn allow_entries(&self) -> Vec<IpNet> {
        self.allow.entries().keys().copied().collect()
    }

    /// Tells the sinks the allowlist changed.
    pub(super) fn allow_changed(&mut self) {
        if self.sinks.is_empty() {
            return;
        }
        let entries = self.allow_entries();
        for sink in &mut self.sinks {
            sink.allowlist(&entries);
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Prefixes whose last decision ended since the last call (see [`Engine::take_ended`]'s
    /// field): each starts a new episode.
    pub fn take_ended(&mut self) -> Vec<IpNet> {
        std::mem::take(&mut self.ended)
    }

    /// One poll's upkeep: planes that fell out of sync are rebuilt, expired decisions end
    /// (into the history), the history is pruned now and then.
    pub fn maintain(&mut self) {
        for f in self.resync(false) {
            let why = planes::error_chain(&f.error);
            self.warn(format!("{} is still out of sync: {why}", f.iface));
        }
        let now_ms = now_unix_ms();
        self.expire(now_ms);
        self.prune_history(now_ms);
    }

    /// Ends expired decisions: one transaction, the next holder of each prefix enforced.
    fn expire(&mut self, now_ms: u64) {
        let ended: Vec<Ended> = self
            .book
            .expired(now_ms)
            .into_iter()
            .map(|d| Ended {
                decision: d.clone(),
                end: End::Expired,
                ended_unix_ms: now_ms,
            })
            .collect();
        if ended.is_empty() {
            return;
        }
        let names: Vec<(IpNet, Holder)> = ended
            .iter()
            .map(|e| (e.decision.prefix, e.decision.holder()))
            .collect();
        if let Err(e) = self.commit(Vec::new(), ended) {
            self.warn(format!("removing expired decisions: {e}"));
            return;
        }
        for (prefix, holder) in names {
            tracing::info!(%prefix, %holder, "decision expired");
        }
    }

    /// The cached IPASIS answer for a source, whatever its age.
    pub fn answer(&self, source: IpNet) -> Result<Option<CachedAnswer>, EngineError> {
        Ok(self.store.answer(source)?)
    }

    /// A reader of cached IPASIS answers for other threads (the verdict endpoint).
    pub fn answers(&self) -> crate::store::Answers {
        self.store.answers()
    }

    /// Caches an IPASIS answer.
    pub fn put_answer(&self, source: IpNet, answer: &CachedAnswer) -> Result<(), EngineError> {
        Ok(self.store.put_answer(source, answer)?)
    }

    /// Ended decisions, newest last (of `prefix` only, if given).
    pub fn history(&self, prefix: Option<IpNet>, limit: usize) -> Result<Vec<Ended>, EngineError> {
        Ok(self.store.history(prefix.map(|p| p.trunc()), limit)?)
    }

    /// The allowlist in force (configured, protected, runtime).
    pub fn allowlist(&self) -> &Allowlist {
        &self.allow
    }

    /// Keeps the per-peer counts (see [`super::peers::count_peer`]).
    pub(super) fn peer_count(&mut self, host: Option<&str>, by: isize) {
        super::peers::count_peer(&mut self.per_peer, host, by);
    }

    /// Decisions refused since the start: (origin, why, count).
    pub fn refusals(&self) -> impl Iterator<Item = (Origin, &'static str, u64)> + '_ {
        self.refusals.iter()
    }

    /// Every block map's fill.
    pub fn map_fills(&self) -> Vec<MapFill> {
        self.projection.fills()
    }

    /// The decision the kernel applies to `addr`: the most specific covering decision it holds
    /// (shadowed and left-out ones are not in it).
    pub fn enforced_for(&self, addr: std::net::IpAddr) -> Option<&Decision> {
        self.book
            .covering(addr)
            .into_iter()
            .find(|d| self.projection.not_enforced(&d.prefix).is_none())
    }

    /// Why the decision held on `prefix` is not in the kernel, if it is not.
    pub fn not_enforced(&self, prefix: &IpNet) -> Option<&'static str> {
        self.projection.not_enforced(prefix)
    }

    /// Every enforcement point.
    pub fn planes(&self) -> &Planes {
        &self.planes
    }

    /// Where the store lives.
    pub fn store_path(&self) -> &std::path::Path {
        self.store.path()
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
