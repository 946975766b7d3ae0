//! Program and map names, the single source of truth for both sides.
//!
//! The kernel truncates object names to 15 bytes, so each name here is at most 15 bytes (checked
//! below). The eBPF crate names its statics identically; the privileged ABI test checks the built
//! object against this list.

/// The XDP entry point.
pub const PROGRAM: &str = "ipwarden_xdp";
/// The synproxy's program (see [`crate::synproxy`]), which the XDP program tail-calls through
/// [`SYNPROXY_PROG`] for a SYN or an ACK to a protected port.
pub const SYNACK_PROGRAM: &str = "ipwarden_synack";

/// Exact IPv4 /32 block entries: `HASH<SrcV4, BlockEntry>`.
pub const BLOCK_V4: &str = "BLOCK_V4";
/// Exact IPv6 /64 block entries: `HASH<SrcV6Prefix, BlockEntry>`.
pub const BLOCK_V6: &str = "BLOCK_V6";
/// IPv4 block prefixes shorter than /32: `LPM_TRIE<[u8; 4], BlockEntry>`.
pub const BLOCK_NET_V4: &str = "BLOCK_NET_V4";
/// IPv6 block prefixes other than /64 (shorter, or longer up to /128): `LPM_TRIE<[u8; 16], BlockEntry>`.
pub const BLOCK_NET_V6: &str = "BLOCK_NET_V6";
/// IPv4 allowlist: `LPM_TRIE<[u8; 4], u32>`.
pub const ALLOW_V4: &str = "ALLOW_V4";
/// IPv6 allowlist: `LPM_TRIE<[u8; 16], u32>`.
pub const ALLOW_V6: &str = "ALLOW_V6";
/// Per-source IPv4 counters: `LRU_PERCPU_HASH<SrcV4, SrcStats>`.
pub const SRC_V4: &str = "SRC_V4";
/// Per-/64 IPv6 counters: `LRU_PERCPU_HASH<SrcV6Prefix, SrcStatsV6>`.
pub const SRC_V6: &str = "SRC_V6";
/// The IPv4 front table: `PERCPU_ARRAY<FrontV4>` of [`crate::front::FRONT_SLOTS`] slots.
pub const FRONT_V4: &str = "FRONT_V4";
/// The IPv6 front table: `PERCPU_ARRAY<FrontV6>`.
pub const FRONT_V6: &str = "FRONT_V6";
/// Global counters: `PERCPU_ARRAY<u64>` indexed by [`crate::GlobalCounter`].
pub const GLOBAL: &str = "GLOBAL";
/// One-slot `ARRAY<DataplaneConfig>` the program reads on every packet.
pub const CONFIG: &str = "CONFIG";
/// Challenge token buckets per IPv4 source: `LRU_HASH<SrcV4, u64>` (GCRA arrival time).
pub const BUCKET_V4: &str = "BUCKET_V4";
/// Challenge token buckets per IPv6 /64: `LRU_HASH<SrcV6Prefix, u64>`.
pub const BUCKET_V6: &str = "BUCKET_V6";

/// One-slot `ARRAY<Stamp>`: the layout version and build that wrote the pins (see
/// [`crate::stamp`]). The program never reads it.
pub const STAMP: &str = "STAMP";

/// Aggregate counters: `PERCPU_ARRAY<AggCell>` of [`crate::aggregate::AGG_TOTAL`] cells.
pub const AGG: &str = "AGG";

/// TCP SYN signatures per source: `LRU_HASH<SigKey, SigEntry>`.
pub const SIGS: &str = "SIGS";

/// The data plane's per-CPU memo of signatures recently kept: `PERCPU_ARRAY<u64>`.
pub const SIG_SEEN: &str = "SIG_SEEN";

/// The IPv4 block index (see [`crate::index`]): mmapable `ARRAY<IndexBucket>` of
/// [`crate::index::INDEX_BUCKETS`] buckets, written by user space only.
pub const INDEX_V4: &str = "INDEX_V4";
/// The IPv6 /64 block index.
pub const INDEX_V6: &str = "INDEX_V6";

/// Dropped packets and bytes by the dropping entry's origin: `PERCPU_ARRAY<DropCount>` indexed
/// by `Reason` code ([`crate::stats::DROP_ORIGINS`] slots).
pub const DROPS: &str = "DROPS";

/// Sampled drops per dropped IPv4 source: `LRU_PERCPU_HASH<SrcV4, u64>` (see
/// [`crate::stats::hit_sampled`]).
pub const HITS_V4: &str = "HITS_V4";
/// Sampled drops per dropped IPv6 /64: `LRU_PERCPU_HASH<SrcV6Prefix, u64>`.
pub const HITS_V6: &str = "HITS_V6";

/// Loud-source hints (see [`crate::loud`]): `RINGBUF` of [`crate::loud::LOUD_RING_BYTES`].
pub const LOUD: &str = "LOUD";
/// The levels a flushed chunk is held against: one-slot `ARRAY<LoudLevels>`, written by user
/// space.
pub const LOUD_LEVELS: &str = "LOUD_LEVELS";
/// Hints sent and lost: `PERCPU_ARRAY<u64>` of [`crate::loud::LOUD_STATS_SLOTS`].
pub const LOUD_STATS: &str = "LOUD_STATS";

/// The per-CPU budget of new SYN signatures: `PERCPU_ARRAY<u64>` of
/// [`crate::fingerprint::SIG_BUDGET_SLOTS`].
pub const SIG_BUDGET: &str = "SIG_BUDGET";

/// The admission sketch (see [`crate::admit`]): `PERCPU_ARRAY<SketchLine>` of
/// [`crate::admit::SKETCH_LINES`] lines.
pub const ADMIT_SKETCH: &str = "ADMIT_SKETCH";
/// The admission level: one-slot `ARRAY<AdmitLevel>`, written by user space.
pub const ADMIT_LEVEL: &str = "ADMIT_LEVEL";
/// Aggregate cells whose members are admitted whatever their estimate: `ARRAY<u64>` bitmap of
/// [`crate::admit::ADMIT_CELL_WORDS`] words, written by user space.
pub const ADMIT_CELLS: &str = "ADMIT_CELLS";
/// Flushes that admitted a source and flushes held in the sketch: `PERCPU_ARRAY<u64>` of
/// [`crate::admit::ADMIT_STATS_SLOTS`].
pub const ADMIT_STATS: &str = "ADMIT_STATS";

/// Marks of the sources that may have a per-source entry (see [`crate::tracked`]): mmapable
/// `ARRAY<MarkLine>` of [`crate::tracked::MARK_LINES`] lines, shared by the CPUs.
pub const TRACKED: &str = "TRACKED";

/// What the synproxy answers with (see [`crate::synproxy`]): one-slot
/// `ARRAY<SynproxyConfig>`, written by user space.
pub const SYNPROXY_CONFIG: &str = "SYNPROXY_CONFIG";
/// The protected TCP ports: `ARRAY<u64>` bitmap of [`crate::synproxy::PORT_WORDS`] words.
pub const SYNPROXY_PORTS: &str = "SYNPROXY_PORTS";
/// SYNs answered, cookies accepted and refused: `PERCPU_ARRAY<u64>` of
/// [`crate::synproxy::STATS_SLOTS`].
pub const SYNPROXY_STATS: &str = "SYNPROXY_STATS";

/// Where the program builds a SYN-ACK: `PERCPU_ARRAY<Scratch>` of one slot.
pub const SYNPROXY_BUF: &str = "SYNPROXY_BUF";

/// The synproxy's program, in slot 0: `PROG_ARRAY` of one slot, filled by the loader.
pub const SYNPROXY_PROG: &str = "SYNPROXY_PROG";

/// Every map, for loaders that pin, size or check them all.
pub const MAPS: [&str; 37] = [
    BLOCK_V4,
    BLOCK_V6,
    BLOCK_NET_V4,
    BLOCK_NET_V6,
    ALLOW_V4,
    ALLOW_V6,
    SRC_V4,
    SRC_V6,
    FRONT_V4,
    FRONT_V6,
    GLOBAL,
    CONFIG,
    BUCKET_V4,
    BUCKET_V6,
    STAMP,
    AGG,
    SIGS,
    SIG_SEEN,
    INDEX_V4,
    INDEX_V6,
    DROPS,
    HITS_V4,
    HITS_V6,
    LOUD,
    LOUD_LEVELS,
    LOUD_STATS,
    SIG_BUDGET,
    ADMIT_SKETCH,
    ADMIT_LEVEL,
    ADMIT_CELLS,
    ADMIT_STATS,
    TRACKED,
    SYNPROXY_CONFIG,
    SYNPROXY_PORTS,
    SYNPROXY_STATS,
    SYNPROXY_BUF,
    SYNPROXY_PROG,
];

/// The kernel keeps `BPF_OBJ_NAME_LEN - 1` = 15 bytes of a name.
pub const MAX_NAME_LEN: usize = 15;

const _: () = {
    assert!(PROGRAM.len() <= MAX_NAME_LEN);
    assert!(SYNACK_PROGRAM.len() <= MAX_NAME_LEN);
    let mut i = 0;
    while i < MAPS.len() {
        assert!(MAPS[i].len() <= MAX_NAME_LEN);
        i += 1;
    }
};
