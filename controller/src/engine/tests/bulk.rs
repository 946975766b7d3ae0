//! A large commit (`bulk`): the store writes beside the book and the planes. It must end as the
//! ordinary path does, and a write the store refuses must leave everything as it was.

use std::sync::atomic::Ordering;

use super::*;
use crate::{decision::Ended, engine::state::BULK_FROM};

/// `n` feed blocks over distinct /32s and /64s, plus the first `renewed` of `earlier`'s
/// prefixes renewed by the same holder (a second fetch of the feed).
fn feed(n: usize, earlier: &[Decision], renewed: usize) -> Vec<Decision> {
    let mut out: Vec<Decision> = (0..n)
        .map(|i| {
            let p = if i % 2 == 0 {
                IpNet::from(std::net::IpAddr::from(
                    0x6440_0000u32.wrapping_add(i as u32).to_be_bytes(),
                ))
            } else {
                let v6 = 0x2001_0db8_0000_0000u128 << 64 | ((i as u128) << 64);
                IpNet::new(std::net::IpAddr::from(v6.to_be_bytes()), 64).unwrap()
            };
            Decision::block(
                p,
                Holder::named(Origin::Feed, "f"),
                "feed block",
                now_unix_ms(),
                None,
            )
        })
        .collect();
    out.extend(earlier.iter().take(renewed).map(|d| {
        let mut d = d.clone();
        d.reason = "renewed".into();
        d
    }));
    out
}

/// What an engine holds, to compare: the book (each decision's prefix, holder and reason: a
/// feed's expiry is set from the time it is enacted), the plane's rules, the map fills, the
/// store's count.
type Held = (
    Vec<(IpNet, Holder, String)>,
    Vec<(IpNet, u8)>,
    Vec<(usize, usize)>,
    usize,
);

fn held(c: &Core) -> Held {
    let mut book: Vec<_> = c
        .engine
        .book
        .iter()
        .map(|d| (d.prefix, d.holder(), d.reason.to_string()))
        .collect();
    book.sort();
    let rules = c
        .plane
        .state()
        .rules
        .iter()
        .map(|(p, e)| (*p, e.action))
        .collect();
    let fills = c
        .engine
        .map_fills()
        .iter()
        .map(|f| (f.entries, f.left_out))
        .collect();
    (
        book,
        rules,
        fills,
        c.engine.store.decisions().unwrap().len(),
    )
}

fn earlier() -> Vec<Decision> {
    let mut v: Vec<Decision> = (0..40)
        .map(|i| {
            let mut d = block(&format!("198.51.100.{i}"), Origin::Feed, Some(3600));
            d.source = Some("f".into());
            d
        })
        .collect();
    v.push(block("203.0.113.0/24", Origin::Manual, None));
    v.push(block("100.64.0.2", Origin::Velocity, Some(60)));
    v
}

fn bulk_core() -> Core {
    let mut cfg = Config::default();
    cfg.decisions.max_decisions = 10_000;
    let mut c = core_in(tempfile::tempdir().unwrap(), 1000, cfg);
    c.engine.propose(earlier()).unwrap();
    c
}

#[test]
fn a_bulk_commit_ends_as_the_ordinary_path_does() {
    let n = 3 * BULK_FROM + 100;
    let mut bulk = bulk_core();
    let mut ordinary = bulk_core();
    let put = feed(n, &earlier(), 20);
    // The same decisions, in commits below the bulk path's size.
    for chunk in put.chunks(BULK_FROM / 2) {
        ordinary.engine.propose(chunk.to_vec()).unwrap();
    }
    let p = bulk.engine.propose(put).unwrap();
    assert_eq!((p.enacted, p.refused.len()), (n + 20, 0));
    let (b, o) = (held(&bulk), held(&ordinary));
    assert_eq!(
        b.0.len(),
        n + 42,
        "every decision in the book, the renewed ones once"
    );
    assert_eq!(b.0.iter().filter(|d| d.2 == "renewed").count(), 20);
    assert!(b == o, "the bulk path and the ordinary one differ");
    // A restart reads back what the book holds.
    let book: Vec<Decision> = bulk.engine.book.iter().cloned().collect();
    drop(bulk.engine);
    let again = Store::open(bulk.dir.path()).unwrap();
    let mut stored = again.decisions().unwrap();
    let key = |d: &Decision| (d.prefix, d.holder());
    stored.sort_by_key(key);
    let mut book = book;
    book.sort_by_key(key);
    assert!(stored == book, "the store holds what the book holds");
}

#[test]
fn a_bulk_commit_the_store_refuses_leaves_everything_as_it_was() {
    let mut c = bulk_core();
    let before = held(&c);
    let ended_before = c.engine.ended.len();
    c.engine.store.fail_writes.store(true, Ordering::Relaxed);
    // New prefixes, renewals of the feed's own, and an ended decision in one change.
    let put = feed(BULK_FROM + 10, &earlier(), 30);
    let gone = Ended {
        decision: c
            .engine
            .book
            .get(&net("100.64.0.2/32"), &Holder::of(Origin::Velocity))
            .unwrap()
            .clone(),
        end: crate::decision::End::Lifted,
        ended_unix_ms: now_unix_ms(),
    };
    let err = c.engine.commit(put.clone(), vec![gone]).unwrap_err();
    assert!(matches!(err, EngineError::Store(_)), "{err}");
    assert!(held(&c) == before, "book, maps, fills and store as before");
    assert_eq!(c.engine.ended.len(), ended_before);
    assert_eq!(
        c.in_kernel("100.64.0.2/32"),
        Some(ipwarden_common::Action::BLOCK)
    );
    // Once the store takes writes again, the same change goes through whole.
    c.engine.store.fail_writes.store(false, Ordering::Relaxed);
    let p = c.engine.propose(put).unwrap();
    assert_eq!(p.enacted, BULK_FROM + 40);
    assert_eq!(held(&c).0.len(), BULK_FROM + 10 + 42);
}
