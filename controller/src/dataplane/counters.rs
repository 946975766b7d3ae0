//! What the program counted: per-source counters (the LRU maps plus what is still pending in
//! the front tables, see `ipwarden_common::front`) and the global counters, all summed over
//! CPUs.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::MapData;
use ipnet::Ipv6Net;
use ipwarden_common::{
    AggCell, FrontV4, FrontV6, GlobalCounter, SrcStats, SrcStatsV6, SrcV4, SrcV6Prefix,
    front::FLUSH_AT, names,
};

use super::{
    Dataplane, DataplaneError,
    batch::{self, PercpuSpec},
    front::{
        AGG, FRONT_V4, FRONT_V6, FrontMemo, FrontRead, Fronted, FrontedBy, SRC_V4, SRC_V6,
        fronted_in,
    },
    maps::max_entries,
};
use crate::net;

/// How far a source's count read by one poll may fall short of what the next poll reads, so that
/// a reader of successive counts (the detector) treats a step back of at most this much as read
/// noise, not as an eviction.
///
/// Reads never count a packet twice (see [`Dataplane::visit_sources_v4`]): the LRU map is read
/// first, the front tables after it. A slot flushed between the two reads has the packets it held
/// counted in neither read, and a poll that read a source in full before may then see up to
/// `FLUSH_AT` packets per CPU fewer. Sized for up to 64 CPUs: on larger hosts a rare step back can
/// exceed it, and is then handled as an eviction.
pub const READ_SLACK_PACKETS: u64 = FLUSH_AT * 64;

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

/// Global counters summed over CPUs, indexed by [`GlobalCounter`], the drops by the dropping
/// entry's origin, indexed by `Reason` code, and the new SYN signatures left unrecorded under
/// the program's budget (`ipwarden_common::fingerprint::SIG_BUDGET_PER_JIFFY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalCounters(
    pub [u64; GlobalCounter::COUNT as usize],
    pub [ipwarden_common::stats::DropCount; ipwarden_common::stats::DROP_ORIGINS as usize],
    pub u64,
);

impl GlobalCounters {
    /// One counter.
    pub fn get(&self, counter: GlobalCounter) -> u64 {
        self.0[counter as usize]
    }
}

/// A per-source counter map's value, one family's: merged over CPUs, with what the front tables
/// hold added, made into that family's source. The IPv4 and IPv6 readers share everything
/// else.
trait Counted: aya::Pod + Default {
    type Key: aya::Pod + Copy + Eq + std::hash::Hash;
    type Source;
    const SPEC: PercpuSpec<Self::Key, Self>;
    fn map(dp: &Dataplane) -> &MapData;
    /// This family's front table as last read.
    fn memo(memo: &mut FrontMemo) -> &mut FrontRead<Self::Key>;
    /// This family's front table read now.
    fn read_front(dp: &Dataplane) -> Result<FrontedBy<Self::Key>, DataplaneError>;
    fn merge_cpu(&mut self, cpu: &Self);
    /// Adds the front tables' pending counts (if any); the packet count after.
    fn add_front(&mut self, front: Option<&Fronted>) -> u64;
    fn source(self, key: Self::Key) -> Self::Source;
}

impl Counted for SrcStats {
    type Key = SrcV4;
    type Source = SourceV4;
    const SPEC: PercpuSpec<SrcV4, SrcStats> = SRC_V4;

    fn map(dp: &Dataplane) -> &MapData {
        &dp.src_v4
    }

    fn memo(memo: &mut FrontMemo) -> &mut FrontRead<SrcV4> {
        &mut memo.v4
    }

    fn read_front(dp: &Dataplane) -> Result<FrontedBy<SrcV4>, DataplaneError> {
        dp.fronted_v4()
    }

    fn merge_cpu(&mut self, cpu: &Self) {
        self.merge(cpu);
    }

    fn add_front(&mut self, front: Option<&Fronted>) -> u64 {
        if let Some(f) = front {
            f.into_stats(self);
        }
        self.packets
    }

    fn source(self, key: SrcV4) -> SourceV4 {
        SourceV4 {
            addr: Ipv4Addr::from(key),
            stats: self,
        }
    }
}

impl Counted for SrcStatsV6 {
    type Key = SrcV6Prefix;
    type Source = SourceV6;
    const SPEC: PercpuSpec<SrcV6Prefix, SrcStatsV6> = SRC_V6;

    fn map(dp: &Dataplane) -> &MapData {
        &dp.src_v6
    }

    fn memo(memo: &mut FrontMemo) -> &mut FrontRead<SrcV6Prefix> {
        &mut memo.v6
    }

    fn read_front(dp: &Dataplane) -> Result<FrontedBy<SrcV6Prefix>, DataplaneError> {
        dp.fronted_v6()
    }

    fn merge_cpu(&mut self, cpu: &Self) {
        self.merge(cpu);
    }

    fn add_front(&mut self, front: Option<&Fronted>) -> u64 {
        if let Some(f) = front {
            f.into_stats(&mut self.stats);
            // The front table holds the latest packets.
            if f.pending.packets != 0 {
                self.last_addr = f.last_addr;
            }
        }
        self.stats.packets
    }

    fn source(self, key: SrcV6Prefix) -> SourceV6 {
        SourceV6 {
            net: net::v6_prefix_net(key),
            last_addr: Ipv6Addr::from(self.last_addr),
            stats: self.stats,
        }
    }
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

    /// Family `C`'s front table, read again only when some packet was finished since its last
    /// read, lent to `with`. The counter is read first: a packet racing the read changes it, so
    /// the next call reads the table again. Only `C`'s table: a poll used to read both tables
    /// at each of its four reads (about 20 MB copied a second on a 2-CPU host under a spray).
    fn with_front<C: Counted, T>(
        &self,
        with: impl FnOnce(&FrontedBy<C::Key>) -> T,
    ) -> Result<T, DataplaneError> {
        // Every packet ends in exactly one terminal counter, after its front-table update.
        let seen = self.globals()?.get(GlobalCounter::Seen);
        let mut memo = crate::sync::lock(&self.front_memo);
        let read = C::memo(&mut memo);
        if read.seen != Some(seen) {
            read.by = C::read_front(self)?;
            read.seen = Some(seen);
        }
        Ok(with(&read.by))
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
    /// Counts are the LRU map's plus what is pending in the front tables, and never more than
    /// the program counted: the front tables are read *after* the LRU map. Read the other way
    /// round, a slot flushed between the two reads had its packets counted twice (once pending,
    /// once in the map): a poll once showed a source at 180 of 120 packets sent. In this order a
    /// flush in between leaves those packets out of this read (the next one has them).
    ///
    /// To stream anyway, the front tables as last read name the sources that may have pending
    /// counts; only their map entries are held back (at most the front tables' slots), and
    /// emitted with the fresh front-table read. A source that took its first slot during the read
    /// is left to the next poll rather than risk emitting it twice.
    pub fn visit_sources_v4(&self, each: impl FnMut(SourceV4)) -> Result<(), DataplaneError> {
        self.visit_merged::<SrcStats>(each)
    }

    /// As [`Self::sources_v6`], streaming (see [`Self::visit_sources_v4`]).
    pub fn visit_sources_v6(&self, each: impl FnMut(SourceV6)) -> Result<(), DataplaneError> {
        self.visit_merged::<SrcStatsV6>(each)
    }

    /// The family `C`'s LRU map streamed into `each`, except the sources the front tables held
    /// at the last read, which are merged with a front-table read made after the map's.
    fn visit_merged<C: Counted>(
        &self,
        mut each: impl FnMut(C::Source),
    ) -> Result<(), DataplaneError> {
        let candidates: foldhash::HashSet<C::Key> =
            self.with_front::<C, _>(|m| m.keys().copied().collect())?;
        let mut held: foldhash::HashMap<C::Key, C> = foldhash::HashMap::default();
        batch::for_each_percpu(
            C::map(self),
            &C::SPEC,
            self.pins.iface(),
            |key: C::Key, cpus: &[C]| {
                let mut merged = C::default();
                cpus.iter().for_each(|c| merged.merge_cpu(c));
                if candidates.contains(&key) {
                    held.insert(key, merged);
                } else if merged.add_front(None) != 0 {
                    each(merged.source(key));
                }
            },
        )?;
        // Merged with the table lent, not a copy of it.
        self.with_front::<C, _>(|fronted| {
            for (key, f) in fronted {
                if !candidates.contains(key) {
                    // Took its first slot while the map was read: maybe streamed already.
                    continue;
                }
                let mut merged = held.remove(key).unwrap_or_default();
                if merged.add_front(Some(f)) != 0 {
                    each(merged.source(*key));
                }
            }
        })?;
        // Held back, but nothing pending any more: the map's counts are the whole count.
        for (key, mut merged) in held {
            if merged.add_front(None) != 0 {
                each(merged.source(key));
            }
        }
        Ok(())
    }

    /// The aggregate cells summed over CPUs, added into `into` (one entry per cell); `false`
    /// when these pins have no aggregate map. Read *before* the sources (and so before the
    /// front tables): a flush in between then adds to neither read, never to both.
    pub fn add_aggregate_cells(&self, into: &mut [AggCell]) -> Result<bool, DataplaneError> {
        let Some(map) = &self.agg else {
            return Ok(false);
        };
        // Cells change only at flushes, and a flush only with a packet, which ends in a terminal
        // counter after it: with the count unchanged, the last read stands (as for the fronts).
        let seen = self.globals()?.get(GlobalCounter::Seen);
        let mut memo = crate::sync::lock(&self.agg_memo);
        if memo.0 != Some(seen) {
            let mut cells = vec![AggCell::default(); into.len()];
            batch::for_each_percpu(
                map,
                &AGG,
                self.pins.iface(),
                |index: u32, cpus: &[AggCell]| {
                    if let Some(cell) = cells.get_mut(index as usize) {
                        for c in cpus {
                            cell.packets += c.packets;
                            cell.syn += c.syn;
                        }
                    }
                },
            )?;
            *memo = (Some(seen), cells);
        }
        for (cell, c) in into.iter_mut().zip(&memo.1) {
            cell.packets += c.packets;
            cell.syn += c.syn;
        }
        Ok(true)
    }

    /// What the front tables held at their last read (made by the last `visit_sources_*`, after
    /// the aggregate cells were read): per source, pending packets and SYNs. Not read again:
    /// a newer read would add nothing the cells lack, and cost a copy of both tables.
    pub fn visit_pending(
        &self,
        mut each: impl FnMut(std::net::IpAddr, u64, u64),
    ) -> Result<(), DataplaneError> {
        let memo = crate::sync::lock(&self.front_memo);
        for (k, f) in &memo.v4.by {
            each(Ipv4Addr::from(*k).into(), f.pending.packets, f.pending.syn);
        }
        for (k, f) in &memo.v6.by {
            each(
                net::v6_prefix_net(*k).addr().into(),
                f.pending.packets,
                f.pending.syn,
            );
        }
        Ok(())
    }

    /// `max_entries` of the IPv4 and IPv6 counter maps.
    pub fn source_capacity(&self) -> (u32, u32) {
        (max_entries(&self.src_v4), max_entries(&self.src_v6))
    }

    /// Dropped packets and bytes by the dropping entry's `Reason` code, summed over CPUs; only
    /// origins with drops. Empty for pins of a build before these counters.
    pub fn drops_by_origin(
        &self,
    ) -> Result<Vec<(u32, ipwarden_common::stats::DropCount)>, DataplaneError> {
        let Some(drops) = &self.drops else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for code in 0..ipwarden_common::stats::DROP_ORIGINS {
            let values = drops
                .get(&code, 0)
                .map_err(|e| DataplaneError::map("reading drops", names::DROPS, e))?;
            let mut sum = ipwarden_common::stats::DropCount::default();
            for v in values.iter() {
                sum.packets += v.packets;
                sum.bytes += v.bytes;
            }
            if sum.packets > 0 {
                out.push((code, sum));
            }
        }
        Ok(out)
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
        for (code, count) in self.drops_by_origin()? {
            out.1[code as usize] = count;
        }
        out.2 = self.unrecorded_signatures()?;
        Ok(out)
    }
}

impl Dataplane {
    /// New SYN signatures the program left unrecorded because its per-CPU budget was spent
    /// (0 for pins of a build before the budget).
    fn unrecorded_signatures(&self) -> Result<u64, DataplaneError> {
        let Some(map) = &self.sig_budget else {
            return Ok(0);
        };
        Ok(map
            .get(&ipwarden_common::fingerprint::SIG_BUDGET_SKIPPED, 0)
            .map_err(|e| DataplaneError::map("reading", names::SIG_BUDGET, e))?
            .iter()
            .sum())
    }
}
