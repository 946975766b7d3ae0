//! The detector's table of tracks, flat: every track in one vector, found through an index keyed
//! by an integer (an IPv4 address, or an IPv6 /64 as a `u64`).
//!
//! A hash table that holds the tracks themselves is at most 7/8 full and grows by doubling, so
//! at a million sources it held two million slots of ~140 bytes: 304 MB, most of it empty. Here
//! the empty room is in the index and the tracks sit densely (128 bytes each). The index holds
//! a slot's number only (5 bytes a bucket with its control byte) and finds a key through the
//! slot it names: 10 MB at a million, where maps from key to number took 27. No per-source heap
//! allocation either way.

use std::{
    hash::BuildHasher,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::net::V6_SOURCE_PREFIX;

/// A source as the detector keys it: an IPv4 address, or the top 64 bits of an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    bits: u64,
    v6: bool,
}

impl Key {
    /// The key of a source: its address for IPv4, its /64 for IPv6 (a prefix of another length,
    /// which the data plane never reports, is keyed by its address's /32 or /64).
    pub fn of(source: &IpNet) -> Self {
        match source {
            IpNet::V4(n) => Self {
                bits: u64::from(n.addr().to_bits()),
                v6: false,
            },
            IpNet::V6(n) => Self {
                bits: (n.addr().to_bits() >> 64) as u64,
                v6: true,
            },
        }
    }

    /// The source: an IPv4 /32 or an IPv6 /64.
    pub fn net(&self) -> IpNet {
        if self.v6 {
            IpNet::V6(Ipv6Net::new_assert(
                Ipv6Addr::from_bits(u128::from(self.bits) << 64),
                V6_SOURCE_PREFIX,
            ))
        } else {
            IpNet::V4(Ipv4Net::new_assert(
                Ipv4Addr::from_bits(self.bits as u32),
                32,
            ))
        }
    }

    /// A full address of the source from its low 64 bits (IPv6; ignored for IPv4).
    pub fn addr(&self, low: u64) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from_bits(
                (u128::from(self.bits) << 64) | u128::from(low),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(self.bits as u32))
        }
    }

    /// The low 64 bits of an address (what [`Key::addr`] takes back).
    pub fn low(addr: &IpAddr) -> u64 {
        match addr {
            IpAddr::V4(_) => 0,
            IpAddr::V6(a) => a.to_bits() as u64,
        }
    }
}

/// The tracks, by key. Seeded hashing (foldhash's `RandomState`): keys are chosen by senders,
/// and a fixed hash would let a flood of chosen addresses collide and make every poll quadratic.
#[derive(Debug)]
pub struct Tracks<T> {
    /// Slot numbers, hashed by their slots' keys.
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    slots: Vec<(Key, T)>,
}

impl<T> Default for Tracks<T> {
    fn default() -> Self {
        Self {
            index: hashbrown::HashTable::new(),
            hasher: Default::default(),
            slots: Vec::new(),
        }
    }
}

impl<T> Tracks<T> {
    fn index(&self, k: &Key) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(self.hasher.hash_one(k), |&i| slots[i as usize].0 == *k)
            .map(|&i| i as usize)
    }

    /// Indexes slot `i` (its key is not indexed yet).
    fn set_index(&mut self, i: usize) {
        let n = u32::try_from(i).expect("fewer than 2^32 tracks");
        let (hasher, slots) = (&self.hasher, &self.slots);
        self.index
            .insert_unique(hasher.hash_one(slots[i].0), n, |&j| {
                hasher.hash_one(slots[j as usize].0)
            });
    }

    /// The index entry of key `k`, which names slot `at`: found by its number, so that it can
    /// be found while that slot holds another key or none.
    fn entry_of(&mut self, k: &Key, at: usize) -> Option<&mut u32> {
        self.index
            .find_mut(self.hasher.hash_one(k), |&j| j as usize == at)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Tracks the table holds room for without growing.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    pub fn get(&self, k: &Key) -> Option<&T> {
        self.index(k).map(|i| &self.slots[i].1)
    }

    pub fn get_mut(&mut self, k: &Key) -> Option<&mut T> {
        self.index(k).map(|i| &mut self.slots[i].1)
    }

    /// The track of `k`, made by `new` if there is none.
    pub fn get_or_insert_with(&mut self, k: Key, new: impl FnOnce() -> T) -> &mut T {
        let i = match self.index(&k) {
            Some(i) => i,
            None => self.insert_new(k, new()),
        };
        &mut self.slots[i].1
    }

    /// Adds a track for a key that has none (the caller checked); its index.
    pub fn insert_new(&mut self, k: Key, t: T) -> usize {
        debug_assert!(self.index(&k).is_none());
        let i = self.slots.len();
        self.slots.push((k, t));
        self.set_index(i);
        i
    }

    /// Keeps the tracks `keep` says yes to. A removed track's place takes the last one, whose
    /// index entry is moved: one pass, no second table.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut T) -> bool) {
        let mut i = 0;
        while i < self.slots.len() {
            if keep(&mut self.slots[i].1) {
                i += 1;
                continue;
            }
            let k = self.slots[i].0;
            if let Ok(e) = self
                .index
                .find_entry(self.hasher.hash_one(k), |&j| j as usize == i)
            {
                e.remove();
            }
            self.slots.swap_remove(i);
            let last = self.slots.len();
            if i < last {
                let moved = self.slots[i].0;
                if let Some(n) = self.entry_of(&moved, last) {
                    *n = i as u32;
                }
            }
        }
    }

    /// Makes room for `more` tracks, in one allocation of the final size; a table that holds
    /// far fewer than it has room for gives the memory back.
    pub fn fit(&mut self, more: usize, min_shrink: usize) {
        let need = self.slots.len() + more;
        let (hasher, slots) = (&self.hasher, &self.slots);
        let rehash = |&j: &u32| hasher.hash_one(slots[j as usize].0);
        if slots.capacity() / 4 > need.max(min_shrink) {
            self.index.shrink_to(0, rehash);
            self.slots.shrink_to(need + need / 2);
        }
        // The index grows by doubling; reserving keeps it from doing it twice in one poll.
        let (hasher, slots) = (&self.hasher, &self.slots);
        self.index
            .reserve(more, |&j| hasher.hash_one(slots[j as usize].0));
        self.slots.reserve_exact(more);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &T)> {
        self.slots.iter().map(|(k, t)| (k, t))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_the_families_stay_apart() {
        let v4: IpNet = "203.0.113.9/32".parse().unwrap();
        let v6: IpNet = "2001:db8:1:2::/64".parse().unwrap();
        assert_eq!(Key::of(&v4).net(), v4);
        assert_eq!(Key::of(&v6).net(), v6);
        // 0:0:cb00:7109::/64 has the IPv4 address's bits: still another key.
        let clash: IpNet = "0:0:cb00:7109::/64".parse().unwrap();
        assert_ne!(Key::of(&clash), Key::of(&v4));
        let a: IpAddr = "2001:db8:1:2::7".parse().unwrap();
        assert_eq!(Key::of(&v6).addr(Key::low(&a)), a);
        assert_eq!(
            Key::of(&v4).addr(5),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn removals_keep_every_index_right() {
        let mut t: Tracks<u32> = Tracks::default();
        let keys: Vec<Key> = (0..100u32)
            .map(|i| {
                let net: IpNet = if i % 2 == 0 {
                    IpNet::from(IpAddr::from((0x0A00_0000 + i).to_be_bytes()))
                } else {
                    format!("2001:db8:{i:x}::/64").parse().unwrap()
                };
                Key::of(&net)
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            t.insert_new(*k, i as u32);
        }
        t.retain(|v| *v % 3 != 0);
        assert_eq!(t.len(), 66);
        for (i, k) in keys.iter().enumerate() {
            let want = (i % 3 != 0).then_some(i as u32);
            assert_eq!(t.get(k).copied(), want, "key {i}");
        }
        *t.get_or_insert_with(keys[0], || 1000) += 1;
        assert_eq!(t.get(&keys[0]), Some(&1001));
        assert_eq!(t.len(), 67);
    }

    /// Rounds of inserts, removals, growth and shrinking against a plain map: every key is
    /// found at its own track, and no removed key is found.
    #[test]
    fn agrees_with_a_plain_map_through_growth_and_shrinking() {
        let mut t: Tracks<u64> = Tracks::default();
        let mut model = std::collections::HashMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut peak, mut shrunk) = (0, false);
        for round in 0..30 {
            let adds = if round % 10 == 9 { 5 } else { 3000 };
            let mut fresh = Vec::new();
            for _ in 0..adds {
                let r = next();
                let k = Key {
                    bits: r % 5000,
                    v6: r & (1 << 40) != 0,
                };
                match t.get_mut(&k) {
                    Some(v) => *v = r,
                    None if !fresh.iter().any(|(f, _)| *f == k) => fresh.push((k, r)),
                    None => {}
                }
                if let Some(v) = model.get_mut(&k) {
                    *v = r;
                }
            }
            t.fit(fresh.len(), 64);
            for (k, v) in fresh {
                t.insert_new(k, v);
                model.insert(k, v);
            }
            // Most rounds drop a quarter; every tenth keeps a sixteenth, and the next shrinks.
            let (m, cut) = if round % 10 == 8 {
                (16, 0)
            } else {
                (4, next() % 4)
            };
            let keep = |v: &u64| {
                if m == 16 {
                    v.is_multiple_of(16)
                } else {
                    *v % 4 != cut
                }
            };
            t.retain(|v| keep(v));
            model.retain(|_, v| keep(v));
            peak = peak.max(t.capacity());
            shrunk |= t.capacity() < peak / 4;
            assert_eq!(t.len(), model.len(), "round {round}");
            for bits in 0..5000 {
                for v6 in [false, true] {
                    let k = Key { bits, v6 };
                    assert_eq!(t.get(&k), model.get(&k), "round {round}, {k:?}");
                }
            }
        }
        assert!(shrunk, "the table never shrank (peak {peak})");
    }
}
