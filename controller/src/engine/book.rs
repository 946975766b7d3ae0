//! The decision book: every live decision, by prefix and holder, in memory. Pure bookkeeping
//! (no store, no kernel): the engine writes the store first, then the planes, then the book.
//!
//! Several holders may decide about one prefix; what the data plane enforces is the strongest
//! ([`Decision::stronger_than`]), so lifting one holder's decision falls back to the next.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    net::IpAddr,
};

use ipnet::IpNet;

use super::{due::Due, holders::Holders};

mod batch;
mod lengths;

use crate::decision::{Action, Decision, Holder, Origin};
use lengths::Lengths;

/// The strongest of a prefix's holders.
pub fn strongest(holders: &[Decision]) -> Option<&Decision> {
    holders
        .iter()
        .reduce(|best, d| if d.stronger_than(best) { d } else { best })
}

/// The book compacts its tree (see [`Book::compact`]) each time it has grown by half since the
/// last compaction, from this many decisions on: a tree filled one insert at a time holds its
/// entries in nodes two-thirds full. Compacting at each half's growth moves each entry three
/// times in all, and keeps the tree within a fifth of its compact size, whether a bulk load or
/// a restart fills it. The tree holds slot numbers, not decisions, so those moves are cheap.
pub const COMPACT_FROM: usize = 65_536;

/// [`Book::effective_each`] walks the tree when the list holds at least one prefix in this
/// many of the book's (a walk step costs a few nanoseconds, a lookup a few hundred).
const WALK_FROM: usize = 8;

/// Live decisions by prefix. The tree maps each prefix to a slot of `slots`, where its holders
/// are (inline when there is one, see [`Holders`]).
///
/// Why not the holders in the tree itself: a tree node moves its entries on every insert into
/// it, every split and every compaction, and a decision is 136 bytes. With 4-byte slot numbers
/// in the tree, a million fresh decisions cost one move each into `slots` (a bulk load's book
/// step took 0.75–0.98 s, most of it moving decisions between nodes), and the tree of a million
/// prefixes is about 25 MB.
#[derive(Debug, Default)]
pub struct Book {
    by_prefix: BTreeMap<IpNet, u32>,
    /// Each prefix's holders; `None` for a free slot (listed in `free`).
    slots: Vec<Option<Holders>>,
    free: Vec<u32>,
    len: usize,
    /// The size at which the tree is next compacted (0: not yet set).
    compact_at: usize,
    /// Decisions by origin and action, kept as they change: `status` and every `/metrics`
    /// scrape read them under the engine's lock, where a scan of a million decisions would
    /// hold up the poll loop.
    counts: BTreeMap<(Origin, Action), usize>,
    /// The earliest expiries, so a poll's [`Book::expired`] reads a few decisions, not all.
    pub(super) due: Due,
    /// Prefixes held by length: IPv4's 0–32, then IPv6's 0–128. A covering lookup tries only
    /// the lengths held (an exact lookup each), where a scan of a million prefixes took 27 ms,
    /// once per heavy hitter a poll found; the projection's shadowing check likewise.
    lengths: Lengths,
}

impl Book {
    /// Every decision held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A book whose expiry lookahead keeps `keep` expiries (tests: small, to rescan often).
    #[cfg(test)]
    pub fn with_lookahead(keep: usize) -> Self {
        Self {
            due: Due::keeping(keep),
            ..Self::default()
        }
    }

    /// The holders in slot `at`.
    fn slot(&self, at: u32) -> &Holders {
        held(&self.slots, at)
    }

    /// A slot for a new prefix's holders: a free one, or a new one.
    fn take_slot(slots: &mut Vec<Option<Holders>>, free: &mut Vec<u32>, holders: Holders) -> u32 {
        match free.pop() {
            Some(at) => {
                slots[at as usize] = Some(holders);
                at
            }
            None => {
                let at = u32::try_from(slots.len()).expect("fewer than 2^32 prefixes");
                slots.push(Some(holders));
                at
            }
        }
    }

    /// Adds a decision, replacing its holder's earlier one on the prefix (returned).
    pub fn insert(&mut self, d: Decision) -> Option<Decision> {
        self.insert_noting(d).0
    }

    /// [`Book::insert`], and whether the prefix is new to the book.
    pub fn insert_noting(&mut self, d: Decision) -> (Option<Decision>, bool) {
        let prefix = d.prefix;
        let at = match self.by_prefix.entry(prefix) {
            Entry::Vacant(v) => {
                *self.counts.entry((d.origin, d.action)).or_default() += 1;
                self.due.added(d.expires_unix_ms, prefix);
                v.insert(Self::take_slot(
                    &mut self.slots,
                    &mut self.free,
                    Holders::One(d),
                ));
                self.lengths.add(&prefix);
                self.len += 1;
                if self.len >= self.compact_at.max(COMPACT_FROM) {
                    self.compact();
                }
                return (None, true);
            }
            Entry::Occupied(o) => *o.get(),
        };
        (self.enter_held(at, d), false)
    }

    /// A slot holding `d`, whose prefix is new to the book, for the tree to take later (see
    /// [`batch::Batch`]).
    fn new_prefix(&mut self, d: Decision) -> u32 {
        *self.counts.entry((d.origin, d.action)).or_default() += 1;
        self.due.added(d.expires_unix_ms, d.prefix);
        self.lengths.add(&d.prefix);
        self.len += 1;
        Self::take_slot(&mut self.slots, &mut self.free, Holders::One(d))
    }

    /// Enters `d` in slot `at`, its prefix's: replaces its holder's decision there (returned).
    fn enter_held(&mut self, at: u32, d: Decision) -> Option<Decision> {
        *self.counts.entry((d.origin, d.action)).or_default() += 1;
        let prefix = d.prefix;
        self.due.added(d.expires_unix_ms, prefix);
        let holders = held_mut(&mut self.slots, at);
        let old = match holders
            .as_mut_slice()
            .iter_mut()
            .find(|x| x.origin == d.origin && x.source == d.source)
        {
            Some(slot) => Some(std::mem::replace(slot, d)),
            None => {
                holders.push(d);
                self.len += 1;
                None
            }
        };
        if let Some(o) = &old {
            let shares = holders
                .as_slice()
                .iter()
                .any(|x| x.expires_unix_ms == o.expires_unix_ms);
            self.due.removed(o.expires_unix_ms, prefix, shares);
            self.uncount(o);
        }
        old
    }

    /// Rebuilds the prefix tree with full nodes. Inserted one by one, as a bulk load is, a
    /// B-tree's nodes end half full; rebuilt from its own sorted contents, full. Worth it after
    /// a large batch only: O(n). When most slots are free (a mass expiry), the slots are packed
    /// too, so the memory of decisions long gone is given back.
    ///
    /// Through `append`, which builds the new tree from the old one's iterator and frees the
    /// old nodes as it goes; `collect` would first gather every entry into one vector.
    pub fn compact(&mut self) {
        let mut old = std::mem::take(&mut self.by_prefix);
        if let Some((prefix, at)) = old.pop_first() {
            self.by_prefix.insert(prefix, at);
            self.by_prefix.append(&mut old);
        }
        if self.free.len() > COMPACT_FROM && self.free.len() > self.slots.len() / 2 {
            self.pack();
        }
        self.compact_at = self.len.max(COMPACT_FROM) / 2 * 3;
    }

    /// Moves the held slots to the front, in prefix order, and frees the rest.
    fn pack(&mut self) {
        let mut packed = Vec::with_capacity(self.by_prefix.len());
        for at in self.by_prefix.values_mut() {
            packed.push(self.slots[*at as usize].take());
            *at = u32::try_from(packed.len() - 1).expect("fewer than 2^32 prefixes");
        }
        self.slots = packed;
        self.free = Vec::new();
    }

    /// Removes a holder's decision on exactly `prefix`.
    pub fn remove(&mut self, prefix: &IpNet, holder: &Holder) -> Option<Decision> {
        let Entry::Occupied(e) = self.by_prefix.entry(*prefix) else {
            return None;
        };
        let slot = *e.get();
        let at = held(&self.slots, slot)
            .as_slice()
            .iter()
            .position(|d| d.held_by(holder))?;
        let holders = self.slots[slot as usize].take().expect("held above");
        let (d, rest) = holders.remove(at);
        let shares = rest.as_ref().is_some_and(|r| {
            r.as_slice()
                .iter()
                .any(|x| x.expires_unix_ms == d.expires_unix_ms)
        });
        self.due.removed(d.expires_unix_ms, *prefix, shares);
        match rest {
            Some(rest) => self.slots[slot as usize] = Some(rest),
            None => {
                e.remove();
                self.free.push(slot);
                self.lengths.remove(prefix);
            }
        }
        self.len -= 1;
        self.uncount(&d);
        Some(d)
    }

    fn uncount(&mut self, d: &Decision) {
        if let Entry::Occupied(mut e) = self.counts.entry((d.origin, d.action)) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// A holder's decision on exactly `prefix`.
    pub fn get(&self, prefix: &IpNet, holder: &Holder) -> Option<&Decision> {
        self.holders(prefix).iter().find(|d| d.held_by(holder))
    }

    /// The decision `d`'s holder already has on `d`'s prefix (without building a [`Holder`]:
    /// asked once per proposed decision).
    pub fn same_holder(&self, d: &Decision) -> Option<&Decision> {
        self.holders(&d.prefix)
            .iter()
            .find(|x| x.origin == d.origin && x.source == d.source)
    }

    /// Every holder's decision on exactly `prefix`.
    pub fn holders(&self, prefix: &IpNet) -> &[Decision] {
        self.by_prefix
            .get(prefix)
            .map_or(&[], |&at| self.slot(at).as_slice())
    }

    /// What the data plane enforces for exactly `prefix`.
    pub fn effective(&self, prefix: &IpNet) -> Option<&Decision> {
        strongest(self.holders(prefix))
    }

    /// What would be enforced for `d.prefix` once `d` replaced its holder's decision.
    pub fn effective_with<'a>(&'a self, d: &'a Decision) -> &'a Decision {
        self.holders(&d.prefix)
            .iter()
            .filter(|x| !(x.origin == d.origin && x.source == d.source))
            .fold(d, |best, x| if x.stronger_than(best) { x } else { best })
    }

    /// [`Book::effective`] for each of `prefixes` (sorted, without repeats), in their order. A
    /// batch that is a good part of the book (a bulk load's) walks the tree once beside the
    /// list, where a lookup each cost a million-decision load a tenth of a second.
    pub fn effective_each(
        &self,
        prefixes: &[IpNet],
        mut each: impl FnMut(IpNet, Option<&Decision>),
    ) {
        let (Some(first), Some(last)) = (prefixes.first(), prefixes.last()) else {
            return;
        };
        if prefixes.len() * WALK_FROM < self.by_prefix.len() {
            for &p in prefixes {
                each(p, self.effective(&p));
            }
            return;
        }
        let mut held = self.by_prefix.range(first..=last).peekable();
        for &p in prefixes {
            while held.next_if(|(k, _)| **k < p).is_some() {}
            let found = held.next_if(|(k, _)| **k == p);
            each(
                p,
                found.and_then(|(_, &at)| strongest(self.slot(at).as_slice())),
            );
        }
    }

    /// What would be enforced for `prefix` once `holder`'s decision was gone.
    pub fn effective_without(&self, prefix: &IpNet, holder: &Holder) -> Option<&Decision> {
        self.holders(prefix)
            .iter()
            .filter(|x| !x.held_by(holder))
            .reduce(|best, d| if d.stronger_than(best) { d } else { best })
    }

    /// Every decision, by prefix.
    pub fn iter(&self) -> impl Iterator<Item = &Decision> {
        self.by_prefix
            .values()
            .flat_map(|&at| self.slot(at).as_slice())
    }

    /// A page of decisions: those of the prefixes after `after`, stopping once `limit` is
    /// reached (a prefix's holders are never split); and the cursor of the next page (the last
    /// prefix of this one), `None` when nothing follows.
    pub fn page(
        &self,
        after: Option<IpNet>,
        limit: usize,
        keep: impl Fn(&Decision) -> bool,
    ) -> (Vec<&Decision>, Option<IpNet>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, Excluded);
        let mut out = Vec::new();
        let mut prefixes = self.by_prefix.range((start, Unbounded)).peekable();
        while let Some((p, &at)) = prefixes.next() {
            out.extend(self.slot(at).as_slice().iter().filter(|d| keep(d)));
            if out.len() >= limit && prefixes.peek().is_some() {
                return (out, Some(*p));
            }
        }
        (out, None)
    }

    /// The enforced decision of every prefix.
    pub fn effective_all(&self) -> impl Iterator<Item = &Decision> {
        self.by_prefix
            .values()
            .filter_map(|&at| strongest(self.slot(at).as_slice()))
    }

    /// The prefixes with decisions strictly inside `net`.
    pub fn inside(&self, net: &IpNet) -> impl Iterator<Item = IpNet> + '_ {
        let last = IpNet::new(net.broadcast(), net.max_prefix_len()).expect("the longest length");
        let net = *net;
        self.by_prefix
            .range(net..=last)
            .map(|(p, _)| *p)
            .filter(move |p| p.prefix_len() > net.prefix_len() && net.contains(p))
    }

    /// Whether any decision is on exactly `prefix`.
    pub fn contains_prefix(&self, prefix: &IpNet) -> bool {
        self.by_prefix.contains_key(prefix)
    }

    /// The holders of the prefixes containing `addr`, most specific first: one exact lookup
    /// per prefix length the book holds.
    fn containing(&self, addr: IpAddr) -> impl Iterator<Item = &[Decision]> + '_ {
        let below = if addr.is_ipv6() { 129 } else { 33 };
        self.lengths
            .held_below(addr.is_ipv6(), below)
            .filter_map(move |len| {
                let net = IpNet::new(addr, len).ok()?.trunc();
                self.by_prefix.get(&net).map(|&at| self.slot(at).as_slice())
            })
    }

    /// The lengths of the prefixes held that are wider than `prefix` and of its family.
    pub fn wider_lengths(&self, prefix: &IpNet) -> impl Iterator<Item = u8> + '_ {
        self.lengths
            .held_below(matches!(prefix, IpNet::V6(_)), prefix.prefix_len())
    }

    /// The enforced decisions of the prefixes containing `addr`, most specific first.
    pub fn covering(&self, addr: IpAddr) -> Vec<&Decision> {
        self.containing(addr).filter_map(strongest).collect()
    }

    /// Every holder's decision on the prefixes containing `addr`, most specific prefix first,
    /// the enforced one first within a prefix.
    pub fn covering_all(&self, addr: IpAddr) -> Vec<&Decision> {
        let mut out = Vec::new();
        for holders in self.containing(addr) {
            let top = strongest(holders);
            out.extend(top);
            out.extend(
                holders
                    .iter()
                    .filter(|d| !top.is_some_and(|t| std::ptr::eq(*d, t))),
            );
        }
        out
    }

    /// Decisions expired at `now_ms`: from the expiry lookahead, or by one scan of the book
    /// that refills it when its horizon has passed.
    pub fn expired(&mut self, now_ms: u64) -> Vec<&Decision> {
        if self.due.needs_scan(now_ms) {
            self.due.restart();
            let mut out = Vec::new();
            let slots = &self.slots;
            let all = self.by_prefix.values().map(|&at| held(slots, at));
            for d in all.flat_map(Holders::as_slice) {
                self.due.added(d.expires_unix_ms, d.prefix);
                if d.expired(now_ms) {
                    out.push(d);
                }
            }
            return out;
        }
        let (by_prefix, slots) = (&self.by_prefix, &self.slots);
        self.due
            .due(now_ms)
            .flat_map(|(e, p)| {
                by_prefix
                    .get(&p)
                    .map_or(&[][..], |&at| held(slots, at).as_slice())
                    .iter()
                    .filter(move |d| d.expires_unix_ms == Some(e))
            })
            .collect()
    }

    /// Held decisions by origin and action (every holder counts), for the metrics: kept, not
    /// counted.
    pub fn count_by_origin_action(&self) -> BTreeMap<(Origin, &'static str), usize> {
        self.counts
            .iter()
            .map(|(&(o, a), &n)| ((o, a.name()), n))
            .collect()
    }

    /// Held decisions by origin: kept, not counted.
    pub fn count_by_origin(&self) -> BTreeMap<Origin, usize> {
        let mut out = BTreeMap::new();
        for (&(o, _), &n) in &self.counts {
            *out.entry(o).or_default() += n;
        }
        out
    }
}

/// The holders in slot `at` of `slots`: a slot the tree names is never free. (Free functions
/// over the slots, so they borrow beside an entry of the tree.)
fn held(slots: &[Option<Holders>], at: u32) -> &Holders {
    slots[at as usize]
        .as_ref()
        .expect("the tree names held slots only")
}

fn held_mut(slots: &mut [Option<Holders>], at: u32) -> &mut Holders {
    slots[at as usize]
        .as_mut()
        .expect("the tree names held slots only")
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
