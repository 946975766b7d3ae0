//! What the program counted: per-source counters (the LRU maps plus what is still pending in
//! the front tables, see `ipwarden_common::front`) and the global counters, all summed over
//! CPUs.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::MapData;
use ipnet::Ipv6Net;
use ipwarden_common::{
    FrontV4, FrontV6, GlobalCounter, Pending, SrcStats, SrcStatsV6, SrcV4, SrcV6Prefix,
    front::FLUSH_AT, names,
};

use super::{
    Dataplane, DataplaneError,
    batch::{self, PercpuSpec},
    maps::max_entries,
};
use crate::net;

/// How many packets a source's count read by one poll may exceed its true count by, so that the
/// next poll, reading the true count, may see it step back by as much.
///
/// The race is in [`Dataplane::visit_sources_v4`] (and `_v6`): it reads the front tables first,
/// then the LRU map. A slot flushed into the LRU map between the two reads (on reaching
/// [`FLUSH_AT`] pending packets, or when another source takes it) has the packets it held at the
/// first read counted once from the front table and again from the LRU map: at most `FLUSH_AT`
/// per CPU, as a source holds at most one slot per CPU. User space cannot read both in one
/// atomic step, and reading them the other way round would miss packets instead of counting
/// them twice. A reader of successive counts (the detector) treats a step back of at most this
/// much as read noise, not as an eviction.
///
/// Sized for up to 64 CPUs: on larger hosts a rare step back can exceed it, and is then handled
/// as an eviction.
pub const READ_SLACK_PACKETS: u64 = FLUSH_AT * 64;

/// The maps read raw, in batches, with their key and value types. `Dataplane::open` refuses a
/// pinned map that differs; `batch::for_each_percpu` checks again before every read.
pub(super) const SRC_V4: PercpuSpec<SrcV4, SrcStats> = PercpuSpec::lru_percpu_hash(names::SRC_V4);
pub(super) const SRC_V6: PercpuSpec<SrcV6Prefix, SrcStatsV6> =
    PercpuSpec::lru_percpu_hash(names::SRC_V6);
/// The front tables are indexed by slot.
pub(super) const FRONT_V4: PercpuSpec<u32, FrontV4> = PercpuSpec::percpu_array(names::FRONT_V4);
pub(super) const FRONT_V6: PercpuSpec<u32, FrontV6> = PercpuSpec::percpu_array(names::FRONT_V6);

/// Counters of one IPv4 source, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceV4 {
    pub addr: Ipv4Addr,
    pub stats: SrcStats,
}

/// Counters of one IPv6 /64, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceV6 {
    pub net: Ipv6Net,
    /// A real full source address of the /64: the latest one counted by the CPU that counted the
    /// most (per-CPU counters carry no timestamp, so CPUs' latest addresses cannot be ordered;
    /// enrichment only needs an address inside the prefix).
    pub last_addr: Ipv6Addr,
    pub stats: SrcStats,
}

/// Global counters summed over CPUs, indexed by [`GlobalCounter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalCounters(pub [u64; GlobalCounter::COUNT as usize]);

impl GlobalCounters {
    /// One counter.
    pub fn get(&self, counter: GlobalCounter) -> u64 {
        self.0[counter as usize]
    }
}

/// What the front tables hold for one source, summed over CPUs.
#[derive(Clone, Copy, Default)]
struct Fronted {
    pending: Pending,
    /// The earliest CPU's claim time.
    first_seen_ns: u64,
    /// IPv6: the latest address of the CPU that counted the most.
    last_addr: [u8; 16],
}

impl Fronted {
    fn add(&mut self, pending: &Pending, first_seen_ns: u64, last_addr: [u8; 16]) {
        if pending.packets > self.pending.packets {
            self.last_addr = last_addr;
        }
        self.pending.add(pending);
        if self.first_seen_ns == 0 || (first_seen_ns != 0 && first_seen_ns < self.first_seen_ns) {
            self.first_seen_ns = first_seen_ns;
        }
    }

    /// Folds the pending counts into `stats` read from the LRU map.
    fn into_stats(self, stats: &mut SrcStats) {
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
type FrontedBy<K> = foldhash::HashMap<K, Fronted>;

/// The front tables as last read (see `Dataplane::front_memo`).
#[derive(Default)]
pub(super) struct FrontMemo {
    /// The `Seen` count (packets finished) when the tables were read.
    seen: Option<u64>,
    v4: FrontedBy<SrcV4>,
    v6: FrontedBy<SrcV6Prefix>,
}

/// Sums one front table's slots over CPUs by source. `slot` gives an occupied slot's source,
/// pending counts, claim time and (IPv6) latest address; slots with nothing pending are skipped.
fn fronted_in<S: aya::Pod, K: Copy + Eq + std::hash::Hash>(
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

impl Dataplane {
    /// Every tracked IPv4 source with its counters summed over CPUs, read in batches. Entries
    /// that only hold a cached block verdict (no packet counted) are left out.
    pub fn sources_v4(&self) -> Result<Vec<SourceV4>, DataplaneError> {
        let mut out = Vec::new();
        self.visit_sources_v4(|s| out.push(s))?;
        Ok(out)
    }

    /// Every tracked IPv6 /64 with its counters summed over CPUs, read in batches.
    pub fn sources_v6(&self) -> Result<Vec<SourceV6>, DataplaneError> {
        let mut out = Vec::new();
        self.visit_sources_v6(|s| out.push(s))?;
        Ok(out)
    }

    /// The front tables' contents, read again only when some packet was finished since the
    /// last read. The counter is read first: a packet racing the read changes it, so the next
    /// call reads the tables again. `pick` copies out the family the caller needs.
    fn fronted<T>(&self, pick: impl FnOnce(&FrontMemo) -> T) -> Result<T, DataplaneError> {
        // Every packet ends in exactly one terminal counter, after its front-table update.
        let seen = self.globals()?.get(GlobalCounter::Seen);
        let mut memo = self.front_memo.lock().unwrap_or_else(|p| p.into_inner());
        if memo.seen != Some(seen) {
            memo.v4 = self.fronted_v4()?;
            memo.v6 = self.fronted_v6()?;
            memo.seen = Some(seen);
        }
        Ok(pick(&memo))
    }

    /// What the IPv4 front tables hold, by source.
    fn fronted_v4(&self) -> Result<FrontedBy<SrcV4>, DataplaneError> {
        fronted_in(
            &self.front_v4,
            &FRONT_V4,
            self.pins.iface(),
            |f: &FrontV4| (f.used != 0).then_some((f.key, &f.pending, f.first_seen_ns, [0; 16])),
        )
    }

    /// What the IPv6 front tables hold, by /64.
    fn fronted_v6(&self) -> Result<FrontedBy<SrcV6Prefix>, DataplaneError> {
        fronted_in(
            &self.front_v6,
            &FRONT_V6,
            self.pins.iface(),
            |f: &FrontV6| {
                (f.used != 0).then_some((f.key, &f.pending, f.first_seen_ns, f.last_addr))
            },
        )
    }

    /// As [`Self::sources_v4`], handing each source to `each` as the batches arrive: the poll
    /// builds its snapshots without a second copy of a million sources.
    ///
    /// Counts are the LRU map's plus what is pending in the front tables (read first). A flush
    /// between the two reads can count some packets twice in one poll: see
    /// [`READ_SLACK_PACKETS`].
    pub fn visit_sources_v4(&self, mut each: impl FnMut(SourceV4)) -> Result<(), DataplaneError> {
        let mut fronted = self.fronted(|m| m.v4.clone())?;
        batch::for_each_percpu(
            &self.src_v4,
            &SRC_V4,
            self.pins.iface(),
            |key: SrcV4, cpus: &[SrcStats]| {
                let mut stats = SrcStats::default();
                cpus.iter().for_each(|c| stats.merge(c));
                if let Some(f) = fronted.remove(&key) {
                    f.into_stats(&mut stats);
                }
                if stats.packets == 0 {
                    return;
                }
                each(SourceV4 {
                    addr: Ipv4Addr::from(key),
                    stats,
                });
            },
        )?;
        // Sources so far only in the front tables.
        for (key, f) in fronted {
            let mut stats = SrcStats::default();
            f.into_stats(&mut stats);
            each(SourceV4 {
                addr: Ipv4Addr::from(key),
                stats,
            });
        }
        Ok(())
    }

    /// As [`Self::sources_v6`], streaming (see [`Self::visit_sources_v4`]).
    pub fn visit_sources_v6(&self, mut each: impl FnMut(SourceV6)) -> Result<(), DataplaneError> {
        let mut fronted = self.fronted(|m| m.v6.clone())?;
        batch::for_each_percpu(
            &self.src_v6,
            &SRC_V6,
            self.pins.iface(),
            |key: SrcV6Prefix, cpus: &[SrcStatsV6]| {
                let mut merged = SrcStatsV6::default();
                cpus.iter().for_each(|c| merged.merge(c));
                if let Some(f) = fronted.remove(&key) {
                    f.into_stats(&mut merged.stats);
                    // The front table holds the latest packets.
                    merged.last_addr = f.last_addr;
                }
                if merged.stats.packets == 0 {
                    return;
                }
                each(SourceV6 {
                    net: net::v6_prefix_net(key),
                    last_addr: Ipv6Addr::from(merged.last_addr),
                    stats: merged.stats,
                });
            },
        )?;
        for (key, f) in fronted {
            let mut stats = SrcStats::default();
            f.into_stats(&mut stats);
            each(SourceV6 {
                net: net::v6_prefix_net(key),
                last_addr: Ipv6Addr::from(f.last_addr),
                stats,
            });
        }
        Ok(())
    }

    /// `max_entries` of the IPv4 and IPv6 counter maps.
    pub fn source_capacity(&self) -> (u32, u32) {
        (max_entries(&self.src_v4), max_entries(&self.src_v6))
    }

    /// The global counters, summed over CPUs.
    pub fn globals(&self) -> Result<GlobalCounters, DataplaneError> {
        let mut out = GlobalCounters::default();
        for counter in GlobalCounter::ALL {
            let values = self
                .global
                .get(&(counter as u32), 0)
                .map_err(|e| DataplaneError::map("reading counter", names::GLOBAL, e))?;
            out.0[counter as usize] = values.iter().sum();
        }
        // The program does not count `Seen`: every frame ends as exactly one of these.
        out.0[GlobalCounter::Seen as usize] = out.get(GlobalCounter::Passed)
            + out.get(GlobalCounter::Dropped)
            + out.get(GlobalCounter::Limited);
        Ok(out)
    }
}
