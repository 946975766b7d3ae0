//! Default `max_entries` of every sized map. The loader may override each one at load time
//! (`EbpfLoader::map_max_entries`), so operators size maps without rebuilding.

/// Exact /32 block entries.
pub const BLOCK_V4: u32 = 1 << 20;
/// Exact /64 block entries.
pub const BLOCK_V6: u32 = 1 << 20;
/// IPv4 block prefixes shorter than /32.
pub const BLOCK_NET_V4: u32 = 16_384;
/// IPv6 block prefixes other than /64.
pub const BLOCK_NET_V6: u32 = 16_384;
/// Allowlist prefixes per family.
pub const ALLOW: u32 = 4_096;
/// Tracked IPv4 sources; the LRU evicts the least recently seen beyond this.
pub const SRC_V4: u32 = 262_144;
/// Tracked IPv6 /64 prefixes; the LRU evicts the least recently seen beyond this.
pub const SRC_V6: u32 = 262_144;
/// Challenge token buckets per family; the LRU evicts idle sources' buckets.
pub const BUCKETS: u32 = 65_536;
/// Distinct SYN signatures kept (per source and signature); the LRU evicts the oldest.
pub const SIGS: u32 = 65_536;
/// Dropped sources per family whose sampled drops are kept (hits per decision); the LRU evicts
/// the sources least recently sampled. Not a setting: a hit table only informs `list` and
/// `explain`.
pub const HITS: u32 = 16_384;
