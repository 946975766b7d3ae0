//! The per-CPU front table: a small direct-mapped cache of recently seen sources in front of
//! the LRU counter maps.
//!
//! A packet from a source that holds its slot costs one array lookup, which the verifier inlines
//! (no call): the slot carries the source's cached verdict and the packets counted since the
//! last flush. Every [`FLUSH_AT`] packets, and when another source takes the slot, the pending
//! counts are added to the source's entry in the LRU map (one map call, amortised). User space
//! adds what is pending in the front tables to what it reads from the LRU maps, so the counts
//! it reports are exact once traffic pauses, and lag by less than [`FLUSH_AT`] packets per CPU
//! while it flows.
//!
//! Collisions only cost speed: the newcomer takes the slot and the occupant's counts are flushed
//! first, so nothing is lost.

use crate::VerdictCache;

/// log2 of the slots per CPU and family.
pub const FRONT_BITS: u32 = 14;
/// Slots per CPU and family.
pub const FRONT_SLOTS: u32 = 1 << FRONT_BITS;
/// Pending packets at which a slot is flushed into the LRU map.
pub const FLUSH_AT: u64 = 64;

/// Counts not yet added to the LRU map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub packets: u64,
    pub bytes: u64,
    pub syn: u64,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Pending {}

impl Pending {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.syn += other.syn;
    }
}

/// One IPv4 slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontV4 {
    pub key: [u8; 4],
    /// 0 while the slot is free; then when its source claimed it or was last flushed, as a
    /// `crate::loud::stamp` (never 0): how long the pending counts took (releases before it
    /// wrote 1, which reads as long ago).
    pub used: u32,
    pub pending: Pending,
    pub cache: VerdictCache,
    /// `bpf_ktime_get_coarse_ns` when the source took the slot: its first-seen time until the
    /// counts reach the LRU map, where it becomes the entry's `first_seen_ns`.
    pub first_seen_ns: u64,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FrontV4 {}

const _: () = assert!(core::mem::size_of::<FrontV4>() == 56);

/// One IPv6 /64 slot, with the latest full address counted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontV6 {
    pub key: [u8; 8],
    /// As in [`FrontV4`].
    pub used: u32,
    pub _pad: u32,
    pub pending: Pending,
    pub cache: VerdictCache,
    /// As in [`FrontV4`].
    pub first_seen_ns: u64,
    pub last_addr: [u8; 16],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FrontV6 {}

const _: () = assert!(core::mem::size_of::<FrontV6>() == 80);

/// The slot of an IPv4 source (Fibonacci hashing: the top bits of a multiplication).
#[inline(always)]
pub const fn slot_v4(key: &[u8; 4]) -> u32 {
    u32::from_ne_bytes(*key).wrapping_mul(0x9E37_79B1) >> (32 - FRONT_BITS)
}

/// The slot of an IPv6 /64.
#[inline(always)]
pub const fn slot_v6(key: &[u8; 8]) -> u32 {
    (u64::from_ne_bytes(*key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FRONT_BITS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_in_range_and_spread() {
        let mut seen = [0u32; FRONT_SLOTS as usize];
        for i in 0..FRONT_SLOTS {
            let a = (0xC000_0200u32 + i).to_be_bytes();
            let s = slot_v4(&a);
            assert!(s < FRONT_SLOTS);
            seen[s as usize] += 1;
        }
        // Consecutive addresses must not pile into few slots.
        assert!(seen.iter().all(|&n| n <= 2), "{:?}", seen.iter().max());
        for i in 0..1000u64 {
            assert!(slot_v6(&(0x2001_0db8_0000_0000u64 + (i << 16)).to_be_bytes()) < FRONT_SLOTS);
        }
    }
}
