//! The block index: a one-cache-line-per-lookup view of the exact block entries that simply
//! block (IPv4 /32, IPv6 /64), in front of the exact-match hashes.
//!
//! Why: when a flood sprays many blocked sources, none of them stays in the front table, and
//! every frame is judged again. A kernel hash lookup then walks a bucket array and an element,
//! two cache and TLB misses on a large set (measured: about half of a sprayed frame's cost),
//! and the allowlist trie after it. An index bucket is one 64-byte line of an mmapable array
//! (page-aligned values), holding up to [`INDEX_WAYS`] keys and their expiry: one miss.
//!
//! The hashes keep every entry; an index way exists only for a live `Action::BLOCK` entry of the
//! hash that no allowlisted prefix overlaps, so a hit may skip both the hash and the allowlist.
//! A key that finds no way (a full bucket, a challenge entry, an allowlisted one, an index not yet
//! filled after an upgrade) takes the full path, so an empty index changes nothing but speed.
//! User space (the only writer) clears a way before the hash entry changes and fills it after.
//!
//! **Authority.** Unblocked sources are most of the traffic, and for them the index would
//! still leave a miss in a million-entry hash. So a bucket can also say "no other key of mine is
//! in the hash": user space keeps every hash key either in a way of its bucket or its bucket
//! *marked* (a way holding [`MARK`], set when a key of the bucket is in the hash without a way),
//! and says the rule holds by writing `DataplaneConfig::authority` (see
//! [`crate::DataplaneConfig::index_authoritative`]). While it holds, a key that finds no way in
//! an unmarked bucket is not looked up in the hash at all. User space withdraws the authority
//! before every change and gives it back after, only when it held before (or after a resync
//! that rebuilt the index): a writer that does not know the rule (an older release) changes the
//! generation without it, which withdraws the authority by itself.

/// log2 of the buckets per family.
pub const INDEX_BITS: u32 = 19;
/// Buckets per family: 2 Mi ways, twice the default exact capacity (32 MiB per family).
pub const INDEX_BUCKETS: u32 = 1 << INDEX_BITS;
/// Ways per bucket.
pub const INDEX_WAYS: usize = 4;

/// One bucket: one cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexBucket {
    /// Each way's key ([`key_v4`], [`key_v6`]).
    pub keys: [u64; INDEX_WAYS],
    /// Each way's [`way_until`]: the entry's `expires_at_ns` ([`PERMANENT`] for a permanent
    /// one, whose `expires_at_ns` is `BlockEntry::NEVER`, 0) with the entry's `Reason` code in
    /// the low three bits, so that a drop through the index is counted by origin; 0 = the way
    /// is empty.
    pub until: [u64; INDEX_WAYS],
}

/// The low bits of a way's `until` that hold the entry's `Reason` code.
const ORIGIN_BITS: u64 = 7;

/// `until` of a marker way: a key of this bucket is in the hash without a way (see the module
/// comment). No block's way has it (their `until` is at least 8 or [`PERMANENT`]), and a
/// program that predates markers reads it as a way that lapsed at 1 ns, so it takes the full
/// path as it should.
pub const MARK: u64 = 1;

/// `until` of a permanent entry, before its origin bits: at or above it means permanent (a
/// release that wrote `u64::MAX` reads as permanent too).
pub const PERMANENT: u64 = !ORIGIN_BITS;

/// A way's `until` for an entry lapsing at `expires_at_ns` (0: never) with `reason`. The
/// expiry is rounded down by at most 7 ns; never 0 for a real (non-zero) reason.
#[inline(always)]
pub const fn way_until(expires_at_ns: u64, reason: u32) -> u64 {
    let base = if expires_at_ns == 0 {
        PERMANENT
    } else {
        expires_at_ns & !ORIGIN_BITS
    };
    base | (reason as u64 & ORIGIN_BITS)
}

/// The `Reason` code a way's `until` carries.
#[inline(always)]
pub const fn way_origin(until: u64) -> u32 {
    (until & ORIGIN_BITS) as u32
}

/// The expiry a way's `until` stands for: `u64::MAX` for a permanent entry, else the entry's
/// `expires_at_ns` rounded down by at most 7 ns.
#[inline(always)]
pub const fn way_expiry(until: u64) -> u64 {
    if way_permanent(until) {
        u64::MAX
    } else {
        until & !ORIGIN_BITS
    }
}

/// Whether a way's `until` is a block's (not empty, not a [`MARK`]).
#[inline(always)]
pub const fn is_way(until: u64) -> bool {
    until > ORIGIN_BITS
}

/// Whether a way's `until` is a permanent entry's.
#[inline(always)]
pub const fn way_permanent(until: u64) -> bool {
    until >= PERMANENT
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for IndexBucket {}

const _: () = assert!(core::mem::size_of::<IndexBucket>() == 64);

impl IndexBucket {
    /// The expiry of `key`'s way, if it has one (markers are not ways). Unrolled: four
    /// compares, no loop for the verifier.
    #[inline(always)]
    pub fn find(&self, key: u64) -> Option<u64> {
        let k = &self.keys;
        let u = &self.until;
        let hit = if k[0] == key && is_way(u[0]) {
            u[0]
        } else if k[1] == key && is_way(u[1]) {
            u[1]
        } else if k[2] == key && is_way(u[2]) {
            u[2]
        } else if k[3] == key && is_way(u[3]) {
            u[3]
        } else {
            0
        };
        (hit != 0).then_some(hit)
    }

    /// Whether some key of this bucket is in the hash without a way.
    #[inline(always)]
    pub fn marked(&self) -> bool {
        let u = &self.until;
        u[0] == MARK || u[1] == MARK || u[2] == MARK || u[3] == MARK
    }
}

/// The index key of an IPv4 source.
#[inline(always)]
pub const fn key_v4(src: &[u8; 4]) -> u64 {
    u32::from_ne_bytes(*src) as u64
}

/// The index key of an IPv6 /64 (`SrcV6Prefix`).
#[inline(always)]
pub const fn key_v6(prefix: &[u8; 8]) -> u64 {
    u64::from_ne_bytes(*prefix)
}

/// The bucket of a key: the splitmix64 finalizer's top bits. A plain multiplication spread
/// consecutive IPv4 addresses badly (their varying byte is the key's top byte): 39 % of a
/// million of them found no way.
#[inline(always)]
pub const fn bucket(key: u64) -> u32 {
    let mut z = key;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> (64 - INDEX_BITS)) as u32
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn a_ways_until_carries_expiry_and_origin() {
        let u = way_until(1_000_000_005, 5);
        assert_eq!((way_origin(u), way_permanent(u)), (5, false));
        assert!(u <= 1_000_000_005 && u + 8 > 1_000_000_005);
        let p = way_until(0, 1);
        assert_eq!((way_origin(p), way_permanent(p)), (1, true));
        assert!(way_permanent(u64::MAX), "an older release's permanent way");
        assert_ne!(way_until(8, 1), 0);
    }

    #[test]
    fn a_way_is_found_only_with_its_key_and_while_filled() {
        let mut b = IndexBucket::default();
        assert_eq!(
            b.find(0),
            None,
            "an empty way never matches, not even key 0"
        );
        b.keys[2] = 7;
        b.until[2] = 99;
        assert_eq!(b.find(7), Some(99));
        assert_eq!(b.find(8), None);
        b.until[2] = 0;
        assert_eq!(b.find(7), None);
    }

    #[test]
    fn a_marker_is_no_way_and_marks_its_bucket() {
        let mut b = IndexBucket::default();
        assert!(!b.marked());
        b.keys[1] = 7;
        b.until[1] = way_until(1_000, 3);
        assert!(!b.marked());
        // A way turned into a marker: its key no longer finds it, and the bucket is marked.
        b.until[1] = MARK;
        assert_eq!(b.find(7), None);
        assert!(b.marked());
        assert!(!is_way(MARK) && !is_way(0) && is_way(way_until(0, 0)) && is_way(8));
    }

    #[test]
    fn buckets_are_in_range_and_the_spray_pattern_spreads() {
        let mut seen = std::collections::HashMap::<u32, u32>::new();
        for n in 1..=65_536u32 {
            // 2001:db8:(0x8000 | n >> 16):(n & 0xffff)::/64, the benchmark's spray.
            let g = ((0x8000 | (n >> 16)) << 16) | (n & 0xffff);
            let mut p = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0];
            p[4..].copy_from_slice(&g.to_be_bytes());
            let b = bucket(key_v6(&p));
            assert!(b < INDEX_BUCKETS);
            *seen.entry(b).or_default() += 1;
        }
        let full = seen.values().filter(|&&n| n > INDEX_WAYS as u32).count();
        assert!(full < 40, "65 536 sources overflowed {full} buckets");
    }

    #[test]
    fn a_million_consecutive_ipv4_addresses_almost_all_find_a_way() {
        let mut load = std::vec![0u8; INDEX_BUCKETS as usize];
        let mut lost = 0;
        for i in 0..1_000_000u32 {
            let b = &mut load[bucket(key_v4(&(0x0A00_0000 + i).to_be_bytes())) as usize];
            if usize::from(*b) == INDEX_WAYS {
                lost += 1;
            } else {
                *b += 1;
            }
        }
        // A million keys in 2 Mi ways: a uniform (Poisson) spread leaves about 3.2 % in full
        // buckets.
        assert!(lost < 40_000, "{lost} of a million found no way");
    }
}
