//! The book's expiry lookahead: the decisions that end soonest, so that a poll finds what
//! expired without reading every decision.
//!
//! Reading every decision each poll cost 20 ms at a million (94 % of an idle daemon's CPU,
//! 2 % of a core) and the same again on the CPU that handles the traffic while it floods. A
//! full index of expiries would cost tens of megabytes at a million; this keeps only the
//! [`SOON`] earliest, and the time before which it holds every expiry. When that time passes,
//! one scan of the book refills it: a scan per [`SOON`] expiries, not one per poll.

use std::collections::BTreeSet;

use ipnet::IpNet;

/// Expiries kept ahead (about 150 KiB).
pub const SOON: usize = 4096;

/// Invariant: `soon` holds `(expiry, prefix)` for every held decision that expires before
/// `horizon`, and nothing for a decision no longer held (holders of one prefix that expire in
/// the same millisecond share an entry). Decisions not in it expire at or after `horizon`, or
/// never.
#[derive(Debug)]
pub struct Due {
    soon: BTreeSet<(u64, IpNet)>,
    horizon: u64,
    keep: usize,
}

impl Default for Due {
    fn default() -> Self {
        Self::keeping(SOON)
    }
}

impl Due {
    /// A lookahead of `keep` expiries (the tests' small ones make it rescan often).
    pub fn keeping(keep: usize) -> Self {
        Self {
            soon: BTreeSet::new(),
            horizon: u64::MAX,
            keep: keep.max(1),
        }
    }

    /// A decision on `prefix` expiring at `expires` is held.
    pub fn added(&mut self, expires: Option<u64>, prefix: IpNet) {
        let Some(e) = expires else { return };
        if e >= self.horizon {
            return;
        }
        self.soon.insert((e, prefix));
        if self.soon.len() > self.keep
            && let Some((last, _)) = self.soon.pop_last()
        {
            // What stays expires no later than what left: the horizon only comes nearer.
            self.horizon = last;
        }
    }

    /// A decision on `prefix` expiring at `expires` is no longer held; `shares` says whether
    /// another holder of the prefix still expires then (their entry stays).
    pub fn removed(&mut self, expires: Option<u64>, prefix: IpNet, shares: bool) {
        if let Some(e) = expires
            && !shares
        {
            self.soon.remove(&(e, prefix));
        }
    }

    /// Whether the lookahead cannot answer for `now_ms`: a decision outside it may have
    /// expired.
    pub fn needs_scan(&self, now_ms: u64) -> bool {
        now_ms >= self.horizon
    }

    /// Starts a refill: every held decision is then offered with [`Due::added`].
    pub fn restart(&mut self) {
        self.soon.clear();
        self.horizon = u64::MAX;
    }

    /// The entries due at `now_ms`, earliest first.
    pub fn due(&self, now_ms: u64) -> impl Iterator<Item = (u64, IpNet)> + '_ {
        self.soon
            .iter()
            .copied()
            .take_while(move |&(e, _)| e <= now_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, time::Duration};

    use ipnet::IpNet;

    use crate::{
        decision::{Decision, Holder, Origin},
        engine::Book,
    };

    /// splitmix64: a fixed sequence, so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % below
        }
    }

    fn key(d: &Decision) -> (IpNet, Holder, Option<u64>) {
        (d.prefix, d.holder(), d.expires_unix_ms)
    }

    /// Random inserts, replacements, removals and polls, against a scan of every decision:
    /// the lookahead (kept tiny, so it overflows and rescans all the time) must find exactly
    /// the expired decisions, whether their ending is committed (removed) or fails (kept).
    #[test]
    fn expired_matches_a_full_scan_through_overflows_rescans_and_failed_commits() {
        for (seed, keep) in [(1, 1), (2, 3), (3, 8), (4, 64)] {
            let mut rng = Rng(seed);
            let mut book = Book::with_lookahead(keep);
            let holders = [
                Holder::of(Origin::Manual),
                Holder::named(Origin::Feed, "a"),
                Holder::named(Origin::Feed, "b"),
            ];
            let mut now = 1_000_000u64;
            for step in 0..20_000 {
                match rng.next(10) {
                    0..=5 => {
                        let prefix: IpNet = format!("192.0.2.{}/32", rng.next(40)).parse().unwrap();
                        let holder = holders[rng.next(3) as usize].clone();
                        // Few distinct expiries, so holders share them; some permanent.
                        let ttl = match rng.next(8) {
                            0 => None,
                            n => Some(Duration::from_millis(n * 500 + rng.next(2) * 7)),
                        };
                        book.insert(Decision::block(prefix, holder, "r", now, ttl));
                    }
                    6 => {
                        let all: Vec<_> = book.iter().map(key).collect();
                        if !all.is_empty() {
                            let (p, h, _) = &all[rng.next(all.len() as u64) as usize];
                            book.remove(p, h).expect("held");
                        }
                    }
                    _ => {
                        now += rng.next(1500);
                        let want: BTreeSet<_> =
                            book.iter().filter(|d| d.expired(now)).map(key).collect();
                        let got: Vec<_> = book.expired(now).into_iter().map(key).collect();
                        let got_set: BTreeSet<_> = got.iter().cloned().collect();
                        assert_eq!(got.len(), got_set.len(), "seed {seed} step {step}: twice");
                        assert_eq!(got_set, want, "seed {seed} step {step}");
                        // One commit in four fails: the decisions stay, and must come back.
                        if rng.next(4) != 0 {
                            for (p, h, _) in &got {
                                book.remove(p, h).expect("held");
                            }
                        }
                    }
                }
            }
        }
    }

    /// A million decisions that do not expire soon cost a poll nothing but the lookahead; when
    /// they all expire at once, one poll returns every one.
    #[test]
    fn a_poll_reads_the_lookahead_and_a_mass_expiry_comes_whole() {
        let mut book = Book::with_lookahead(16);
        let holder = Holder::named(Origin::Feed, "f");
        for i in 0..10_000u32 {
            let prefix = IpNet::from(std::net::IpAddr::from((0x6440_0000 + i).to_be_bytes()));
            let ttl = Duration::from_secs(3600 + u64::from(i % 3));
            book.insert(Decision::block(prefix, holder.clone(), "r", 0, Some(ttl)));
        }
        assert!(book.expired(3_599_999).is_empty());
        assert!(
            !book.due.needs_scan(3_599_999),
            "no rescan before the horizon"
        );
        assert_eq!(book.expired(3_602_000).len(), 10_000);
    }
}
