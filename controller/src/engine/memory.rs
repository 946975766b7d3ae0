//! An in-memory [`Enforcer`]: the engine's unit tests and benchmarks run on it without a kernel.
//! Its state is shared with the test that made it ([`MemoryEnforcer::state`]), and failures can
//! be injected to exercise partial-failure handling.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
};

use ipnet::IpNet;
use ipwarden_common::BlockEntry;

use super::planes::Enforcer;
use crate::dataplane::{BlockRule, DataplaneError, GlobalCounters};

/// What an in-memory enforcement point holds.
#[derive(Debug, Default)]
pub struct MemoryState {
    pub rules: BTreeMap<IpNet, BlockEntry>,
    pub allow: BTreeSet<IpNet>,
    pub monitor: bool,
    pub globals: GlobalCounters,
    /// Every call that changes something fails while this is set.
    pub failing: bool,
    /// Calls that changed something, for tests that count writes.
    pub writes: u64,
    /// What its maps hold at most (tests of full maps); unlimited when `None`.
    pub capacities: Option<crate::dataplane::Capacities>,
    /// SYN signatures, as a data plane would have kept them.
    pub signatures: Vec<(IpNet, ipwarden_common::fingerprint::SigEntry)>,
    /// Estimated dropped packets by source, as a data plane's hit tables would say.
    pub hits: Vec<(IpNet, u64)>,
}

impl MemoryState {
    /// The entries in each block map (counted once per change: counting per entry made a
    /// change of many entries quadratic).
    fn fills(&self) -> [usize; 4] {
        let mut fills = [0; 4];
        for p in self.rules.keys() {
            fills[crate::engine::BlockMap::of(p) as usize] += 1;
        }
        fills
    }

    /// Whether `map`, holding `fills`, is at its capacity.
    fn is_full(&self, map: crate::engine::BlockMap, fills: &[usize; 4]) -> bool {
        self.capacities
            .as_ref()
            .is_some_and(|c| fills[map as usize] >= map.capacity(c))
    }
}

/// A handle on shared [`MemoryState`]; clones see the same state.
#[derive(Clone, Debug, Default)]
pub struct MemoryEnforcer(Arc<Mutex<MemoryState>>);

impl MemoryEnforcer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state, for inspection or to inject failures.
    pub fn state(&self) -> MutexGuard<'_, MemoryState> {
        crate::sync::lock(&self.0)
    }

    fn change<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> Result<T, DataplaneError> {
        let mut s = self.state();
        if s.failing {
            return Err(DataplaneError::Syscall {
                op: "injected failure",
                map: "memory",
                source: std::io::Error::other("the test made this enforcer fail"),
            });
        }
        s.writes += 1;
        Ok(f(&mut s))
    }
}

impl Enforcer for MemoryEnforcer {
    fn signatures(&self) -> Vec<(IpNet, ipwarden_common::fingerprint::SigEntry)> {
        self.state().signatures.clone()
    }

    fn hits(&self) -> Vec<(IpNet, u64)> {
        self.state().hits.clone()
    }

    fn put_rules(&mut self, rules: &[(IpNet, BlockEntry)]) -> Result<(), DataplaneError> {
        // As the kernel: an entry that finds its map full fails, the others go in.
        let full = self.change(|s| {
            let mut full = None;
            let mut fills = s.fills();
            for (p, e) in rules {
                let p = p.trunc();
                let map = crate::engine::BlockMap::of(&p);
                if !s.rules.contains_key(&p) {
                    if s.is_full(map, &fills) {
                        full.get_or_insert(p);
                        continue;
                    }
                    fills[map as usize] += 1;
                }
                s.rules.insert(p, *e);
            }
            full
        })?;
        match full {
            Some(p) => Err(DataplaneError::MapFull {
                map: crate::engine::BlockMap::of(&p).name(),
                capacity: 0,
            }),
            None => Ok(()),
        }
    }

    fn remove_rules(&mut self, prefixes: &[IpNet]) -> Result<(), DataplaneError> {
        self.change(|s| {
            for p in prefixes {
                s.rules.remove(&p.trunc());
            }
        })
    }

    fn rules(&self) -> Result<Vec<BlockRule>, DataplaneError> {
        Ok(self
            .state()
            .rules
            .iter()
            .map(|(net, entry)| BlockRule {
                net: *net,
                entry: *entry,
            })
            .collect())
    }

    fn allow(&mut self, prefix: IpNet) -> Result<(), DataplaneError> {
        self.change(|s| {
            s.allow.insert(prefix.trunc());
        })
    }

    fn disallow(&mut self, prefix: IpNet) -> Result<(), DataplaneError> {
        self.change(|s| {
            s.allow.remove(&prefix.trunc());
        })
    }

    fn allows(&self) -> Result<Vec<IpNet>, DataplaneError> {
        Ok(self.state().allow.iter().copied().collect())
    }

    fn set_monitor(&mut self, on: bool) -> Result<(), DataplaneError> {
        self.change(|s| s.monitor = on)
    }

    fn monitor(&self) -> Result<bool, DataplaneError> {
        Ok(self.state().monitor)
    }

    fn globals(&self) -> Result<GlobalCounters, DataplaneError> {
        Ok(self.state().globals)
    }

    fn capacities(&self) -> crate::dataplane::Capacities {
        self.state()
            .capacities
            .unwrap_or_else(crate::dataplane::Capacities::unlimited)
    }
}
