//! The ABI contract: every map in `ipwarden_common::names` exists in the loaded program with the
//! kernel type and key/value sizes the `common` types say, and sizes given at attach time apply.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::mem::size_of;

use aya_map_type::expected;
use ipwarden::dataplane::Capacities;
use ipwarden_common::{
    BlockEntry, DataplaneConfig, FrontV4, FrontV6, SrcStats, SrcStatsV6, front::FRONT_SLOTS, names,
};
use ipwarden_tests::Fixture;

mod aya_map_type {
    use super::*;

    /// (map type, key size, value size) per map. LPM keys carry a 4-byte prefix length.
    pub fn expected(name: &str) -> (&'static str, usize, usize) {
        match name {
            names::BLOCK_V4 => ("Hash", 4, size_of::<BlockEntry>()),
            names::BLOCK_V6 => ("Hash", 8, size_of::<BlockEntry>()),
            names::BLOCK_NET_V4 => ("LpmTrie", 4 + 4, size_of::<BlockEntry>()),
            names::BLOCK_NET_V6 => ("LpmTrie", 4 + 16, size_of::<BlockEntry>()),
            names::ALLOW_V4 => ("LpmTrie", 4 + 4, 4),
            names::ALLOW_V6 => ("LpmTrie", 4 + 16, 4),
            names::SRC_V4 => ("LruPerCpuHash", 4, size_of::<SrcStats>()),
            names::SRC_V6 => ("LruPerCpuHash", 8, size_of::<SrcStatsV6>()),
            names::FRONT_V4 => ("PerCpuArray", 4, size_of::<FrontV4>()),
            names::FRONT_V6 => ("PerCpuArray", 4, size_of::<FrontV6>()),
            names::GLOBAL => ("PerCpuArray", 4, 8),
            names::CONFIG => ("Array", 4, size_of::<DataplaneConfig>()),
            names::BUCKET_V4 => ("LruHash", 4, 8),
            names::BUCKET_V6 => ("LruHash", 8, 8),
            names::STAMP => ("Array", 4, size_of::<ipwarden_common::Stamp>()),
            names::AGG => ("PerCpuArray", 4, size_of::<ipwarden_common::AggCell>()),
            names::SIG_SEEN => ("PerCpuArray", 4, 8),
            names::DROPS => (
                "PerCpuArray",
                4,
                size_of::<ipwarden_common::stats::DropCount>(),
            ),
            names::HITS_V4 => ("LruPerCpuHash", 4, 8),
            names::HITS_V6 => ("LruPerCpuHash", 8, 8),
            // A ring buffer has neither key nor value.
            names::LOUD => ("RingBuf", 0, 0),
            names::LOUD_LEVELS => ("Array", 4, size_of::<ipwarden_common::loud::LoudLevels>()),
            names::LOUD_STATS => ("PerCpuArray", 4, 8),
            names::SIG_BUDGET => ("PerCpuArray", 4, 8),
            names::ADMIT_SKETCH => (
                "PerCpuArray",
                4,
                size_of::<ipwarden_common::admit::SketchLine>(),
            ),
            names::ADMIT_LEVEL => ("Array", 4, size_of::<ipwarden_common::admit::AdmitLevel>()),
            names::ADMIT_CELLS => ("Array", 4, 8),
            names::ADMIT_STATS => ("PerCpuArray", 4, 8),
            names::SYNPROXY_CONFIG => (
                "Array",
                4,
                size_of::<ipwarden_common::synproxy::SynproxyConfig>(),
            ),
            names::SYNPROXY_PORTS => ("Array", 4, 8),
            names::SYNPROXY_STATS => ("PerCpuArray", 4, 8),
            names::SYNPROXY_PROG => ("ProgramArray", 4, 4),
            names::SYNPROXY_BUF => (
                "PerCpuArray",
                4,
                size_of::<ipwarden_common::synproxy::Scratch>(),
            ),
            names::INDEX_V4 | names::INDEX_V6 => {
                ("Array", 4, size_of::<ipwarden_common::index::IndexBucket>())
            }
            names::TRACKED => ("Array", 4, size_of::<ipwarden_common::tracked::MarkLine>()),
            names::SIGS => (
                "LruHash",
                16,
                size_of::<ipwarden_common::fingerprint::SigEntry>(),
            ),
            other => panic!("no expectation for map {other}"),
        }
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn pinned_maps_match_the_common_abi() {
    let fx = Fixture::attached(&["--sources", "1000", "--blocks", "2000"]);
    let pins = fx.ipw.pins();
    let defaults = Capacities::default();
    for name in names::MAPS {
        let info = aya::maps::MapInfo::from_pin(pins.map(name))
            .unwrap_or_else(|e| panic!("map {name} not pinned: {e}"));
        let (ty, key, value) = expected(name);
        assert_eq!(format!("{:?}", info.map_type().unwrap()), ty, "{name} type");
        assert_eq!(info.key_size() as usize, key, "{name} key size");
        assert_eq!(info.value_size() as usize, value, "{name} value size");
        assert_eq!(info.name_as_str(), Some(name), "{name} kernel name");
        let max = info.max_entries();
        match name {
            names::SRC_V4 | names::SRC_V6 => assert_eq!(max, 1000, "{name} resized"),
            names::BLOCK_V4 | names::BLOCK_V6 => assert_eq!(max, 2000, "{name} resized"),
            names::BLOCK_NET_V4 => assert_eq!(max, defaults.block_net_v4),
            names::ALLOW_V4 | names::ALLOW_V6 => assert_eq!(max, defaults.allow),
            // The program's slot hash depends on this size: never resized.
            names::FRONT_V4 | names::FRONT_V6 => assert_eq!(max, FRONT_SLOTS),
            // One slot per `Reason` code: the program indexes it by the code.
            names::DROPS => assert_eq!(max, ipwarden_common::stats::DROP_ORIGINS),
            // Not a setting: the hit tables only inform `list` and `explain`.
            names::HITS_V4 | names::HITS_V6 => {
                assert_eq!(max, ipwarden_common::capacity::HITS)
            }
            // A ring buffer's size is its bytes.
            names::LOUD => assert_eq!(max, ipwarden_common::loud::LOUD_RING_BYTES),
            names::LOUD_STATS => assert_eq!(max, ipwarden_common::loud::LOUD_STATS_SLOTS),
            names::SIG_BUDGET => {
                assert_eq!(max, ipwarden_common::fingerprint::SIG_BUDGET_SLOTS)
            }
            // The program's line hash depends on this size: never resized.
            names::ADMIT_SKETCH => assert_eq!(max, ipwarden_common::admit::SKETCH_LINES),
            names::ADMIT_CELLS => assert_eq!(max, ipwarden_common::admit::ADMIT_CELL_WORDS),
            names::ADMIT_STATS => assert_eq!(max, ipwarden_common::admit::ADMIT_STATS_SLOTS),
            names::INDEX_V4 | names::INDEX_V6 => {
                assert_eq!(max, ipwarden_common::index::INDEX_BUCKETS);
                // BPF_F_MMAPABLE: page-aligned values, one cache line per bucket.
                assert_ne!(info.map_flags() & (1 << 10), 0, "{name} is not mmapable");
            }
            // The program's mark hash depends on this size; user space marks through a mapping.
            names::TRACKED => {
                assert_eq!(max, ipwarden_common::tracked::MARK_LINES);
                assert_ne!(info.map_flags() & (1 << 10), 0, "{name} is not mmapable");
            }
            _ => {}
        }
    }
}
