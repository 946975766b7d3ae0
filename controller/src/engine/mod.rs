//! The daemon's core, synchronous and single-owner: decisions, the allowlist, velocity
//! detection, and their projection into every attachment's maps.
//!
//! Ordering rule: a change is written to the store (durably) before it is applied to the maps
//! and before the caller is answered, so an acknowledged change survives a crash, and a crash
//! between the two is repaired by `restore`, which makes the maps equal to the store.

mod handlers;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use thiserror::Error;

use crate::{
    config::{Config, HeavyHitterAction, OnError},
    dataplane::{Dataplane, DataplaneError},
    decision::{Action, ChallengeRate, Decision, Origin, now_unix_ms},
    detect::{Detector, Event, Rates, Snapshot},
    enrich::{EnrichError, Pipeline, Record, queue::Candidate},
    net::host_prefix,
    score::{self, Verdict},
    store::{CachedAnswer, Store, StoreError},
};

/// Why a request was refused or failed.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error(
        "refusing to block {prefix}: it overlaps the allowlisted {allow} ({origin}); remove that allow entry first if you really mean it"
    )]
    AllowlistConflict {
        prefix: IpNet,
        allow: IpNet,
        origin: &'static str,
    },
    #[error("refusing to {op} {prefix}: a /0 covers every address")]
    Everything { op: &'static str, prefix: IpNet },
    #[error("{prefix} is not blocked (see `ipwarden list`)")]
    NotBlocked { prefix: IpNet },
    #[error("{prefix} is not a runtime allowlist entry (see `ipwarden allow list`)")]
    NotAllowed { prefix: IpNet },
    #[error("{prefix} is allowlisted by {origin}; change it in the configuration file and reload")]
    ConfiguredAllow { prefix: IpNet, origin: &'static str },
    #[error("the decision limit ({limit}, decisions.max_decisions) is reached")]
    Full { limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("applying to {iface}")]
    Dataplane {
        iface: String,
        #[source]
        source: DataplaneError,
    },
}

/// One attachment the engine writes to.
pub struct Plane {
    pub iface: String,
    /// `driver`, `skb` or `adopted`.
    pub attach: String,
    pub dp: Dataplane,
}

/// What `restore` did, for the startup log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub decisions: usize,
    pub expired: usize,
    pub allow: usize,
}

/// A manual block request.
#[derive(Debug, Clone)]
pub struct BlockRequest {
    pub prefix: IpNet,
    pub ttl: Option<Duration>,
    pub permanent: bool,
    pub reason: Option<String>,
}

pub struct Engine {
    cfg: Config,
    config_path: Option<PathBuf>,
    store: Store,
    planes: Vec<Plane>,
    decisions: BTreeMap<IpNet, Decision>,
    runtime_allow: BTreeSet<IpNet>,
    detector: Detector,
    started: Instant,
    polls: u64,
    last_poll: Duration,
    warnings: Vec<String>,
    enrich: Option<Arc<Pipeline>>,
    /// `on`, or `off: <why>`, for `status`.
    enrichment_state: String,
    /// Gateways and the daemon's own peers: allowlisted with origin `protected`.
    protected: Vec<IpNet>,
    /// Sources whose failed enrichment is retried (their episode reset) at this Unix ms.
    retry_at: HashMap<IpNet, u64>,
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Engine {
    pub fn new(
        cfg: Config,
        config_path: Option<PathBuf>,
        store: Store,
        planes: Vec<Plane>,
    ) -> Self {
        let detector = Detector::new(cfg.detection.clone());
        Self {
            cfg,
            config_path,
            store,
            planes,
            decisions: BTreeMap::new(),
            runtime_allow: BTreeSet::new(),
            detector,
            started: Instant::now(),
            polls: 0,
            last_poll: Duration::ZERO,
            warnings: Vec::new(),
            enrich: None,
            enrichment_state: "off: velocity-only policy".to_owned(),
            protected: Vec::new(),
            retry_at: HashMap::new(),
        }
    }

    /// Turns enrichment on: heavy hitters go to `pipeline` instead of the velocity-only policy.
    pub fn set_enrichment(&mut self, pipeline: Arc<Pipeline>) {
        self.enrich = Some(pipeline);
        self.enrichment_state = "on".to_owned();
    }

    /// Addresses that must never be blocked (default gateways, the API's addresses).
    pub fn set_protected(&mut self, prefixes: Vec<IpNet>) {
        self.protected = prefixes;
    }

    /// Records why enrichment is off, for `status`.
    pub fn set_enrichment_off(&mut self, why: &str) {
        self.enrichment_state = format!("off: {why}");
    }

    /// The enrichment stage, when enabled.
    pub fn enrichment(&self) -> Option<&Arc<Pipeline>> {
        self.enrich.as_ref()
    }

    /// The effective allowlist: configured entries and runtime ones, with their origin.
    fn allowlist(&self) -> BTreeMap<IpNet, &'static str> {
        let mut out: BTreeMap<IpNet, &'static str> =
            self.runtime_allow.iter().map(|p| (*p, "runtime")).collect();
        out.extend(self.protected.iter().map(|p| (*p, "protected")));
        // Configured entries win the label: they cannot be removed at runtime.
        out.extend(self.cfg.allow_prefixes());
        out
    }

    fn plane_err(iface: &str) -> impl FnOnce(DataplaneError) -> EngineError + '_ {
        move |source| EngineError::Dataplane {
            iface: iface.to_owned(),
            source,
        }
    }

    /// Loads the store and makes every attachment's maps equal to it: stored decisions and
    /// allow entries in, anything else (left by an older daemon or `ipwarden map` commands)
    /// out. Expired decisions are dropped from the store.
    pub fn restore(&mut self) -> Result<Restored, EngineError> {
        let now = now_unix_ms();
        let mut report = Restored::default();
        let mut expired = Vec::new();
        for d in self.store.decisions()? {
            if d.expired(now) {
                expired.push(d.prefix);
            } else {
                self.decisions.insert(d.prefix, d);
            }
        }
        report.expired = expired.len();
        self.store.remove_decisions(&expired)?;
        self.runtime_allow = self.store.allows()?.into_iter().collect();
        report.decisions = self.decisions.len();
        report.allow = self.runtime_allow.len();
        self.sync_maps()?;
        Ok(report)
    }

    /// Rebuilds the store from the first attachment's maps (after an unreadable database was
    /// moved aside): every live block entry becomes a decision with its remaining time, every
    /// allow entry that is not configured becomes a runtime entry. Returns (decisions, allow).
    pub fn import_from_maps(&mut self) -> Result<(usize, usize), EngineError> {
        let Some(plane) = self.planes.first() else {
            return Ok((0, 0));
        };
        let now_ms = now_unix_ms();
        let now_ns = crate::clock::monotonic_ns();
        let mut decisions = Vec::new();
        for rule in plane.dp.blocks().map_err(Self::plane_err(&plane.iface))? {
            if !rule.entry.is_live(now_ns) {
                continue;
            }
            let origin = match rule.entry.reason {
                ipwarden_common::Reason::VELOCITY => Origin::Velocity,
                ipwarden_common::Reason::IPASIS => Origin::Ipasis,
                ipwarden_common::Reason::FEED => Origin::Feed,
                _ => Origin::Manual,
            };
            let challenge = rule.entry.action == ipwarden_common::Action::CHALLENGE;
            decisions.push(Decision {
                prefix: rule.net,
                action: if challenge {
                    Action::Challenge
                } else {
                    Action::Block
                },
                origin,
                reason: "rebuilt from the data plane after the state database was lost".into(),
                score: None,
                factors: Vec::new(),
                rate: challenge.then(|| ChallengeRate {
                    pps: (1_000_000_000 / rule.entry.interval_ns.max(1)).max(1),
                    burst: rule.entry.burst,
                }),
                created_unix_ms: now_ms,
                expires_unix_ms: crate::clock::remaining(rule.entry.expires_at_ns)
                    .map(|left| now_ms + left.as_millis() as u64),
            });
        }
        let configured: Vec<IpNet> = self.allowlist().into_keys().collect();
        let mut allow = 0;
        for net in plane.dp.allows().map_err(Self::plane_err(&plane.iface))? {
            if !configured.contains(&net) {
                self.store.put_allow(net)?;
                allow += 1;
            }
        }
        self.store
            .put_decisions(&decisions.iter().collect::<Vec<_>>())?;
        Ok((decisions.len(), allow))
    }

    /// Makes the maps equal to the engine's state.
    fn sync_maps(&mut self) -> Result<(), EngineError> {
        let now = now_unix_ms();
        let allow = self.allowlist();
        let monitor = self.cfg.dataplane.monitor;
        for plane in &mut self.planes {
            let err = Self::plane_err(&plane.iface);
            for rule in plane.dp.blocks().map_err(Self::plane_err(&plane.iface))? {
                if !self.decisions.contains_key(&rule.net) {
                    plane
                        .dp
                        .unblock(rule.net)
                        .map_err(Self::plane_err(&plane.iface))?;
                }
            }
            plane
                .dp
                .block_all(
                    self.decisions
                        .values()
                        .map(|d| (d.prefix, d.kernel_entry(now))),
                )
                .map_err(Self::plane_err(&plane.iface))?;
            for net in plane.dp.allows().map_err(Self::plane_err(&plane.iface))? {
                if !allow.contains_key(&net) {
                    plane
                        .dp
                        .disallow(net)
                        .map_err(Self::plane_err(&plane.iface))?;
                }
            }
            for net in allow.keys() {
                plane
                    .dp
                    .allow(*net)
                    .map_err(Self::plane_err(&plane.iface))?;
            }
            plane.dp.set_monitor(monitor).map_err(err)?;
        }
        Ok(())
    }

    fn check_blockable(&self, prefix: IpNet) -> Result<(), EngineError> {
        if prefix.prefix_len() == 0 {
            return Err(EngineError::Everything {
                op: "block",
                prefix,
            });
        }
        if let Some((allow, origin)) = self
            .allowlist()
            .into_iter()
            .find(|(a, _)| overlaps(a, &prefix))
        {
            return Err(EngineError::AllowlistConflict {
                prefix,
                allow,
                origin,
            });
        }
        Ok(())
    }

    /// Records an automatic decision unless an operator's decision for the prefix exists.
    fn enact_auto(&mut self, d: Decision) -> Result<(), EngineError> {
        if self
            .decisions
            .get(&d.prefix)
            .is_some_and(|x| x.origin == Origin::Manual)
        {
            return Ok(());
        }
        if !self.decisions.contains_key(&d.prefix)
            && self.decisions.len() >= self.cfg.decisions.max_decisions
        {
            return Err(EngineError::Full {
                limit: self.cfg.decisions.max_decisions,
            });
        }
        self.enact(d).map(drop)
    }

    /// Records a decision durably, then enforces it everywhere.
    fn enact(&mut self, d: Decision) -> Result<Decision, EngineError> {
        self.store.put_decisions(&[&d])?;
        let entry = d.kernel_entry(now_unix_ms());
        for plane in &mut self.planes {
            plane
                .dp
                .block(d.prefix, entry)
                .map_err(Self::plane_err(&plane.iface))?;
        }
        let ttl = d
            .remaining(now_unix_ms())
            .map(|t| humantime::format_duration(Duration::from_secs(t.as_secs())).to_string())
            .unwrap_or_else(|| "permanent".into());
        tracing::info!(prefix = %d.prefix, origin = d.origin.name(), reason = %d.reason, ttl, "decision: {}", d.action.name());
        self.decisions.insert(d.prefix, d.clone());
        Ok(d)
    }

    /// An operator's `block`.
    pub fn block(&mut self, req: BlockRequest) -> Result<Decision, EngineError> {
        let prefix = req.prefix.trunc();
        self.check_blockable(prefix)?;
        if !self.decisions.contains_key(&prefix)
            && self.decisions.len() >= self.cfg.decisions.max_decisions
        {
            return Err(EngineError::Full {
                limit: self.cfg.decisions.max_decisions,
            });
        }
        let now = now_unix_ms();
        let ttl = if req.permanent {
            None
        } else {
            Some(req.ttl.unwrap_or(self.cfg.decisions.default_ttl))
        };
        self.enact(Decision {
            prefix,
            action: Action::Block,
            origin: Origin::Manual,
            reason: req.reason.unwrap_or_else(|| "manual block".into()),
            score: None,
            factors: Vec::new(),
            rate: None,
            created_unix_ms: now,
            expires_unix_ms: ttl.map(|t| now.saturating_add(t.as_millis() as u64)),
        })
    }

    /// Many decisions at once (a feed, a migration): one durable transaction, then the maps.
    /// Refusals (allowlist overlap, /0) are skipped and counted. Returns (enacted, refused).
    pub fn bulk_block(
        &mut self,
        requests: Vec<BlockRequest>,
        origin: Origin,
    ) -> Result<(usize, usize), EngineError> {
        let now = now_unix_ms();
        let mut batch = Vec::with_capacity(requests.len());
        let mut refused = 0;
        for req in requests {
            let prefix = req.prefix.trunc();
            if self.check_blockable(prefix).is_err() {
                refused += 1;
                continue;
            }
            let ttl = if req.permanent {
                None
            } else {
                Some(req.ttl.unwrap_or(self.cfg.decisions.default_ttl))
            };
            batch.push(Decision {
                prefix,
                action: Action::Block,
                origin,
                reason: req
                    .reason
                    .unwrap_or_else(|| format!("{} block", origin.name())),
                score: None,
                factors: Vec::new(),
                rate: None,
                created_unix_ms: now,
                expires_unix_ms: ttl.map(|t| now.saturating_add(t.as_millis() as u64)),
            });
        }
        if self.decisions.len() + batch.len() > self.cfg.decisions.max_decisions {
            return Err(EngineError::Full {
                limit: self.cfg.decisions.max_decisions,
            });
        }
        self.store
            .put_decisions(&batch.iter().collect::<Vec<_>>())?;
        for plane in &mut self.planes {
            plane
                .dp
                .block_all(batch.iter().map(|d| (d.prefix, d.kernel_entry(now))))
                .map_err(Self::plane_err(&plane.iface))?;
        }
        tracing::info!(
            count = batch.len(),
            refused,
            origin = origin.name(),
            "bulk decisions"
        );
        let n = batch.len();
        self.decisions
            .extend(batch.into_iter().map(|d| (d.prefix, d)));
        Ok((n, refused))
    }

    /// Removes a decision: from the store first, then from the maps.
    pub fn unblock(&mut self, prefix: IpNet) -> Result<Decision, EngineError> {
        let prefix = prefix.trunc();
        let Some(d) = self.decisions.get(&prefix).cloned() else {
            return Err(EngineError::NotBlocked { prefix });
        };
        self.store.remove_decisions(&[prefix])?;
        self.decisions.remove(&prefix);
        for plane in &mut self.planes {
            plane
                .dp
                .unblock(prefix)
                .map_err(Self::plane_err(&plane.iface))?;
        }
        self.detector.reset(&prefix);
        tracing::info!(%prefix, origin = d.origin.name(), "decision lifted");
        Ok(d)
    }

    /// Adds a runtime allowlist entry.
    pub fn allow_add(&mut self, prefix: IpNet) -> Result<(), EngineError> {
        let prefix = prefix.trunc();
        if prefix.prefix_len() == 0 {
            return Err(EngineError::Everything {
                op: "allowlist",
                prefix,
            });
        }
        self.store.put_allow(prefix)?;
        self.runtime_allow.insert(prefix);
        for plane in &mut self.planes {
            plane
                .dp
                .allow(prefix)
                .map_err(Self::plane_err(&plane.iface))?;
        }
        tracing::info!(%prefix, "allowlisted");
        Ok(())
    }

    /// Removes a runtime allowlist entry (configured ones are changed in the file).
    pub fn allow_rm(&mut self, prefix: IpNet) -> Result<(), EngineError> {
        let prefix = prefix.trunc();
        if let Some((_, origin)) = self
            .cfg
            .allow_prefixes()
            .into_iter()
            .find(|(p, _)| *p == prefix)
        {
            return Err(EngineError::ConfiguredAllow { prefix, origin });
        }
        if !self.store.remove_allow(prefix)? {
            return Err(EngineError::NotAllowed { prefix });
        }
        self.runtime_allow.remove(&prefix);
        for plane in &mut self.planes {
            plane
                .dp
                .disallow(prefix)
                .map_err(Self::plane_err(&plane.iface))?;
        }
        tracing::info!(%prefix, "removed from the allowlist");
        Ok(())
    }

    /// The decision covering an address's source unit, most specific first.
    fn covering(&self, addr: IpAddr) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = self
            .decisions
            .values()
            .filter(|d| d.prefix.contains(&addr))
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.prefix.prefix_len()));
        out
    }

    /// One poll's worth of work: expire decisions, feed the detector, act on its events.
    pub fn tick(
        &mut self,
        now_ns: u64,
        snapshots: Vec<(IpNet, Snapshot)>,
        took: Duration,
    ) -> Vec<Event> {
        self.polls += 1;
        self.last_poll = took;
        self.expire();
        let now_ms = now_unix_ms();
        let due: Vec<IpNet> = self
            .retry_at
            .iter()
            .filter(|(_, t)| **t <= now_ms)
            .map(|(s, _)| *s)
            .collect();
        for source in due {
            self.retry_at.remove(&source);
            // A new episode if it is still a heavy hitter: enrichment is tried again.
            self.detector.reset(&source);
        }
        let events = self.detector.observe(now_ns, snapshots);
        for event in &events {
            if let Err(e) = self.on_event(event) {
                self.warn(format!("acting on {event:?}: {e}"));
            }
        }
        events
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
        if self.warnings.len() > 20 {
            self.warnings.remove(0);
        }
    }

    fn expire(&mut self) {
        let now = now_unix_ms();
        let expired: Vec<IpNet> = self
            .decisions
            .values()
            .filter(|d| d.expired(now))
            .map(|d| d.prefix)
            .collect();
        if expired.is_empty() {
            return;
        }
        if let Err(e) = self.store.remove_decisions(&expired) {
            self.warn(format!("removing expired decisions: {e}"));
            return;
        }
        for prefix in expired {
            self.decisions.remove(&prefix);
            for plane in &mut self.planes {
                if let Err(e) = plane.dp.unblock(prefix) {
                    tracing::warn!(%prefix, iface = plane.iface, error = %e, "removing an expired entry");
                }
            }
            self.detector.reset(&prefix);
            tracing::info!(%prefix, "decision expired");
        }
    }

    fn on_event(&mut self, event: &Event) -> Result<(), EngineError> {
        let (source, addr, rates, what) = match event {
            Event::HeavyHitter {
                source,
                addr,
                rates,
            } => (*source, Some(*addr), *rates, "heavy hitter"),
            Event::HardLimit { source, rates } => (*source, None, *rates, "hard rate limit"),
        };
        tracing::info!(%source, pps = rates.pps.round(), syn_pps = rates.syn_pps.round(), "{what}");
        if self
            .covering(source.network())
            .iter()
            .any(|d| d.action == Action::Block)
        {
            return Ok(());
        }
        if let Some((allow, origin)) = self
            .allowlist()
            .into_iter()
            .find(|(a, _)| overlaps(a, &source))
        {
            tracing::info!(%source, %allow, origin, "{what} is allowlisted: not blocked");
            return Ok(());
        }
        if let (Some(addr), Some(pipeline)) = (addr, self.enrich.clone()) {
            return self.enrich_or_queue(&pipeline, source, addr, rates);
        }
        if addr.is_some() && self.cfg.detection.on_heavy_hitter == HeavyHitterAction::Observe {
            return Ok(());
        }
        let now = now_unix_ms();
        let ttl = self.cfg.detection.hard_ttl;
        self.enact_auto(Decision {
            prefix: source,
            action: Action::Block,
            origin: Origin::Velocity,
            reason: format!("{what}: {:.0} pps, {:.0} SYN/s", rates.pps, rates.syn_pps),
            score: None,
            factors: Vec::new(),
            rate: None,
            created_unix_ms: now,
            expires_unix_ms: Some(now.saturating_add(ttl.as_millis() as u64)),
        })
    }

    /// Decides from a fresh cached answer, or queues the source for a lookup.
    fn enrich_or_queue(
        &mut self,
        pipeline: &Pipeline,
        source: IpNet,
        addr: IpAddr,
        rates: Rates,
    ) -> Result<(), EngineError> {
        if let Some(answer) = self.fresh_answer(source)? {
            pipeline.cache_hit();
            return self.decide(source, answer.record.as_ref(), rates.pps);
        }
        if pipeline.submit(Candidate {
            source,
            addr,
            pps: rates.pps,
        }) {
            tracing::debug!(%source, %addr, "queued for enrichment");
        }
        Ok(())
    }

    /// The cached answer for a source if it is still within `ipasis.cache_ttl` (a 400 answer
    /// never expires).
    pub fn fresh_answer(&self, source: IpNet) -> Result<Option<CachedAnswer>, EngineError> {
        let Some(a) = self.store.answer(source)? else {
            return Ok(None);
        };
        let age = now_unix_ms().saturating_sub(a.fetched_unix_ms);
        let fresh = a.record.is_none() || age < self.cfg.ipasis.cache_ttl.as_millis() as u64;
        Ok(fresh.then_some(a))
    }

    /// The cached answer for a source whatever its age (for `explain`).
    pub fn cached_answer(&self, source: IpNet) -> Option<CachedAnswer> {
        self.store.answer(source).ok().flatten()
    }

    /// Caches a fresh answer (from `ipwarden lookup`).
    pub fn store_answer(
        &self,
        source: IpNet,
        record: Option<Record>,
    ) -> Result<CachedAnswer, EngineError> {
        let answer = CachedAnswer {
            record,
            fetched_unix_ms: now_unix_ms(),
        };
        self.store.put_answer(source, &answer)?;
        Ok(answer)
    }

    /// Scores an answer and enacts the verdict.
    fn decide(
        &mut self,
        source: IpNet,
        record: Option<&Record>,
        pps: f64,
    ) -> Result<(), EngineError> {
        let Some(record) = record else {
            tracing::debug!(%source, "IPASIS rejected the address earlier; no enrichment decision");
            return Ok(());
        };
        let sc = score::score(record, pps, self.cfg.velocity_pps(), &self.cfg.scoring);
        let signals: Vec<String> = sc
            .factors
            .iter()
            .map(|f| format!("{} {:+}", f.name, f.weight))
            .collect();
        let reason = format!(
            "ipasis: {} ({}){}",
            sc.because,
            if signals.is_empty() {
                "no risk signals".to_owned()
            } else {
                signals.join(", ")
            },
            record
                .operator
                .as_ref()
                .map(|o| format!(", operator {o}"))
                .unwrap_or_default()
        );
        let action = match sc.verdict {
            Verdict::Allow => {
                tracing::info!(%source, score = sc.value, "ipasis: allowed ({reason})");
                return Ok(());
            }
            Verdict::Block => Action::Block,
            Verdict::Challenge => Action::Challenge,
        };
        let now = now_unix_ms();
        self.enact_auto(Decision {
            prefix: source,
            action,
            origin: Origin::Ipasis,
            reason,
            score: Some(sc.value),
            factors: sc.factors,
            rate: (action == Action::Challenge).then_some(ChallengeRate {
                pps: self.cfg.scoring.challenge_pps,
                burst: self.cfg.scoring.challenge_burst,
            }),
            created_unix_ms: now,
            expires_unix_ms: Some(
                now.saturating_add(self.cfg.decisions.default_ttl.as_millis() as u64),
            ),
        })
    }

    /// An answer (or failure) for a queued candidate.
    pub fn on_enriched(&mut self, c: &Candidate, result: Result<Record, EnrichError>) {
        let outcome = match result {
            Ok(record) => self
                .store_answer(c.source, Some(record.clone()))
                .and_then(|_| self.decide(c.source, Some(&record), c.pps)),
            Err(EnrichError::Invalid) => self.store_answer(c.source, None).map(drop),
            Err(e) => self.enrichment_failed(c, &e),
        };
        if let Err(e) = outcome {
            self.warn(format!("enrichment of {}: {e}", c.source));
        }
    }

    fn enrichment_failed(&mut self, c: &Candidate, e: &EnrichError) -> Result<(), EngineError> {
        tracing::warn!(source = %c.source, error = %e, "enrichment failed");
        let retry = now_unix_ms() + self.cfg.ipasis.retry_failed_after.as_millis() as u64;
        self.retry_at.insert(c.source, retry);
        if self.cfg.ipasis.on_error == OnError::Open {
            return Ok(());
        }
        if self.allowlist().keys().any(|a| overlaps(a, &c.source)) {
            return Ok(());
        }
        let now = now_unix_ms();
        self.enact_auto(Decision {
            prefix: c.source,
            action: Action::Block,
            origin: Origin::Ipasis,
            reason: format!("enrichment-failed: {e}"),
            score: None,
            factors: Vec::new(),
            rate: None,
            created_unix_ms: now,
            expires_unix_ms: Some(
                now.saturating_add(self.cfg.ipasis.closed_ttl.as_millis() as u64),
            ),
        })
    }

    /// Applies a new configuration. Sections that only take effect at start are reported.
    pub fn reload(&mut self, cfg: Config) -> Result<Vec<String>, EngineError> {
        let mut notes = Vec::new();
        if cfg.daemon != self.cfg.daemon {
            notes.push("[daemon] changes apply at the next start".to_owned());
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
        self.cfg = cfg;
        self.sync_maps()?;
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
    pub fn source_of(addr: IpAddr) -> IpNet {
        host_prefix(addr)
    }
}
