//! A typed API over the pinned maps of one attachment. Every process (CLI, daemon, tests) reaches
//! the maps through [`Dataplane`].
//!
//! This file only opens the maps. What is done with them lives with its concern, each in its own
//! `impl Dataplane` block, so that a change to one concern is read and reviewed on its own:
//! - `rules`: the block set and the allowlist (what the program enforces);
//! - `counters`: per-source and global counters, merged with the front tables (what it saw);
//! - `config`: the `CONFIG` map (generation, monitor mode, flags).

use aya::{
    Pod,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray},
};
use ipwarden_common::{BlockEntry, DataplaneConfig, SrcV4, SrcV6Prefix, names};

use super::{
    DataplaneError, PinDir,
    batch::{self, PercpuSpec},
    front::{self, FrontMemo},
    index::{Index, Indexes},
};

/// Handles on every map of one attachment.
///
/// Fields are `pub(super)` so that each concern's `impl` block in a sibling module reaches the
/// maps it works on; nothing outside `dataplane` sees them.
pub struct Dataplane {
    pub(super) pins: PinDir,
    pub(super) block_v4: HashMap<MapData, SrcV4, BlockEntry>,
    pub(super) block_v6: HashMap<MapData, SrcV6Prefix, BlockEntry>,
    pub(super) block_net_v4: LpmTrie<MapData, [u8; 4], BlockEntry>,
    pub(super) block_net_v6: LpmTrie<MapData, [u8; 16], BlockEntry>,
    pub(super) allow_v4: LpmTrie<MapData, [u8; 4], u32>,
    pub(super) allow_v6: LpmTrie<MapData, [u8; 16], u32>,
    /// Read raw, in batches (see `batch`), as `front::SRC_V4` etc. describe them.
    pub(super) src_v4: MapData,
    pub(super) src_v6: MapData,
    pub(super) front_v4: MapData,
    pub(super) front_v6: MapData,
    pub(super) global: PerCpuArray<MapData, u64>,
    /// Drops by origin; `None` for pins of a build before them (until the daemon upgrades the
    /// program, which creates the map).
    pub(super) drops: Option<PerCpuArray<MapData, ipwarden_common::stats::DropCount>>,
    /// Aggregate counters; `None` for pins of a build before aggregates (until the daemon
    /// upgrades the program, which creates the map).
    pub(super) agg: Option<MapData>,
    /// TCP SYN signatures; `None` for pins of a build before them.
    pub(super) sigs: Option<
        HashMap<
            MapData,
            ipwarden_common::fingerprint::SigKey,
            ipwarden_common::fingerprint::SigEntry,
        >,
    >,
    /// Sampled drops per source (hits per decision); `None` for pins of a build before them.
    pub(super) hits: Option<HitTables>,
    /// The new-signature budget (its unrecorded count is read with the global counters, on
    /// every poll); `None` for pins of a build before it.
    pub(super) sig_budget: Option<PerCpuArray<MapData, u64>>,
    pub(super) config: Array<MapData, DataplaneConfig>,
    /// Admission; `None` for pins of a build before it.
    pub(super) admit: Option<AdmitMaps>,
    /// The synproxy; `None` for pins of a build before it.
    pub(super) synproxy: Option<SynproxyMaps>,
    /// Marks of sources that may have a per-source entry (see `tracked`), mapped only while
    /// marking; `None` for pins of a build before them.
    pub(super) tracked: Option<MapData>,
    /// The block indexes, mapped (see `index`).
    pub(super) index: Indexes,
    /// The front tables as last read, and the packet count they were read at: an idle host's
    /// poll does not read 2 × 16 384 slots per CPU again when no packet arrived since.
    pub(super) front_memo: std::sync::Mutex<FrontMemo>,
    /// The aggregate cells summed over CPUs as last read, and the packet count they were read
    /// at: an idle host's poll does not read 2 MiB of cells per CPU again.
    pub(super) agg_memo: std::sync::Mutex<(Option<u64>, Vec<ipwarden_common::AggCell>)>,
}

/// Both families' hit tables (sampled drops per source, read by `hits`).
pub(super) struct HitTables {
    pub(super) v4: aya::maps::PerCpuHashMap<MapData, SrcV4, u64>,
    pub(super) v6: aya::maps::PerCpuHashMap<MapData, SrcV6Prefix, u64>,
}

impl HitTables {
    /// The pinned tables; `None` for pins of a build before them (until the daemon upgrades the
    /// program, which creates them).
    fn open(pins: &PinDir) -> Result<Option<Self>, DataplaneError> {
        if !pins.map(names::HITS_V4).exists() || !pins.map(names::HITS_V6).exists() {
            return Ok(None);
        }
        Ok(Some(Self {
            v4: open(pins, names::HITS_V4)?,
            v6: open(pins, names::HITS_V6)?,
        }))
    }
}

/// Handles on the admission maps of one attachment, and the cell flags last written there.
pub(super) struct AdmitMaps {
    pub(super) level: Array<MapData, ipwarden_common::admit::AdmitLevel>,
    pub(super) cells: Array<MapData, u64>,
    pub(super) stats: PerCpuArray<MapData, u64>,
    pub(super) sketch: PerCpuArray<MapData, ipwarden_common::admit::SketchLine>,
    pub(super) written: Vec<u64>,
}

impl AdmitMaps {
    /// The maps; `None` for pins of a build before admission (until the daemon upgrades the
    /// program, which creates them).
    pub(super) fn open(pins: &PinDir) -> Result<Option<Self>, DataplaneError> {
        if !pins.map(names::ADMIT_LEVEL).exists() {
            return Ok(None);
        }
        Ok(Some(Self {
            level: open(pins, names::ADMIT_LEVEL)?,
            cells: open(pins, names::ADMIT_CELLS)?,
            stats: open(pins, names::ADMIT_STATS)?,
            sketch: open(pins, names::ADMIT_SKETCH)?,
            // Unknown: the first write sets every word.
            written: Vec::new(),
        }))
    }
}

/// Handles on the synproxy's maps of one attachment.
pub(super) struct SynproxyMaps {
    pub(super) config: Array<MapData, ipwarden_common::synproxy::SynproxyConfig>,
    pub(super) ports: Array<MapData, u64>,
    pub(super) stats: PerCpuArray<MapData, u64>,
}

impl SynproxyMaps {
    /// The maps; `None` for pins of a build before the synproxy (until the daemon upgrades the
    /// program, which creates them).
    pub(super) fn open(pins: &PinDir) -> Result<Option<Self>, DataplaneError> {
        if !pins.map(names::SYNPROXY_CONFIG).exists() {
            return Ok(None);
        }
        Ok(Some(Self {
            config: open(pins, names::SYNPROXY_CONFIG)?,
            ports: open(pins, names::SYNPROXY_PORTS)?,
            stats: open(pins, names::SYNPROXY_STATS)?,
        }))
    }
}

/// Opens a pinned map that is read raw, in batches, refusing it unless its type, key size and
/// value size are what `spec` says: the batch reader sizes its buffers from our types, and a map
/// left pinned by another ipwarden version may not match them. Refusing at open time makes the
/// daemon and the CLI fail at once with what to do, rather than at their first read. aya's typed
/// maps make the same check for the maps opened with [`open`].
fn open_raw<K: Pod, V: Pod>(
    pins: &PinDir,
    spec: &PercpuSpec<K, V>,
) -> Result<MapData, DataplaneError> {
    let map = open_pinned(pins, spec.name)?;
    batch::check(&map, spec, pins.iface())?;
    Ok(map)
}

fn open_pinned(pins: &PinDir, name: &'static str) -> Result<MapData, DataplaneError> {
    MapData::from_pin(pins.map(name))
        .map_err(|e| DataplaneError::map("opening pinned map", name, e))
}

pub(super) fn open<T>(pins: &PinDir, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = Map::from_map_data(open_pinned(pins, name)?)
        .map_err(|e| DataplaneError::map("reading map type", name, e))?;
    T::try_from(map).map_err(|e| DataplaneError::map("checking map layout", name, e))
}

/// A block index, mapped; `None` for pins of a build before the index.
fn open_index(pins: &PinDir, name: &'static str) -> Result<Option<Index>, DataplaneError> {
    if !pins.map(name).exists() {
        return Ok(None);
    }
    Index::open(open_pinned(pins, name)?, name).map(Some)
}

/// A map's capacity, 0 if the kernel will not say (only used in messages and for sizing).
pub(super) fn max_entries(map: &MapData) -> u32 {
    map.info().map(|i| i.max_entries()).unwrap_or(0)
}

impl Dataplane {
    /// Opens the pinned maps of the attachment described by `pins`.
    pub fn open(pins: &PinDir) -> Result<Self, DataplaneError> {
        if !pins.map(names::CONFIG).exists() {
            return Err(DataplaneError::NotAttached {
                iface: pins.iface().to_owned(),
                path: pins.dir(),
            });
        }
        Ok(Self {
            pins: pins.clone(),
            block_v4: open(pins, names::BLOCK_V4)?,
            block_v6: open(pins, names::BLOCK_V6)?,
            block_net_v4: open(pins, names::BLOCK_NET_V4)?,
            block_net_v6: open(pins, names::BLOCK_NET_V6)?,
            allow_v4: open(pins, names::ALLOW_V4)?,
            allow_v6: open(pins, names::ALLOW_V6)?,
            src_v4: open_raw(pins, &front::SRC_V4)?,
            src_v6: open_raw(pins, &front::SRC_V6)?,
            front_v4: open_raw(pins, &front::FRONT_V4)?,
            front_v6: open_raw(pins, &front::FRONT_V6)?,
            global: open(pins, names::GLOBAL)?,
            drops: if pins.map(names::DROPS).exists() {
                Some(open(pins, names::DROPS)?)
            } else {
                None
            },
            sigs: if pins.map(names::SIGS).exists() {
                Some(open(pins, names::SIGS)?)
            } else {
                None
            },
            agg: if pins.map(names::AGG).exists() {
                Some(open_raw(pins, &front::AGG)?)
            } else {
                None
            },
            hits: HitTables::open(pins)?,
            sig_budget: if pins.map(names::SIG_BUDGET).exists() {
                Some(open(pins, names::SIG_BUDGET)?)
            } else {
                None
            },
            config: open(pins, names::CONFIG)?,
            admit: AdmitMaps::open(pins)?,
            synproxy: SynproxyMaps::open(pins)?,
            tracked: if pins.map(names::TRACKED).exists() {
                Some(open_pinned(pins, names::TRACKED)?)
            } else {
                None
            },
            index: Indexes {
                v4: open_index(pins, names::INDEX_V4)?,
                v6: open_index(pins, names::INDEX_V6)?,
            },
            front_memo: std::sync::Mutex::new(FrontMemo::default()),
            agg_memo: std::sync::Mutex::new((None, Vec::new())),
        })
    }

    /// Where the maps are pinned.
    pub fn pins(&self) -> &PinDir {
        &self.pins
    }
}

impl Dataplane {
    /// The attached program's stamp and kernel id, for `status` (best effort: a read that fails
    /// shows as unstamped or id 0, never as an error of `status`).
    pub fn program(&self) -> Program {
        let program_id = aya::programs::links::PinnedLink::from_pin(self.pins.link())
            .ok()
            .map(aya::programs::links::FdLink::from)
            .and_then(|l| l.info().ok())
            .map_or(0, |i| i.program_id());
        Program {
            stamp: super::stamp::read(&self.pins).ok().flatten(),
            program_id,
        }
    }
}

impl Dataplane {
    /// What the pinned maps can hold (their kernel sizes, which an adopted attachment may have
    /// from other settings than this daemon's).
    pub fn capacities(&self) -> super::Capacities {
        use aya::maps::IterableMap as _;
        super::Capacities {
            block_v4: max_entries(self.block_v4.map()),
            block_v6: max_entries(self.block_v6.map()),
            block_net_v4: max_entries(self.block_net_v4.map()),
            block_net_v6: max_entries(self.block_net_v6.map()),
            allow: max_entries(self.allow_v4.map()).min(max_entries(self.allow_v6.map())),
            src_v4: max_entries(&self.src_v4),
            src_v6: max_entries(&self.src_v6),
            buckets: u32::MAX,
        }
    }
}

/// The XDP program attached to an interface: its pins' stamp (`None` for pins of a release
/// before stamps) and its kernel id (0 when the link could not be read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Program {
    pub stamp: Option<ipwarden_common::Stamp>,
    pub program_id: u32,
}

impl Program {
    /// Whether it is this binary's build.
    pub fn is_current(&self) -> bool {
        self.stamp
            .is_some_and(|s| s.build == super::stamp::this_build())
    }
}

impl Dataplane {
    /// Every TCP SYN signature kept, by source (IPv4 /32, IPv6 /64). At most the map's capacity
    /// (65 536 by default); read when asked (`explain`, `top`, scoring), not every poll.
    pub fn signatures(
        &self,
    ) -> Result<Vec<(ipnet::IpNet, ipwarden_common::fingerprint::SigEntry)>, DataplaneError> {
        let Some(map) = &self.sigs else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in map.iter() {
            // An entry evicted while iterating ends the walk of that key only.
            let Ok((k, e)) = item else {
                continue;
            };
            let source = if k.version == 4 {
                let mut a = [0u8; 4];
                a.copy_from_slice(&k.source[..4]);
                crate::net::host_prefix(std::net::IpAddr::from(a))
            } else {
                ipnet::IpNet::V6(crate::net::v6_prefix_net(k.source))
            };
            out.push((source, e));
        }
        Ok(out)
    }
}
