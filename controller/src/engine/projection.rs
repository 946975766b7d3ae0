//! What the kernel holds of the book: one entry per prefix, its strongest decision, unless
//! - a wider prefix's decision enforces more ([`Decision::enforces_more_than`]): the kernel takes
//!   the longest match and never looks wider, so the narrower entry would weaken enforcement
//!   (a challenge on a /32 inside a blocked /24 let that /32 through at the challenge's rate).
//!   It is *shadowed*, and comes back when the wider decision ends;
//! - its map is full: it is *left out*, the weakest first (manual before the rest, then block
//!   before challenge, then the longest TTL), and said in `status`. New decisions are admitted
//!   only while their map has room ([`Projection::has_room`]), so this happens only when a store
//!   holds more than the maps were made for (smaller maps after a change of settings, an older
//!   release's store): the daemon then starts and enforces what fits.

use std::collections::HashSet;

use ipnet::IpNet;
use ipwarden_common::{BlockEntry, names};

use super::Book;
use crate::{
    dataplane::Capacities,
    decision::{Action, Decision, Origin},
    net::Family,
};

/// The kernel map a block decision's prefix goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockMap {
    /// IPv4 /32s.
    ExactV4,
    /// IPv6 /64s.
    ExactV6,
    /// Every other IPv4 prefix.
    NetV4,
    /// Every other IPv6 prefix.
    NetV6,
}

impl BlockMap {
    pub const ALL: [Self; 4] = [Self::ExactV4, Self::ExactV6, Self::NetV4, Self::NetV6];

    pub fn of(prefix: &IpNet) -> Self {
        match (
            Family::of(prefix),
            prefix.prefix_len() == Family::of(prefix).source_len(),
        ) {
            (Family::V4, true) => Self::ExactV4,
            (Family::V6, true) => Self::ExactV6,
            (Family::V4, false) => Self::NetV4,
            (Family::V6, false) => Self::NetV6,
        }
    }

    /// The kernel map's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ExactV4 => names::BLOCK_V4,
            Self::ExactV6 => names::BLOCK_V6,
            Self::NetV4 => names::BLOCK_NET_V4,
            Self::NetV6 => names::BLOCK_NET_V6,
        }
    }

    /// The setting that sizes it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::ExactV4 | Self::ExactV6 => "dataplane.max_blocks",
            Self::NetV4 | Self::NetV6 => "dataplane.max_block_prefixes",
        }
    }

    /// Its capacity among `c`.
    pub fn capacity(self, c: &Capacities) -> usize {
        (match self {
            Self::ExactV4 => c.block_v4,
            Self::ExactV6 => c.block_v6,
            Self::NetV4 => c.block_net_v4,
            Self::NetV6 => c.block_net_v6,
        }) as usize
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One block map's fill, as `status` and `/metrics` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub map: BlockMap,
    /// Entries the kernel holds.
    pub entries: usize,
    pub capacity: usize,
    /// Decisions refused because the map was full, since the daemon started.
    pub refused: u64,
    /// Decisions held but not in the kernel because the map is full.
    pub left_out: usize,
    /// Decisions held but not in the kernel because a wider one enforces more.
    pub shadowed: usize,
}

/// The book's projection into the kernel (see the module).
#[derive(Debug)]
pub struct Projection {
    capacity: [usize; 4],
    /// Distinct prefixes in the book, per map: what admission counts (a shadowed prefix keeps
    /// its place, since it comes back).
    prefixes: [usize; 4],
    shadowed: HashSet<IpNet>,
    left_out: HashSet<IpNet>,
    refused: [u64; 4],
}

impl Projection {
    /// Empty, for maps of these capacities.
    pub fn new(capacities: &Capacities) -> Self {
        Self {
            capacity: BlockMap::ALL.map(|m| m.capacity(capacities)),
            prefixes: [0; 4],
            shadowed: HashSet::new(),
            left_out: HashSet::new(),
            refused: [0; 4],
        }
    }

    /// A prefix entered the book.
    pub fn added(&mut self, prefix: &IpNet) {
        self.prefixes[BlockMap::of(prefix).index()] += 1;
    }

    /// A prefix left the book.
    pub fn removed(&mut self, prefix: &IpNet) {
        let i = BlockMap::of(prefix).index();
        self.prefixes[i] = self.prefixes[i].saturating_sub(1);
        self.shadowed.remove(prefix);
        self.left_out.remove(prefix);
    }

    /// Whether `extra` more new prefixes of `map` fit.
    pub fn has_room(&self, map: BlockMap, extra: usize) -> bool {
        self.prefixes[map.index()] + extra < self.capacity[map.index()]
    }

    /// Counts a decision refused because `map` is full.
    pub fn refused(&mut self, map: BlockMap) {
        self.refused[map.index()] += 1;
    }

    /// The map's capacity.
    pub fn capacity(&self, map: BlockMap) -> usize {
        self.capacity[map.index()]
    }

    /// Whether a wider prefix's decision enforces more than `d`, the best on its own prefix:
    /// looked up at the lengths the book holds only.
    fn is_shadowed(&self, book: &Book, d: &Decision) -> bool {
        book.wider_lengths(&d.prefix)
            .filter_map(|len| IpNet::new(d.prefix.addr(), len).ok())
            .filter_map(|w| book.effective(&w.trunc()))
            .any(|w| w.enforces_more_than(d))
    }

    /// The kernel entries to put and the prefixes to remove once the decisions of `touched`
    /// prefixes changed in `book` (already changed): theirs, and those of every prefix inside a
    /// touched one, whose shadowing may have changed with it. `touched` is sorted, without
    /// repeats.
    pub fn delta(
        &mut self,
        book: &Book,
        touched: &[IpNet],
        now_ms: u64,
    ) -> (Vec<(IpNet, BlockEntry)>, Vec<IpNet>) {
        debug_assert!(touched.is_sorted(), "touched prefixes come sorted");
        // Most changes touch no prefix with decisions inside it (a bulk load of /32s: a set of
        // a million candidates cost a tenth of a second): `touched` is then the list itself.
        let mut inside: Vec<IpNet> = touched
            .iter()
            .filter(|t| t.prefix_len() < t.max_prefix_len())
            .flat_map(|t| book.inside(t))
            .collect();
        let candidates: &[IpNet] = if inside.is_empty() {
            touched
        } else {
            inside.extend_from_slice(touched);
            inside.sort_unstable();
            inside.dedup();
            &inside
        };
        let (mut puts, mut removes) = (Vec::with_capacity(candidates.len()), Vec::new());
        let now_ns = crate::clock::monotonic_ns();
        book.effective_each(candidates, |q, effective| match effective {
            None => removes.push(q),
            // Out until a resync finds room (see `wants_resync`).
            Some(_) if !self.left_out.is_empty() && self.left_out.contains(&q) => {}
            Some(d) if self.is_shadowed(book, d) => {
                self.shadowed.insert(q);
                removes.push(q);
            }
            Some(d) => {
                if !self.shadowed.is_empty() {
                    self.shadowed.remove(&q);
                }
                puts.push((q, d.kernel_entry(now_ms, now_ns)));
            }
        });
        (puts, removes)
    }

    /// The whole kernel state (a resync): every prefix's entry, the strongest first, within
    /// the maps' capacities.
    pub fn full(&mut self, book: &Book, now_ms: u64) -> Vec<(IpNet, BlockEntry)> {
        self.shadowed.clear();
        self.left_out.clear();
        let mut wanted: Vec<&Decision> = Vec::new();
        for d in book.effective_all() {
            if self.is_shadowed(book, d) {
                self.shadowed.insert(d.prefix);
            } else {
                wanted.push(d);
            }
        }
        wanted.sort_by_key(|d| priority(d));
        let mut used = [0usize; 4];
        let now_ns = crate::clock::monotonic_ns();
        let mut out = Vec::with_capacity(wanted.len());
        for d in wanted {
            let i = BlockMap::of(&d.prefix).index();
            if used[i] < self.capacity[i] {
                used[i] += 1;
                out.push((d.prefix, d.kernel_entry(now_ms, now_ns)));
            } else {
                self.left_out.insert(d.prefix);
            }
        }
        out
    }

    /// Whether a decision left out would now fit (others ended): a resync puts it back.
    pub fn wants_resync(&self) -> bool {
        BlockMap::ALL.iter().any(|m| {
            let i = m.index();
            let left = self
                .left_out
                .iter()
                .filter(|p| BlockMap::of(p) == *m)
                .count();
            left > 0 && self.prefixes[i] - left < self.capacity[i]
        })
    }

    /// Why `prefix`'s decision is not in the kernel, if it is not.
    pub fn not_enforced(&self, prefix: &IpNet) -> Option<&'static str> {
        if self.shadowed.contains(prefix) {
            Some("a wider decision enforces more: the kernel would take this narrower one instead")
        } else if self.left_out.contains(prefix) {
            Some("its map is full (see `status`)")
        } else {
            None
        }
    }

    /// Every block map's fill.
    pub fn fills(&self) -> Vec<MapFill> {
        BlockMap::ALL
            .iter()
            .map(|&m| {
                let i = m.index();
                let in_map =
                    |set: &HashSet<IpNet>| set.iter().filter(|p| BlockMap::of(p) == m).count();
                let (left_out, shadowed) = (in_map(&self.left_out), in_map(&self.shadowed));
                MapFill {
                    map: m,
                    entries: self.prefixes[i] - left_out - shadowed,
                    capacity: self.capacity[i],
                    refused: self.refused[i],
                    left_out,
                    shadowed,
                }
            })
            .collect()
    }
}

/// The order decisions take the kernel's room in when not all fit: manual first, then blocks
/// before challenges, then the longest TTL (permanent first).
fn priority(d: &Decision) -> (bool, bool, std::cmp::Reverse<u64>) {
    (
        d.origin != Origin::Manual,
        d.action != Action::Block,
        std::cmp::Reverse(d.expires_unix_ms.unwrap_or(u64::MAX)),
    )
}
