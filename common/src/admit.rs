//! Admission: which sources get an exact per-source counter.
//!
//! Every frame of a random-source flood comes from a source never seen before. Counting each one
//! exactly means an insert into the per-source LRU map (its lock, an eviction, a cache line
//! written) for a source that sends one packet and is never heard from again, and a poll that
//! reads a million such entries. Heavy-hitter detection needs exact counts only for sources that
//! could reach a threshold, so the front table's flushes (see [`crate::front`]) first go into a
//! small per-CPU count-min sketch, and a source enters the LRU map ("is admitted") only once its
//! estimate in the current epoch reaches [`AdmitLevel`]: a fraction of the lowest per-source
//! threshold, split over the CPUs. Below it, nothing per source is written.
//!
//! The sketch is cache-line blocked: a source hashes to one 64-byte [`SketchLine`] of
//! [`SKETCH_LINES`] per CPU and adds its packets to two of the line's fifteen counters; its
//! estimate is the smaller of the two. Each line carries the epoch it counts (2^30 ns, about
//! 1.07 s) and starts from zero when written in a new one, so no one ever clears it.
//!
//! Properties:
//! - an estimate never undercounts: every packet of a source flushed in an epoch was added to
//!   both its counters, and other sources only add more;
//! - a source's exact count starts from its estimate (bytes and SYNs scaled from the chunk that
//!   admitted it, its first-seen time from the epoch's start), so its rate is not under-read at
//!   its first poll, and from then on it is counted exactly, as before admission existed;
//! - a source sending at `pps` on any spread over the CPUs has one CPU carrying at least
//!   `pps / cpus`, which reaches the level within `fraction` of an epoch;
//! - the over-count: with `P` packets flushed into the sketch by one CPU in an epoch, a counter
//!   receives on average `2P / (15 × SKETCH_LINES)` packets of other sources (about 8 at
//!   500 000 packets a second per CPU); see the tests for the measured tail.
//!
//! A chunk the program found loud (see [`crate::loud`]) is admitted at once, so that the daemon
//! can measure a hinted source's exact counters; so are members of aggregate cells user space
//! flags in `ADMIT_CELLS`, so that a network flooding with many quiet members has those members
//! tracked (their count and busiest members are what aggregate detection judges).

use crate::{Pending, SrcStats};

/// log2 of the sketch lines per CPU.
pub const SKETCH_BITS: u32 = 13;
/// Sketch lines per CPU: 8 192 lines of 64 bytes, 512 KiB per CPU.
pub const SKETCH_LINES: u32 = 1 << SKETCH_BITS;
/// An epoch lasts 2^EPOCH_SHIFT ns (about 1.07 s).
pub const EPOCH_SHIFT: u32 = 30;

/// Slots of the `ADMIT_STATS` per-CPU array.
pub const ADMIT_STATS_SLOTS: u32 = 2;
/// `ADMIT_STATS` slot of flushes that admitted a source.
pub const ADMITTED: u32 = 0;
/// `ADMIT_STATS` slot of flushes held in the sketch.
pub const HELD: u32 = 1;

/// Words of the `ADMIT_CELLS` bitmap: one bit per aggregate cell.
pub const ADMIT_CELL_WORDS: u32 = crate::aggregate::AGG_TOTAL / 64;

/// One sketch line: its epoch (`slot 0`) and fifteen counters.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SketchLine {
    pub words: [u32; 16],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SketchLine {}

const _: () = assert!(core::mem::size_of::<SketchLine>() == 64);

/// Where a source counts: its line and its two counters (1..=8 and 8..=15; they coincide for one
/// source in 64, whose estimate is then its one counter, still never under).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub line: u32,
    pub a: usize,
    pub b: usize,
    /// The source's mark (see [`crate::tracked`]), from the same hash's middle bits.
    pub mark: u32,
}

/// The place of a source given as its key bits (an IPv4 address, or an IPv6 /64, as a big-endian
/// integer). A hash of its own, unrelated to the front table's and the aggregate cells', so that
/// sources sharing a front slot do not also share sketch counters.
#[inline(always)]
pub const fn place(bits: u64, v6: bool) -> Place {
    let seed = if v6 {
        0x5851_F42D_4C95_7F2D
    } else {
        0x1405_7B7E_F767_814F
    };
    let h = (bits ^ seed).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let h = (h ^ (h >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Place {
        line: (h >> (64 - SKETCH_BITS)) as u32,
        a: 1 + (h & 7) as usize,
        b: 8 + ((h >> 3) & 7) as usize,
        mark: ((h >> 8) as u32) & (crate::tracked::MARKS - 1),
    }
}

/// The place of an IPv4 source.
#[inline(always)]
pub const fn place_v4(addr: &[u8; 4]) -> Place {
    place(u32::from_be_bytes(*addr) as u64, false)
}

/// The place of an IPv6 /64.
#[inline(always)]
pub const fn place_v6(key: &[u8; 8]) -> Place {
    place(u64::from_be_bytes(*key), true)
}

/// The epoch of kernel time `now_ns`, as a line stores it.
#[inline(always)]
pub const fn epoch(now_ns: u64) -> u32 {
    (now_ns >> EPOCH_SHIFT) as u32
}

/// Kernel time at which the epoch holding `now_ns` began.
#[inline(always)]
pub const fn epoch_start(now_ns: u64) -> u64 {
    (now_ns >> EPOCH_SHIFT) << EPOCH_SHIFT
}

impl SketchLine {
    /// Adds `packets` at `place` in `epoch` (restarting the line when it counted another) and
    /// returns the estimate: the source's packets in this epoch on this CPU, or more.
    #[inline(always)]
    pub fn add(&mut self, epoch: u32, place: &Place, packets: u32) -> u32 {
        if self.words[0] != epoch {
            self.words = [0; 16];
            self.words[0] = epoch;
        }
        let a = self.words[place.a].saturating_add(packets);
        self.words[place.a] = a;
        let b = if place.a == place.b {
            a
        } else {
            let b = self.words[place.b].saturating_add(packets);
            self.words[place.b] = b;
            b
        };
        if a < b { a } else { b }
    }

    /// The estimate at `place` in `epoch` without adding (0 when the line counts another epoch).
    pub const fn estimate(&self, epoch: u32, place: &Place) -> u32 {
        if self.words[0] != epoch {
            return 0;
        }
        let (a, b) = (self.words[place.a], self.words[place.b]);
        if a < b { a } else { b }
    }
}

/// The admission level: packets in one epoch on one CPU. Written by user space into the one-slot
/// `ADMIT_LEVEL` array; 0 (a map nobody wrote) admits every source, as before admission existed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmitLevel {
    pub packets: u32,
    pub _pad: u32,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for AdmitLevel {}

const _: () = assert!(core::mem::size_of::<AdmitLevel>() == 8);

impl AdmitLevel {
    /// The level for sources at `fraction` of `pps` (the lowest per-source threshold that acts
    /// on counts) spread over `cpus` CPUs: `pps × fraction × epoch / cpus`, rounded down (a lower
    /// level only admits more), at least 1. A fraction of 0 or a rate of 0 turns admission off.
    pub fn per_cpu(pps: u64, fraction: f64, cpus: u32) -> Self {
        if pps == 0 || fraction <= 0.0 || fraction.is_nan() {
            return Self::default();
        }
        let epoch_s = (1u64 << EPOCH_SHIFT) as f64 / 1e9;
        let l = pps as f64 * fraction.min(1.0) * epoch_s / cpus.max(1) as f64;
        Self {
            packets: (l as u64).clamp(1, u32::MAX as u64) as u32,
            _pad: 0,
        }
    }

    /// Whether admission is on.
    pub const fn on(&self) -> bool {
        self.packets != 0
    }
}

/// The counts an admitted source's entry starts from: its estimate `estimate` (at least the
/// chunk's packets), bytes and SYNs scaled from the chunk `p` in the same ratio, and a first-seen
/// time no later than the epoch's start (the estimate covers the epoch).
#[inline(always)]
pub fn seed(p: &Pending, estimate: u64, first_seen_ns: u64, epoch_start_ns: u64) -> SrcStats {
    if estimate <= p.packets || p.packets == 0 {
        return SrcStats {
            packets: p.packets,
            bytes: p.bytes,
            syn: p.syn,
            first_seen_ns,
        };
    }
    SrcStats {
        packets: estimate,
        bytes: p.bytes * estimate / p.packets,
        syn: p.syn * estimate / p.packets,
        first_seen_ns: if first_seen_ns == 0 || epoch_start_ns < first_seen_ns {
            epoch_start_ns
        } else {
            first_seen_ns
        },
    }
}

/// Whether aggregate cell `cell` is flagged in a bitmap word `word` (the word `cell / 64`).
#[inline(always)]
pub const fn flagged(word: u64, cell: u32) -> bool {
    word & (1u64 << (cell % 64)) != 0
}

#[cfg(test)]
mod tests;
