//! The store on disk: round trips, reopening, migrations from every older schema.

use ipnet::IpNet;

use super::{
    base::{ALLOW, DECISIONS, DECISIONS_V1, META},
    *,
};
use crate::{
    decision::{Decision, End, Ended, Holder, Origin},
    enrich::Record,
};

#[test]
fn answers_are_cached_per_source_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let src: IpNet = "2001:db8:2::/64".parse().unwrap();
    let a = CachedAnswer {
        record: Some(Record {
            tor: Some(true),
            ..Default::default()
        }),
        fetched_unix_ms: 42,
        host: None,
    };
    Store::open(dir.path())
        .unwrap()
        .put_answer(src, &a)
        .unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.answer(src).unwrap(), Some(a));
    assert_eq!(s.answer("203.0.113.7/32".parse().unwrap()).unwrap(), None);
}

fn decision(p: &str) -> Decision {
    Decision::block(
        p.parse().unwrap(),
        Holder::of(Origin::Velocity),
        "heavy hitter",
        1,
        Some(std::time::Duration::from_millis(1)),
    )
}

#[test]
fn decisions_and_allows_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.migrated(), None);
        let (a, b) = (decision("203.0.113.7/32"), decision("2001:db8:2::/64"));
        s.put_decisions(&[&a, &b]).unwrap();
        s.end_decisions(&[Ended {
            decision: a.clone(),
            end: End::Lifted,
            ended_unix_ms: 5,
        }])
        .unwrap();
        s.put_allow("192.0.2.0/24".parse().unwrap()).unwrap();
        s.put_allow("198.51.100.0/24".parse().unwrap()).unwrap();
        assert!(s.remove_allow("198.51.100.0/24".parse().unwrap()).unwrap());
        assert!(!s.remove_allow("198.51.100.0/24".parse().unwrap()).unwrap());
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.decisions().unwrap(), vec![decision("2001:db8:2::/64")]);
    assert_eq!(
        s.allows().unwrap(),
        vec!["192.0.2.0/24".parse::<IpNet>().unwrap()]
    );
    let h = s.history(None, 10).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].end, &h[0].decision),
        (End::Lifted, &decision("203.0.113.7/32"))
    );
}

#[test]
fn several_holders_of_one_prefix_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let v = decision("203.0.113.7/32");
    let mut m = v.clone();
    (m.origin, m.reason) = (Origin::Manual, "by hand".into());
    let mut f = v.clone();
    (f.origin, f.source) = (Origin::Feed, Some("drop".into()));
    s.put_decisions(&[&v, &m, &f]).unwrap();
    assert_eq!(s.decisions().unwrap().len(), 3);
    s.end_decisions(&[Ended {
        decision: m.clone(),
        end: End::Lifted,
        ended_unix_ms: 9,
    }])
    .unwrap();
    let left = s.decisions().unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&v) && left.contains(&f));
}

#[test]
fn history_is_per_prefix_in_time_order_bounded_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let ended = |p: &str, ms| Ended {
        decision: decision(p),
        end: End::Expired,
        ended_unix_ms: ms,
    };
    // 203.0.113.7/32 and 203.0.113.70/32 share a text prefix: the range must not mix them.
    s.end_decisions(&[
        ended("203.0.113.7/32", 300),
        ended("203.0.113.7/32", 100),
        ended("203.0.113.70/32", 200),
        ended("203.0.113.7/32", 1_000_000),
    ])
    .unwrap();
    let of = |p: &str, limit| {
        s.history(Some(p.parse().unwrap()), limit)
            .unwrap()
            .iter()
            .map(|e| e.ended_unix_ms)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("203.0.113.7/32", 10), vec![100, 300, 1_000_000]);
    assert_eq!(of("203.0.113.7/32", 2), vec![300, 1_000_000], "the newest");
    assert_eq!(of("203.0.113.70/32", 10), vec![200]);
    assert_eq!(s.prune_history(250).unwrap(), 2);
    assert_eq!(of("203.0.113.7/32", 10), vec![300, 1_000_000]);
    assert!(of("203.0.113.70/32", 10).is_empty());
}

/// What the first release left: decisions keyed by prefix alone, no `meta` table.
#[test]
fn a_schema_1_database_is_migrated_once_with_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (decision("203.0.113.7/32"), decision("2001:db8:2::/64"));
    {
        let db = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(DECISIONS_V1).unwrap();
            for d in [&a, &b] {
                let bytes = serde_json::to_vec(d).unwrap();
                t.insert(d.prefix.to_string().as_str(), bytes.as_slice())
                    .unwrap();
            }
            let mut allow = tx.open_table(ALLOW).unwrap();
            allow.insert("192.0.2.0/24", b"1".as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.migrated(), Some(2));
    let mut got = s.decisions().unwrap();
    got.sort_by_key(|d| d.prefix);
    assert_eq!(got, vec![a, b]);
    assert_eq!(s.allows().unwrap().len(), 1);
    drop(s);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(again.migrated(), None, "migrated once");
    assert_eq!(again.decisions().unwrap().len(), 2);
}

/// What schema 3 left: every decision as JSON. Read as it is, beside what schema 4 writes in
/// its binary form, and the file is marked schema 4 (which a schema 3 release refuses).
#[test]
fn a_schema_3_database_keeps_its_json_decisions_beside_new_binary_ones() {
    let dir = tempfile::tempdir().unwrap();
    let old = decision("203.0.113.7/32");
    {
        let db = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(DECISIONS).unwrap();
            let bytes = serde_json::to_vec(&old).unwrap();
            t.insert(
                decision_key(&old.prefix, &old.holder()).as_str(),
                bytes.as_slice(),
            )
            .unwrap();
            tx.open_table(META).unwrap().insert("schema", 3).unwrap();
        }
        tx.commit().unwrap();
    }
    let new = decision("2001:db8:2::/64");
    {
        let s = Store::open(dir.path()).unwrap();
        s.put_decisions(&[&new]).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let mut got = s.decisions().unwrap();
    got.sort_by_key(|d| d.prefix);
    assert_eq!(got, vec![old, new]);
    use redb::{ReadableDatabase as _, ReadableTable as _};
    let tx = s.db.begin_read().unwrap();
    let schema = tx
        .open_table(META)
        .unwrap()
        .get("schema")
        .unwrap()
        .unwrap()
        .value();
    assert_eq!(schema, 4);
    let t = tx.open_table(DECISIONS).unwrap();
    let firsts: Vec<u8> = t.iter().unwrap().map(|i| i.unwrap().1.value()[0]).collect();
    // Keys in order: 2001:db8:2::/64 (new, binary), then 203.0.113.7/32 (old, JSON).
    assert_eq!(
        firsts,
        vec![1, b'{'],
        "the old value as it was, the new one binary"
    );
}

#[test]
fn a_newer_schema_is_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("schema", SCHEMA + 1)
            .unwrap();
        tx.commit().unwrap();
    }
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA + 1));
    assert!(err.to_string().contains("--rebuild-store"), "{err}");
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"definitely not a database").unwrap();
    let err = Store::open(dir.path()).err().expect("must fail");
    assert!(err.to_string().contains("ipwarden.redb"), "{err}");
}

#[test]
fn a_store_in_use_says_by_whom_and_never_suggests_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("the second open is refused");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let said = err.to_string();
    assert!(
        said.contains(&format!("by process {}", std::process::id())),
        "{said}"
    );
    assert!(!said.contains("rebuild"), "{said}");
}

#[test]
fn a_large_write_serialized_alongside_the_inserts_stores_every_decision_under_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    // Above the pipelining threshold, with a chunk left over, in no particular order.
    let n = 3 * 4096 + 77;
    let ds: Vec<Decision> = (0..n as u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i.wrapping_mul(7919) % (1 << 24));
            let mut d = decision(&format!("{a}/32"));
            d.reason = format!("reason {i}").into();
            d
        })
        .collect();
    s.put_decisions(&ds.iter().collect::<Vec<_>>()).unwrap();
    let mut back = s.decisions().unwrap();
    let mut want = ds.clone();
    back.sort_by_key(|d| d.prefix);
    want.sort_by_key(|d| d.prefix);
    want.dedup_by_key(|d| d.prefix);
    assert_eq!(back.len(), want.len());
    assert!(back == want, "a decision came back other than written");
}

#[test]
fn decisions_read_back_share_their_source_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let ds: Vec<Decision> = (1..=20u8)
        .map(|i| {
            Decision::block(
                format!("198.51.100.{i}/32").parse().unwrap(),
                Holder::named(Origin::Feed, "spamhaus"),
                if i % 2 == 0 { "feed block" } else { "listed" },
                1,
                None,
            )
        })
        .collect();
    s.put_decisions(&ds.iter().collect::<Vec<_>>()).unwrap();
    let back = s.decisions().unwrap();
    assert_eq!(back.len(), 20);
    let first = &back[0];
    for d in &back {
        let (a, b) = (d.source.as_ref().unwrap(), first.source.as_ref().unwrap());
        assert!(std::sync::Arc::ptr_eq(a, b), "one source name, shared");
        let same = back
            .iter()
            .find(|x| x.reason == d.reason)
            .expect("itself at least");
        assert!(std::sync::Arc::ptr_eq(&d.reason, &same.reason));
    }
    let reasons: std::collections::HashSet<&str> = back.iter().map(|d| &*d.reason).collect();
    assert_eq!(reasons.len(), 2);
}

/// A /32 in 10.0.0.0/8 per `i`, with its own reason (so a replaced value is seen).
fn numbered(i: u32, reason: &str) -> Decision {
    let mut d = decision(&format!("{}/32", std::net::Ipv4Addr::from(0x0a00_0000 + i)));
    d.reason = format!("{reason} {i}").into();
    d
}

/// The store's decisions, by prefix.
fn stored(s: &Store) -> std::collections::BTreeMap<IpNet, Decision> {
    let back = s.decisions().unwrap();
    let n = back.len();
    let map: std::collections::BTreeMap<IpNet, Decision> =
        back.into_iter().map(|d| (d.prefix, d)).collect();
    assert_eq!(map.len(), n, "one holder per prefix in these tests");
    map
}

#[test]
fn a_write_that_names_a_decision_twice_keeps_the_later_one_as_the_book_does() {
    for n in [3, super::decisions::MERGE_FROM + 5] {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut ds: Vec<Decision> = (0..n as u32).map(|i| numbered(i, "first")).collect();
        // Every third one again, later in the same write, changed.
        ds.extend((0..n as u32).step_by(3).map(|i| numbered(i, "second")));
        s.put_decisions(&ds.iter().collect::<Vec<_>>()).unwrap();
        let back = stored(&s);
        assert_eq!(back.len(), n);
        for i in 0..n as u32 {
            let want = numbered(i, if i % 3 == 0 { "second" } else { "first" });
            assert_eq!(back[&want.prefix], want, "n = {n}, i = {i}");
        }
    }
}

#[test]
fn a_large_write_beside_few_stored_decisions_merges_replacing_equal_keys_and_keeping_the_rest() {
    let puts = super::decisions::MERGE_FROM + 1000;
    let held = puts / 8;
    assert!(super::decisions::merges(puts, held as u64));
    assert!(!super::decisions::merges(puts, held as u64 + 1000));
    assert!(!super::decisions::merges(
        super::decisions::MERGE_FROM - 1,
        0
    ));
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    // Stored first, spread over and around what is put: some equal to a put's key, some
    // between puts, some before the first and after the last, as key text orders them.
    let mut model = std::collections::BTreeMap::new();
    let old: Vec<Decision> = (0..held as u32)
        .map(|i| numbered(i * 37 % 9000 + 1, "old"))
        .collect();
    s.put_decisions(&old.iter().collect::<Vec<_>>()).unwrap();
    model.extend(old.into_iter().map(|d| (d.prefix, d)));
    // One of them ends in the same write as the puts.
    let gone = model.values().nth(5).unwrap().clone();
    let new: Vec<Decision> = (0..puts as u32).map(|i| numbered(i * 2, "new")).collect();
    let ended = Ended {
        decision: gone.clone(),
        end: End::Lifted,
        ended_unix_ms: 9,
    };
    s.write(
        &new.iter().collect::<Vec<_>>(),
        std::slice::from_ref(&ended),
    )
    .unwrap();
    model.remove(&gone.prefix);
    model.extend(new.into_iter().map(|d| (d.prefix, d)));
    let back = stored(&s);
    assert_eq!(back.len(), model.len());
    assert!(back == model, "the merged table differs from the model");
    assert_eq!(s.history(Some(gone.prefix), 10).unwrap(), vec![ended]);
    // Reopened, it reads the same (the cursor's inserts were committed).
    drop(s);
    assert!(stored(&Store::open(dir.path()).unwrap()) == model);
}
