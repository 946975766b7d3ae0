//! The block index (see `ipwarden_common::index`), written through shared mappings of the
//! pinned array: a way is filled or emptied with two ordered 8-byte stores, which a bpf(2)
//! update (a memcpy of the whole bucket, in no promised order) could not guarantee.
//!
//! The rule the program relies on: a filled way is a live `Action::BLOCK` entry of the exact
//! hash for that key, and no allowlisted prefix overlaps the key. So a way is emptied before the
//! hash entry changes or an overlapping allow entry goes in, and filled only after the hash
//! holds the block. Everything else only costs speed: a key without a way takes the full path.
//!
//! The rule the index's authority needs (see `ipwarden_common::index`): at the end of every
//! change, a key in the hash without a way has its bucket marked. A key that keeps its hash
//! entry but loses its way (a challenge replacing a block, an overlapping allow entry) has the
//! way turned into a marker in one store; a key whose bucket is full marks it; markers go only
//! when the whole index is emptied (a resync, which puts every key back).

use std::{
    collections::HashSet,
    io,
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{Ordering, fence},
};

use aya::maps::MapData;
use ipnet::IpNet;
use ipwarden_common::{
    Action, BlockEntry,
    index::{
        INDEX_BUCKETS, INDEX_WAYS, IndexBucket, MARK, bucket, is_way, key_v4, key_v6, way_expiry,
        way_origin, way_until,
    },
};

use super::DataplaneError;
use crate::net::{self, Family, PerFamily};

/// `BPF_F_MMAPABLE`.
const MMAPABLE: u32 = 1 << 10;

/// Buckets per page of the mapping: mappings start at page boundaries, and the system's page
/// is not always 4 KiB (16 KiB and 64 KiB on some arm64 and ppc64 kernels).
fn page_buckets() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(page)
        .ok()
        .filter(|p| *p >= 4096)
        .unwrap_or(4096);
    page / size_of::<IndexBucket>()
}

/// Pages mapped at once by scans and sorted bulk writes (64 KiB of 4 KiB pages); a single
/// change maps one.
pub(super) const BULK_PAGES: usize = 16;

/// One family's index. Mapped a window at a time, never whole: the kernel maps an mmapable
/// array's pages at `mmap` time, so a whole mapping would add 32 MiB to the resident size of
/// every process that opens the pins.
pub(super) struct Index {
    data: MapData,
    map: &'static str,
    window: Option<Window>,
    /// Buckets per page ([`page_buckets`]).
    page: usize,
}

/// A mapped run of pages: buckets `first..first + len`.
struct Window {
    ptr: NonNull<IndexBucket>,
    first: usize,
    len: usize,
}

// SAFETY: the window is shared memory owned by this value and only reached through `&mut self`;
// the kernel program only reads it.
unsafe impl Send for Index {}
// SAFETY: `&self` methods do not touch the window.
unsafe impl Sync for Index {}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Index::at`, of this length, unmapped once.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr().cast(),
                self.len * size_of::<IndexBucket>(),
            )
        };
    }
}

impl Index {
    /// Opens the pinned index `data` (named `map`), refusing one of another shape.
    pub(super) fn open(data: MapData, map: &'static str) -> Result<Self, DataplaneError> {
        let info = data
            .info()
            .map_err(|e| DataplaneError::map("reading map info", map, e))?;
        if info.value_size() as usize != size_of::<IndexBucket>()
            || info.max_entries() != INDEX_BUCKETS
            || info.map_flags() & MMAPABLE == 0
        {
            return Err(DataplaneError::Syscall {
                op: "checking the block index",
                map,
                source: io::Error::other(format!(
                    "the pinned index has {} values of {} bytes (flags {:#x}); this build expects {INDEX_BUCKETS} of {} bytes, mmapable",
                    info.max_entries(),
                    info.value_size(),
                    info.map_flags(),
                    size_of::<IndexBucket>()
                )),
            });
        }
        Ok(Self {
            data,
            map,
            window: None,
            page: page_buckets(),
        })
    }

    /// Bucket `i`, mapping the `pages` pages from its own if the current window lacks it.
    fn at(&mut self, i: usize, pages: usize) -> Result<*mut IndexBucket, DataplaneError> {
        if let Some(w) = &self.window
            && (w.first..w.first + w.len).contains(&i)
        {
            // SAFETY: `i - first` is inside the window.
            return Ok(unsafe { w.ptr.as_ptr().add(i - w.first) });
        }
        self.window = None;
        let first = i / self.page * self.page;
        let len = (pages * self.page).min(INDEX_BUCKETS as usize - first);
        // SAFETY: a fresh shared mapping of whole pages inside the map's value area (the kernel
        // checks the range too); mmapable array values start page-aligned.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len * size_of::<IndexBucket>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.data.fd().as_fd().as_raw_fd(),
                (first * size_of::<IndexBucket>()) as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DataplaneError::Syscall {
                op: "mmap",
                map: self.map,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast()).expect("mmap returned a non-null address");
        self.window = Some(Window { ptr, first, len });
        // SAFETY: `i - first` is inside the window just made.
        Ok(unsafe { ptr.as_ptr().add(i - first) })
    }

    /// Unmaps the window: called at the end of every change.
    pub(super) fn release(&mut self) {
        self.window = None;
    }

    fn way(
        &mut self,
        key: u64,
        pages: usize,
    ) -> Result<(*mut IndexBucket, Option<usize>), DataplaneError> {
        let b = self.at(bucket(key) as usize, pages)?;
        // SAFETY: a valid, aligned bucket of the window; read volatile (another process may
        // write it).
        let seen = unsafe { std::ptr::read_volatile(b) };
        let found = (0..INDEX_WAYS).find(|&w| is_way(seen.until[w]) && seen.keys[w] == key);
        Ok((b, found))
    }

    /// The expiry indexed for `key` (`u64::MAX` for a permanent entry, rounded down to 8 ns
    /// otherwise) and its origin's `Reason` code, if it has a way.
    pub(super) fn get(&mut self, key: u64) -> Result<Option<(u64, u32)>, DataplaneError> {
        let (b, way) = self.way(key, 1)?;
        // SAFETY: as in `way`.
        Ok(way.map(|w| {
            let until = unsafe { std::ptr::read_volatile(&raw const (*b).until[w]) };
            (way_expiry(until), way_origin(until))
        }))
    }

    /// Indexes `key` until `expires_at_ns` (`BlockEntry`'s: `NEVER` is 0) with its origin
    /// (see `ipwarden_common::index::way_until`). `Ok(false)` when its bucket is full: the
    /// bucket is then marked and the key takes the full path, which is correct, only slower.
    /// `pages`: the window to map (writes sorted by bucket map [`BULK_PAGES`]).
    pub(super) fn put(
        &mut self,
        key: u64,
        expires_at_ns: u64,
        reason: u32,
        pages: usize,
    ) -> Result<bool, DataplaneError> {
        let until = way_until(expires_at_ns, reason);
        let (b, found) = self.way(key, pages)?;
        // SAFETY: `b` is a valid bucket of the window; the stores are 8-byte aligned.
        unsafe {
            if let Some(w) = found {
                std::ptr::write_volatile(&raw mut (*b).until[w], until);
                return Ok(true);
            }
            let seen = std::ptr::read_volatile(b);
            let Some(w) = (0..INDEX_WAYS).find(|&w| seen.until[w] == 0) else {
                Self::mark(b);
                return Ok(false);
            };
            // Key first: a reader that sees the key before the expiry sees an empty way.
            std::ptr::write_volatile(&raw mut (*b).keys[w], key);
            fence(Ordering::Release);
            std::ptr::write_volatile(&raw mut (*b).until[w], until);
        }
        Ok(true)
    }

    /// Empties `key`'s way, if it has one. An error means the way may still be filled: the
    /// caller must not change the hash entry then.
    pub(super) fn remove(&mut self, key: u64) -> Result<(), DataplaneError> {
        let (b, found) = self.way(key, 1)?;
        if let Some(w) = found {
            // SAFETY: as in `put`.
            unsafe { Self::empty(b, w) };
        }
        Ok(())
    }

    /// Takes `key`'s way, if it has one, and marks its bucket: the key stays in the hash
    /// without a way. The way becomes the marker in one store (the program sees the way or the
    /// marker, never neither).
    pub(super) fn unway(&mut self, key: u64) -> Result<(), DataplaneError> {
        let (b, found) = self.way(key, 1)?;
        // SAFETY: as in `put`.
        unsafe {
            match found {
                Some(w) => std::ptr::write_volatile(&raw mut (*b).until[w], MARK),
                None => Self::mark(b),
            }
        }
        Ok(())
    }

    /// Whether `key`'s bucket is marked.
    pub(super) fn marked(&mut self, key: u64) -> Result<bool, DataplaneError> {
        let (b, _) = self.way(key, 1)?;
        // SAFETY: as in `way`.
        Ok(unsafe { std::ptr::read_volatile(b) }.marked())
    }

    /// Marks the bucket, unless it is: in an empty way, else in the last way (whose key then
    /// loses its way, which the marker allows).
    ///
    /// # Safety
    /// `b` is a bucket of the window.
    unsafe fn mark(b: *mut IndexBucket) {
        // SAFETY: the caller's promise.
        unsafe {
            let seen = std::ptr::read_volatile(b);
            if seen.marked() {
                return;
            }
            let w = (0..INDEX_WAYS)
                .find(|&w| seen.until[w] == 0)
                .unwrap_or(INDEX_WAYS - 1);
            std::ptr::write_volatile(&raw mut (*b).until[w], MARK);
        }
    }

    /// Expiry first, then the key: a reader never pairs a stale key with a later expiry.
    ///
    /// # Safety
    /// `b` is a bucket of the window and `w < INDEX_WAYS`.
    unsafe fn empty(b: *mut IndexBucket, w: usize) {
        // SAFETY: the caller's promise.
        unsafe {
            std::ptr::write_volatile(&raw mut (*b).until[w], 0);
            fence(Ordering::Release);
            std::ptr::write_volatile(&raw mut (*b).keys[w], 0);
        }
    }

    /// Visits every bucket (a whole-index scan, [`BULK_PAGES`] at a time), turning the ways
    /// whose key `drop` selects into markers (their keys stay in the hash); returns the ways
    /// left.
    pub(super) fn scan(&mut self, drop: impl Fn(u64) -> bool) -> Result<usize, DataplaneError> {
        let mut left = 0;
        for i in 0..INDEX_BUCKETS as usize {
            let b = self.at(i, BULK_PAGES)?;
            // SAFETY: a valid bucket of the window.
            let seen = unsafe { std::ptr::read_volatile(b) };
            for w in 0..INDEX_WAYS {
                if !is_way(seen.until[w]) {
                    continue;
                }
                if drop(seen.keys[w]) {
                    // SAFETY: as above.
                    unsafe { std::ptr::write_volatile(&raw mut (*b).until[w], MARK) };
                } else {
                    left += 1;
                }
            }
        }
        self.release();
        Ok(left)
    }

    /// Empties every way and marker (the index's authority must be withdrawn first).
    pub(super) fn clear(&mut self) -> Result<(), DataplaneError> {
        for i in 0..INDEX_BUCKETS as usize {
            let b = self.at(i, BULK_PAGES)?;
            // SAFETY: a valid bucket of the window.
            let seen = unsafe { std::ptr::read_volatile(b) };
            for w in 0..INDEX_WAYS {
                if seen.until[w] != 0 {
                    // SAFETY: as above.
                    unsafe { Self::empty(b, w) };
                }
            }
        }
        self.release();
        Ok(())
    }
}

/// Both families' indexes, when the pins have them (pins of a release before the index have
/// none until the daemon upgrades the program).
pub(super) type Indexes = PerFamily<Option<Index>>;

/// The index key of an exact entry's prefix: `Some` only for IPv4 /32 and IPv6 /64.
pub(super) fn exact_key(net: IpNet) -> Option<(Family, u64)> {
    match net.trunc() {
        IpNet::V4(n) if n.prefix_len() == 32 => Some((Family::V4, key_v4(&n.addr().octets()))),
        IpNet::V6(n) if n.prefix_len() == net::V6_SOURCE_PREFIX => {
            Some((Family::V6, key_v6(&net::v6_prefix_key(&n))))
        }
        _ => None,
    }
}

/// The prefix an index key stands for.
pub(super) fn key_net(family: Family, key: u64) -> IpNet {
    match family {
        Family::V6 => IpNet::V6(net::v6_prefix_net(key.to_ne_bytes())),
        Family::V4 => net::host_prefix(Ipv4Addr::from((key as u32).to_ne_bytes()).into()),
    }
}

/// Whether two prefixes share an address.
pub(super) fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// The allowlist, asked per exact prefix: does any allowlisted prefix overlap it? Built once per
/// bulk change: a lookup per prefix length present, not a scan per entry.
pub(super) struct AllowOverlap {
    /// The allowlisted prefixes by family and length.
    lengths: Vec<(Family, u8)>,
    nets: HashSet<IpNet>,
    /// IPv6 allow prefixes longer than /64, by their /64: they overlap that /64's entry.
    inside_v6: HashSet<IpNet>,
}

impl AllowOverlap {
    pub(super) fn new(allows: &[IpNet]) -> Self {
        let mut lengths: Vec<(Family, u8)> = Vec::new();
        let mut inside_v6 = HashSet::new();
        for a in allows {
            let a = a.trunc();
            let family = Family::of(&a);
            if family == Family::V6 && a.prefix_len() > net::V6_SOURCE_PREFIX {
                inside_v6.insert(
                    IpNet::new(a.addr(), net::V6_SOURCE_PREFIX)
                        .expect("64 is a valid IPv6 length")
                        .trunc(),
                );
            } else if !lengths.contains(&(family, a.prefix_len())) {
                lengths.push((family, a.prefix_len()));
            }
        }
        Self {
            lengths,
            nets: allows.iter().map(IpNet::trunc).collect(),
            inside_v6,
        }
    }

    /// `net` is an exact prefix (IPv4 /32, IPv6 /64).
    pub(super) fn overlaps(&self, net: IpNet) -> bool {
        let family = Family::of(&net);
        if family == Family::V6 && self.inside_v6.contains(&net.trunc()) {
            return true;
        }
        self.lengths.iter().any(|&(f, len)| {
            f == family
                && len <= net.prefix_len()
                && IpNet::new(net.addr(), len)
                    .map(|n| self.nets.contains(&n.trunc()))
                    .unwrap_or(false)
        })
    }
}

/// Whether an entry may have a way: a plain block (a challenge needs its bucket, and the
/// allowlist is decided elsewhere).
pub(super) fn indexable(entry: &BlockEntry) -> bool {
    entry.action == Action::BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_allow_prefix_overlaps_the_exact_prefixes_it_contains_or_lies_in() {
        let allow = AllowOverlap::new(&nets(&[
            "198.51.100.0/24",
            "192.0.2.7/32",
            "2001:db8:1::/48",
            "2001:db8:2:3::5/128",
        ]));
        for (net, want) in [
            ("198.51.100.9/32", true),
            ("198.51.101.9/32", false),
            ("192.0.2.7/32", true),
            ("192.0.2.8/32", false),
            ("2001:db8:1:2::/64", true),
            ("2001:db8:2:3::/64", true),
            ("2001:db8:2:4::/64", false),
        ] {
            let net: IpNet = net.parse().unwrap();
            assert_eq!(allow.overlaps(net), want, "{net}");
        }
    }

    #[test]
    fn keys_round_trip_to_their_prefixes() {
        for n in ["192.0.2.7/32", "2001:db8:2:3::/64"] {
            let n: IpNet = n.parse().unwrap();
            let (family, key) = exact_key(n).unwrap();
            assert_eq!(key_net(family, key), n);
        }
        assert_eq!(exact_key("192.0.2.0/24".parse().unwrap()), None);
        assert!(overlaps(
            "2001:db8::/32".parse().unwrap(),
            "2001:db8:1::/64".parse().unwrap()
        ));
    }
}
