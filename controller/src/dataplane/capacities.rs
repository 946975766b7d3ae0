//! How many entries each sized map holds: set at creation, read back from pinned maps.

use ipwarden_common::{capacity, names};

/// `max_entries` of every sized map, applied when the maps are created (an existing pinned map
/// keeps the size it was created with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub block_v4: u32,
    pub block_v6: u32,
    pub block_net_v4: u32,
    pub block_net_v6: u32,
    pub allow: u32,
    pub src_v4: u32,
    pub src_v6: u32,
    pub buckets: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            block_v4: capacity::BLOCK_V4,
            block_v6: capacity::BLOCK_V6,
            block_net_v4: capacity::BLOCK_NET_V4,
            block_net_v6: capacity::BLOCK_NET_V6,
            allow: capacity::ALLOW,
            src_v4: capacity::SRC_V4,
            src_v6: capacity::SRC_V6,
            buckets: capacity::BUCKETS,
        }
    }
}

impl Capacities {
    /// No bound (an enforcement point without kernel maps).
    pub fn unlimited() -> Self {
        let n = u32::MAX;
        Self {
            block_v4: n,
            block_v6: n,
            block_net_v4: n,
            block_net_v6: n,
            allow: n,
            src_v4: n,
            src_v6: n,
            buckets: n,
        }
    }

    /// The smaller of each.
    pub fn min(&self, o: &Self) -> Self {
        Self {
            block_v4: self.block_v4.min(o.block_v4),
            block_v6: self.block_v6.min(o.block_v6),
            block_net_v4: self.block_net_v4.min(o.block_net_v4),
            block_net_v6: self.block_net_v6.min(o.block_net_v6),
            allow: self.allow.min(o.allow),
            src_v4: self.src_v4.min(o.src_v4),
            src_v6: self.src_v6.min(o.src_v6),
            buckets: self.buckets.min(o.buckets),
        }
    }

    /// About how much kernel memory maps of these sizes take when full, with `cpus` CPUs: hash
    /// maps preallocate every element at creation (a 48-byte element header, key and value
    /// rounded to 8; per-CPU values once per CPU), trie nodes (a 32-byte header, the prefix
    /// bytes, the value) are allocated as entries go in. An estimate for `config check`, not
    /// the kernel's own accounting.
    pub fn estimated_bytes(&self, cpus: u64) -> u64 {
        let hash = |n: u32, key: u64, value: u64| {
            u64::from(n) * (48 + key.next_multiple_of(8) + value.next_multiple_of(8))
        };
        let per_cpu = |n: u32, key: u64, value: u64| {
            u64::from(n) * (48 + key.next_multiple_of(8) + 8 + value.next_multiple_of(8) * cpus)
        };
        let trie = |n: u32, key: u64, value: u64| u64::from(n) * (32 + key + value);
        let entry = size_of::<ipwarden_common::BlockEntry>() as u64;
        hash(self.block_v4, 4, entry)
            + hash(self.block_v6, 8, entry)
            + trie(self.block_net_v4, 4, entry)
            + trie(self.block_net_v6, 16, entry)
            + trie(self.allow, 4, 4)
            + trie(self.allow, 16, 4)
            + per_cpu(
                self.src_v4,
                4,
                size_of::<ipwarden_common::SrcStats>() as u64,
            )
            + per_cpu(
                self.src_v6,
                8,
                size_of::<ipwarden_common::SrcStatsV6>() as u64,
            )
            + hash(self.buckets, 4, 8)
            + hash(self.buckets, 8, 8)
    }

    /// Every sized map's name with its size.
    pub(super) fn by_name(&self) -> [(&'static str, u32); 10] {
        [
            (names::BLOCK_V4, self.block_v4),
            (names::BLOCK_V6, self.block_v6),
            (names::BLOCK_NET_V4, self.block_net_v4),
            (names::BLOCK_NET_V6, self.block_net_v6),
            (names::ALLOW_V4, self.allow),
            (names::ALLOW_V6, self.allow),
            (names::SRC_V4, self.src_v4),
            (names::SRC_V6, self.src_v6),
            (names::BUCKET_V4, self.buckets),
            (names::BUCKET_V6, self.buckets),
        ]
    }
}
