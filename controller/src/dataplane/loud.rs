//! Loud-source hints (see `ipwarden_common::loud`): the levels the program holds flushed chunks
//! against, the ring it puts hints in, and one source's exact counters, read on their own so
//! that a hinted source is measured without reading a million others.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
};

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use ipnet::IpNet;
use ipwarden_common::{
    FrontV4, FrontV6, Pending, SrcStats, SrcStatsV6, SrcV4, SrcV6Prefix,
    front::{slot_v4, slot_v6},
    loud::{LOUD_LOST, LOUD_SENT, LoudEvent, LoudLevels},
    names,
};

use super::{Dataplane, DataplaneError, PinDir, maps::open};

/// What the program hints and what a hinted source counted, for one attachment. Owned by the
/// task that listens to the ring; its own handles, so it never waits for the poll's.
pub struct Loud {
    iface: String,
    ring: RingBuf<MapData>,
    levels: Array<MapData, LoudLevels>,
    src_v4: PerCpuHashMap<MapData, SrcV4, SrcStats>,
    src_v6: PerCpuHashMap<MapData, SrcV6Prefix, SrcStatsV6>,
    front_v4: PerCpuArray<MapData, FrontV4>,
    front_v6: PerCpuArray<MapData, FrontV6>,
}

/// One source's counters as the program has them now (summed over CPUs, pending counts
/// included), with a real address of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub stats: SrcStats,
    pub addr: IpAddr,
}

impl Loud {
    /// The attachment's ring and counters; `None` for pins of a build before hints (until the
    /// daemon upgrades the program, which creates the ring).
    pub fn open(pins: &PinDir) -> Result<Option<Self>, DataplaneError> {
        if !pins.map(names::LOUD).exists() {
            return Ok(None);
        }
        Ok(Some(Self {
            iface: pins.iface().to_owned(),
            ring: open(pins, names::LOUD)?,
            levels: open(pins, names::LOUD_LEVELS)?,
            src_v4: open(pins, names::SRC_V4)?,
            src_v6: open(pins, names::SRC_V6)?,
            front_v4: open(pins, names::FRONT_V4)?,
            front_v6: open(pins, names::FRONT_V6)?,
        }))
    }

    /// Sets the levels the program hints at (all zero: none).
    pub fn set_levels(&mut self, levels: LoudLevels) -> Result<(), DataplaneError> {
        self.levels
            .set(0, levels, 0)
            .map_err(|e| DataplaneError::map("writing", names::LOUD_LEVELS, e))
    }

    /// The interface the hints come from.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The next hint in the ring, if any: the source it names (an IPv4 /32 or IPv6 /64).
    /// A record of another size (another build's) is skipped.
    pub fn next_hint(&mut self) -> Option<Option<IpNet>> {
        let item = self.ring.next()?;
        if item.len() != size_of::<LoudEvent>() {
            return Some(None);
        }
        // SAFETY: `LoudEvent` is plain data of exactly this size; read unaligned.
        let e: LoudEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        Some(match e.family {
            4 => {
                let a = Ipv4Addr::new(e.key[0], e.key[1], e.key[2], e.key[3]);
                Some(crate::net::host_prefix(a.into()))
            }
            6 => {
                let mut k = [0u8; 8];
                k.copy_from_slice(&e.key[..8]);
                Some(IpNet::V6(crate::net::v6_prefix_net(k)))
            }
            _ => None,
        })
    }

    /// What the program has counted of `source` (an IPv4 /32 or IPv6 /64) now: its LRU entry
    /// plus what its front-table slots hold. `None` when it has no entry and no slot.
    ///
    /// The entry is read again after the slots, and the whole read repeated when it moved: a
    /// flush between the two reads would leave up to `FLUSH_AT` packets per CPU out of one
    /// reading, which over a measurement of a few dozen packets is no small error.
    pub fn count(&self, source: &IpNet) -> Result<Option<Counted>, DataplaneError> {
        let mut last = None;
        for _ in 0..4 {
            let before = self.entry(source)?;
            let front = self.front(source)?;
            let after = self.entry(source)?;
            let (stats, addr) = match (after, front) {
                (None, None) => return Ok(None),
                (Some((mut s, addr)), front) => {
                    if let Some((p, ..)) = front {
                        s.add(&p);
                    }
                    (s, addr)
                }
                (None, Some((p, first_seen_ns, addr))) => {
                    let mut s = SrcStats {
                        first_seen_ns,
                        ..Default::default()
                    };
                    s.add(&p);
                    (s, addr)
                }
            };
            last = Some(Counted { stats, addr });
            if before.map(|b| b.0.packets) == after.map(|a| a.0.packets) {
                break;
            }
        }
        Ok(last)
    }

    /// The LRU entry summed over CPUs, with an address.
    fn entry(&self, source: &IpNet) -> Result<Option<(SrcStats, IpAddr)>, DataplaneError> {
        let err = |e| DataplaneError::map("reading a source's counters", names::SRC_V4, e);
        match source {
            IpNet::V4(n) => {
                let key = n.addr().octets();
                match self.src_v4.get(&key, 0) {
                    Ok(per_cpu) => {
                        let mut s = SrcStats::default();
                        per_cpu.iter().for_each(|c| s.merge(c));
                        Ok(Some((s, IpAddr::V4(n.addr()))))
                    }
                    Err(aya::maps::MapError::KeyNotFound) => Ok(None),
                    Err(e) => Err(err(e)),
                }
            }
            IpNet::V6(n) => {
                let key = crate::net::v6_prefix_key(n);
                match self.src_v6.get(&key, 0) {
                    Ok(per_cpu) => {
                        let mut s = SrcStatsV6::default();
                        per_cpu.iter().for_each(|c| s.merge(c));
                        Ok(Some((s.stats, IpAddr::V6(Ipv6Addr::from(s.last_addr)))))
                    }
                    Err(aya::maps::MapError::KeyNotFound) => Ok(None),
                    Err(e) => Err(err(e)),
                }
            }
        }
    }

    /// What the source's front-table slots hold, summed over CPUs: pending counts, the earliest
    /// claim time and an address.
    fn front(&self, source: &IpNet) -> Result<Option<(Pending, u64, IpAddr)>, DataplaneError> {
        let mut pending = Pending::default();
        let mut first = 0u64;
        let mut addr = source.addr();
        let mut held = false;
        let mut hold = |p: &Pending, first_seen_ns: u64| {
            pending.add(p);
            if first == 0 || (first_seen_ns != 0 && first_seen_ns < first) {
                first = first_seen_ns;
            }
            held = true;
        };
        match source {
            IpNet::V4(n) => {
                let key = n.addr().octets();
                let slots = self
                    .front_v4
                    .get(&slot_v4(&key), 0)
                    .map_err(|e| DataplaneError::map("reading a front slot", names::FRONT_V4, e))?;
                for f in slots.iter().filter(|f| f.used != 0 && f.key == key) {
                    hold(&f.pending, f.first_seen_ns);
                }
            }
            IpNet::V6(n) => {
                let key = crate::net::v6_prefix_key(n);
                let slots = self
                    .front_v6
                    .get(&slot_v6(&key), 0)
                    .map_err(|e| DataplaneError::map("reading a front slot", names::FRONT_V6, e))?;
                let mut most = 0;
                for f in slots.iter().filter(|f| f.used != 0 && f.key == key) {
                    if f.pending.packets > most {
                        most = f.pending.packets;
                        addr = IpAddr::V6(Ipv6Addr::from(f.last_addr));
                    }
                    hold(&f.pending, f.first_seen_ns);
                }
            }
        }
        Ok(held.then_some((pending, first, addr)))
    }
}

impl AsFd for Loud {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

/// For `tokio::io::unix::AsyncFd`, which waits on the ring.
impl AsRawFd for Loud {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_fd().as_raw_fd()
    }
}

/// Hints the program sent and lost (ring full), summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HintCounts {
    pub sent: u64,
    pub lost: u64,
}

impl Dataplane {
    /// The levels in force (all zero when the map is missing).
    pub fn loud_levels(&self) -> Result<LoudLevels, DataplaneError> {
        if !self.pins.map(names::LOUD_LEVELS).exists() {
            return Ok(LoudLevels::default());
        }
        let map: Array<MapData, LoudLevels> = open(&self.pins, names::LOUD_LEVELS)?;
        map.get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::LOUD_LEVELS, e))
    }

    /// Hints sent and lost so far; `None` for pins of a build before hints.
    pub fn hint_counts(&self) -> Result<Option<HintCounts>, DataplaneError> {
        if !self.pins.map(names::LOUD_STATS).exists() {
            return Ok(None);
        }
        let map: PerCpuArray<MapData, u64> = open(&self.pins, names::LOUD_STATS)?;
        let sum = |slot: u32| -> Result<u64, DataplaneError> {
            Ok(map
                .get(&slot, 0)
                .map_err(|e| DataplaneError::map("reading", names::LOUD_STATS, e))?
                .iter()
                .sum())
        };
        Ok(Some(HintCounts {
            sent: sum(LOUD_SENT)?,
            lost: sum(LOUD_LOST)?,
        }))
    }
}
