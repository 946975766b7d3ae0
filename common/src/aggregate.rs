//! Aggregate counters: packets and SYNs per IPv4 /24 and /16 and IPv6 /48 and /32, so that a
//! flood spread over many sources of one network is seen even when each source stays quiet.
//!
//! Counted where nothing is lost: when the front table flushes a source's pending counts (see
//! [`crate::front`]), the same counts are added to one cell per level of a per-CPU array. The
//! per-source LRU maps evict under a random-source flood; these cells do not, and every packet a
//! front slot counted reaches them (user space adds what is still pending, as for sources).
//!
//! The array is a hashed counter table (a one-row count-min sketch): a level's prefix picks a
//! cell by hash, so two prefixes of one level can share a cell and then each reads the sum of
//! both. Counts are never under, at worst over: the controller also requires many distinct
//! active members before it calls an aggregate heavy, and shows the members it saw.

/// log2 of the cells per level.
pub const AGG_BITS: u32 = 15;
/// Cells per level.
pub const AGG_CELLS: u32 = 1 << AGG_BITS;

/// The counted levels, in cell-region order. The kernel counts all four; the controller judges
/// the ones `detection.aggregate` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Level {
    V4Slash24 = 0,
    V4Slash16 = 1,
    V6Slash48 = 2,
    V6Slash32 = 3,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::V4Slash24,
        Level::V4Slash16,
        Level::V6Slash48,
        Level::V6Slash32,
    ];

    /// The prefix length.
    pub const fn prefix_len(self) -> u8 {
        match self {
            Self::V4Slash24 => 24,
            Self::V4Slash16 => 16,
            Self::V6Slash48 => 48,
            Self::V6Slash32 => 32,
        }
    }

    /// The level of an IPv4 or IPv6 prefix length, if it is counted.
    pub const fn of(v6: bool, prefix_len: u8) -> Option<Level> {
        match (v6, prefix_len) {
            (false, 24) => Some(Self::V4Slash24),
            (false, 16) => Some(Self::V4Slash16),
            (true, 48) => Some(Self::V6Slash48),
            (true, 32) => Some(Self::V6Slash32),
            _ => None,
        }
    }
}

/// Total cells of the array.
pub const AGG_TOTAL: u32 = AGG_CELLS * Level::ALL.len() as u32;

/// One cell.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggCell {
    pub packets: u64,
    pub syn: u64,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for AggCell {}

const _: () = assert!(core::mem::size_of::<AggCell>() == 16);

/// The cell of a prefix given as its leading bits (network order, right-aligned in a u64, the
/// rest zero): Fibonacci hashing with the level mixed in, into the level's region.
#[inline(always)]
pub const fn cell(level: Level, bits: u64) -> u32 {
    let mixed = (bits ^ ((level as u64) << 59)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (level as u32) * AGG_CELLS + (mixed >> (64 - AGG_BITS)) as u32
}

/// The IPv4 cells of a source (`/24`, `/16`).
#[inline(always)]
pub const fn cells_v4(addr: &[u8; 4]) -> [u32; 2] {
    let a = u32::from_be_bytes(*addr) as u64;
    [
        cell(Level::V4Slash24, a >> 8),
        cell(Level::V4Slash16, a >> 16),
    ]
}

/// The IPv6 cells of a /64 key (`/48`, `/32`).
#[inline(always)]
pub const fn cells_v6(key: &[u8; 8]) -> [u32; 2] {
    let a = u64::from_be_bytes(*key);
    [
        cell(Level::V6Slash48, a >> 16),
        cell(Level::V6Slash32, a >> 32),
    ]
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn cells_stay_in_their_levels_region_and_members_share_them() {
        let a = cells_v4(&[203, 0, 113, 7]);
        let b = cells_v4(&[203, 0, 113, 200]);
        let c = cells_v4(&[203, 0, 114, 1]);
        assert_eq!(a, b, "one /24, one /16");
        assert_ne!(a[0], c[0], "another /24");
        assert_eq!(a[1], c[1], "the same /16");
        for x in a.iter().chain(&c) {
            assert!(*x < AGG_TOTAL);
        }
        assert!(a[0] < AGG_CELLS && (AGG_CELLS..2 * AGG_CELLS).contains(&a[1]));
        let v = cells_v6(&[0x20, 0x01, 0x0d, 0xb8, 0, 0x66, 0, 1]);
        let w = cells_v6(&[0x20, 0x01, 0x0d, 0xb8, 0, 0x66, 0xff, 2]);
        assert_eq!(v, w, "one /48");
        assert!((2 * AGG_CELLS..3 * AGG_CELLS).contains(&v[0]));
        assert!((3 * AGG_CELLS..AGG_TOTAL).contains(&v[1]));
    }

    #[test]
    fn neighbouring_prefixes_spread() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..4096u32 {
            seen.insert(cell(Level::V4Slash24, u64::from(0xC0_0000 + i)));
        }
        // 4096 consecutive /24s in 32 768 cells: few collisions.
        assert!(seen.len() > 3900, "{}", seen.len());
    }
}
