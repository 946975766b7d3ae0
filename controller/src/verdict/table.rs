//! What the verdict endpoint knows of the engine's state: every live decision (its action,
//! holder and score) and the allowlist, kept by the engine through a [`Sink`] after each
//! committed change. Answers read it under a read lock and never wait for the engine, whose
//! lock a poll can hold for a long time under a flood.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, RwLock},
};

use ipnet::IpNet;

use crate::{
    decision::{Action, Decision, Ended, Factor, Origin},
    engine::Sink,
};

/// One holder's decision on a prefix, as much as a verdict needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub prefix: IpNet,
    pub action: Action,
    pub origin: Origin,
    pub source: Option<crate::decision::Text>,
    pub expires_unix_ms: Option<u64>,
    pub score: Option<i32>,
    pub factors: Vec<Factor>,
}

impl Held {
    fn of(d: &Decision) -> Self {
        Self {
            prefix: d.prefix,
            action: d.action,
            origin: d.origin,
            source: d.source.clone(),
            expires_unix_ms: d.expires_unix_ms,
            score: d.score,
            factors: d.factors.to_vec(),
        }
    }

    fn live(&self, now_ms: u64) -> bool {
        self.expires_unix_ms.is_none_or(|e| now_ms < e)
    }
}

/// What covers an address.
#[derive(Clone, Debug, PartialEq)]
pub enum Covered {
    /// An allowlist entry: nothing else applies (as in the kernel).
    Allowed(IpNet),
    /// The decision that takes precedence: a block over a challenge, of any covering prefix
    /// (the kernel's projection enforces the same). Passes are not counted: they lift the
    /// kernel's rate limit, while at L7 only the pass cookie, bound to the client who solved
    /// the challenge, lets a challenged client through (an address can be shared).
    Decided(Held),
    Nothing,
}

#[derive(Default)]
struct Inner {
    decisions: HashMap<IpNet, Vec<Held>>,
    /// Prefix lengths in use, by family (`true`: IPv6), with their prefix counts: a lookup
    /// tries only these.
    lengths: BTreeMap<(bool, u8), usize>,
    allow: Vec<IpNet>,
}

/// The decisions and allowlist, shared between the engine (writer) and the endpoint (readers).
#[derive(Clone, Default)]
pub struct Table {
    inner: Arc<RwLock<Inner>>,
}

impl Table {
    /// Starts from the engine's whole current state.
    pub fn seeded<'a>(decisions: impl Iterator<Item = &'a Decision>, allow: Vec<IpNet>) -> Self {
        let t = Self::default();
        {
            let mut inner = t.write();
            for d in decisions {
                inner.put(d);
            }
            inner.allow = allow;
        }
        t
    }

    /// The engine's side: a sink that keeps this table.
    pub fn sink(&self) -> Box<dyn Sink> {
        Box::new(TableSink(self.clone()))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// What covers `addr` at `now_ms`.
    pub fn covering(&self, addr: IpAddr, now_ms: u64) -> Covered {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = inner.allow.iter().find(|n| n.contains(&addr)) {
            return Covered::Allowed(*a);
        }
        let v6 = addr.is_ipv6();
        let mut best: Option<&Held> = None;
        for (&(_, len), _) in inner.lengths.range((v6, 0)..=(v6, 128)) {
            let Ok(net) = IpNet::new(addr, len) else {
                continue;
            };
            let Some(held) = inner.decisions.get(&net.trunc()) else {
                continue;
            };
            for h in held
                .iter()
                .filter(|h| h.live(now_ms) && h.action != Action::Pass)
            {
                if best.is_none_or(|b| h.action > b.action) {
                    best = Some(h);
                }
            }
        }
        best.map_or(Covered::Nothing, |h| Covered::Decided(h.clone()))
    }

    /// Decisions held, for `status`.
    pub fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.decisions.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn put(&mut self, d: &Decision) {
        let held = self.decisions.entry(d.prefix).or_default();
        if held.is_empty() {
            *self
                .lengths
                .entry((d.prefix.addr().is_ipv6(), d.prefix.prefix_len()))
                .or_default() += 1;
        }
        match held
            .iter_mut()
            .find(|h| h.origin == d.origin && h.source == d.source)
        {
            Some(h) => *h = Held::of(d),
            None => held.push(Held::of(d)),
        }
    }

    fn end(&mut self, d: &Decision) {
        let Some(held) = self.decisions.get_mut(&d.prefix) else {
            return;
        };
        held.retain(|h| !(h.origin == d.origin && h.source == d.source));
        if held.is_empty() {
            self.decisions.remove(&d.prefix);
            let key = (d.prefix.addr().is_ipv6(), d.prefix.prefix_len());
            if let Some(n) = self.lengths.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.lengths.remove(&key);
                }
            }
        }
    }
}

struct TableSink(Table);

impl Sink for TableSink {
    fn changed(&mut self, put: &[&Decision], ended: &[Ended]) {
        let mut inner = self.0.write();
        for e in ended {
            inner.end(&e.decision);
        }
        for d in put {
            inner.put(d);
        }
    }

    fn allowlist(&mut self, entries: &[IpNet]) {
        self.0.write().allow = entries.to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{End, Holder};

    fn d(prefix: &str, action: Action, origin: Origin, ttl_s: Option<u64>) -> Decision {
        Decision::new(
            prefix.parse().unwrap(),
            action,
            Holder::of(origin),
            "t",
            1_000,
            ttl_s.map(std::time::Duration::from_secs),
        )
    }

    fn action(t: &Table, addr: &str, now: u64) -> Option<Action> {
        match t.covering(addr.parse().unwrap(), now) {
            Covered::Decided(h) => Some(h.action),
            _ => None,
        }
    }

    #[test]
    fn a_block_outranks_a_challenge_at_any_length_and_passes_do_not_count() {
        let ch = d("203.0.113.0/24", Action::Challenge, Origin::Ipasis, None);
        let pass = d(
            "203.0.113.7/32",
            Action::Pass,
            Origin::ChallengePass,
            Some(60),
        );
        let t = Table::seeded([&ch, &pass].into_iter(), vec![]);
        assert_eq!(action(&t, "203.0.113.7", 2_000), Some(Action::Challenge));
        assert_eq!(action(&t, "198.51.100.1", 2_000), None);
        let mut sink = t.sink();
        let block = d("203.0.0.0/16", Action::Block, Origin::Manual, None);
        sink.changed(&[&block], &[]);
        assert_eq!(action(&t, "203.0.113.7", 2_000), Some(Action::Block));
        sink.changed(
            &[],
            &[Ended {
                decision: block,
                end: End::Lifted,
                ended_unix_ms: 3_000,
            }],
        );
        assert_eq!(action(&t, "203.0.113.7", 3_000), Some(Action::Challenge));
        assert_eq!(t.len(), 2);
        assert_eq!(action(&t, "2001:db8::1", 3_000), None);
    }

    #[test]
    fn the_allowlist_beats_every_decision() {
        let block = d("2001:db8::/48", Action::Block, Origin::Feed, None);
        let t = Table::seeded(std::iter::once(&block), vec![]);
        assert_eq!(action(&t, "2001:db8::1", 2_000), Some(Action::Block));
        t.sink().allowlist(&["2001:db8::/64".parse().unwrap()]);
        assert!(matches!(
            t.covering("2001:db8::1".parse().unwrap(), 2_000),
            Covered::Allowed(_)
        ));
        assert_eq!(action(&t, "2001:db8:0:1::1", 2_000), Some(Action::Block));
    }

    #[test]
    fn holders_end_separately() {
        let a = d("198.51.100.0/24", Action::Block, Origin::Feed, None);
        let b = d("198.51.100.0/24", Action::Challenge, Origin::Ipasis, None);
        let t = Table::seeded([&a, &b].into_iter(), vec![]);
        t.sink().changed(
            &[],
            &[Ended {
                decision: a,
                end: End::Lifted,
                ended_unix_ms: 3_000,
            }],
        );
        assert_eq!(action(&t, "198.51.100.9", 3_000), Some(Action::Challenge));
    }
}
