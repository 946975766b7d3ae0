//! The counter maps read raw, and what the front tables hold (see `ipwarden_common::front`):
//! the per-CPU slots a source's packets wait in before they are flushed into the LRU map.

use aya::maps::MapData;
use ipwarden_common::{
    AggCell, FrontV4, FrontV6, Pending, SrcStats, SrcStatsV6, SrcV4, SrcV6Prefix, names,
};

use super::{
    DataplaneError,
    batch::{self, PercpuSpec},
};

/// The maps read raw, in batches, with their key and value types. `Dataplane::open` refuses a
/// pinned map that differs; `batch::for_each_percpu` checks again before every read.
pub(super) const SRC_V4: PercpuSpec<SrcV4, SrcStats> = PercpuSpec::lru_percpu_hash(names::SRC_V4);
pub(super) const SRC_V6: PercpuSpec<SrcV6Prefix, SrcStatsV6> =
    PercpuSpec::lru_percpu_hash(names::SRC_V6);
/// The front tables are indexed by slot.
pub(super) const FRONT_V4: PercpuSpec<u32, FrontV4> = PercpuSpec::percpu_array(names::FRONT_V4);
pub(super) const FRONT_V6: PercpuSpec<u32, FrontV6> = PercpuSpec::percpu_array(names::FRONT_V6);
/// The aggregate cells, indexed by `ipwarden_common::aggregate::cell`.
pub(super) const AGG: PercpuSpec<u32, AggCell> = PercpuSpec::percpu_array(names::AGG);

/// What the front tables hold for one source, summed over CPUs.
#[derive(Clone, Copy, Default)]
pub(super) struct Fronted {
    pub(super) pending: Pending,
    /// The earliest CPU's claim time.
    pub(super) first_seen_ns: u64,
    /// IPv6: the latest address of the CPU that counted the most.
    pub(super) last_addr: [u8; 16],
}

impl Fronted {
    pub(super) fn add(&mut self, pending: &Pending, first_seen_ns: u64, last_addr: [u8; 16]) {
        if pending.packets > self.pending.packets {
            self.last_addr = last_addr;
        }
        self.pending.add(pending);
        if self.first_seen_ns == 0 || (first_seen_ns != 0 && first_seen_ns < self.first_seen_ns) {
            self.first_seen_ns = first_seen_ns;
        }
    }

    /// Folds the pending counts into `stats` read from the LRU map.
    pub(super) fn into_stats(self, stats: &mut SrcStats) {
        stats.add(&self.pending);
        if stats.first_seen_ns == 0
            || (self.first_seen_ns != 0 && self.first_seen_ns < stats.first_seen_ns)
        {
            stats.first_seen_ns = self.first_seen_ns;
        }
    }
}

/// Front-table contents by source. Keyed by addresses the sender chooses, so the hasher is
/// seeded per process (foldhash's `RandomState`): with a fixed hash (Fx) a flood of chosen
/// addresses could make every insert collide and turn each poll quadratic.
pub(super) type FrontedBy<K> = foldhash::HashMap<K, Fronted>;

/// One family's front table as last read.
pub(super) struct FrontRead<K> {
    /// The `Seen` count (packets finished) when the table was read.
    pub(super) seen: Option<u64>,
    pub(super) by: FrontedBy<K>,
}

impl<K> Default for FrontRead<K> {
    fn default() -> Self {
        Self {
            seen: None,
            by: FrontedBy::default(),
        }
    }
}

/// The front tables as last read (see `Dataplane::front_memo`), each family on its own: a poll
/// reads a family's table just before and just after that family's LRU map, not the other's.
#[derive(Default)]
pub(super) struct FrontMemo {
    pub(super) v4: FrontRead<SrcV4>,
    pub(super) v6: FrontRead<SrcV6Prefix>,
}

/// Sums one front table's slots over CPUs by source. `slot` gives an occupied slot's source,
/// pending counts, claim time and (IPv6) latest address; slots with nothing pending are skipped.
pub(super) fn fronted_in<S: aya::Pod, K: Copy + Eq + std::hash::Hash>(
    map: &MapData,
    spec: &PercpuSpec<u32, S>,
    iface: &str,
    slot: impl Fn(&S) -> Option<(K, &Pending, u64, [u8; 16])>,
) -> Result<FrontedBy<K>, DataplaneError> {
    let mut out = FrontedBy::<K>::default();
    batch::for_each_percpu(map, spec, iface, |_index: u32, cpus: &[S]| {
        for (key, pending, first_seen_ns, last_addr) in cpus.iter().filter_map(&slot) {
            if pending.packets != 0 {
                out.entry(key)
                    .or_default()
                    .add(pending, first_seen_ns, last_addr);
            }
        }
    })?;
    Ok(out)
}
