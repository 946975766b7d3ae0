//! Enforcement points behind one trait, and the wrapper that applies each change to all of
//! them.
//!
//! The engine never talks to a [`Dataplane`] directly: it talks to [`Planes`], which applies a
//! change to every interface with one error mapping. An interface that fails part-way is marked
//! out of sync and skipped by later changes (they would be incomplete anyway); the engine
//! rebuilds it from the book on the next tick ([`Planes::out_of_sync`] and
//! [`Enforcer::resync`]), and `status` shows it until it is equal again.

use std::collections::BTreeMap;

use ipnet::IpNet;
use ipwarden_common::BlockEntry;

pub use crate::dataplane::{AttachKind, error_chain};
use crate::dataplane::{BlockRule, Capacities, Dataplane, DataplaneError, GlobalCounters};

/// What the engine needs from one enforcement point.
pub trait Enforcer: Send {
    /// Adds or replaces block (or challenge) entries.
    fn put_rules(&mut self, rules: &[(IpNet, BlockEntry)]) -> Result<(), DataplaneError>;
    /// Removes the entries for exactly these prefixes (absent ones are fine).
    fn remove_rules(&mut self, prefixes: &[IpNet]) -> Result<(), DataplaneError>;
    /// Every entry, expired ones included.
    fn rules(&self) -> Result<Vec<BlockRule>, DataplaneError>;
    fn allow(&mut self, prefix: IpNet) -> Result<(), DataplaneError>;
    fn disallow(&mut self, prefix: IpNet) -> Result<(), DataplaneError>;
    fn allows(&self) -> Result<Vec<IpNet>, DataplaneError>;
    fn set_monitor(&mut self, on: bool) -> Result<(), DataplaneError>;
    fn monitor(&self) -> Result<bool, DataplaneError>;
    fn globals(&self) -> Result<GlobalCounters, DataplaneError>;
    /// What its maps can hold; the defaults where it has no kernel maps.
    fn capacities(&self) -> Capacities {
        Capacities::unlimited()
    }
    /// TCP SYN signatures the data plane kept, by source.
    fn signatures(&self) -> Vec<(IpNet, ipwarden_common::fingerprint::SigEntry)> {
        Vec::new()
    }
    /// Estimated dropped packets by source, from the data plane's sampled hit tables.
    fn hits(&self) -> Vec<(IpNet, u64)> {
        Vec::new()
    }
    /// Loud-source hints the program sent and lost; `None` where there is no kernel program.
    fn hint_counts(&self) -> Option<crate::dataplane::HintCounts> {
        None
    }
    /// The synproxy's counters; `None` where there is no kernel program or it predates the
    /// synproxy.
    fn synproxy_counts(&self) -> Option<crate::dataplane::SynproxyCounts> {
        None
    }
    /// Flushes the program admitted and held (see `ipwarden_common::admit`); `None` where there
    /// is no kernel program or it predates admission.
    fn admit_counts(&self) -> Option<crate::dataplane::AdmitCounts> {
        None
    }
    /// The admission sketch's estimate of a source's packets in the epoch of `now_ns` (see
    /// `Dataplane::admit_estimate`); `None` where there is no sketch.
    fn admit_estimate(&self, _source: &IpNet, _now_ns: u64) -> Option<u64> {
        None
    }
    /// The program enforcing here, as `status` shows it; `None` where there is no kernel program.
    fn program(&self) -> Option<crate::dataplane::Program> {
        None
    }

    /// Empties what the point derives from its rules to go faster (the data plane's block
    /// index): a resync rebuilds it from the rules, so nothing a release that did not keep it
    /// (a downgrade, then an upgrade again) left stale can outlive the resync.
    fn clear_derived(&mut self) -> Result<(), DataplaneError> {
        Ok(())
    }

    /// Makes the point equal to `rules`, `allow` and `monitor`: entries it should not hold
    /// out, every wanted one in.
    fn resync(
        &mut self,
        rules: &[(IpNet, BlockEntry)],
        allow: &[IpNet],
        monitor: bool,
    ) -> Result<(), DataplaneError> {
        self.clear_derived()?;
        // The allowlist first: nothing can crowd it out, and blocks that fail to fit never
        // keep it from the kernel.
        for p in self.allows()? {
            if !allow.contains(&p) {
                self.disallow(p)?;
            }
        }
        for p in allow {
            self.allow(*p)?;
        }
        self.set_monitor(monitor)?;
        let wanted: std::collections::HashSet<IpNet> = rules.iter().map(|(p, _)| *p).collect();
        let stale: Vec<IpNet> = self
            .rules()?
            .into_iter()
            .map(|r| r.net)
            .filter(|p| !wanted.contains(p))
            .collect();
        // Every entry is tried even when one fails: a rebuild is never all-or-nothing.
        let removed = self.remove_rules(&stale);
        let out = self.put_rules(rules).and(removed);
        if out.is_ok() {
            self.resynced()?;
        }
        out
    }

    /// Called when a resync made the point equal to the book from a cleared start: what it
    /// derives from its rules may be trusted again (the data plane's block index gets its
    /// authority back).
    fn resynced(&mut self) -> Result<(), DataplaneError> {
        Ok(())
    }
}

impl Enforcer for Dataplane {
    fn clear_derived(&mut self) -> Result<(), DataplaneError> {
        self.clear_index()
    }

    fn resynced(&mut self) -> Result<(), DataplaneError> {
        self.vouch_for_index()
    }

    fn put_rules(&mut self, rules: &[(IpNet, BlockEntry)]) -> Result<(), DataplaneError> {
        match rules {
            [] => Ok(()),
            [(p, e)] => self.block(*p, *e),
            many => self.block_all(many.iter().copied()),
        }
    }

    fn remove_rules(&mut self, prefixes: &[IpNet]) -> Result<(), DataplaneError> {
        // Every removal is tried; the first failure is the answer.
        let mut out = Ok(());
        for p in prefixes {
            if let Err(e) = self.unblock(*p)
                && out.is_ok()
            {
                out = Err(e);
            }
        }
        out
    }

    fn rules(&self) -> Result<Vec<BlockRule>, DataplaneError> {
        self.blocks()
    }

    fn allow(&mut self, prefix: IpNet) -> Result<(), DataplaneError> {
        Dataplane::allow(self, prefix)
    }

    fn disallow(&mut self, prefix: IpNet) -> Result<(), DataplaneError> {
        Dataplane::disallow(self, prefix).map(drop)
    }

    fn allows(&self) -> Result<Vec<IpNet>, DataplaneError> {
        Dataplane::allows(self)
    }

    fn set_monitor(&mut self, on: bool) -> Result<(), DataplaneError> {
        Dataplane::set_monitor(self, on)
    }

    fn monitor(&self) -> Result<bool, DataplaneError> {
        Dataplane::monitor(self)
    }

    fn globals(&self) -> Result<GlobalCounters, DataplaneError> {
        Dataplane::globals(self)
    }

    fn capacities(&self) -> Capacities {
        Dataplane::capacities(self)
    }

    fn program(&self) -> Option<crate::dataplane::Program> {
        Some(Dataplane::program(self))
    }

    fn signatures(&self) -> Vec<(IpNet, ipwarden_common::fingerprint::SigEntry)> {
        Dataplane::signatures(self).unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "reading SYN signatures");
            Vec::new()
        })
    }

    fn hits(&self) -> Vec<(IpNet, u64)> {
        Dataplane::hits(self).unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "reading the hit tables");
            Vec::new()
        })
    }

    fn synproxy_counts(&self) -> Option<crate::dataplane::SynproxyCounts> {
        Dataplane::synproxy_counts(self).unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "reading the synproxy's counters");
            None
        })
    }

    fn hint_counts(&self) -> Option<crate::dataplane::HintCounts> {
        Dataplane::hint_counts(self).unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "reading the loud-source hint counts");
            None
        })
    }

    fn admit_estimate(&self, source: &IpNet, now_ns: u64) -> Option<u64> {
        Dataplane::admit_estimate(self, source, now_ns).unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "reading the admission sketch");
            None
        })
    }

    fn admit_counts(&self) -> Option<crate::dataplane::AdmitCounts> {
        Dataplane::admit_counts(self).unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "reading the admission counts");
            None
        })
    }
}

/// One enforcement point the engine writes to.
pub struct Plane {
    pub iface: String,
    pub attach: AttachKind,
    pub enforcer: Box<dyn Enforcer>,
    /// Why it is out of sync with the book, until a resync succeeds.
    out_of_sync: Option<String>,
}

impl Plane {
    pub fn new(iface: impl Into<String>, attach: AttachKind, enforcer: Box<dyn Enforcer>) -> Self {
        Self {
            iface: iface.into(),
            attach,
            enforcer,
            out_of_sync: None,
        }
    }

    /// Why it is out of sync, if it is.
    pub fn out_of_sync(&self) -> Option<&str> {
        self.out_of_sync.as_deref()
    }
}

/// A change that failed on one interface.
#[derive(Debug)]
pub struct PlaneFailure {
    pub iface: String,
    pub error: DataplaneError,
}

/// Every enforcement point.
#[derive(Default)]
pub struct Planes(Vec<Plane>);

impl Planes {
    pub fn new(planes: Vec<Plane>) -> Self {
        Self(planes)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Plane> {
        self.0.iter()
    }

    pub fn first(&self) -> Option<&Plane> {
        self.0.first()
    }

    /// Applies `change` (named `what` in logs) to every in-sync plane. A plane that fails is
    /// marked out of sync and its failure returned; the others keep the change.
    pub fn apply(
        &mut self,
        what: &str,
        mut change: impl FnMut(&mut dyn Enforcer) -> Result<(), DataplaneError>,
    ) -> Vec<PlaneFailure> {
        let mut failures = Vec::new();
        for plane in self.0.iter_mut().filter(|p| p.out_of_sync.is_none()) {
            if let Err(error) = change(plane.enforcer.as_mut()) {
                let why = format!("{what} failed: {}", error_chain(&error));
                tracing::error!(
                    iface = plane.iface,
                    "{why}; the interface is out of sync and will be rebuilt from the store"
                );
                plane.out_of_sync = Some(why);
                failures.push(PlaneFailure {
                    iface: plane.iface.clone(),
                    error,
                });
            }
        }
        failures
    }

    /// Makes every out-of-sync plane (every plane with `all`) equal to the wanted state; the
    /// failures, each plane staying out of sync until a later call succeeds.
    pub fn resync(
        &mut self,
        all: bool,
        rules: &[(IpNet, BlockEntry)],
        allow: &[IpNet],
        monitor: bool,
    ) -> Vec<PlaneFailure> {
        let mut failures = Vec::new();
        for plane in self.0.iter_mut().filter(|p| all || p.out_of_sync.is_some()) {
            match plane.enforcer.resync(rules, allow, monitor) {
                Ok(()) => {
                    if let Some(was) = plane.out_of_sync.take() {
                        tracing::info!(iface = plane.iface, was, "interface back in sync");
                    }
                }
                Err(error) => {
                    plane.out_of_sync = Some(format!("resync failed: {}", error_chain(&error)));
                    failures.push(PlaneFailure {
                        iface: plane.iface.clone(),
                        error,
                    });
                }
            }
        }
        failures
    }

    /// Whether any plane needs a resync.
    pub fn any_out_of_sync(&self) -> bool {
        self.0.iter().any(|p| p.out_of_sync.is_some())
    }

    /// What every plane can hold: the smallest of each map.
    pub fn capacities(&self) -> Capacities {
        self.0
            .iter()
            .map(|p| p.enforcer.capacities())
            .reduce(|a, b| a.min(&b))
            .unwrap_or_else(Capacities::unlimited)
    }

    /// Estimated dropped packets by source, summed over every plane.
    pub fn hits(&self) -> BTreeMap<IpNet, u64> {
        let mut out = BTreeMap::new();
        for p in &self.0 {
            for (source, packets) in p.enforcer.hits() {
                *out.entry(source).or_default() += packets;
            }
        }
        out
    }

    /// The global counters of every plane, by interface.
    pub fn globals(&self) -> Result<BTreeMap<String, GlobalCounters>, PlaneFailure> {
        self.0
            .iter()
            .map(|p| {
                p.enforcer
                    .globals()
                    .map(|g| (p.iface.clone(), g))
                    .map_err(|error| PlaneFailure {
                        iface: p.iface.clone(),
                        error,
                    })
            })
            .collect()
    }
}
