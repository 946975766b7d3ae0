//! The book's tests.
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

/// Removed prefixes free their slots for new ones, and once most slots are free a compaction
/// packs them: the memory of a mass expiry comes back, and every decision is still found.
#[test]
fn freed_slots_are_reused_and_packed() {
    let mut b = Book::default();
    let n = COMPACT_FROM as u32 * 3;
    let prefix = |i: u32| IpNet::from(IpAddr::from((0x0A00_0000u32 + i).to_be_bytes()));
    let holder = Holder::of(Origin::Feed);
    for i in 0..n {
        b.insert(Decision::block(prefix(i), holder.clone(), "r", 0, None));
    }
    let full = b.slots.len();
    for i in 0..100 {
        b.remove(&prefix(i), &holder).expect("held");
    }
    for i in n..n + 100 {
        b.insert(Decision::block(prefix(i), holder.clone(), "r", 0, None));
    }
    assert_eq!(b.slots.len(), full, "new prefixes took the freed slots");
    let keep = |i: u32| i % 10 == 3;
    for i in (100..n + 100).filter(|&i| !keep(i)) {
        b.remove(&prefix(i), &holder).expect("held");
    }
    b.compact();
    let kept: Vec<u32> = (100..n + 100).filter(|&i| keep(i)).collect();
    assert_eq!(b.len(), kept.len());
    assert_eq!(b.slots.len(), kept.len(), "packed");
    assert!(b.free.is_empty());
    assert!(kept.iter().all(|&i| b.holders(&prefix(i)).len() == 1));
    let listed: Vec<IpNet> = b.iter().map(|d| d.prefix).collect();
    assert_eq!(listed, kept.iter().map(|&i| prefix(i)).collect::<Vec<_>>());
    b.insert(Decision::block(prefix(7), holder.clone(), "r", 0, None));
    assert_eq!(b.holders(&prefix(7)).len(), 1);
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

/// The covering lookups (one exact lookup per length held) against a scan of every prefix,
/// through random inserts and removals of IPv4 and IPv6 prefixes of many lengths, holders
/// sharing prefixes, and addresses of both families.
#[test]
fn covering_matches_a_scan_of_every_prefix() {
    let mut next = crate::testing::below(0x2545_F491_4F6C_DD1Du64);
    let holders = [
        Holder::of(Origin::Manual),
        Holder::named(Origin::Feed, "a"),
        Holder::of(Origin::Velocity),
    ];
    let mut b = Book::default();
    let mut held: Vec<(IpNet, Holder)> = Vec::new();
    for step in 0..4000 {
        // Addresses from two small ranges, so that prefixes nest and cover them often.
        let addr = |next: &mut dyn FnMut(u64) -> u64| -> IpAddr {
            if next(2) == 0 {
                IpAddr::from([192, 0, 2, next(8) as u8])
            } else {
                IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, next(8) as u16])
            }
        };
        if next(3) > 0 || held.is_empty() {
            let a = addr(&mut next);
            let max = if a.is_ipv4() { 33 } else { 129 };
            let len = [0, 8, 24, 29, 30, 31, 32, 48, 64, 125, 126, 127, 128][next(13) as usize];
            let len = if len < max { len } else { next(max) } as u8;
            let prefix = IpNet::new(a, len).unwrap().trunc();
            let holder = holders[next(3) as usize].clone();
            let d = Decision::block(prefix, holder.clone(), "r", 0, None);
            if b.insert(d).is_none() {
                held.push((prefix, holder));
            }
        } else {
            let (p, h) = held.swap_remove(next(held.len() as u64) as usize);
            b.remove(&p, &h).expect("held");
        }
        let a = addr(&mut next);
        let mut want: Vec<(&IpNet, &[Decision])> = b
            .by_prefix
            .iter()
            .filter(|(p, _)| p.contains(&a))
            .map(|(p, &at)| (p, b.slot(at).as_slice()))
            .collect();
        want.sort_by_key(|(p, _)| std::cmp::Reverse(p.prefix_len()));
        let strongest_of: Vec<&Decision> = want.iter().filter_map(|(_, h)| strongest(h)).collect();
        assert_eq!(b.covering(a), strongest_of, "step {step}: {a}");
        let all: usize = want.iter().map(|(_, h)| h.len()).sum();
        let got = b.covering_all(a);
        assert_eq!(got.len(), all, "step {step}: {a}");
        assert!(got.iter().all(|d| d.prefix.contains(&a)));
    }
}

/// The walk beside a sorted list and the lookup each give the same answers, for lists of every
/// size against the book (both paths), with prefixes held, absent, before and after all held.
#[test]
fn effective_each_is_effective_for_each() {
    let mut next = crate::testing::below(0xD1B5_4A32_D192_ED03u64);
    let mut b = Book::default();
    let holders = [Holder::of(Origin::Manual), Holder::named(Origin::Feed, "a")];
    let random = |next: &mut dyn FnMut(u64) -> u64| -> IpNet {
        let p = if next(2) == 0 {
            IpNet::new(
                IpAddr::from([192, 0, 2, next(256) as u8]),
                24 + next(9) as u8,
            )
        } else {
            let a = IpAddr::from([0x2001, 0xdb8, 0, 0, next(64) as u16, 0, 0, 0]);
            IpNet::new(a, 60 + next(5) as u8)
        };
        p.unwrap().trunc()
    };
    for _ in 0..600 {
        let p = random(&mut next);
        let holder = holders[next(2) as usize].clone();
        b.insert(Decision::block(p, holder, "r", 0, None));
    }
    for size in [0, 1, 3, 20, 60, 200, 700] {
        let mut list: Vec<IpNet> = (0..size).map(|_| random(&mut next)).collect();
        list.sort();
        list.dedup();
        let mut got = Vec::new();
        b.effective_each(&list, |p, d| got.push((p, d.cloned())));
        let want: Vec<_> = list.iter().map(|p| (*p, b.effective(p).cloned())).collect();
        assert_eq!(got, want, "a list of {size}");
        assert!(size < 60 || got.iter().any(|(_, d)| d.is_some()));
    }
}

/// A batch leaves the book as one insert at a time does, and reports the same for each
/// decision: new prefixes in order (built at once), holders sharing a prefix, renewals, a
/// prefix already held, order broken part way, and a batch too small to wait.
#[test]
fn a_batch_is_inserts_one_at_a_time() {
    let n = COMPACT_FROM as u32 + 1000;
    let v4 = |i: u32| IpNet::from(IpAddr::from((0xC000_0000 + 4 * i).to_be_bytes()));
    let (m, f) = (Holder::of(Origin::Manual), Holder::named(Origin::Feed, "a"));
    let d = |p: IpNet, h: &Holder, ttl: u64| {
        Decision::block(p, h.clone(), "r", 0, Some(Duration::from_secs(ttl)))
    };
    let mut sorted: Vec<Decision> = Vec::new();
    for i in 0..n {
        sorted.push(d(v4(i), &f, 60 + u64::from(i % 7)));
        if i % 5 == 0 {
            sorted.push(d(v4(i), &m, 30));
        }
        if i % 11 == 0 {
            sorted.push(d(v4(i), &f, 90)); // a renewal
        }
    }
    let mut broken = sorted.clone();
    broken.insert(broken.len() / 2, d(v4(7), &m, 45));
    broken.insert(broken.len() / 2 + 1, d(v4(n + 7), &m, 45));
    broken.push(d(v4(3), &f, 5));
    broken.push(d(v4(n + 7), &f, 5));
    broken.push(d(v4(n + 7), &m, 50));
    let mut shuffled = sorted.clone();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..shuffled.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        shuffled.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let before = |b: &mut Book| {
        b.insert(d(v4(10), &m, 20));
        b.insert(d(
            IpNet::new(IpAddr::from([192, 0, 0, 0]), 8).unwrap(),
            &m,
            20,
        ));
    };
    for (name, batch, seed) in [
        ("sorted", sorted.clone(), false),
        ("sorted, into a book", sorted.clone(), true),
        ("broken", broken, true),
        ("shuffled", shuffled.clone(), false),
        ("shuffled, into a book", shuffled, true),
        ("small", sorted[..100].to_vec(), true),
    ] {
        let (mut a, mut b) = (Book::with_lookahead(64), Book::with_lookahead(64));
        if seed {
            before(&mut a);
            before(&mut b);
        }
        let last = batch.iter().map(|x| x.prefix).max().unwrap();
        let one: Vec<_> = batch.iter().map(|x| b.insert_noting(x.clone())).collect();
        let mut all = a.batch(batch.len());
        let got: Vec<_> = batch.into_iter().map(|x| all.insert_noting(x)).collect();
        let built = all.finish();
        assert_eq!(got, one, "{name}");
        assert_eq!(built, name != "small", "{name}");
        assert_eq!(a.len(), b.len(), "{name}");
        assert!(a.iter().eq(b.iter()), "{name}");
        assert_eq!(
            a.count_by_origin_action(),
            b.count_by_origin_action(),
            "{name}"
        );
        let addr = IpAddr::from([192, 0, 0, 40]);
        assert_eq!(a.covering_all(addr), b.covering_all(addr), "{name}");
        let soon = 61_000;
        assert_eq!(a.expired(soon), b.expired(soon), "{name}");
        // The book goes on as before: an insert and a removal after the batch.
        assert_eq!(a.insert_noting(d(v4(n + 1), &m, 9)), (None, true), "{name}");
        assert!(a.remove(&v4(5), &m).is_some(), "{name}");
        assert!(
            a.contains_prefix(&last) && a.contains_prefix(&v4(5)),
            "{name}"
        );
    }
}

/// The lengths held below a length, longest first, against the counts, as prefixes of every
/// length of both families come and go.
#[test]
fn lengths_held_below_follow_the_counts() {
    let mut next = crate::testing::below(0x0123_4567_89AB_CDEFu64);
    let mut l = Lengths::default();
    let mut held: Vec<IpNet> = Vec::new();
    for _ in 0..5000 {
        if next(3) > 0 || held.is_empty() {
            let p = if next(2) == 0 {
                IpNet::new(IpAddr::from([192, 0, 2, 0]), next(33) as u8)
            } else {
                IpNet::new(
                    IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]),
                    next(129) as u8,
                )
            };
            let p = p.unwrap();
            l.add(&p);
            held.push(p);
        } else {
            let p = held.swap_remove(next(held.len() as u64) as usize);
            l.remove(&p);
        }
        for (v6, max) in [(false, 33u8), (true, 129)] {
            let below = next(u64::from(max) + 1) as u8;
            let base = if v6 { 33 } else { 0 };
            let want: Vec<u8> = (0..below)
                .rev()
                .filter(|&len| l.counts[base + usize::from(len)] > 0)
                .collect();
            assert_eq!(
                l.held_below(v6, below).collect::<Vec<_>>(),
                want,
                "{v6} {below}"
            );
        }
    }
}
