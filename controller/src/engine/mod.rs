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
    time::{Duration, Instant},
};

use ipnet::IpNet;
use thiserror::Error;

use crate::{
    config::{Config, HeavyHitterAction},
    dataplane::{Dataplane, DataplaneError},
    decision::{Action, Decision, Origin, now_unix_ms},
    detect::{Detector, Event, Snapshot},
    net::host_prefix,
    store::{Store, StoreError},
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
        }
    }

    /// The effective allowlist: configured entries and runtime ones, with their origin.
    fn allowlist(&self) -> BTreeMap<IpNet, &'static str> {
        let mut out: BTreeMap<IpNet, &'static str> =
            self.runtime_allow.iter().map(|p| (*p, "runtime")).collect();
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
            for d in self.decisions.values() {
                plane
                    .dp
                    .block(d.prefix, d.kernel_entry(now))
                    .map_err(Self::plane_err(&plane.iface))?;
            }
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
        tracing::info!(prefix = %d.prefix, origin = d.origin.name(), reason = %d.reason, ttl, "decision: block");
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
            created_unix_ms: now,
            expires_unix_ms: ttl.map(|t| now.saturating_add(t.as_millis() as u64)),
        })
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
        snapshots: HashMap<IpNet, Snapshot>,
        took: Duration,
    ) -> Vec<Event> {
        self.polls += 1;
        self.last_poll = took;
        self.expire();
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
        let (source, rates, what) = match event {
            Event::HeavyHitter { source, rates } => (*source, *rates, "heavy hitter"),
            Event::HardLimit { source, rates } => (*source, *rates, "hard rate limit"),
        };
        tracing::info!(%source, pps = rates.pps.round(), syn_pps = rates.syn_pps.round(), "{what}");
        let hard = matches!(event, Event::HardLimit { .. });
        if !hard && self.cfg.detection.on_heavy_hitter == HeavyHitterAction::Observe {
            return Ok(());
        }
        if !self.covering(source.network()).is_empty() {
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
        if self.decisions.len() >= self.cfg.decisions.max_decisions {
            return Err(EngineError::Full {
                limit: self.cfg.decisions.max_decisions,
            });
        }
        let now = now_unix_ms();
        let ttl = self.cfg.detection.hard_ttl;
        self.enact(Decision {
            prefix: source,
            action: Action::Block,
            origin: Origin::Velocity,
            reason: format!("{what}: {:.0} pps, {:.0} SYN/s", rates.pps, rates.syn_pps),
            score: None,
            created_unix_ms: now,
            expires_unix_ms: Some(now.saturating_add(ttl.as_millis() as u64)),
        })?;
        Ok(())
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
