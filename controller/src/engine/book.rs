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
use crate::decision::{Action, Decision, Holder, Origin};

/// The strongest of a prefix's holders.
pub fn strongest(holders: &[Decision]) -> Option<&Decision> {
    holders
        .iter()
        .reduce(|best, d| if d.stronger_than(best) { d } else { best })
}

/// The book compacts its tree (see [`Book::compact`]) each time it has grown by half since the
/// last compaction, from this many decisions on: a tree filled one insert at a time holds its
/// decisions in nodes two-thirds full, 290 MB at a million instead of 160. Compacting at each
/// half's growth moves each decision three times in all, and keeps the tree within a fifth of
/// its compact size, whether a bulk load or a restart fills it.
pub const COMPACT_FROM: usize = 65_536;

/// Live decisions by prefix; each prefix's holders inline in the tree when there is one (see
/// [`Holders`]).
#[derive(Debug, Default)]
pub struct Book {
    by_prefix: BTreeMap<IpNet, Holders>,
    len: usize,
    /// The size at which the tree is next compacted (0: not yet set).
    compact_at: usize,
    /// Decisions by origin and action, kept as they change: `status` and every `/metrics`
    /// scrape read them under the engine's lock, where a scan of a million decisions would
    /// hold up the poll loop.
    counts: BTreeMap<(Origin, Action), usize>,
    /// The earliest expiries, so a poll's [`Book::expired`] reads a few decisions, not all.
    pub(super) due: Due,
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

    /// Adds a decision, replacing its holder's earlier one on the prefix (returned).
    pub fn insert(&mut self, d: Decision) -> Option<Decision> {
        *self.counts.entry((d.origin, d.action)).or_default() += 1;
        let (prefix, expires) = (d.prefix, d.expires_unix_ms);
        self.due.added(expires, prefix);
        let holders = match self.by_prefix.entry(prefix) {
            Entry::Vacant(v) => {
                v.insert(Holders::One(d));
                self.len += 1;
                if self.len >= self.compact_at.max(COMPACT_FROM) {
                    self.compact();
                }
                return None;
            }
            Entry::Occupied(o) => o.into_mut(),
        };
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
    /// a large batch only: O(n).
    ///
    /// Through `append`, which builds the new tree from the old one's iterator and frees the
    /// old nodes as it goes; `collect` would first gather every entry into one vector (150 MB
    /// more at a million prefixes).
    pub fn compact(&mut self) {
        let mut old = std::mem::take(&mut self.by_prefix);
        if let Some((prefix, holders)) = old.pop_first() {
            self.by_prefix.insert(prefix, holders);
            self.by_prefix.append(&mut old);
        }
        self.compact_at = self.len.max(COMPACT_FROM) / 2 * 3;
    }

    /// Removes a holder's decision on exactly `prefix`.
    pub fn remove(&mut self, prefix: &IpNet, holder: &Holder) -> Option<Decision> {
        let Entry::Occupied(e) = self.by_prefix.entry(*prefix) else {
            return None;
        };
        let at = e.get().as_slice().iter().position(|d| d.held_by(holder))?;
        let (d, rest) = e.remove().remove(at);
        let shares = rest.as_ref().is_some_and(|r| {
            r.as_slice()
                .iter()
                .any(|x| x.expires_unix_ms == d.expires_unix_ms)
        });
        self.due.removed(d.expires_unix_ms, *prefix, shares);
        if let Some(rest) = rest {
            self.by_prefix.insert(*prefix, rest);
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
        self.by_prefix.get(prefix).map_or(&[], Holders::as_slice)
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

    /// What would be enforced for `prefix` once `holder`'s decision was gone.
    pub fn effective_without(&self, prefix: &IpNet, holder: &Holder) -> Option<&Decision> {
        self.holders(prefix)
            .iter()
            .filter(|x| !x.held_by(holder))
            .reduce(|best, d| if d.stronger_than(best) { d } else { best })
    }

    /// Every decision, by prefix.
    pub fn iter(&self) -> impl Iterator<Item = &Decision> {
        self.by_prefix.values().flat_map(Holders::as_slice)
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
        while let Some((p, holders)) = prefixes.next() {
            out.extend(holders.as_slice().iter().filter(|d| keep(d)));
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
            .filter_map(|h| strongest(h.as_slice()))
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

    /// The enforced decisions of the prefixes containing `addr`, most specific first.
    pub fn covering(&self, addr: IpAddr) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = self
            .by_prefix
            .iter()
            .filter(|(p, _)| p.contains(&addr))
            .filter_map(|(_, h)| strongest(h.as_slice()))
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.prefix.prefix_len()));
        out
    }

    /// Every holder's decision on the prefixes containing `addr`, most specific prefix first,
    /// the enforced one first within a prefix.
    pub fn covering_all(&self, addr: IpAddr) -> Vec<&Decision> {
        let mut prefixes: Vec<(&IpNet, &[Decision])> = self
            .by_prefix
            .iter()
            .filter(|(p, _)| p.contains(&addr))
            .map(|(p, h)| (p, h.as_slice()))
            .collect();
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.prefix_len()));
        let mut out = Vec::new();
        for (_, holders) in prefixes {
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
            for d in self.by_prefix.values().flat_map(Holders::as_slice) {
                self.due.added(d.expires_unix_ms, d.prefix);
                if d.expired(now_ms) {
                    out.push(d);
                }
            }
            return out;
        }
        let by_prefix = &self.by_prefix;
        self.due
            .due(now_ms)
            .flat_map(|(e, p)| {
                by_prefix
                    .get(&p)
                    .map_or(&[][..], Holders::as_slice)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decision::Action;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn block(p: &str, holder: Holder, ttl_s: Option<u64>) -> Decision {
        Decision::block(net(p), holder, "r", 0, ttl_s.map(Duration::from_secs))
    }

    #[test]
    fn one_decision_per_holder_and_prefix() {
        let mut b = Book::default();
        let m = Holder::of(Origin::Manual);
        assert!(
            b.insert(block("203.0.113.7/32", m.clone(), Some(60)))
                .is_none()
        );
        let old = b.insert(block("203.0.113.7/32", m.clone(), Some(120)));
        assert_eq!(old.unwrap().expires_unix_ms, Some(60_000));
        assert_eq!(b.len(), 1);
        b.insert(block(
            "203.0.113.7/32",
            Holder::named(Origin::Feed, "a"),
            None,
        ));
        b.insert(block(
            "203.0.113.7/32",
            Holder::named(Origin::Feed, "b"),
            None,
        ));
        assert_eq!(b.len(), 3);
        assert_eq!(b.holders(&net("203.0.113.7/32")).len(), 3);
        assert!(
            b.remove(&net("203.0.113.7/32"), &Holder::named(Origin::Feed, "a"))
                .is_some()
        );
        assert!(
            b.remove(&net("203.0.113.7/32"), &Holder::of(Origin::Feed))
                .is_none()
        );
        assert_eq!(b.len(), 2);
        b.remove(&net("203.0.113.7/32"), &m);
        b.remove(&net("203.0.113.7/32"), &Holder::named(Origin::Feed, "b"));
        assert!(b.is_empty() && !b.contains_prefix(&net("203.0.113.7/32")));
    }

    #[test]
    fn the_enforced_decision_falls_back_when_one_is_lifted() {
        let mut b = Book::default();
        let p = net("198.51.100.0/24");
        let v = Holder::of(Origin::Velocity);
        let m = Holder::of(Origin::Manual);
        b.insert(block("198.51.100.0/24", v.clone(), Some(600)));
        let mut ch = block("198.51.100.0/24", Holder::of(Origin::Ipasis), None);
        ch.action = Action::Challenge;
        b.insert(ch);
        assert_eq!(b.effective(&p).unwrap().origin, Origin::Velocity);
        let manual = block("198.51.100.0/24", m.clone(), Some(3600));
        assert_eq!(b.effective_with(&manual).origin, Origin::Manual);
        b.insert(manual);
        assert_eq!(b.effective(&p).unwrap().origin, Origin::Manual);
        assert_eq!(
            b.effective_without(&p, &m).unwrap().origin,
            Origin::Velocity
        );
        b.remove(&p, &m);
        b.remove(&p, &v);
        assert_eq!(b.effective(&p).unwrap().action, Action::Challenge);
        assert_eq!(b.effective_without(&p, &Holder::of(Origin::Ipasis)), None);
    }

    #[test]
    fn pages_cover_everything_once_and_never_split_a_prefix() {
        let mut b = Book::default();
        for i in 0..10u8 {
            b.insert(block(
                &format!("203.0.113.{i}/32"),
                Holder::of(Origin::Manual),
                None,
            ));
            b.insert(block(
                &format!("203.0.113.{i}/32"),
                Holder::of(Origin::Velocity),
                Some(5),
            ));
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = b.page(after, 3, |_| true);
            assert!(page.len() >= 3 || next.is_none());
            assert_eq!(page.len() % 2, 0, "a prefix's two holders stay together");
            seen.extend(page.iter().map(|d| (d.prefix, d.origin)));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len(), 20);
        seen.dedup();
        assert_eq!(seen.len(), 20);
        let (velocity, _) = b.page(None, usize::MAX, |d| d.origin == Origin::Velocity);
        assert_eq!(velocity.len(), 10);
    }

    #[test]
    fn covering_is_most_specific_first_with_every_holder() {
        let mut b = Book::default();
        b.insert(block("203.0.113.0/24", Holder::of(Origin::Manual), None));
        b.insert(block(
            "203.0.113.7/32",
            Holder::of(Origin::Velocity),
            Some(5),
        ));
        b.insert(block(
            "203.0.113.7/32",
            Holder::of(Origin::Manual),
            Some(50),
        ));
        b.insert(block("198.51.100.0/24", Holder::of(Origin::Manual), None));
        let addr: IpAddr = "203.0.113.7".parse().unwrap();
        let top: Vec<_> = b
            .covering(addr)
            .iter()
            .map(|d| (d.prefix, d.origin))
            .collect();
        assert_eq!(
            top,
            vec![
                (net("203.0.113.7/32"), Origin::Manual),
                (net("203.0.113.0/24"), Origin::Manual)
            ]
        );
        let all: Vec<_> = b.covering_all(addr).iter().map(|d| d.origin).collect();
        assert_eq!(all, vec![Origin::Manual, Origin::Velocity, Origin::Manual]);
        assert_eq!(b.effective_all().count(), 3);
        assert_eq!(b.count_by_origin()[&Origin::Manual], 3);
        assert_eq!(b.expired(5_000).len(), 1);
    }

    #[test]
    fn compacting_keeps_every_holder() {
        let mut b = Book::default();
        for i in 0..300u32 {
            let p = format!("10.{}.{}.0/24", i / 256, i % 256);
            b.insert(block(&p, Holder::of(Origin::Manual), None));
            if i % 7 == 0 {
                b.insert(block(&p, Holder::of(Origin::Velocity), Some(60)));
            }
        }
        let before: Vec<Decision> = b.iter().cloned().collect();
        let counts = b.count_by_origin_action();
        b.compact();
        assert_eq!(b.iter().cloned().collect::<Vec<_>>(), before);
        assert_eq!(b.len(), before.len());
        assert_eq!(b.count_by_origin_action(), counts);
        assert_eq!(b.holders(&net("10.0.7.0/24")).len(), 2);
    }

    /// Filled past the compaction sizes in an order that is not the tree's, the book compacts
    /// on the way (its next size grows) and still finds every decision.
    #[test]
    fn a_growing_book_compacts_itself() {
        let mut b = Book::default();
        let n = COMPACT_FROM as u32 * 2;
        let prefix = |i: u32| {
            let a = 0x0A00_0000u32 | (i.wrapping_mul(2_654_435_761) >> 8);
            IpNet::from(IpAddr::from(a.to_be_bytes()))
        };
        for i in 0..n {
            b.insert(Decision::block(
                prefix(i),
                Holder::of(Origin::Feed),
                "r",
                0,
                None,
            ));
        }
        assert_eq!(b.len(), n as usize);
        assert!(b.compact_at > n as usize, "{}", b.compact_at);
        assert!(
            (0..n)
                .step_by(97)
                .all(|i| b.effective(&prefix(i)).is_some())
        );
        let sorted: Vec<IpNet> = b.iter().map(|d| d.prefix).collect();
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn counts_follow_every_change() {
        let mut b = Book::default();
        let scan = |b: &Book| {
            let mut out = BTreeMap::new();
            for d in b.iter() {
                *out.entry((d.origin, d.action.name())).or_default() += 1;
            }
            out
        };
        b.insert(block("203.0.113.1/32", Holder::of(Origin::Manual), None));
        b.insert(block("203.0.113.2/32", Holder::of(Origin::Manual), None));
        b.insert(block(
            "203.0.113.1/32",
            Holder::of(Origin::Velocity),
            Some(60),
        ));
        // Replaced by a challenge of the same holder: the block's count goes.
        let mut c = block("203.0.113.2/32", Holder::of(Origin::Manual), None);
        c.action = Action::Challenge;
        b.insert(c);
        assert_eq!(b.count_by_origin_action(), scan(&b));
        assert_eq!(b.count_by_origin_action().len(), 3);
        b.remove(&net("203.0.113.1/32"), &Holder::of(Origin::Velocity));
        b.remove(&net("203.0.113.2/32"), &Holder::of(Origin::Manual));
        assert_eq!(b.count_by_origin_action(), scan(&b));
        assert_eq!(b.count_by_origin()[&Origin::Manual], 1);
        assert!(!b.count_by_origin().contains_key(&Origin::Velocity));
    }
}
