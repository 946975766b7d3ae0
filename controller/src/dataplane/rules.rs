//! The rule sets the program enforces: block entries (exact-match hashes for /32 and /64, LPM
//! tries for every other length) and the allowlist (LPM tries). Every change ends with a new
//! generation (see `config`), so cached verdicts are recomputed.

use std::net::Ipv4Addr;

use aya::maps::{IterableMap as _, MapData, MapError, lpm_trie::Key};
use ipnet::{IpNet, Ipv4Net};
use ipwarden_common::{BlockEntry, names};

use super::{
    Dataplane, DataplaneError,
    index::{self, AllowOverlap},
    maps::max_entries,
};
use crate::net;

/// A block set entry as user space sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRule {
    pub net: IpNet,
    pub entry: BlockEntry,
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

/// Maps the kernel's `E2BIG` (no room for a new key) to [`DataplaneError::MapFull`], which says
/// how to raise the capacity.
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

impl Dataplane {
    /// Adds or replaces a block entry. /32 and /64 prefixes go to the exact-match hashes; every
    /// other length to the LPM tries.
    pub fn block(&mut self, net: IpNet, entry: BlockEntry) -> Result<(), DataplaneError> {
        let mut allow = None;
        let mut later = Vec::new();
        let out = self.changing(net, true, |dp| {
            dp.block_entry(net, entry, &mut allow, &mut later)?;
            dp.index_all(later)
        });
        self.release_index();
        out
    }

    /// Adds or replaces many block entries, with one generation change at the end (bulk loads
    /// and restores: a million entries would otherwise also cost a million config writes).
    pub fn block_all(
        &mut self,
        entries: impl IntoIterator<Item = (IpNet, BlockEntry)>,
    ) -> Result<(), DataplaneError> {
        let mut fine = false;
        let mut out = Ok(());
        let mut allow = None;
        let mut later = Vec::new();
        for (net, entry) in entries {
            fine |= matches!(net.trunc(), IpNet::V6(n) if n.prefix_len() > net::V6_SOURCE_PREFIX);
            out = self.block_entry(net, entry, &mut allow, &mut later);
            if out.is_err() {
                break;
            }
        }
        // The entries in the hash so far get their ways, in bucket order (a window of the index
        // is mapped once for all of its buckets), even when a later entry failed.
        let indexed = self.index_all(later);
        self.release_index();
        self.new_generation(fine.then_some(true))?;
        out.and(indexed)
    }

    /// `allow`: the allowlist as the index needs it, read at the first exact entry of a change.
    /// `later`: the ways to fill once the hash holds their entries ([`Self::index_all`]).
    fn block_entry(
        &mut self,
        net: IpNet,
        entry: BlockEntry,
        allow: &mut Option<AllowOverlap>,
        later: &mut Vec<Way>,
    ) -> Result<(), DataplaneError> {
        let Some(key) = index::exact_key(net) else {
            return self.hash_or_trie_insert(net, entry);
        };
        let keep = index::indexable(&entry) && self.has_index(key.0) && {
            if allow.is_none() {
                *allow = Some(AllowOverlap::new(&self.allows()?));
            }
            !allow.as_ref().is_some_and(|a| a.overlaps(net))
        };
        if !keep {
            self.unindex(key)?;
        }
        self.hash_or_trie_insert(net, entry)?;
        if keep {
            later.push(Way {
                v6: key.0,
                key: key.1,
                expires_at_ns: entry.expires_at_ns,
            });
        }
        Ok(())
    }

    fn hash_or_trie_insert(&mut self, net: IpNet, entry: BlockEntry) -> Result<(), DataplaneError> {
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
        let out = self.changing(net, false, |dp| dp.unblock_entry(net));
        self.release_index();
        out
    }

    fn unblock_entry(&mut self, net: IpNet) -> Result<bool, DataplaneError> {
        if let Some(key) = index::exact_key(net) {
            self.unindex(key)?;
        }
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
        let out = self.changing(net, true, |dp| dp.allow_entry(net));
        self.release_index();
        out
    }

    fn allow_entry(&mut self, net: IpNet) -> Result<(), DataplaneError> {
        // Blocks this prefix overlaps leave the index first: from now on the program must ask
        // the allowlist for them.
        self.unindex_overlapping(net)?;
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
}

/// A way to fill once the hash holds its block.
struct Way {
    v6: bool,
    key: u64,
    expires_at_ns: u64,
}

/// The block index's bookkeeping (see `index` for the rule it keeps).
impl Dataplane {
    fn has_index(&self, v6: bool) -> bool {
        if v6 {
            self.index.v6.is_some()
        } else {
            self.index.v4.is_some()
        }
    }

    fn index_of(&mut self, v6: bool) -> Option<&mut index::Index> {
        if v6 {
            self.index.v6.as_mut()
        } else {
            self.index.v4.as_mut()
        }
    }

    fn release_index(&mut self) {
        for ix in [self.index.v4.as_mut(), self.index.v6.as_mut()]
            .into_iter()
            .flatten()
        {
            ix.release();
        }
    }

    /// Fills the ways, sorted by bucket so each window of the index is mapped once.
    fn index_all(&mut self, mut ways: Vec<Way>) -> Result<(), DataplaneError> {
        let pages = if ways.len() > 1 { index::BULK_PAGES } else { 1 };
        ways.sort_unstable_by_key(|w| (w.v6, ipwarden_common::index::bucket(w.key)));
        let mut full = 0usize;
        for w in ways {
            if let Some(ix) = self.index_of(w.v6)
                && !ix.put(w.key, w.expires_at_ns, pages)?
            {
                full += 1;
            }
        }
        if full > 0 {
            tracing::debug!(full, "index buckets full: those entries take the full path");
        }
        Ok(())
    }

    fn unindex(&mut self, (v6, key): (bool, u64)) -> Result<(), DataplaneError> {
        match self.index_of(v6) {
            Some(ix) => ix.remove(key),
            None => Ok(()),
        }
    }

    fn unindex_overlapping(&mut self, net: IpNet) -> Result<(), DataplaneError> {
        let net = net.trunc();
        let v6 = matches!(net, IpNet::V6(_));
        let exact = match net {
            IpNet::V4(n) => n.prefix_len() == 32,
            IpNet::V6(n) => n.prefix_len() >= net::V6_SOURCE_PREFIX,
        };
        if exact {
            let host = IpNet::new(net.addr(), if v6 { net::V6_SOURCE_PREFIX } else { 32 })
                .expect("a valid length");
            match index::exact_key(host) {
                Some(key) => self.unindex(key),
                None => Ok(()),
            }
        } else if let Some(ix) = self.index_of(v6) {
            ix.scan(|k| index::overlaps(index::key_net(v6, k), net))
                .map(drop)
        } else {
            Ok(())
        }
    }

    /// Empties the block index (every lookup takes the full path until entries are put
    /// again: slower, never wrong). Resyncs start with it, so ways a release without the index
    /// left stale (it changed the hash without them) cannot outlive a daemon start.
    pub fn clear_index(&mut self) -> Result<(), DataplaneError> {
        for ix in [self.index.v4.as_mut(), self.index.v6.as_mut()]
            .into_iter()
            .flatten()
        {
            ix.scan(|_| true)?;
        }
        Ok(())
    }

    /// The index's expiry for an exact prefix, if it has a way (tests).
    pub fn indexed(&mut self, net: IpNet) -> Result<Option<u64>, DataplaneError> {
        let Some((v6, key)) = index::exact_key(net) else {
            return Ok(None);
        };
        let Some(ix) = self.index_of(v6) else {
            return Ok(None);
        };
        let out = ix.get(key);
        ix.release();
        out
    }

    /// Filled ways per family (IPv4, IPv6); `None` for pins without an index. Reads the whole
    /// index (64 KiB at a time).
    pub fn index_len(&mut self) -> Result<Option<(usize, usize)>, DataplaneError> {
        let (Some(v4), Some(v6)) = (self.index.v4.as_mut(), self.index.v6.as_mut()) else {
            return Ok(None);
        };
        Ok(Some((v4.scan(|_| false)?, v6.scan(|_| false)?)))
    }
}
