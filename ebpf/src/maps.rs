//! Every map of the program, sized from `ipwarden_common::capacity` (the loader may resize them)
//! and pinned by name so a restarted controller reopens the same maps. Each static's name is the
//! map name in `ipwarden_common::names`; the privileged ABI test checks the object against it.

use aya_ebpf::{
    macros::map,
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, ProgramArray, RingBuf,
    },
};
use ipwarden_common::{
    AggCell, BlockEntry, DataplaneConfig, FrontV4, FrontV6, GlobalCounter, SrcStats, SrcStatsV6,
    SrcV4, SrcV6Prefix, Stamp,
    admit::{ADMIT_CELL_WORDS, ADMIT_STATS_SLOTS, AdmitLevel, SKETCH_LINES, SketchLine},
    aggregate::AGG_TOTAL,
    capacity,
    fingerprint::{SIG_BUDGET_SLOTS, SigEntry, SigKey},
    front::FRONT_SLOTS,
    index::{INDEX_BUCKETS, IndexBucket},
    loud::{LOUD_RING_BYTES, LOUD_STATS_SLOTS, LoudLevels},
    stats::{DROP_ORIGINS, DropCount},
    synproxy::{PORT_WORDS, STATS_SLOTS, Scratch, SynproxyConfig},
    tracked::{MARK_LINES, MarkLine},
};

#[map]
pub static BLOCK_V4: HashMap<SrcV4, BlockEntry> = HashMap::pinned(capacity::BLOCK_V4, 0);

#[map]
pub static BLOCK_V6: HashMap<SrcV6Prefix, BlockEntry> = HashMap::pinned(capacity::BLOCK_V6, 0);

#[map]
pub static BLOCK_NET_V4: LpmTrie<[u8; 4], BlockEntry> = LpmTrie::pinned(capacity::BLOCK_NET_V4, 0);

#[map]
pub static BLOCK_NET_V6: LpmTrie<[u8; 16], BlockEntry> = LpmTrie::pinned(capacity::BLOCK_NET_V6, 0);

#[map]
pub static ALLOW_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(capacity::ALLOW, 0);

#[map]
pub static ALLOW_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(capacity::ALLOW, 0);

// A common LRU list, not BPF_F_NO_COMMON_LRU: per-CPU lists measured no faster here, and they
// split the capacity between CPUs, so a flood landing on one CPU could use only 1/ncpus of it.
// A non-LRU per-CPU hash measured 7 ns faster but stops counting new sources when full.
#[map]
pub static SRC_V4: LruPerCpuHashMap<SrcV4, SrcStats> =
    LruPerCpuHashMap::pinned(capacity::SRC_V4, 0);

#[map]
pub static SRC_V6: LruPerCpuHashMap<SrcV6Prefix, SrcStatsV6> =
    LruPerCpuHashMap::pinned(capacity::SRC_V6, 0);

// The front tables (see `ipwarden_common::front`): fixed size, the program's hash depends on it.
#[map]
pub static FRONT_V4: PerCpuArray<FrontV4> = PerCpuArray::pinned(FRONT_SLOTS, 0);

#[map]
pub static FRONT_V6: PerCpuArray<FrontV6> = PerCpuArray::pinned(FRONT_SLOTS, 0);

#[map]
pub static GLOBAL: PerCpuArray<u64> = PerCpuArray::pinned(GlobalCounter::COUNT, 0);

#[map]
pub static CONFIG: Array<DataplaneConfig> = Array::pinned(1, 0);

// Shared (not per-CPU) so a source's rate is limited across CPUs; updates race benignly (a
// lost update admits at most one extra packet).
#[map]
pub static BUCKET_V4: LruHashMap<SrcV4, u64> = LruHashMap::pinned(capacity::BUCKETS, 0);

#[map]
pub static BUCKET_V6: LruHashMap<SrcV6Prefix, u64> = LruHashMap::pinned(capacity::BUCKETS, 0);

// Written by user space only (see `ipwarden_common::stamp`): which layout and build wrote the pins.
#[map]
pub static STAMP: Array<Stamp> = Array::pinned(1, 0);

// Aggregate counters (see `ipwarden_common::aggregate`): added to at front-table flushes only.
#[map]
pub static AGG: PerCpuArray<AggCell> = PerCpuArray::pinned(AGG_TOTAL, 0);

// TCP SYN signatures (see `ipwarden_common::fingerprint`): written for SYNs only, and only for a
// signature the source has not shown before.
#[map]
pub static SIGS: LruHashMap<SigKey, SigEntry> = LruHashMap::pinned(capacity::SIGS, 0);

// The per-CPU memo of signatures recently kept (see `fingerprint::record`): never read by user
// space, so it has no pin of interest and no layout to keep.
#[map]
pub static SIG_SEEN: PerCpuArray<u64> =
    PerCpuArray::pinned(ipwarden_common::fingerprint::SIG_SEEN_SLOTS, 0);

// How many new signatures this CPU looked up in the current jiffy, and how many it left
// unrecorded (see `ipwarden_common::fingerprint::SIG_BUDGET_PER_JIFFY`).
#[map]
pub static SIG_BUDGET: PerCpuArray<u64> = PerCpuArray::pinned(SIG_BUDGET_SLOTS, 0);

// The block indexes (see `ipwarden_common::index`): mmapable so that their values are
// page-aligned (a bucket is one cache line) and user space writes ways in a safe order.
#[map]
pub static INDEX_V4: Array<IndexBucket> = Array::pinned(INDEX_BUCKETS, BPF_F_MMAPABLE);

#[map]
pub static INDEX_V6: Array<IndexBucket> = Array::pinned(INDEX_BUCKETS, BPF_F_MMAPABLE);

/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h).
const BPF_F_MMAPABLE: u32 = 1 << 10;

// Drops by the dropping entry's origin (`Reason` code): one update per dropped frame, none for
// frames that pass.
#[map]
pub static DROPS: PerCpuArray<DropCount> = PerCpuArray::pinned(DROP_ORIGINS, 0);

// Sampled drops per dropped source (see `ipwarden_common::stats::hit_sampled`): one update per
// `HIT_SAMPLE` dropped frames, so `list` and `explain` can say what each decision dropped.
#[map]
pub static HITS_V4: LruPerCpuHashMap<SrcV4, u64> = LruPerCpuHashMap::pinned(capacity::HITS, 0);

#[map]
pub static HITS_V6: LruPerCpuHashMap<SrcV6Prefix, u64> =
    LruPerCpuHashMap::pinned(capacity::HITS, 0);

// Loud-source hints (see `ipwarden_common::loud`): written at front-table flushes only, for a
// chunk of packets that came faster than `LOUD_LEVELS` says.
#[map]
pub static LOUD: RingBuf = RingBuf::pinned(LOUD_RING_BYTES, 0);

#[map]
pub static LOUD_LEVELS: Array<LoudLevels> = Array::pinned(1, 0);

#[map]
pub static LOUD_STATS: PerCpuArray<u64> = PerCpuArray::pinned(LOUD_STATS_SLOTS, 0);

// Admission (see `ipwarden_common::admit`): the sketch a flush of an untracked source goes into,
// the level at which it is admitted into `SRC_V4`/`SRC_V6`, the aggregate cells whose members are
// admitted anyway, and the count of each outcome.
#[map]
pub static ADMIT_SKETCH: PerCpuArray<SketchLine> = PerCpuArray::pinned(SKETCH_LINES, 0);

#[map]
pub static ADMIT_LEVEL: Array<AdmitLevel> = Array::pinned(1, 0);

#[map]
pub static ADMIT_CELLS: Array<u64> = Array::pinned(ADMIT_CELL_WORDS, 0);

#[map]
pub static ADMIT_STATS: PerCpuArray<u64> = PerCpuArray::pinned(ADMIT_STATS_SLOTS, 0);

// Marks of the sources that may have an entry in `SRC_V4`/`SRC_V6` (see
// `ipwarden_common::tracked`): shared by the CPUs, mmapable so that user space sets marks with
// byte stores that never overwrite the program's.
#[map]
pub static TRACKED: Array<MarkLine> = Array::pinned(MARK_LINES, BPF_F_MMAPABLE);

// The synproxy (see `ipwarden_common::synproxy`): what SYN-ACKs advertise, the protected ports,
// and what happened to SYNs and handshake ACKs.
#[map]
pub static SYNPROXY_CONFIG: Array<SynproxyConfig> = Array::pinned(1, 0);

#[map]
pub static SYNPROXY_PORTS: Array<u64> = Array::pinned(PORT_WORDS, 0);

#[map]
pub static SYNPROXY_STATS: PerCpuArray<u64> = PerCpuArray::pinned(STATS_SLOTS, 0);

#[map]
pub static SYNPROXY_BUF: PerCpuArray<Scratch> = PerCpuArray::pinned(1, 0);

#[map]
pub static SYNPROXY_PROG: ProgramArray = ProgramArray::pinned(1, 0);
