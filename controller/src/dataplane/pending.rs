//! Exact block entries on their way into the kernel: a bulk load queues them per family and puts
//! each chunk with one `BPF_MAP_UPDATE_BATCH` (a million blocks: 1.4 s of one syscall per entry
//! before), then hands their index ways on, which may only be filled once the hash holds the
//! entry.

use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, MapData, MapError},
};
use ipnet::IpNet;
use ipwarden_common::{BlockEntry, SrcV4, SrcV6Prefix, names};

use super::{DataplaneError, batch, maps::max_entries};
use crate::net::{self, Family};

/// A way to fill once the hash holds its block.
pub(super) struct Way {
    pub(super) family: Family,
    pub(super) key: u64,
    pub(super) expires_at_ns: u64,
    /// The entry's origin, carried by the way so that index drops are counted by origin.
    pub(super) reason: u32,
}

/// Maps the kernel's `E2BIG` (no room for a new key) to [`DataplaneError::MapFull`], which says
/// how to raise the capacity.
pub(super) fn inserted(
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

/// Entries per `BPF_MAP_UPDATE_BATCH`: large enough that the syscall is noise, small enough that
/// the buffers stay a few hundred KiB.
const CHUNK: usize = 8192;

/// One family's queue: keys, values and each entry's way (if it gets one).
struct Queue<K> {
    keys: Vec<K>,
    values: Vec<BlockEntry>,
    ways: Vec<Option<Way>>,
}

impl<K> Default for Queue<K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            values: Vec::new(),
            ways: Vec::new(),
        }
    }
}

impl<K: Pod> Queue<K> {
    fn push(&mut self, key: K, value: BlockEntry, way: Option<Way>) {
        self.keys.push(key);
        self.values.push(value);
        self.ways.push(way);
    }

    fn is_full(&self) -> bool {
        self.keys.len() >= CHUNK
    }

    /// Puts the queue into `map` and moves the ways of the entries that went in to `later`. If
    /// the batch stops (a full map, a kernel without the command), the rest go one by one, so
    /// the entry that fails is the one reported and every entry before it is in.
    fn flush(
        &mut self,
        map: &mut HashMap<MapData, K, BlockEntry>,
        name: &'static str,
        later: &mut Vec<Way>,
    ) -> Result<(), DataplaneError> {
        let done = match batch::update_hash(map, &self.keys, &self.values) {
            Ok(()) => self.keys.len(),
            Err((done, e)) => {
                tracing::debug!(map = name, done, "batch update stopped ({e}): one by one");
                done
            }
        };
        let mut out = Ok(());
        let mut went_in = done;
        for i in done..self.keys.len() {
            let r = map.insert(self.keys[i], self.values[i], 0);
            out = inserted(r, name, map.map());
            if out.is_err() {
                break;
            }
            went_in = i + 1;
        }
        later.extend(self.ways.drain(..went_in).flatten());
        self.keys.clear();
        self.values.clear();
        self.ways.clear();
        out
    }
}

/// The exact block entries of a change, queued per family.
#[derive(Default)]
pub(super) struct Pending {
    v4: Queue<SrcV4>,
    v6: Queue<SrcV6Prefix>,
}

impl Pending {
    /// Queues an exact entry (`net` an IPv4 /32 or IPv6 /64; any other prefix is the caller's
    /// bug); whether its family's queue is full and should be flushed.
    pub(super) fn push(&mut self, net: IpNet, value: BlockEntry, way: Option<Way>) -> bool {
        match net.trunc() {
            IpNet::V4(n) => {
                self.v4.push(n.addr().octets(), value, way);
                self.v4.is_full()
            }
            IpNet::V6(n) => {
                self.v6.push(net::v6_prefix_key(&n), value, way);
                self.v6.is_full()
            }
        }
    }

    /// Puts every queued entry; the ways of those that went in join `later`.
    pub(super) fn flush(
        &mut self,
        v4: &mut HashMap<MapData, SrcV4, BlockEntry>,
        v6: &mut HashMap<MapData, SrcV6Prefix, BlockEntry>,
        later: &mut Vec<Way>,
    ) -> Result<(), DataplaneError> {
        let a = self.v4.flush(v4, names::BLOCK_V4, later);
        let b = self.v6.flush(v6, names::BLOCK_V6, later);
        a.and(b)
    }
}
