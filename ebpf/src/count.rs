//! Counter updates: per source (IPv4 /32, IPv6 /64) and global. Per-CPU maps, so no atomics in the
//! hot path; LRU maps, so a flood of random sources evicts old entries instead of failing.

use aya_ebpf::{bindings::BPF_NOEXIST, maps::LruPerCpuHashMap};
use ipwarden_common::{GlobalCounter, SrcStats, SrcStatsV6, key::v6_prefix};

use crate::maps::{GLOBAL, SRC_V4, SRC_V6};

/// Adds one to a global counter on this CPU.
#[inline(always)]
pub fn global(counter: GlobalCounter) {
    if let Some(slot) = GLOBAL.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU array slot is only written by this CPU, and XDP does not nest.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn bump(stats: &mut SrcStats, bytes: u64, syn: bool, now: u64) {
    stats.packets += 1;
    stats.bytes += bytes;
    stats.syn += syn as u64;
    stats.last_seen_ns = now;
}

#[inline(always)]
fn first(bytes: u64, syn: bool, now: u64) -> SrcStats {
    SrcStats {
        packets: 1,
        bytes,
        syn: syn as u64,
        first_seen_ns: now,
        last_seen_ns: now,
    }
}

/// Counts a packet of an IPv4 source.
#[inline(always)]
pub fn source_v4(src: &[u8; 4], bytes: u64, syn: bool, now: u64) {
    update(
        &SRC_V4,
        src,
        |s: &mut SrcStats| bump(s, bytes, syn, now),
        || first(bytes, syn, now),
    );
}

/// Counts a packet of an IPv6 source under its /64 and remembers the full address.
#[inline(always)]
pub fn source_v6(src: &[u8; 16], bytes: u64, syn: bool, now: u64) {
    let key = v6_prefix(src);
    update(
        &SRC_V6,
        &key,
        |s: &mut SrcStatsV6| {
            bump(&mut s.stats, bytes, syn, now);
            s.last_addr = *src;
        },
        || SrcStatsV6 {
            stats: first(bytes, syn, now),
            last_addr: *src,
        },
    );
}

/// Updates this CPU's value in place, or creates the entry.
///
/// The insert uses `BPF_NOEXIST`: inserting into an LRU per-CPU hash replaces the whole element,
/// zeroing other CPUs' values, so when another CPU created the entry first we look it up again
/// and update in place rather than overwrite it. That keeps per-source counts exact.
#[inline(always)]
fn update<K, V>(
    map: &LruPerCpuHashMap<K, V>,
    key: &K,
    bump: impl Fn(&mut V),
    first: impl FnOnce() -> V,
) {
    if let Some(value) = map.get_ptr_mut(key) {
        // SAFETY: the per-CPU slot belongs to this CPU for the duration of the program.
        unsafe { bump(&mut *value) };
        return;
    }
    if map.insert(key, first(), BPF_NOEXIST as u64).is_err()
        && let Some(value) = map.get_ptr_mut(key)
    {
        // SAFETY: as above.
        unsafe { bump(&mut *value) };
    }
}
