//! Per-source state: the counters (IPv4 /32, IPv6 /64) and the verdict cached beside them.
//!
//! One lookup in the per-source map serves both: a source the program has already judged under
//! the current generation is counted and decided without touching the block set (see
//! `ipwarden_common::verdict`). Per-CPU maps, so no atomics in the hot path; LRU maps, so a flood
//! of random sources evicts old entries instead of failing.
//!
//! IPv6 verdicts are cached per /64, the unit IPv6 is counted and judged in. That is exact while
//! every entry covers whole /64s; when some entry is longer than /64 user space sets
//! `DataplaneConfig::V6_FINE` and IPv6 packets are judged one by one.
//!
//! Blocked packets are not counted per source (outside monitor mode): a blocked source needs no
//! velocity, and a source that is blocked before it is ever seen then costs no counter entry at
//! all, so a flood from a blocked feed cannot push live sources out of the LRU map. The global
//! `Dropped` counter still counts every one of them.

use aya_ebpf::{bindings::BPF_NOEXIST, maps::LruPerCpuHashMap};
use ipwarden_common::{
    DataplaneConfig, GlobalCounter, SrcStats, SrcStatsV6, VerdictCache, key::v6_prefix,
};

use crate::{
    clock::{jiffies, now},
    maps::{GLOBAL, SRC_V4, SRC_V6},
    policy::{self, Decision, Judged},
};

/// Adds one to a global counter on this CPU.
#[inline(always)]
pub fn global(counter: GlobalCounter) {
    if let Some(slot) = GLOBAL.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU array slot is only written by this CPU, and XDP does not nest.
        unsafe { *slot += 1 };
    }
}

/// A packet's facts the counters need.
#[derive(Clone, Copy)]
pub struct Packet {
    pub bytes: u64,
    pub syn: bool,
}

#[inline(always)]
fn bump(stats: &mut SrcStats, p: Packet) {
    stats.packets += 1;
    stats.bytes += p.bytes;
    stats.syn += p.syn as u64;
}

/// A new entry: counting this packet, or (`None`) only holding a verdict.
#[inline(always)]
fn first(p: Option<Packet>, cache: VerdictCache) -> SrcStats {
    match p {
        Some(p) => SrcStats {
            packets: 1,
            bytes: p.bytes,
            syn: p.syn as u64,
            first_seen_ns: now(),
            cache,
        },
        None => SrcStats {
            cache,
            ..SrcStats::default()
        },
    }
}

/// Counts and judges a packet of an IPv4 source.
#[inline(always)]
pub fn ipv4(src: &[u8; 4], p: Packet, cfg: &DataplaneConfig) -> Decision {
    visit(
        &SRC_V4,
        src,
        cfg,
        true,
        |v: &mut SrcStats| v,
        |v: &mut SrcStats| bump(v, p),
        |counted, cache| first(counted.then_some(p), cache),
        || policy::ipv4(src),
    )
}

/// Counts and judges a packet of an IPv6 source under its /64, remembering the full address.
#[inline(always)]
pub fn ipv6(src: &[u8; 16], p: Packet, cfg: &DataplaneConfig) -> Decision {
    let key = v6_prefix(src);
    visit(
        &SRC_V6,
        &key,
        cfg,
        cfg.v6_cacheable(),
        |v: &mut SrcStatsV6| &mut v.stats,
        |v: &mut SrcStatsV6| {
            bump(&mut v.stats, p);
            v.last_addr = *src;
        },
        |counted, cache| SrcStatsV6 {
            stats: first(counted.then_some(p), cache),
            last_addr: if counted { *src } else { [0; 16] },
        },
        || policy::ipv6(src, &key),
    )
}

#[inline(always)]
fn counted(decision: Decision, cfg: &DataplaneConfig) -> bool {
    decision != Decision::Block || cfg.monitor()
}

#[inline(always)]
fn cached(verdict: u64) -> Decision {
    match verdict {
        VerdictCache::BLOCK => Decision::Block,
        VerdictCache::ALLOW => Decision::Allow,
        _ => Decision::Pass,
    }
}

/// Looks the source up once: a valid cached verdict decides the packet; otherwise the block set
/// does and the verdict is cached. Then counts the packet unless it is blocked. A source seen
/// for the first time gets an entry when its packet is counted, or when the block that dropped
/// it asks to be remembered (see `Judged::remember`).
///
/// A new entry is inserted with `BPF_NOEXIST`: inserting into an LRU per-CPU hash replaces the
/// whole element, zeroing other CPUs' values, so when another CPU created the entry first we look
/// it up again and count in place rather than overwrite it. That keeps per-source counts exact.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn visit<K, V>(
    map: &LruPerCpuHashMap<K, V>,
    key: &K,
    cfg: &DataplaneConfig,
    cacheable: bool,
    stats: impl Fn(&mut V) -> &mut SrcStats,
    count: impl Fn(&mut V),
    first: impl FnOnce(bool, VerdictCache) -> V,
    judge: impl FnOnce() -> Judged,
) -> Decision {
    if let Some(value) = map.get_ptr_mut(key) {
        // SAFETY: the per-CPU slot belongs to this CPU for the duration of the program.
        let value = unsafe { &mut *value };
        let s = stats(value);
        let decision = match s.cache.get(cfg.generation, jiffies()) {
            Some(verdict) if cacheable => cached(verdict),
            _ => {
                let j = judge();
                s.cache = if cacheable {
                    j.cache(cfg.generation)
                } else {
                    VerdictCache::default()
                };
                j.decision
            }
        };
        if counted(decision, cfg) {
            count(value);
        }
        return decision;
    }
    let j = judge();
    let counts = counted(j.decision, cfg);
    if counts || j.remember {
        let inserted = map.insert(
            key,
            first(counts, j.cache(cfg.generation)),
            BPF_NOEXIST as u64,
        );
        if counts
            && inserted.is_err()
            && let Some(value) = map.get_ptr_mut(key)
        {
            // SAFETY: as above.
            unsafe { count(&mut *value) };
        }
    }
    j.decision
}
