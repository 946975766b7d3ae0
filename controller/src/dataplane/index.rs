//! The block index (see `ipwarden_common::index`), written through a shared mapping of the
//! pinned array: a way is filled or emptied with two ordered 8-byte stores, which a bpf(2)
//! update (a memcpy of the whole bucket, in no promised order) could not guarantee, and a bulk
//! load of a million entries costs no syscall.
//!
//! The rule the program relies on: a filled way is a live `Action::BLOCK` entry of the exact
//! hash for that key, and no allowlisted prefix overlaps the key. So a way is emptied before the
//! hash entry changes or an overlapping allow entry goes in, and filled only after the hash
//! holds the block. Everything else only costs speed: a key without a way takes the full path.

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
    index::{INDEX_BUCKETS, INDEX_WAYS, IndexBucket, bucket, key_v4, key_v6},
};

use super::DataplaneError;
use crate::net;

/// `BPF_F_MMAPABLE`.
const MMAPABLE: u32 = 1 << 10;

/// One family's index, mapped into this process.
pub(super) struct Index {
    buckets: NonNull<IndexBucket>,
    map: &'static str,
}

// SAFETY: the mapping is shared memory owned by this value; every access goes through `&self`
// (reads) or `&mut self` (writes), and the kernel program only reads it.
unsafe impl Send for Index {}
// SAFETY: as above; `&self` methods only read.
unsafe impl Sync for Index {}

impl Drop for Index {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of this length, unmapped once.
        unsafe { libc::munmap(self.buckets.as_ptr().cast(), Self::LEN) };
    }
}

impl Index {
    const LEN: usize = INDEX_BUCKETS as usize * size_of::<IndexBucket>();

    /// Maps the pinned index `data` (named `map`), refusing one of another shape.
    pub(super) fn map(data: &MapData, map: &'static str) -> Result<Self, DataplaneError> {
        let info = data
            .info()
            .map_err(|e| DataplaneError::map("reading map info", map, e))?;
        let shape = |detail: String| DataplaneError::Syscall {
            op: "mmap",
            map,
            source: io::Error::other(detail),
        };
        if info.value_size() as usize != size_of::<IndexBucket>()
            || info.max_entries() != INDEX_BUCKETS
            || info.map_flags() & MMAPABLE == 0
        {
            return Err(shape(format!(
                "the pinned index has {} values of {} bytes (flags {:#x}); this build expects {INDEX_BUCKETS} of {} bytes, mmapable",
                info.max_entries(),
                info.value_size(),
                info.map_flags(),
                size_of::<IndexBucket>()
            )));
        }
        // SAFETY: a fresh shared mapping of the map's value area, which is exactly `LEN` bytes
        // (checked above) and page-aligned by the kernel for mmapable arrays.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DataplaneError::Syscall {
                op: "mmap",
                map,
                source: io::Error::last_os_error(),
            });
        }
        Ok(Self {
            buckets: NonNull::new(ptr.cast()).expect("mmap returned a non-null address"),
            map,
        })
    }

    fn way(&self, key: u64) -> (*mut IndexBucket, Option<usize>) {
        // SAFETY: `bucket` is below INDEX_BUCKETS, the mapping's length in buckets.
        let b = unsafe { self.buckets.as_ptr().add(bucket(key) as usize) };
        // SAFETY: a valid, aligned bucket of the mapping; read volatile (the kernel never
        // writes it, but another process may).
        let seen = unsafe { std::ptr::read_volatile(b) };
        let found = (0..INDEX_WAYS).find(|&w| seen.until[w] != 0 && seen.keys[w] == key);
        (b, found)
    }

    /// The expiry indexed for `key`, if any.
    pub(super) fn get(&self, key: u64) -> Option<u64> {
        let (b, way) = self.way(key);
        // SAFETY: as in `way`.
        way.map(|w| unsafe { std::ptr::read_volatile(&raw const (*b).until[w]) })
    }

    /// Indexes `key` until `expires_at_ns` (`BlockEntry`'s: `NEVER` is 0, which the index
    /// stores as `u64::MAX`, 0 meaning an empty way). `false` when its bucket is full: the key
    /// then takes the full path, which is correct, only slower.
    pub(super) fn put(&mut self, key: u64, expires_at_ns: u64) -> bool {
        let until = if expires_at_ns == BlockEntry::NEVER {
            u64::MAX
        } else {
            expires_at_ns
        };
        let (b, found) = self.way(key);
        // SAFETY: `b` is a valid bucket of the mapping; the stores are 8-byte aligned.
        unsafe {
            if let Some(w) = found {
                std::ptr::write_volatile(&raw mut (*b).until[w], until);
                return true;
            }
            let seen = std::ptr::read_volatile(b);
            let Some(w) = (0..INDEX_WAYS).find(|&w| seen.until[w] == 0) else {
                return false;
            };
            // Key first: a reader that sees the key before the expiry sees an empty way.
            std::ptr::write_volatile(&raw mut (*b).keys[w], key);
            fence(Ordering::Release);
            std::ptr::write_volatile(&raw mut (*b).until[w], until);
        }
        true
    }

    /// Empties `key`'s way, if it has one.
    pub(super) fn remove(&mut self, key: u64) {
        let (b, found) = self.way(key);
        if let Some(w) = found {
            // SAFETY: as in `put`.
            unsafe { Self::empty(b, w) };
        }
    }

    /// Expiry first, then the key: a reader never pairs a stale key with a later expiry.
    ///
    /// # Safety
    /// `b` is a bucket of the mapping and `w < INDEX_WAYS`.
    unsafe fn empty(b: *mut IndexBucket, w: usize) {
        // SAFETY: the caller's promise.
        unsafe {
            std::ptr::write_volatile(&raw mut (*b).until[w], 0);
            fence(Ordering::Release);
            std::ptr::write_volatile(&raw mut (*b).keys[w], 0);
        }
    }

    /// Empties every way whose key `drop` selects (a whole-index scan: 32 MiB).
    pub(super) fn remove_where(&mut self, drop: impl Fn(u64) -> bool) -> usize {
        let mut n = 0;
        for i in 0..INDEX_BUCKETS as usize {
            // SAFETY: `i` is below the mapping's length in buckets.
            let b = unsafe { self.buckets.as_ptr().add(i) };
            // SAFETY: a valid bucket.
            let seen = unsafe { std::ptr::read_volatile(b) };
            for w in 0..INDEX_WAYS {
                if seen.until[w] != 0 && drop(seen.keys[w]) {
                    // SAFETY: as above.
                    unsafe { Self::empty(b, w) };
                    n += 1;
                }
            }
        }
        n
    }

    /// Filled ways.
    pub(super) fn len(&self) -> usize {
        // SAFETY: the whole mapping, read as buckets; a concurrent write tears nothing we use.
        let all =
            unsafe { std::slice::from_raw_parts(self.buckets.as_ptr(), INDEX_BUCKETS as usize) };
        all.iter()
            .map(|b| b.until.iter().filter(|&&u| u != 0).count())
            .sum()
    }

    pub(super) fn name(&self) -> &'static str {
        self.map
    }
}

/// Both families' indexes, when the pins have them (pins of a release before the index have
/// none until the daemon upgrades the program).
#[derive(Default)]
pub(super) struct Indexes {
    pub(super) v4: Option<Index>,
    pub(super) v6: Option<Index>,
}

/// The index key of an exact entry's prefix: `Some` only for IPv4 /32 and IPv6 /64.
pub(super) fn exact_key(net: IpNet) -> Option<(bool, u64)> {
    match net.trunc() {
        IpNet::V4(n) if n.prefix_len() == 32 => Some((false, key_v4(&n.addr().octets()))),
        IpNet::V6(n) if n.prefix_len() == net::V6_SOURCE_PREFIX => {
            Some((true, key_v6(&net::v6_prefix_key(&n))))
        }
        _ => None,
    }
}

/// The prefix an index key stands for.
pub(super) fn key_net(v6: bool, key: u64) -> IpNet {
    if v6 {
        IpNet::V6(net::v6_prefix_net(key.to_ne_bytes()))
    } else {
        net::host_prefix(Ipv4Addr::from((key as u32).to_ne_bytes()).into())
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
    lengths: Vec<(bool, u8)>,
    nets: HashSet<IpNet>,
    /// IPv6 allow prefixes longer than /64, by their /64: they overlap that /64's entry.
    inside_v6: HashSet<IpNet>,
}

impl AllowOverlap {
    pub(super) fn new(allows: &[IpNet]) -> Self {
        let mut lengths: Vec<(bool, u8)> = Vec::new();
        let mut inside_v6 = HashSet::new();
        for a in allows {
            let a = a.trunc();
            let v6 = matches!(a, IpNet::V6(_));
            if v6 && a.prefix_len() > net::V6_SOURCE_PREFIX {
                inside_v6.insert(
                    IpNet::new(a.addr(), net::V6_SOURCE_PREFIX)
                        .expect("64 is a valid IPv6 length")
                        .trunc(),
                );
            } else if !lengths.contains(&(v6, a.prefix_len())) {
                lengths.push((v6, a.prefix_len()));
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
        let v6 = matches!(net, IpNet::V6(_));
        if v6 && self.inside_v6.contains(&net.trunc()) {
            return true;
        }
        self.lengths.iter().any(|&(f, len)| {
            f == v6
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
            let (v6, key) = exact_key(n).unwrap();
            assert_eq!(key_net(v6, key), n);
        }
        assert_eq!(exact_key("192.0.2.0/24".parse().unwrap()), None);
        assert!(overlaps(
            "2001:db8::/32".parse().unwrap(),
            "2001:db8:1::/64".parse().unwrap()
        ));
    }
}
