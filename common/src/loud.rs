//! Loud sources: the program's hint that a source sends faster than a threshold, so that the
//! daemon can measure it at once instead of at its next poll.
//!
//! The program already holds a source's packets in a front-table slot (see [`crate::front`])
//! until they are flushed. Each slot remembers when its source claimed it or was last flushed
//! (`used`, in [`STAMP_SHIFT`] units), so a flush knows how many packets came in how long: one
//! division-free comparison against [`LoudLevels`] says whether that chunk ran faster than a
//! level, and a loud chunk puts a [`LoudEvent`] into the `LOUD` ring buffer. Flushes happen every
//! `FLUSH_AT` packets or when another source takes the slot, so the hint costs a packet nothing
//! in between; a spray's one-packet sources (evicted with fewer than [`LOUD_MIN_PACKETS`]
//! pending) are never looked at.
//!
//! A hint decides nothing: the daemon measures the source's exact counters over a short span
//! after it and judges those against the same thresholds as its polls. A hint the program could
//! not send (ring full) is counted, and the poll still finds the source.

use crate::Pending;

/// Front-table stamps count time in units of 2^20 ns (about 1.05 ms).
pub const STAMP_SHIFT: u32 = 20;

/// Fewer pending packets than this in an evicted slot are not looked at: a sprayed source's
/// one packet says nothing about its rate.
pub const LOUD_MIN_PACKETS: u64 = 16;

/// Bytes of the `LOUD` ring buffer (a power of two, a multiple of the page size): 2 048 hints.
pub const LOUD_RING_BYTES: u32 = 1 << 16;

/// Slots of the `LOUD_STATS` per-CPU array.
pub const LOUD_STATS_SLOTS: u32 = 2;
/// `LOUD_STATS` slot of the hints sent.
pub const LOUD_SENT: u32 = 0;
/// `LOUD_STATS` slot of the hints lost because the ring was full.
pub const LOUD_LOST: u32 = 1;

/// A front-table stamp for kernel time `now_ns`: never 0, which marks a free slot.
#[inline(always)]
pub const fn stamp(now_ns: u64) -> u32 {
    ((now_ns >> STAMP_SHIFT) as u32) | 1
}

/// The levels a flushed chunk is held against, in packets per 1 000 stamp units (so that the
/// program compares without dividing). Written by user space into the one-slot `LOUD_LEVELS`
/// array; zero turns a measure off, and an all-zero value (a map nobody wrote) sends no hint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoudLevels {
    /// Packets per 1 000 stamp units.
    pub packets: u32,
    /// SYNs per 1 000 stamp units.
    pub syn: u32,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for LoudLevels {}

const _: () = assert!(core::mem::size_of::<LoudLevels>() == 8);

impl LoudLevels {
    /// Levels for packet and SYN rates per second (0 = off) as seen by one CPU. A source's
    /// packets may be spread over `cpus` CPUs, each flushing its own share, so each CPU is held
    /// against `1/cpus` of the rate: a hint then errs towards looking, never towards missing.
    pub const fn per_cpu(pps: u64, syn_pps: u64, cpus: u32) -> Self {
        Self {
            packets: Self::level(pps, cpus),
            syn: Self::level(syn_pps, cpus),
        }
    }

    /// `rate / cpus` per second in packets per 1 000 stamp units, rounded down (a lower level
    /// only hints more), at least 1 when the rate is not 0.
    const fn level(rate: u64, cpus: u32) -> u32 {
        if rate == 0 {
            return 0;
        }
        let cpus = if cpus == 0 { 1 } else { cpus as u64 };
        // rate/s × 2^20 ns/unit × 1 000 units ÷ 10^9 ns/s.
        let l =
            (rate as u128 * (1u128 << STAMP_SHIFT) * 1_000) / (1_000_000_000u128 * cpus as u128);
        if l == 0 {
            1
        } else if l > u32::MAX as u128 {
            u32::MAX
        } else {
            l as u32
        }
    }

    /// Whether a chunk of `p` counted over `span` stamp units ran at or above a level. A span
    /// of 0 (under one unit) counts as one unit.
    #[inline(always)]
    pub const fn loud(&self, p: &Pending, span: u32) -> bool {
        let span = if span == 0 { 1 } else { span as u64 };
        (self.packets != 0 && p.packets * 1_000 >= span * self.packets as u64)
            || (self.syn != 0 && p.syn * 1_000 >= span * self.syn as u64)
    }
}

/// One hint in the `LOUD` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoudEvent {
    /// The source: an IPv4 address in the first 4 bytes, or an IPv6 /64 in the first 8.
    pub key: [u8; 16],
    /// 4 or 6.
    pub family: u32,
    /// Packets of the loud chunk.
    pub packets: u32,
    /// SYNs of the loud chunk.
    pub syn: u32,
    /// How long the chunk took, in stamp units.
    pub span: u32,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for LoudEvent {}

const _: () = assert!(core::mem::size_of::<LoudEvent>() == 32);

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(packets: u64, syn: u64) -> Pending {
        Pending {
            packets,
            bytes: 0,
            syn,
        }
    }

    /// Stamp units in `ms` milliseconds.
    fn units(ms: u64) -> u32 {
        ((ms * 1_000_000) >> STAMP_SHIFT) as u32
    }

    #[test]
    fn a_chunk_is_loud_at_the_level_and_not_below() {
        // 1 000 pps on one CPU: 64 packets in 64 ms is the level.
        let l = LoudLevels::per_cpu(1_000, 0, 1);
        assert!(l.loud(&chunk(64, 0), units(60)));
        assert!(l.loud(&chunk(64, 0), units(12)));
        // Half the rate: 64 packets in 128 ms.
        assert!(!l.loud(&chunk(64, 0), units(130)));
        // SYNs are off.
        assert!(!l.loud(&chunk(0, 64), units(130)));
        // A chunk under one unit counts as one.
        assert!(l.loud(&chunk(16, 0), 0));
        assert!(!LoudLevels::default().loud(&chunk(1 << 40, 1 << 40), 0));
    }

    #[test]
    fn each_cpu_is_held_against_its_share_and_syns_on_their_own() {
        let l = LoudLevels::per_cpu(1_000, 200, 2);
        // 500 pps on one CPU is half the source's rate at 1 000 pps on two.
        assert!(l.loud(&chunk(64, 0), units(120)));
        assert!(!l.loud(&chunk(64, 0), units(140)));
        // 100 SYNs/s per CPU.
        assert!(l.loud(&chunk(64, 20), units(190)));
        assert!(!l.loud(&chunk(64, 20), units(230)));
    }

    #[test]
    fn levels_saturate_and_stamps_are_never_zero() {
        assert_eq!(LoudLevels::per_cpu(u64::MAX, 1, 1).packets, u32::MAX);
        assert_eq!(LoudLevels::per_cpu(1, 0, 64).packets, 1);
        assert_eq!(stamp(0), 1);
        assert_ne!(stamp(1 << 52), 0);
    }
}
