//! Per-source state: the front table (a per-CPU direct-mapped slot per recent source, holding
//! its cached verdict and pending counts) and the LRU counter maps behind it (IPv4 /32, IPv6
//! /64). See `ipwarden_common::front` and `ipwarden_common::verdict`.
//!
//! A packet from the source holding its slot costs one inlined array lookup: no map call and no
//! clock call. Pending counts go to the LRU map every `FLUSH_AT` packets and when another source
//! takes the slot. Per-CPU maps, so no atomics; LRU maps, so a flood of random sources evicts
//! old entries instead of failing.
//!
//! IPv6 verdicts are cached per /64, the unit IPv6 is counted and judged in. That is exact while
//! every entry covers whole /64s; when some entry is longer than /64 user space sets
//! `DataplaneConfig::V6_FINE` and IPv6 packets are judged one by one.
//!
//! Blocked packets are not counted per source (outside monitor mode): a blocked source needs no
//! velocity, and a flood from blocked sources, spoofed or not, never reaches the LRU maps, so it
//! cannot push live sources out of them. The global `Dropped` counter still counts every one.
//!
//! Nor do they take a front-table slot from another source when the block index holds them
//! (see `ipwarden_common::index`): the index line is their whole judgement. A flood sprayed over
//! a million blocked sources then costs a slot read and an index line per frame, no slot write
//! and no flush, and the sources holding the slots keep them (measured: 1.1 to 1.3 times the
//! frame rate at a million sources). A blocked source that finds its slot free still claims it
//! and is judged from the cache after, as before; one that finds another blocked source there
//! takes it now and then (see `displaces`).

use aya_ebpf::{bindings::BPF_NOEXIST, maps::LruPerCpuHashMap};
use ipwarden_common::{
    DataplaneConfig, GlobalCounter, Pending, SrcStats, SrcStatsV6, VerdictCache,
    admit::{Place, place_v4, place_v6},
    aggregate::{cells_v4, cells_v6},
    front::{FLUSH_AT, slot_v4, slot_v6},
    key::v6_prefix,
    loud::{LOUD_LOST, LOUD_MIN_PACKETS, LOUD_SENT, LoudEvent, stamp},
    stats::hit_sampled,
};

use crate::{
    admit,
    clock::{self, jiffies},
    maps::{
        AGG, DROPS, FRONT_V4, FRONT_V6, GLOBAL, HITS_V4, HITS_V6, LOUD, LOUD_LEVELS, LOUD_STATS,
        SRC_V4, SRC_V6,
    },
    policy::{self, Decision, Judged},
    tracked,
};

/// Zeroes `v` (a value of whole, aligned 64-bit words) one volatile word store at a time. A
/// plain `= Default::default()` here compiled to a call of the BPF build's `memset`, a loop of
/// five instructions per byte (40 bytes on every claim of a front-table slot, 24 on every
/// flush); volatile stores cannot be merged back into one.
#[inline(always)]
fn zero<T>(v: &mut T) {
    const { assert!(size_of::<T>() % 8 == 0 && align_of::<T>() == 8) };
    let w = (v as *mut T).cast::<u64>();
    for i in 0..size_of::<T>() / 8 {
        // SAFETY: `i` words lie inside `*v`, which is aligned for them and all of whose bit
        // patterns (plain integers) are valid.
        unsafe { core::ptr::write_volatile(w.add(i), 0) };
    }
}

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
fn add(p: &mut Pending, packet: Packet) {
    p.packets += 1;
    p.bytes += packet.bytes;
    p.syn += packet.syn as u64;
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

/// Whether an indexed blocked source takes the slot after all: only from another blocked
/// source, and only for one frame in eight. A sprayed flood then writes few slots, and a
/// blocked source that stays (while the slot's holder left long ago, e.g. the last flood's)
/// still gets the slot and the cached path after a few frames.
#[inline(always)]
fn displaces(occupant: &VerdictCache, cfg: &DataplaneConfig) -> bool {
    if occupant.get(cfg.generation, jiffies()) != Some(VerdictCache::BLOCK) {
        return false;
    }
    // The coin: the count of dropped frames (it moves with every one) mixed with the clock. The
    // count alone would give a source of a periodic spray the same face every time.
    GLOBAL.get(GlobalCounter::Dropped as u32).is_some_and(|n| {
        n.wrapping_add(jiffies())
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> 61
            == 0
    })
}

/// The slot's cached verdict if valid, else the block set's, which is then cached. Also
/// returns the kernel time of the judgement (0 when the verdict came from the cache) and the
/// origin of the entry that decided it.
#[inline(always)]
fn decide(
    cache: &mut VerdictCache,
    cfg: &DataplaneConfig,
    cacheable: bool,
    judge: impl FnOnce() -> Judged,
) -> (Decision, u64, u32) {
    if cacheable && let Some(verdict) = cache.get(cfg.generation, jiffies()) {
        return (cached(verdict), 0, cache.origin());
    }
    let j = judge();
    *cache = if cacheable {
        j.cache(cfg.generation)
    } else {
        VerdictCache::default()
    };
    (j.decision, j.at_ns, j.origin)
}

/// Counts and judges a packet of an IPv4 source. A dropped frame is counted by that origin, and one in `HIT_SAMPLE` against
/// the source.
#[inline(always)]
pub fn ipv4(src: &[u8; 4], p: Packet, cfg: &DataplaneConfig) -> Decision {
    let (decision, origin) = judged_v4(src, p, cfg);
    dropped(decision, origin, p.bytes, cfg, || {
        merge(&HITS_V4, src, |n: &mut u64| *n += 1, || 1)
    });
    decision
}

/// As [`ipv4`], for an IPv6 source, recorded under its /64.
#[inline(always)]
pub fn ipv6(src: &[u8; 16], p: Packet, cfg: &DataplaneConfig) -> Decision {
    let (decision, origin) = judged_v6(src, p, cfg);
    dropped(decision, origin, p.bytes, cfg, || {
        merge(&HITS_V6, &v6_prefix(src), |n: &mut u64| *n += 1, || 1)
    });
    decision
}

/// Counts a frame the program drops (outside monitor mode) under the origin of the entry that
/// dropped it, and calls `record` for one in `HIT_SAMPLE` of them (see `hit_sampled`): the hit
/// tables behind `list` and `explain`. Here, where the source is at hand: carrying the source to
/// where the verdict is returned cost every IPv6 frame, passed ones too, about 4 ns (measured).
#[inline(always)]
fn dropped(
    decision: Decision,
    origin: u32,
    bytes: u64,
    cfg: &DataplaneConfig,
    record: impl FnOnce(),
) {
    if !matches!(decision, Decision::Block | Decision::Limit) || cfg.monitor() {
        return;
    }
    let Some(c) = DROPS.get_ptr_mut(origin) else {
        return;
    };
    // SAFETY: a per-CPU array slot is only written by this CPU, and XDP does not nest.
    let drops = unsafe {
        (*c).packets += 1;
        (*c).bytes += bytes;
        (*c).packets
    };
    if hit_sampled(drops) {
        record();
    }
}

/// Counts and judges a packet of an IPv4 source.
#[inline(always)]
fn judged_v4(src: &[u8; 4], p: Packet, cfg: &DataplaneConfig) -> (Decision, u32) {
    let Some(slot) = FRONT_V4.get_ptr_mut(slot_v4(src)) else {
        // Unreachable: the index is below the table's size.
        let j = policy::ipv4(src, cfg, 0);
        return (j.decision, j.origin);
    };
    // SAFETY: a per-CPU array slot belongs to this CPU for the duration of the program.
    let slot = unsafe { &mut *slot };
    let claim = slot.used == 0 || slot.key != *src;
    if claim
        && slot.used != 0
        && !cfg.monitor()
        && let Some(origin) = policy::index_blocks_v4(src)
        && !displaces(&slot.cache, cfg)
    {
        return (Decision::Block, origin);
    }
    // A claim reads the clock once: for the occupant's flush (admission's epoch, the hint's
    // span) and the newcomer's judgement.
    let claimed_at = if claim { clock::now() } else { 0 };
    if claim {
        if slot.used != 0 {
            let loud = slot.pending.packets >= LOUD_MIN_PACKETS
                && heard(
                    &slot.pending,
                    slot.used,
                    claimed_at,
                    || key_v4(&slot.key),
                    4,
                );
            flush_v4(
                &slot.key,
                &mut slot.pending,
                slot.first_seen_ns,
                (loud, claimed_at),
                cfg.tracked_marked(),
            );
        }
        slot.key = *src;
        slot.used = 1;
        zero(&mut slot.pending);
        // An empty cache: the source is judged below.
        zero(&mut slot.cache);
    }
    let (decision, judged_at, origin) = decide(&mut slot.cache, cfg, true, || {
        policy::ipv4(src, cfg, claimed_at)
    });
    if claim {
        slot.first_seen_ns = judged_at;
        slot.used = stamp(judged_at);
    }
    if counted(decision, cfg) {
        add(&mut slot.pending, p);
        if slot.pending.packets >= FLUSH_AT {
            let now = clock::now();
            let loud = heard(&slot.pending, slot.used, now, || key_v4(src), 4);
            slot.used = stamp(now);
            let marked = cfg.tracked_marked();
            flush_v4(
                src,
                &mut slot.pending,
                slot.first_seen_ns,
                (loud, now),
                marked,
            );
        }
    }
    (decision, origin)
}

/// Counts and judges a packet of an IPv6 source under its /64, remembering the full address.
#[inline(always)]
fn judged_v6(src: &[u8; 16], p: Packet, cfg: &DataplaneConfig) -> (Decision, u32) {
    let key = v6_prefix(src);
    let Some(slot) = FRONT_V6.get_ptr_mut(slot_v6(&key)) else {
        let j = policy::ipv6(src, &key, cfg, 0);
        return (j.decision, j.origin);
    };
    // SAFETY: as in `ipv4`.
    let slot = unsafe { &mut *slot };
    let claim = slot.used == 0 || slot.key != key;
    if claim
        && slot.used != 0
        && !cfg.monitor()
        && let Some(origin) = policy::index_blocks_v6(&key)
        && !displaces(&slot.cache, cfg)
    {
        return (Decision::Block, origin);
    }
    // As in `judged_v4`: one clock reading for the flush and the judgement.
    let claimed_at = if claim { clock::now() } else { 0 };
    if claim {
        if slot.used != 0 {
            let loud = slot.pending.packets >= LOUD_MIN_PACKETS
                && heard(
                    &slot.pending,
                    slot.used,
                    claimed_at,
                    || key_v6(&slot.key),
                    6,
                );
            flush_v6(
                &slot.key,
                &mut slot.pending,
                &slot.last_addr,
                slot.first_seen_ns,
                (loud, claimed_at),
                cfg.tracked_marked(),
            );
        }
        slot.key = key;
        slot.used = 1;
        zero(&mut slot.pending);
        // An empty cache: the source is judged below.
        zero(&mut slot.cache);
    }
    let (decision, judged_at, origin) = decide(&mut slot.cache, cfg, cfg.v6_cacheable(), || {
        policy::ipv6(src, &key, cfg, claimed_at)
    });
    if claim {
        slot.first_seen_ns = judged_at;
        slot.used = stamp(judged_at);
    }
    if counted(decision, cfg) {
        add(&mut slot.pending, p);
        slot.last_addr = *src;
        if slot.pending.packets >= FLUSH_AT {
            let now = clock::now();
            let loud = heard(&slot.pending, slot.used, now, || key_v6(&key), 6);
            slot.used = stamp(now);
            let marked = cfg.tracked_marked();
            flush_v6(
                &key,
                &mut slot.pending,
                src,
                slot.first_seen_ns,
                (loud, now),
                marked,
            );
        }
    }
    (decision, origin)
}

/// Puts a hint into the `LOUD` ring when a chunk of `p` pending since stamp `since` came faster
/// than `LOUD_LEVELS` says (see `ipwarden_common::loud`); counts it sent or lost. Whether the
/// chunk was loud: a loud source is admitted at once (see `admit`), sent or not.
#[inline(always)]
fn heard(
    p: &Pending,
    since: u32,
    now_ns: u64,
    key: impl FnOnce() -> [u8; 16],
    family: u32,
) -> bool {
    let span = stamp(now_ns).wrapping_sub(since);
    let Some(levels) = LOUD_LEVELS.get(0) else {
        return false;
    };
    if !levels.loud(p, span) {
        return false;
    }
    let event = LoudEvent {
        key: key(),
        family,
        packets: p.packets as u32,
        syn: p.syn as u32,
        span,
    };
    let counter = if LOUD.output::<LoudEvent>(&event, 0).is_ok() {
        LOUD_SENT
    } else {
        LOUD_LOST
    };
    if let Some(c) = LOUD_STATS.get_ptr_mut(counter) {
        // SAFETY: a per-CPU array slot is only written by this CPU, and XDP does not nest.
        unsafe { *c += 1 };
    }
    true
}

#[inline(always)]
fn key_v4(a: &[u8; 4]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(a);
    k
}

#[inline(always)]
fn key_v6(p: &[u8; 8]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(p);
    k
}

/// Adds a chunk to the source's aggregate cells and to its entry; a source without an entry
/// gets one only when admitted (see `admit`). `marked`: the marks may be trusted (see
/// `ipwarden_common::tracked`).
#[inline(always)]
fn flush_v4(
    key: &[u8; 4],
    pending: &mut Pending,
    first_seen_ns: u64,
    (loud, now_ns): (bool, u64),
    marked: bool,
) {
    let cells = cells_v4(key);
    let place = place_v4(key);
    if let Some(c) = Chunk::take(pending, place, cells, first_seen_ns, (loud, now_ns), marked) {
        count(&SRC_V4, key, &c, |v| v, |s| s, |_| {});
    }
}

/// As [`flush_v4`], for an IPv6 /64 and the latest address counted.
#[inline(always)]
fn flush_v6(
    key: &[u8; 8],
    pending: &mut Pending,
    last_addr: &[u8; 16],
    first_seen_ns: u64,
    (loud, now_ns): (bool, u64),
    marked: bool,
) {
    let cells = cells_v6(key);
    let place = place_v6(key);
    let Some(c) = Chunk::take(pending, place, cells, first_seen_ns, (loud, now_ns), marked) else {
        return;
    };
    let addr = *last_addr;
    count(
        &SRC_V6,
        key,
        &c,
        |v: &mut SrcStatsV6| &mut v.stats,
        |stats| SrcStatsV6 {
            stats,
            last_addr: addr,
        },
        |v| v.last_addr = addr,
    );
}

/// A flushed chunk and what admission needs to know of its source.
struct Chunk {
    p: Pending,
    place: Place,
    first_seen_ns: u64,
    loud: bool,
    cells: [u32; 2],
    /// The clock as the flush's caller read it.
    now_ns: u64,
    /// The marks may be trusted: a clear one means no entry.
    marked: bool,
}

impl Chunk {
    /// Takes what `pending` holds (`None` when nothing) and adds it to the source's aggregate
    /// cells, which count every flushed packet, admitted or not.
    #[inline(always)]
    fn take(
        pending: &mut Pending,
        place: Place,
        cells: [u32; 2],
        first_seen_ns: u64,
        (loud, now_ns): (bool, u64),
        marked: bool,
    ) -> Option<Self> {
        if pending.packets == 0 {
            return None;
        }
        let p = *pending;
        zero(pending);
        aggregate(cells, &p);
        Some(Self {
            p,
            place,
            first_seen_ns,
            loud,
            cells,
            now_ns,
            marked,
        })
    }
}

/// Adds a chunk to the source's entry in `map`, or creates the entry if the source is admitted.
///
/// This CPU's share of an entry another CPU created is zero (an insert into an LRU per-CPU hash
/// zeroes the other CPUs' values) and starts from this CPU's sketch estimate. The insert uses
/// `BPF_NOEXIST`, so that an entry another CPU created meanwhile is added to, not overwritten:
/// counts of tracked sources stay exact.
#[inline(always)]
fn count<K, V>(
    map: &LruPerCpuHashMap<K, V>,
    key: &K,
    c: &Chunk,
    stats: impl Fn(&mut V) -> &mut SrcStats,
    new: impl FnOnce(SrcStats) -> V,
    touch: impl Fn(&mut V),
) {
    // A clear mark: no entry, no lookup (the common case of a sprayed source).
    if (!c.marked || tracked::marked(c.place.mark))
        && let Some(v) = map.get_ptr_mut(key)
    {
        // SAFETY: the per-CPU slot belongs to this CPU for the duration of the program.
        let v = unsafe { &mut *v };
        let s = stats(v);
        if s.packets == 0 {
            *s = admit::joined(&c.place, &c.p, c.first_seen_ns, c.now_ns);
        } else {
            s.add(&c.p);
        }
        touch(v);
        return;
    }
    let Some(seed) = admit::untracked(&c.place, &c.p, c.first_seen_ns, c.loud, c.cells, c.now_ns)
    else {
        return;
    };
    // Before the entry exists, so that no CPU finds the entry without the mark.
    tracked::mark(c.place.mark);
    if map.insert(key, new(seed), BPF_NOEXIST as u64).is_err()
        && let Some(v) = map.get_ptr_mut(key)
    {
        // SAFETY: as above.
        let v = unsafe { &mut *v };
        let s = stats(v);
        if s.packets == 0 {
            *s = seed;
        } else {
            s.add(&c.p);
        }
        touch(v);
    }
}

/// Adds flushed counts to the source's aggregate cells (its /24 and /16, or /48 and /32). Per-CPU
/// array cells: the verifier inlines the lookups, no helper call. On the flush path only, so a
/// source that keeps its front slot pays it once per `FLUSH_AT` packets.
#[inline(always)]
fn aggregate(cells: [u32; 2], p: &Pending) {
    for c in cells {
        if let Some(cell) = AGG.get_ptr_mut(c) {
            // SAFETY: a per-CPU array slot, written only by this CPU's program.
            let cell = unsafe { &mut *cell };
            cell.packets += p.packets;
            cell.syn += p.syn;
        }
    }
}

/// Adds to this CPU's value in place, or creates the entry (flushed counts, sampled hits).
///
/// The insert uses `BPF_NOEXIST`: inserting into an LRU per-CPU hash replaces the whole element,
/// zeroing other CPUs' values, so when another CPU created the entry first we look it up again
/// and add in place rather than overwrite it. That keeps per-source counts exact.
#[inline(always)]
fn merge<K, V>(
    map: &LruPerCpuHashMap<K, V>,
    key: &K,
    add: impl Fn(&mut V),
    new: impl FnOnce() -> V,
) {
    if let Some(value) = map.get_ptr_mut(key) {
        // SAFETY: the per-CPU slot belongs to this CPU for the duration of the program.
        unsafe { add(&mut *value) };
        return;
    }
    if map.insert(key, new(), BPF_NOEXIST as u64).is_err()
        && let Some(value) = map.get_ptr_mut(key)
    {
        // SAFETY: as above.
        unsafe { add(&mut *value) };
    }
}
