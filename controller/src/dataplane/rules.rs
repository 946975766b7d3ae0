//! The rule sets the program enforces: block entries (exact-match hashes for /32 and /64, LPM
//! tries for every other length) and the allowlist (LPM tries). Every change ends with a new
//! generation (see `config`), so cached verdicts are recomputed.

use std::net::Ipv4Addr;

use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, LpmTrie, MapData, MapError, lpm_trie::Key},
};
use ipnet::{IpNet, Ipv4Net};
use ipwarden_common::{BlockEntry, names};

use super::{
    Dataplane, DataplaneError,
    index::{self, AllowOverlap},
    pending::{Pending, Way, inserted},
};
use crate::net::{self, Family};

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

/// Every entry of an exact hash, as prefixes.
fn read_hash<K: Pod, V: Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
    net: impl Fn(K) -> IpNet,
    each: &mut impl FnMut(IpNet, V),
) -> Result<(), DataplaneError> {
    for item in map.iter() {
        let (k, v) = item.map_err(|e| DataplaneError::map("reading entries", name, e))?;
        each(net(k), v);
    }
    Ok(())
}

/// Every entry of an LPM trie, as prefixes (a key that is no prefix is skipped).
fn read_trie<K: Pod, V: Pod>(
    map: &LpmTrie<MapData, K, V>,
    name: &'static str,
    net: impl Fn(u32, K) -> Option<IpNet>,
    each: &mut impl FnMut(IpNet, V),
) -> Result<(), DataplaneError> {
    for item in map.iter() {
        let (k, v) = item.map_err(|e| DataplaneError::map("reading entries", name, e))?;
        if let Some(n) = net(k.prefix_len(), k.data()) {
            each(n, v);
        }
    }
    Ok(())
}

/// One entry's place in one map: put or take it there.
trait Place<V> {
    fn put(&mut self, value: V) -> Result<(), DataplaneError>;
    /// `true` if it was there.
    fn take(&mut self) -> Result<bool, DataplaneError>;
}

/// A key in a map of the kind `M` (an exact hash or an LPM trie), generic over the key type as
/// aya's maps are: both families share one implementation.
struct At<'a, M, K> {
    map: &'a mut M,
    key: K,
    name: &'static str,
}

impl<'a, K: Pod, V: Pod> At<'a, HashMap<MapData, K, V>, K> {
    fn hash(map: &'a mut HashMap<MapData, K, V>, key: K, name: &'static str) -> Self {
        Self { map, key, name }
    }
}

impl<'a, K: Pod, V: Pod> At<'a, LpmTrie<MapData, K, V>, Key<K>> {
    fn trie(map: &'a mut LpmTrie<MapData, K, V>, key: Key<K>, name: &'static str) -> Self {
        Self { map, key, name }
    }
}

impl<K: Pod, V: Pod> Place<V> for At<'_, HashMap<MapData, K, V>, K> {
    fn put(&mut self, value: V) -> Result<(), DataplaneError> {
        let r = self.map.insert(self.key, value, 0);
        inserted(r, self.name, self.map.map())
    }

    fn take(&mut self) -> Result<bool, DataplaneError> {
        removed(self.map.remove(&self.key), self.name)
    }
}

impl<K: Pod, V: Pod> Place<V> for At<'_, LpmTrie<MapData, K, V>, Key<K>> {
    fn put(&mut self, value: V) -> Result<(), DataplaneError> {
        let r = self.map.insert(&self.key, value, 0);
        inserted(r, self.name, self.map.map())
    }

    fn take(&mut self) -> Result<bool, DataplaneError> {
        removed(self.map.remove(&self.key), self.name)
    }
}

impl Dataplane {
    /// Adds or replaces a block entry. /32 and /64 prefixes go to the exact-match hashes; every
    /// other length to the LPM tries.
    pub fn block(&mut self, net: IpNet, entry: BlockEntry) -> Result<(), DataplaneError> {
        let mut allow = None;
        let mut later = Vec::new();
        let mut pending = Pending::default();
        let out = self.changing(net, true, |dp| {
            dp.block_entry(net, entry, &mut allow, &mut pending, &mut later)?;
            dp.flush(&mut pending, &mut later)?;
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
        let vouched = self.withdraw_authority()?;
        let mut fine = false;
        let mut out = Ok(());
        let mut allow = None;
        let mut later = Vec::new();
        let mut pending = Pending::default();
        for (net, entry) in entries {
            fine |= matches!(net.trunc(), IpNet::V6(n) if n.prefix_len() > net::V6_SOURCE_PREFIX);
            out = self.block_entry(net, entry, &mut allow, &mut pending, &mut later);
            if out.is_err() {
                break;
            }
        }
        // What is queued goes in even after a failure: the entries before it are in the
        // change as they were when each went in alone.
        out = out.and(self.flush(&mut pending, &mut later));
        // The entries in the hash so far get their ways, in bucket order (a window of the index
        // is mapped once for all of its buckets), even when a later entry failed.
        let indexed = self.index_all(later);
        self.release_index();
        let out = out.and(indexed);
        self.new_generation(fine.then_some(true), vouched && out.is_ok())?;
        out
    }

    /// `allow`: the allowlist as the index needs it, read at the first exact entry of a change.
    /// `pending`: exact entries queued for the hashes ([`Self::flush`]), which move their ways
    /// to `later`, filled once the hash holds their entries ([`Self::index_all`]).
    fn block_entry(
        &mut self,
        net: IpNet,
        entry: BlockEntry,
        allow: &mut Option<AllowOverlap>,
        pending: &mut Pending,
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
            // In the hash without a way: its bucket is marked (before the entry is there).
            self.unway(key)?;
        }
        let way = keep.then_some(Way {
            family: key.0,
            key: key.1,
            expires_at_ns: entry.expires_at_ns,
            reason: entry.reason,
        });
        if pending.push(net, entry, way) {
            self.flush(pending, later)?;
        }
        Ok(())
    }

    /// Puts the queued exact entries into their hashes.
    fn flush(&mut self, pending: &mut Pending, later: &mut Vec<Way>) -> Result<(), DataplaneError> {
        pending.flush(&mut self.block_v4, &mut self.block_v6, later)
    }

    fn hash_or_trie_insert(&mut self, net: IpNet, entry: BlockEntry) -> Result<(), DataplaneError> {
        self.block_place(net).put(entry)
    }

    /// Where `net`'s block entry lives: its family's exact hash (an IPv4 /32, an IPv6 /64) or
    /// its LPM trie, with its key there. The one place that tells the four maps apart.
    fn block_place(&mut self, net: IpNet) -> Box<dyn Place<BlockEntry> + '_> {
        match net.trunc() {
            IpNet::V4(n) if n.prefix_len() == 32 => Box::new(At::hash(
                &mut self.block_v4,
                n.addr().octets(),
                names::BLOCK_V4,
            )),
            IpNet::V4(n) => Box::new(At::trie(
                &mut self.block_net_v4,
                Key::new(n.prefix_len().into(), n.addr().octets()),
                names::BLOCK_NET_V4,
            )),
            IpNet::V6(n) if n.prefix_len() == net::V6_SOURCE_PREFIX => Box::new(At::hash(
                &mut self.block_v6,
                net::v6_prefix_key(&n),
                names::BLOCK_V6,
            )),
            IpNet::V6(n) => Box::new(At::trie(
                &mut self.block_net_v6,
                Key::new(n.prefix_len().into(), n.addr().octets()),
                names::BLOCK_NET_V6,
            )),
        }
    }

    /// Where `net`'s allow entry lives: its family's LPM trie.
    fn allow_place(&mut self, net: IpNet) -> Box<dyn Place<u32> + '_> {
        match net.trunc() {
            IpNet::V4(n) => Box::new(At::trie(
                &mut self.allow_v4,
                Key::new(n.prefix_len().into(), n.addr().octets()),
                names::ALLOW_V4,
            )),
            IpNet::V6(n) => Box::new(At::trie(
                &mut self.allow_v6,
                Key::new(n.prefix_len().into(), n.addr().octets()),
                names::ALLOW_V6,
            )),
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
        self.block_place(net).take()
    }

    /// Every block entry, expired ones included (the kernel ignores those).
    pub fn blocks(&self) -> Result<Vec<BlockRule>, DataplaneError> {
        let mut out = Vec::new();
        let mut rule = |net, entry| out.push(BlockRule { net, entry });
        read_hash(
            &self.block_v4,
            names::BLOCK_V4,
            |k| IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(k), 32)),
            &mut rule,
        )?;
        read_hash(
            &self.block_v6,
            names::BLOCK_V6,
            |k| IpNet::V6(net::v6_prefix_net(k)),
            &mut rule,
        )?;
        read_trie(
            &self.block_net_v4,
            names::BLOCK_NET_V4,
            |l, d| net::v4_net(l, d).map(IpNet::V4),
            &mut rule,
        )?;
        read_trie(
            &self.block_net_v6,
            names::BLOCK_NET_V6,
            |l, d| net::v6_net(l, d).map(IpNet::V6),
            &mut rule,
        )?;
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
        self.allow_place(net).put(1)
    }

    /// Removes exactly `net` from the allowlist; `false` if it was not there.
    pub fn disallow(&mut self, net: IpNet) -> Result<bool, DataplaneError> {
        self.changing(net, false, |dp| dp.disallow_entry(net))
    }

    fn disallow_entry(&mut self, net: IpNet) -> Result<bool, DataplaneError> {
        self.allow_place(net).take()
    }

    /// Every allowlisted prefix.
    pub fn allows(&self) -> Result<Vec<IpNet>, DataplaneError> {
        let mut out = Vec::new();
        let mut add = |net, _| out.push(net);
        read_trie(
            &self.allow_v4,
            names::ALLOW_V4,
            |l, d| net::v4_net(l, d).map(IpNet::V4),
            &mut add,
        )?;
        read_trie(
            &self.allow_v6,
            names::ALLOW_V6,
            |l, d| net::v6_net(l, d).map(IpNet::V6),
            &mut add,
        )?;
        out.sort();
        Ok(out)
    }
}

/// The block index's bookkeeping (see `index` for the rule it keeps).
impl Dataplane {
    fn has_index(&self, family: Family) -> bool {
        self.index.get(family).is_some()
    }

    fn index_of(&mut self, family: Family) -> Option<&mut index::Index> {
        self.index.get_mut(family).as_mut()
    }

    fn release_index(&mut self) {
        for ix in self.index.each_mut().into_iter().flatten() {
            ix.release();
        }
    }

    /// Fills the ways, sorted by bucket so each window of the index is mapped once.
    fn index_all(&mut self, mut ways: Vec<Way>) -> Result<(), DataplaneError> {
        let pages = if ways.len() > 1 { index::BULK_PAGES } else { 1 };
        // Each key hashed once, not at each comparison (a million ways: 0.08 s of hashing).
        ways.sort_by_cached_key(|w| (w.family, ipwarden_common::index::bucket(w.key)));
        let mut full = 0usize;
        for w in ways {
            if let Some(ix) = self.index_of(w.family)
                && !ix.put(w.key, w.expires_at_ns, w.reason, pages)?
            {
                full += 1;
            }
        }
        if full > 0 {
            tracing::debug!(full, "index buckets full: those entries take the full path");
        }
        Ok(())
    }

    /// Empties the key's way: for a key leaving the hash.
    fn unindex(&mut self, (family, key): (Family, u64)) -> Result<(), DataplaneError> {
        match self.index_of(family) {
            Some(ix) => ix.remove(key),
            None => Ok(()),
        }
    }

    /// Takes the key's way and marks its bucket: for a key that stays in the hash without a way.
    fn unway(&mut self, (family, key): (Family, u64)) -> Result<(), DataplaneError> {
        match self.index_of(family) {
            Some(ix) => ix.unway(key),
            None => Ok(()),
        }
    }

    fn unindex_overlapping(&mut self, net: IpNet) -> Result<(), DataplaneError> {
        let net = net.trunc();
        let family = Family::of(&net);
        if net.prefix_len() >= family.source_len() {
            let host = IpNet::new(net.addr(), family.source_len()).expect("a valid length");
            match index::exact_key(host) {
                Some(key) => self.unway(key),
                None => Ok(()),
            }
        } else if let Some(ix) = self.index_of(family) {
            ix.scan(|k| index::overlaps(index::key_net(family, k), net))
                .map(drop)
        } else {
            Ok(())
        }
    }

    /// Empties the block index (every lookup takes the full path until entries are put
    /// again: slower, never wrong). Resyncs start with it, so ways a release without the index
    /// left stale (it changed the hash without them) cannot outlive a daemon start.
    /// The authority goes first (and comes back only with [`Self::vouch_for_index`]).
    pub fn clear_index(&mut self) -> Result<(), DataplaneError> {
        self.withdraw_authority()?;
        for ix in self.index.each_mut().into_iter().flatten() {
            ix.clear()?;
        }
        Ok(())
    }

    /// Whether the bucket of an exact prefix is marked (tests).
    pub fn index_marked(&mut self, net: IpNet) -> Result<bool, DataplaneError> {
        let Some((family, key)) = index::exact_key(net) else {
            return Ok(false);
        };
        let Some(ix) = self.index_of(family) else {
            return Ok(false);
        };
        let out = ix.marked(key);
        ix.release();
        out
    }

    /// The index's expiry for an exact prefix, if it has a way (tests).
    pub fn indexed(&mut self, net: IpNet) -> Result<Option<u64>, DataplaneError> {
        Ok(self.indexed_by(net)?.map(|(expiry, _)| expiry))
    }

    /// The index's expiry and origin (`Reason` code) for an exact prefix, if it has a way.
    pub fn indexed_by(&mut self, net: IpNet) -> Result<Option<(u64, u32)>, DataplaneError> {
        let Some((family, key)) = index::exact_key(net) else {
            return Ok(None);
        };
        let Some(ix) = self.index_of(family) else {
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
