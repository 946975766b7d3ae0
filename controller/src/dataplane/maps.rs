//! A typed API over the pinned maps of one attachment: block and allow prefixes, read counters,
//! switch monitor mode. Every process (CLI, daemon, tests) reaches the maps through this.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::{
    Array, HashMap, IterableMap as _, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipwarden_common::{
    BlockEntry, DataplaneConfig, FrontV4, FrontV6, GlobalCounter, Pending, SrcStats, SrcStatsV6,
    names,
};
use rustc_hash::FxHashMap;

use super::{DataplaneError, PinDir, batch};
use crate::net;

/// What the front tables hold for one source, summed over CPUs.
#[derive(Clone, Copy, Default)]
struct Fronted {
    pending: Pending,
    /// The earliest CPU's claim time.
    first_seen_ns: u64,
    /// IPv6: the latest address of the CPU that counted the most.
    last_addr: [u8; 16],
}

impl Fronted {
    fn add(&mut self, pending: &Pending, first_seen_ns: u64, last_addr: [u8; 16]) {
        if pending.packets > self.pending.packets {
            self.last_addr = last_addr;
        }
        self.pending.add(pending);
        if self.first_seen_ns == 0 || (first_seen_ns != 0 && first_seen_ns < self.first_seen_ns) {
            self.first_seen_ns = first_seen_ns;
        }
    }

    /// Folds the pending counts into `stats` read from the LRU map.
    fn into_stats(self, stats: &mut SrcStats) {
        stats.add(&self.pending);
        if stats.first_seen_ns == 0
            || (self.first_seen_ns != 0 && self.first_seen_ns < stats.first_seen_ns)
        {
            stats.first_seen_ns = self.first_seen_ns;
        }
    }
}

/// A block set entry as user space sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRule {
    pub net: IpNet,
    pub entry: BlockEntry,
}

/// Counters of one IPv4 source, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceV4 {
    pub addr: Ipv4Addr,
    pub stats: SrcStats,
}

/// Counters of one IPv6 /64, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceV6 {
    pub net: Ipv6Net,
    /// A real full source address of the /64: the latest one counted by the CPU that counted the
    /// most (per-CPU counters carry no timestamp, so CPUs' latest addresses cannot be ordered;
    /// enrichment only needs an address inside the prefix).
    pub last_addr: Ipv6Addr,
    pub stats: SrcStats,
}

/// Global counters summed over CPUs, indexed by [`GlobalCounter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalCounters(pub [u64; GlobalCounter::COUNT as usize]);

impl GlobalCounters {
    /// One counter.
    pub fn get(&self, counter: GlobalCounter) -> u64 {
        self.0[counter as usize]
    }
}

/// Handles on every map of one attachment.
pub struct Dataplane {
    pins: PinDir,
    block_v4: HashMap<MapData, [u8; 4], BlockEntry>,
    block_v6: HashMap<MapData, [u8; 8], BlockEntry>,
    block_net_v4: LpmTrie<MapData, [u8; 4], BlockEntry>,
    block_net_v6: LpmTrie<MapData, [u8; 16], BlockEntry>,
    allow_v4: LpmTrie<MapData, [u8; 4], u32>,
    allow_v6: LpmTrie<MapData, [u8; 16], u32>,
    src_v4: MapData,
    src_v6: MapData,
    front_v4: MapData,
    front_v6: MapData,
    global: PerCpuArray<MapData, u64>,
    config: Array<MapData, DataplaneConfig>,
    /// The front tables as last read, and the packet count they were read at: an idle host's
    /// poll does not read 2 × 16 384 slots per CPU again when no packet arrived since.
    front_memo: std::sync::Mutex<FrontMemo>,
}

type FrontedV4 = FxHashMap<[u8; 4], Fronted>;
type FrontedV6 = FxHashMap<[u8; 8], Fronted>;

#[derive(Default)]
struct FrontMemo {
    /// The `Seen` count (packets finished) when the tables were read.
    seen: Option<u64>,
    v4: FrontedV4,
    v6: FrontedV6,
}

/// Sums one front table's slots over CPUs by source. `slot` gives an occupied slot's source,
/// pending counts, claim time and (IPv6) latest address; slots with nothing pending are skipped.
fn fronted_in<S: aya::Pod, K: Copy + Eq + std::hash::Hash>(
    map: &MapData,
    name: &'static str,
    slot: impl Fn(&S) -> Option<(K, &Pending, u64, [u8; 16])>,
) -> Result<FxHashMap<K, Fronted>, DataplaneError> {
    let mut out: FxHashMap<K, Fronted> = FxHashMap::default();
    batch::for_each_percpu(map, name, |_index: u32, cpus: &[S]| {
        for (key, pending, first_seen_ns, last_addr) in cpus.iter().filter_map(&slot) {
            if pending.packets != 0 {
                out.entry(key)
                    .or_default()
                    .add(pending, first_seen_ns, last_addr);
            }
        }
    })?;
    Ok(out)
}

fn open_raw(pins: &PinDir, name: &'static str) -> Result<MapData, DataplaneError> {
    MapData::from_pin(pins.map(name))
        .map_err(|e| DataplaneError::map("opening pinned map", name, e))
}

fn open<T>(pins: &PinDir, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = Map::from_map_data(open_raw(pins, name)?)
        .map_err(|e| DataplaneError::map("reading map type", name, e))?;
    T::try_from(map).map_err(|e| DataplaneError::map("checking map layout", name, e))
}

/// `Ok(true)` if removed, `Ok(false)` if it was not there.
fn removed(result: Result<(), MapError>, map: &'static str) -> Result<bool, DataplaneError> {
    match result {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(DataplaneError::map("removing entry", map, e)),
    }
}

fn inserted(
    result: Result<(), MapError>,
    map: &'static str,
    data: &MapData,
) -> Result<(), DataplaneError> {
    match result {
        Ok(()) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
            Err(DataplaneError::MapFull {
                map,
                capacity: max_entries(data),
            })
        }
        Err(e) => Err(DataplaneError::map("inserting entry", map, e)),
    }
}

fn max_entries(map: &MapData) -> u32 {
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
            src_v4: open_raw(pins, names::SRC_V4)?,
            front_v4: open_raw(pins, names::FRONT_V4)?,
            front_v6: open_raw(pins, names::FRONT_V6)?,
            src_v6: open_raw(pins, names::SRC_V6)?,
            global: open(pins, names::GLOBAL)?,
            config: open(pins, names::CONFIG)?,
            front_memo: std::sync::Mutex::new(FrontMemo::default()),
        })
    }

    /// Where the maps are pinned.
    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    /// Adds or replaces a block entry. /32 and /64 prefixes go to the exact-match hashes; every
    /// other length to the LPM tries.
    pub fn block(&mut self, net: IpNet, entry: BlockEntry) -> Result<(), DataplaneError> {
        self.changing(net, true, |dp| dp.block_entry(net, entry))
    }

    /// Adds or replaces many block entries, with one generation change at the end (bulk loads
    /// and restores: a million entries would otherwise also cost a million config writes).
    pub fn block_all(
        &mut self,
        entries: impl IntoIterator<Item = (IpNet, BlockEntry)>,
    ) -> Result<(), DataplaneError> {
        let mut fine = false;
        let mut out = Ok(());
        for (net, entry) in entries {
            fine |= matches!(net.trunc(), IpNet::V6(n) if n.prefix_len() > net::V6_SOURCE_PREFIX);
            out = self.block_entry(net, entry);
            if out.is_err() {
                break;
            }
        }
        self.new_generation(fine.then_some(true))?;
        out
    }

    fn block_entry(&mut self, net: IpNet, entry: BlockEntry) -> Result<(), DataplaneError> {
        match net.trunc() {
            IpNet::V4(n) if n.prefix_len() == 32 => {
                let r = self.block_v4.insert(n.addr().octets(), entry, 0);
                inserted(r, names::BLOCK_V4, self.block_v4.map())
            }
            IpNet::V4(n) => {
                let key = Key::new(n.prefix_len().into(), n.addr().octets());
                let r = self.block_net_v4.insert(&key, entry, 0);
                inserted(r, names::BLOCK_NET_V4, self.block_net_v4.map())
            }
            IpNet::V6(n) if n.prefix_len() == net::V6_SOURCE_PREFIX => {
                let r = self.block_v6.insert(net::v6_prefix_key(&n), entry, 0);
                inserted(r, names::BLOCK_V6, self.block_v6.map())
            }
            IpNet::V6(n) => {
                let key = Key::new(n.prefix_len().into(), n.addr().octets());
                let r = self.block_net_v6.insert(&key, entry, 0);
                inserted(r, names::BLOCK_NET_V6, self.block_net_v6.map())
            }
        }
    }

    /// Removes the block entry for exactly `net`; `false` if there was none.
    pub fn unblock(&mut self, net: IpNet) -> Result<bool, DataplaneError> {
        self.changing(net, false, |dp| dp.unblock_entry(net))
    }

    fn unblock_entry(&mut self, net: IpNet) -> Result<bool, DataplaneError> {
        match net.trunc() {
            IpNet::V4(n) if n.prefix_len() == 32 => {
                removed(self.block_v4.remove(&n.addr().octets()), names::BLOCK_V4)
            }
            IpNet::V4(n) => {
                let key = Key::new(n.prefix_len().into(), n.addr().octets());
                removed(self.block_net_v4.remove(&key), names::BLOCK_NET_V4)
            }
            IpNet::V6(n) if n.prefix_len() == net::V6_SOURCE_PREFIX => removed(
                self.block_v6.remove(&net::v6_prefix_key(&n)),
                names::BLOCK_V6,
            ),
            IpNet::V6(n) => {
                let key = Key::new(n.prefix_len().into(), n.addr().octets());
                removed(self.block_net_v6.remove(&key), names::BLOCK_NET_V6)
            }
        }
    }

    /// Every block entry, expired ones included (the kernel ignores those).
    pub fn blocks(&self) -> Result<Vec<BlockRule>, DataplaneError> {
        let mut out = Vec::new();
        let read = |e| DataplaneError::map("reading entries", names::BLOCK_V4, e);
        for item in self.block_v4.iter() {
            let (k, entry) = item.map_err(read)?;
            out.push(BlockRule {
                net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(k), 32)),
                entry,
            });
        }
        for item in self.block_v6.iter() {
            let (k, entry) =
                item.map_err(|e| DataplaneError::map("reading entries", names::BLOCK_V6, e))?;
            out.push(BlockRule {
                net: IpNet::V6(net::v6_prefix_net(k)),
                entry,
            });
        }
        for item in self.block_net_v4.iter() {
            let (k, entry) =
                item.map_err(|e| DataplaneError::map("reading entries", names::BLOCK_NET_V4, e))?;
            if let Some(n) = net::v4_net(k.prefix_len(), k.data()) {
                out.push(BlockRule {
                    net: IpNet::V4(n),
                    entry,
                });
            }
        }
        for item in self.block_net_v6.iter() {
            let (k, entry) =
                item.map_err(|e| DataplaneError::map("reading entries", names::BLOCK_NET_V6, e))?;
            if let Some(n) = net::v6_net(k.prefix_len(), k.data()) {
                out.push(BlockRule {
                    net: IpNet::V6(n),
                    entry,
                });
            }
        }
        out.sort_by_key(|r| r.net);
        Ok(out)
    }

    /// Allowlists a prefix: its sources pass even when a block entry matches them.
    pub fn allow(&mut self, net: IpNet) -> Result<(), DataplaneError> {
        self.changing(net, true, |dp| dp.allow_entry(net))
    }

    fn allow_entry(&mut self, net: IpNet) -> Result<(), DataplaneError> {
        match net.trunc() {
            IpNet::V4(n) => {
                let key = Key::new(n.prefix_len().into(), n.addr().octets());
                let r = self.allow_v4.insert(&key, 1, 0);
                inserted(r, names::ALLOW_V4, self.allow_v4.map())
            }
            IpNet::V6(n) => {
                let key = Key::new(n.prefix_len().into(), n.addr().octets());
                let r = self.allow_v6.insert(&key, 1, 0);
                inserted(r, names::ALLOW_V6, self.allow_v6.map())
            }
        }
    }

    /// Removes exactly `net` from the allowlist; `false` if it was not there.
    pub fn disallow(&mut self, net: IpNet) -> Result<bool, DataplaneError> {
        self.changing(net, false, |dp| dp.disallow_entry(net))
    }

    fn disallow_entry(&mut self, net: IpNet) -> Result<bool, DataplaneError> {
        match net.trunc() {
            IpNet::V4(n) => {
                let key = Key::new(n.prefix_len().into(), n.addr().octets());
                removed(self.allow_v4.remove(&key), names::ALLOW_V4)
            }
            IpNet::V6(n) => {
                let key = Key::new(n.prefix_len().into(), n.addr().octets());
                removed(self.allow_v6.remove(&key), names::ALLOW_V6)
            }
        }
    }

    /// Every allowlisted prefix.
    pub fn allows(&self) -> Result<Vec<IpNet>, DataplaneError> {
        let mut out = Vec::new();
        for k in self.allow_v4.keys() {
            let k = k.map_err(|e| DataplaneError::map("reading keys", names::ALLOW_V4, e))?;
            out.extend(net::v4_net(k.prefix_len(), k.data()).map(IpNet::V4));
        }
        for k in self.allow_v6.keys() {
            let k = k.map_err(|e| DataplaneError::map("reading keys", names::ALLOW_V6, e))?;
            out.extend(net::v6_net(k.prefix_len(), k.data()).map(IpNet::V6));
        }
        out.sort();
        Ok(out)
    }

    /// Every tracked IPv4 source with its counters summed over CPUs, read in batches. Entries
    /// that only hold a cached block verdict (no packet counted) are left out.
    pub fn sources_v4(&self) -> Result<Vec<SourceV4>, DataplaneError> {
        let mut out = Vec::new();
        self.visit_sources_v4(|s| out.push(s))?;
        Ok(out)
    }

    /// Every tracked IPv6 /64 with its counters summed over CPUs, read in batches.
    pub fn sources_v6(&self) -> Result<Vec<SourceV6>, DataplaneError> {
        let mut out = Vec::new();
        self.visit_sources_v6(|s| out.push(s))?;
        Ok(out)
    }

    /// The front tables' contents, read again only when some packet was finished since the
    /// last read. The counter is read first: a packet racing the read changes it, so the next
    /// call reads the tables again. `pick` copies out the family the caller needs.
    fn fronted<T>(&self, pick: impl FnOnce(&FrontMemo) -> T) -> Result<T, DataplaneError> {
        // Every packet ends in exactly one terminal counter, after its front-table update.
        let seen = self.globals()?.get(GlobalCounter::Seen);
        let mut memo = self.front_memo.lock().unwrap_or_else(|p| p.into_inner());
        if memo.seen != Some(seen) {
            memo.v4 = self.fronted_v4()?;
            memo.v6 = self.fronted_v6()?;
            memo.seen = Some(seen);
        }
        Ok(pick(&memo))
    }

    /// What the IPv4 front tables hold, by source.
    fn fronted_v4(&self) -> Result<FrontedV4, DataplaneError> {
        fronted_in(&self.front_v4, names::FRONT_V4, |f: &FrontV4| {
            (f.used != 0).then_some((f.key, &f.pending, f.first_seen_ns, [0; 16]))
        })
    }

    /// What the IPv6 front tables hold, by /64.
    fn fronted_v6(&self) -> Result<FrontedV6, DataplaneError> {
        fronted_in(&self.front_v6, names::FRONT_V6, |f: &FrontV6| {
            (f.used != 0).then_some((f.key, &f.pending, f.first_seen_ns, f.last_addr))
        })
    }

    /// As [`Self::sources_v4`], handing each source to `each` as the batches arrive: the poll
    /// builds its snapshots without a second copy of a million sources.
    ///
    /// Counts are the LRU map's plus what is pending in the front tables (read first). A flush
    /// between the two reads can count up to `FLUSH_AT` packets per CPU twice in one poll; the
    /// detector treats the small step back at the next poll as noise, not as an eviction.
    pub fn visit_sources_v4(&self, mut each: impl FnMut(SourceV4)) -> Result<(), DataplaneError> {
        let mut fronted = self.fronted(|m| m.v4.clone())?;
        batch::for_each_percpu(
            &self.src_v4,
            names::SRC_V4,
            |key: [u8; 4], cpus: &[SrcStats]| {
                let mut stats = SrcStats::default();
                cpus.iter().for_each(|c| stats.merge(c));
                if let Some(f) = fronted.remove(&key) {
                    f.into_stats(&mut stats);
                }
                if stats.packets == 0 {
                    return;
                }
                each(SourceV4 {
                    addr: Ipv4Addr::from(key),
                    stats,
                });
            },
        )?;
        // Sources so far only in the front tables.
        for (key, f) in fronted {
            let mut stats = SrcStats::default();
            f.into_stats(&mut stats);
            each(SourceV4 {
                addr: Ipv4Addr::from(key),
                stats,
            });
        }
        Ok(())
    }

    /// As [`Self::sources_v6`], streaming (see [`Self::visit_sources_v4`]).
    pub fn visit_sources_v6(&self, mut each: impl FnMut(SourceV6)) -> Result<(), DataplaneError> {
        let mut fronted = self.fronted(|m| m.v6.clone())?;
        batch::for_each_percpu(
            &self.src_v6,
            names::SRC_V6,
            |key: [u8; 8], cpus: &[SrcStatsV6]| {
                let mut merged = SrcStatsV6::default();
                cpus.iter().for_each(|c| merged.merge(c));
                if let Some(f) = fronted.remove(&key) {
                    f.into_stats(&mut merged.stats);
                    // The front table holds the latest packets.
                    merged.last_addr = f.last_addr;
                }
                if merged.stats.packets == 0 {
                    return;
                }
                each(SourceV6 {
                    net: net::v6_prefix_net(key),
                    last_addr: Ipv6Addr::from(merged.last_addr),
                    stats: merged.stats,
                });
            },
        )?;
        for (key, f) in fronted {
            let mut stats = SrcStats::default();
            f.into_stats(&mut stats);
            each(SourceV6 {
                net: net::v6_prefix_net(key),
                last_addr: Ipv6Addr::from(f.last_addr),
                stats,
            });
        }
        Ok(())
    }

    /// `max_entries` of the IPv4 and IPv6 counter maps.
    pub fn source_capacity(&self) -> (u32, u32) {
        (max_entries(&self.src_v4), max_entries(&self.src_v6))
    }

    /// The global counters, summed over CPUs.
    pub fn globals(&self) -> Result<GlobalCounters, DataplaneError> {
        let mut out = GlobalCounters::default();
        for counter in GlobalCounter::ALL {
            let values = self
                .global
                .get(&(counter as u32), 0)
                .map_err(|e| DataplaneError::map("reading counter", names::GLOBAL, e))?;
            out.0[counter as usize] = values.iter().sum();
        }
        // The program does not count `Seen`: every frame ends as exactly one of these.
        out.0[GlobalCounter::Seen as usize] = out.get(GlobalCounter::Passed)
            + out.get(GlobalCounter::Dropped)
            + out.get(GlobalCounter::Limited);
        Ok(out)
    }

    /// Runs a change to the block set or the allowlist, then gives the data plane a new
    /// generation, whatever the change's outcome: the program recomputes every verdict it cached
    /// before (see `ipwarden_common::verdict`). The generation is 62 random bits rather than a
    /// count, so that two processes changing the maps at once cannot both write the same "next"
    /// value.
    ///
    /// `net` is the entry changed: an IPv6 entry longer than /64 sets
    /// `DataplaneConfig::V6_FINE` when added and makes us re-read the IPv6 tries when removed
    /// (rare: every other change keeps the flag as it is, so bulk loads stay cheap). Two
    /// processes changing such entries at the same instant could leave the flag stale; in normal
    /// operation the daemon is the only writer.
    fn changing<T>(
        &mut self,
        net: IpNet,
        adds: bool,
        change: impl FnOnce(&mut Self) -> Result<T, DataplaneError>,
    ) -> Result<T, DataplaneError> {
        let out = change(self);
        let fine = match net.trunc() {
            IpNet::V6(n) if n.prefix_len() > net::V6_SOURCE_PREFIX => {
                if adds {
                    Some(true)
                } else {
                    Some(self.v6_fine()?)
                }
            }
            _ => None,
        };
        self.new_generation(fine)?;
        out
    }

    /// Whether any IPv6 block or allow entry is longer than /64 (see
    /// `DataplaneConfig::V6_FINE`). Reads the two IPv6 tries' keys.
    fn v6_fine(&self) -> Result<bool, DataplaneError> {
        let longer = |k: &Key<[u8; 16]>| u32::from(net::V6_SOURCE_PREFIX) < k.prefix_len();
        for k in self.block_net_v6.keys() {
            let k = k.map_err(|e| DataplaneError::map("reading keys", names::BLOCK_NET_V6, e))?;
            if longer(&k) {
                return Ok(true);
            }
        }
        for k in self.allow_v6.keys() {
            let k = k.map_err(|e| DataplaneError::map("reading keys", names::ALLOW_V6, e))?;
            if longer(&k) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Writes a fresh generation, and the `V6_FINE` flag when `fine` says what it must be.
    fn new_generation(&mut self, fine: Option<bool>) -> Result<(), DataplaneError> {
        let mut cfg = self
            .config
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::CONFIG, e))?;
        match fine {
            Some(true) => cfg.flags |= DataplaneConfig::V6_FINE,
            Some(false) => cfg.flags &= !DataplaneConfig::V6_FINE,
            None => {}
        }
        let mut fresh = cfg.generation;
        while fresh == cfg.generation {
            let mut bytes = [0u8; 8];
            // SAFETY: the buffer is valid for its length; getrandom(2) writes at most that much.
            let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
            if n != bytes.len() as isize {
                return Err(DataplaneError::Syscall {
                    op: "getrandom",
                    map: names::CONFIG,
                    source: std::io::Error::last_os_error(),
                });
            }
            fresh = u64::from_ne_bytes(bytes) >> 2;
        }
        cfg.generation = fresh;
        self.config
            .set(0, cfg, 0)
            .map_err(|e| DataplaneError::map("writing", names::CONFIG, e))
    }

    /// The data plane's current generation (changes with every block-set or allowlist change).
    pub fn generation(&self) -> Result<u64, DataplaneError> {
        let cfg = self
            .config
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::CONFIG, e))?;
        Ok(cfg.generation)
    }

    /// Whether monitor (dry-run) mode is on.
    pub fn monitor(&self) -> Result<bool, DataplaneError> {
        let cfg = self
            .config
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::CONFIG, e))?;
        Ok(cfg.monitor())
    }

    /// Switches monitor mode: when on, would-be drops are counted as `monitored` and passed.
    pub fn set_monitor(&mut self, on: bool) -> Result<(), DataplaneError> {
        let mut cfg = self
            .config
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::CONFIG, e))?;
        if on {
            cfg.flags |= DataplaneConfig::MONITOR;
        } else {
            cfg.flags &= !DataplaneConfig::MONITOR;
        }
        self.config
            .set(0, cfg, 0)
            .map_err(|e| DataplaneError::map("writing", names::CONFIG, e))
    }
}
