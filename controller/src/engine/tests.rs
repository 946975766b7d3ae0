//! The core's bounds on in-memory enforcers: full maps, precedence across prefix lengths,
//! replacements that fail part-way.

use std::time::Duration;

use ipnet::IpNet;
use tempfile::TempDir;

use super::*;

mod bulk;
use crate::{
    config::Config,
    dataplane::Capacities,
    decision::{Action, ChallengeRate, Decision, Holder, Origin, now_unix_ms},
    store::Store,
};

fn net(s: &str) -> IpNet {
    crate::net::parse_prefix(s).unwrap()
}

struct Core {
    engine: Engine,
    plane: MemoryEnforcer,
    dir: TempDir,
}

/// An engine on one in-memory plane whose LPM tries hold `prefixes` entries each.
fn core(prefixes: u32) -> Core {
    let dir = tempfile::tempdir().unwrap();
    core_in(dir, prefixes, Config::default())
}

fn core_in(dir: TempDir, prefixes: u32, cfg: Config) -> Core {
    let plane = MemoryEnforcer::new();
    plane.state().capacities = Some(Capacities {
        block_net_v4: prefixes,
        block_net_v6: prefixes,
        ..Capacities::unlimited()
    });
    let mut engine = Engine::new(
        cfg,
        Store::open(dir.path()).unwrap(),
        vec![Plane::new(
            "if0",
            AttachKind::Memory,
            Box::new(plane.clone()),
        )],
    );
    engine.restore().unwrap();
    Core { engine, plane, dir }
}

fn block(prefix: &str, origin: Origin, ttl_secs: Option<u64>) -> Decision {
    Decision::block(
        net(prefix),
        Holder::of(origin),
        "test",
        now_unix_ms(),
        ttl_secs.map(Duration::from_secs),
    )
}

fn challenge(prefix: &str, pps: u32) -> Decision {
    Decision::new(
        net(prefix),
        Action::Challenge,
        Holder::of(Origin::Crowdsec),
        "test",
        now_unix_ms(),
        Some(Duration::from_secs(3600)),
    )
    .with_rate(ChallengeRate { pps, burst: 5 })
}

impl Core {
    fn in_kernel(&self, prefix: &str) -> Option<u8> {
        self.plane.state().rules.get(&net(prefix)).map(|e| e.action)
    }
}

#[test]
fn a_full_prefix_map_refuses_what_does_not_fit_and_keeps_everything_else() {
    let mut c = core(4);
    let ranges: Vec<Decision> = (0..6)
        .map(|i| block(&format!("198.51.{i}.0/31"), Origin::Feed, Some(3600)))
        .collect();
    let p = c.engine.propose(ranges).unwrap();
    assert_eq!((p.enacted, p.refused.len()), (4, 2));
    let why = p.refused[0].1.to_string();
    assert!(
        why.contains("BLOCK_NET_V4 is full (4 entries)")
            && why.contains("dataplane.max_block_prefixes"),
        "{why}"
    );
    // Exact entries have their own map; IPv6 prefixes theirs; the allowlist its own.
    c.engine
        .propose_one(block("203.0.113.7", Origin::Manual, None))
        .unwrap();
    c.engine
        .propose_one(block("2001:db8::/48", Origin::Manual, None))
        .unwrap();
    c.engine.allow_add(net("192.0.2.0/24")).unwrap();
    assert!(c.plane.state().allow.contains(&net("192.0.2.0/24")));
    assert_eq!(c.plane.state().rules.len(), 6);
    // An operator's block that does not fit is an error naming the map.
    let err = c
        .engine
        .propose_one(block("203.0.113.0/30", Origin::Manual, None))
        .unwrap_err();
    assert!(matches!(err, EngineError::MapFull { .. }), "{err}");
    let fill = c
        .engine
        .map_fills()
        .into_iter()
        .find(|f| f.map == BlockMap::NetV4)
        .unwrap();
    assert_eq!((fill.entries, fill.capacity, fill.refused), (4, 4, 3));
    // Nothing is out of sync: the plane took every change.
    assert!(!c.engine.planes().any_out_of_sync());
}

#[test]
fn prefixes_held_or_proposed_twice_take_no_more_room() {
    let mut c = core(4);
    // Six decisions, three prefixes: more decisions than the map holds, and all fit.
    let twice: Vec<Decision> = (0..3)
        .flat_map(|i| {
            let p = format!("198.51.{i}.0/31");
            [
                block(&p, Origin::Feed, Some(3600)),
                block(&p, Origin::Manual, None),
            ]
        })
        .collect();
    let p = c.engine.propose(twice).unwrap();
    assert_eq!((p.enacted, p.refused.len()), (6, 0));
    // One more new prefix fits (the fourth entry); a held one renewed beside it takes none.
    let p = c
        .engine
        .propose(vec![
            block("198.51.0.0/31", Origin::Feed, Some(7200)),
            block("198.51.9.0/31", Origin::Feed, Some(3600)),
            block("198.51.9.0/31", Origin::Manual, None),
        ])
        .unwrap();
    assert_eq!((p.enacted, p.refused.len()), (3, 0));
    // The map is full now: a new prefix is refused, a held one still renewed.
    let p = c
        .engine
        .propose(vec![
            block("198.51.1.0/31", Origin::Feed, Some(7200)),
            block("198.51.10.0/31", Origin::Feed, Some(3600)),
        ])
        .unwrap();
    assert_eq!((p.enacted, p.refused.len()), (1, 1));
    assert_eq!(p.refused[0].0.prefix, net("198.51.10.0/31"));
}

#[test]
fn a_store_larger_than_the_maps_starts_and_enforces_the_strongest_first() {
    let c = core(100);
    let mut ds = vec![
        block("198.51.100.0/30", Origin::Feed, Some(60)),
        block("198.51.100.4/30", Origin::Feed, Some(7200)),
        block("198.51.100.8/30", Origin::Manual, Some(60)),
        challenge("198.51.100.12/30", 20),
        block("198.51.100.16/30", Origin::Feed, None),
    ];
    let mut engine = c.engine;
    engine.propose(std::mem::take(&mut ds)).unwrap();
    drop(engine);
    // The maps are smaller now (settings changed): three of five fit.
    let mut c = core_in(c.dir, 3, Config::default());
    let kernel: Vec<IpNet> = c.plane.state().rules.keys().copied().collect();
    assert_eq!(
        kernel,
        vec![
            net("198.51.100.8/30"),  // manual first
            net("198.51.100.16/30"), // then blocks, the longest TTL (permanent) first
            net("198.51.100.4/30"),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert!(
        c.engine
            .warnings()
            .any(|w| w.contains("2 decisions are not enforced: BLOCK_NET_V4 is full")),
        "{:?}",
        c.engine.warnings().collect::<Vec<_>>()
    );
    assert_eq!(
        c.engine.not_enforced(&net("198.51.100.12/30")),
        Some("its map is full (see `status`)")
    );
    // Room again: what was left out comes back at the next upkeep.
    c.engine
        .withdraw(&Holder::of(Origin::Manual), &[net("198.51.100.8/30")])
        .unwrap();
    c.engine.maintain();
    assert!(c.in_kernel("198.51.100.0/30").is_some() || c.in_kernel("198.51.100.12/30").is_some());
    assert_eq!(c.plane.state().rules.len(), 3);
}

#[test]
fn the_strongest_decision_covering_an_address_wins_whatever_the_prefix_lengths() {
    let mut c = core(100);
    c.engine
        .propose(vec![
            block("203.0.113.0/24", Origin::Feed, Some(3600)),
            challenge("203.0.113.10/32", 20),
        ])
        .unwrap();
    // The narrower challenge would let 20 pps through the block: it stays out of the kernel.
    assert_eq!(
        c.in_kernel("203.0.113.0/24"),
        Some(ipwarden_common::Action::BLOCK)
    );
    assert_eq!(c.in_kernel("203.0.113.10/32"), None);
    assert_eq!(
        c.engine
            .enforced_for("203.0.113.10".parse().unwrap())
            .map(|d| d.prefix),
        Some(net("203.0.113.0/24"))
    );
    // A narrower block inside a wider challenge enforces more: both are in.
    c.engine
        .propose(vec![
            challenge("198.51.100.0/24", 50),
            block("198.51.100.7", Origin::Manual, None),
        ])
        .unwrap();
    assert!(c.in_kernel("198.51.100.0/24").is_some());
    assert!(c.in_kernel("198.51.100.7").is_some());
    // A lower challenge rate is stronger: a /25 at 50 pps inside a /24 at 10 stays out...
    c.engine
        .propose(vec![
            challenge("192.0.2.0/24", 10),
            challenge("192.0.2.128/25", 50),
        ])
        .unwrap();
    assert_eq!(c.in_kernel("192.0.2.128/25"), None);
    // ...and when the wider one ends, the narrower comes back.
    c.engine
        .withdraw(&Holder::of(Origin::Crowdsec), &[net("192.0.2.0/24")])
        .unwrap();
    assert_eq!(
        c.in_kernel("192.0.2.128/25"),
        Some(ipwarden_common::Action::CHALLENGE)
    );
    c.engine
        .withdraw(&Holder::of(Origin::Feed), &[net("203.0.113.0/24")])
        .unwrap();
    assert_eq!(
        c.in_kernel("203.0.113.10/32"),
        Some(ipwarden_common::Action::CHALLENGE)
    );
    // A resync computes the same.
    c.engine
        .propose_one(block("203.0.113.0/24", Origin::Feed, Some(3600)))
        .unwrap();
    c.engine.reconfigure(Config::default()).unwrap();
    assert_eq!(c.in_kernel("203.0.113.10/32"), None);
    assert!(c.in_kernel("203.0.113.0/24").is_some());
}

#[test]
fn a_failed_part_aborts_the_replacement_and_holds_the_checkpoint() {
    let mut cfg = Config::default();
    cfg.decisions.max_decisions = 5;
    let mut c = core_in(tempfile::tempdir().unwrap(), 100, cfg);
    let holder = Holder::named(Origin::Feed, "drop");
    let feed = |p: &str| {
        Decision::block(
            net(p),
            holder.clone(),
            "drop",
            now_unix_ms(),
            Some(Duration::from_secs(3600)),
        )
    };
    c.engine
        .apply(SourceEvent::Replace {
            holder: holder.clone(),
            decisions: vec![feed("198.51.100.1"), feed("198.51.100.2")],
        })
        .unwrap();
    c.engine
        .apply(SourceEvent::Checkpoint {
            key: "feed".into(),
            value: 1,
        })
        .unwrap();
    // The next full set arrives in parts; the second part does not fit the decision limit.
    let parts = SourceEvent::Replace {
        holder: holder.clone(),
        decisions: vec![
            feed("198.51.100.2"),
            feed("198.51.100.3"),
            feed("198.51.100.4"),
            feed("198.51.100.5"),
            feed("198.51.100.6"),
            feed("198.51.100.7"),
        ],
    }
    .chunked(2);
    let mut results = Vec::new();
    for p in parts {
        results.push(c.engine.apply(p));
    }
    results.push(c.engine.apply(SourceEvent::Checkpoint {
        key: "feed".into(),
        value: 2,
    }));
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(EngineError::Full { .. })))
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(EngineError::ReplacementAborted { .. })))
    );
    // Nothing still wanted was withdrawn: 198.51.100.1 was not in the new set, but the set
    // is incomplete, so it stays too.
    assert!(c.engine.book().get(&net("198.51.100.1"), &holder).is_some());
    assert!(c.engine.book().get(&net("198.51.100.2"), &holder).is_some());
    // The checkpoint did not move.
    assert_eq!(c.engine.checkpoint("feed").unwrap(), Some(1));
    assert!(
        c.engine
            .warnings()
            .any(|w| w.contains("stays at its last checkpoint"))
    );
}

#[test]
fn remote_sources_may_not_decide_on_whole_swathes_of_the_address_space() {
    let mut c = core(100);
    let peer = |p: &str| {
        Decision::block(
            net(p),
            Holder::named(Origin::Fleet, "edge-b/manual"),
            "peer",
            now_unix_ms(),
            Some(Duration::from_secs(3600)),
        )
    };
    let p = c
        .engine
        .propose(vec![
            peer("0.0.0.0/1"),
            peer("2000::/3"),
            peer("198.51.100.0/24"),
            block("10.0.0.0/7", Origin::Feed, Some(60)),
            block("10.0.0.0/8", Origin::Feed, Some(60)),
            block("2001:db8::/20", Origin::Crowdsec, Some(60)),
        ])
        .unwrap();
    let refused: Vec<String> = p
        .refused
        .iter()
        .map(|(d, _)| d.prefix.to_string())
        .collect();
    assert_eq!(refused, ["0.0.0.0/1", "2000::/3", "10.0.0.0/7"]);
    let why = p.refused[0].1.to_string();
    assert!(
        why.contains("wider than /8") && why.contains("decisions.remote_widest_v4"),
        "{why}"
    );
    assert!(c.in_kernel("0.0.0.0/1").is_none() && c.in_kernel("2000::/3").is_none());
    // Counted by origin and why; an operator's own block is not bounded this way.
    let counts: Vec<(Origin, &str, u64)> = c.engine.refusals().collect();
    assert_eq!(
        counts,
        [
            (Origin::Feed, "too_wide", 1),
            (Origin::Fleet, "too_wide", 2)
        ]
    );
    c.engine
        .propose_one(block("10.0.0.0/7", Origin::Manual, Some(60)))
        .unwrap();
}

#[test]
fn rates_the_kernel_cannot_express_are_refused_for_every_origin() {
    let mut c = core(100);
    for (pps, burst) in [(0, 5), (ChallengeRate::MAX_PPS + 1, 5), (10, 0)] {
        let mut d = challenge("198.51.100.0/24", 10);
        d.rate = Some(ChallengeRate { pps, burst });
        let err = c.engine.propose_one(d).unwrap_err();
        assert!(matches!(err, EngineError::BadRate { .. }), "{err}");
    }
    let mut d = challenge("198.51.100.0/24", 10);
    d.rate = Some(ChallengeRate {
        pps: ChallengeRate::MAX_PPS,
        burst: 1,
    });
    c.engine.propose_one(d).unwrap();
}

#[test]
fn one_fleet_peer_cannot_fill_the_table_for_the_others() {
    let mut cfg = Config::default();
    cfg.decisions.max_decisions = 40;
    cfg.fleet = Some(crate::config::FleetConfig {
        max_share: 0.25,
        ..Default::default()
    });
    let mut c = core_in(tempfile::tempdir().unwrap(), 100, cfg);
    let peer = |host: &str, i: u8| {
        Decision::block(
            net(&format!("198.51.100.{i}")),
            Holder::named(Origin::Fleet, format!("{host}/velocity")),
            "peer",
            now_unix_ms(),
            Some(Duration::from_secs(3600)),
        )
    };
    let p = c
        .engine
        .propose((0..15).map(|i| peer("edge-b", i)).collect())
        .unwrap();
    assert_eq!((p.enacted, p.refused.len()), (10, 5));
    assert!(p.refused[0].1.to_string().contains("fleet.max_share"));
    // Another peer has its own share; renewing what is held needs none.
    let p = c
        .engine
        .propose((20..25).map(|i| peer("edge-c", i)).collect())
        .unwrap();
    assert_eq!(p.enacted, 5);
    let p = c
        .engine
        .propose((0..10).map(|i| peer("edge-b", i)).collect())
        .unwrap();
    assert_eq!((p.enacted, p.refused.len()), (10, 0));
    // A withdrawal frees the peer's room.
    c.engine
        .withdraw(
            &Holder::named(Origin::Fleet, "edge-b/velocity"),
            &[net("198.51.100.0")],
        )
        .unwrap();
    c.engine.propose_one(peer("edge-b", 14)).unwrap();
}

#[test]
fn a_pass_lifts_a_wider_challenge_in_the_kernel_but_never_a_block() {
    let mut c = core(100);
    let pass = |prefix: &str| {
        Decision::new(
            net(prefix),
            Action::Pass,
            Holder::of(Origin::ChallengePass),
            "solved a challenge",
            now_unix_ms(),
            Some(Duration::from_secs(600)),
        )
    };
    c.engine
        .propose(vec![challenge("203.0.113.0/24", 50), pass("203.0.113.7")])
        .unwrap();
    assert_eq!(
        c.in_kernel("203.0.113.7/32"),
        Some(ipwarden_common::Action::PASS)
    );
    assert_eq!(
        c.in_kernel("203.0.113.0/24"),
        Some(ipwarden_common::Action::CHALLENGE)
    );
    // A challenge of the same source: the pass still takes precedence while it lasts.
    c.engine
        .propose_one(challenge("203.0.113.7/32", 10))
        .unwrap();
    assert_eq!(
        c.in_kernel("203.0.113.7/32"),
        Some(ipwarden_common::Action::PASS)
    );
    // A block of its network: the pass is shadowed, the block enforced.
    c.engine
        .propose_one(block("203.0.113.0/24", Origin::Manual, None))
        .unwrap();
    assert_eq!(c.in_kernel("203.0.113.7/32"), None);
    assert_eq!(
        c.in_kernel("203.0.113.0/24"),
        Some(ipwarden_common::Action::BLOCK)
    );
    // A block of exactly the source outranks the pass on its own prefix.
    c.engine
        .propose(vec![
            pass("198.51.100.9"),
            block("198.51.100.9", Origin::Velocity, Some(60)),
        ])
        .unwrap();
    assert_eq!(
        c.in_kernel("198.51.100.9/32"),
        Some(ipwarden_common::Action::BLOCK)
    );
}

#[test]
fn hits_are_credited_to_the_decision_the_kernel_enforces_on_each_source() {
    let mut c = core(100);
    c.engine
        .propose(vec![
            block("203.0.113.0/24", Origin::Feed, Some(3600)),
            // Shadowed by the wider block: its source's drops are the /24's.
            challenge("203.0.113.10/32", 20),
            block("198.51.100.7", Origin::Manual, None),
            challenge("192.0.2.0/24", 10),
            block("2001:db8:1::/48", Origin::Manual, None),
        ])
        .unwrap();
    c.plane.state().hits = vec![
        (net("203.0.113.10/32"), 640),
        (net("203.0.113.11/32"), 128),
        (net("198.51.100.7/32"), 64),
        (net("192.0.2.9/32"), 192),
        (net("2001:db8:1:2::/64"), 256),
        // No decision covers it any more: its drops belong to one that ended.
        (net("198.51.100.8/32"), 64),
    ];
    // Two planes would add up; here one.
    let by_source = c.engine.planes().hits();
    assert_eq!(by_source.len(), 6);
    let hits = c.engine.hits_by_decision(by_source.clone());
    let expect: std::collections::BTreeMap<IpNet, u64> = [
        ("203.0.113.0/24", 768),
        ("198.51.100.7/32", 64),
        ("192.0.2.0/24", 192),
        ("2001:db8:1::/48", 256),
    ]
    .into_iter()
    .map(|(p, n)| (net(p), n))
    .collect();
    assert_eq!(hits, expect);
    // When the /24 ends, the challenge under it is enforced again and takes its source's hits.
    c.engine
        .withdraw(&Holder::of(Origin::Feed), &[net("203.0.113.0/24")])
        .unwrap();
    let hits = c.engine.hits_by_decision(by_source);
    assert_eq!(hits.get(&net("203.0.113.10/32")), Some(&640));
    assert_eq!(hits.get(&net("203.0.113.0/24")), None);
}

/// A restart reads a store larger than a batch's threshold (so the book takes it as one
/// batch, in the store's text order of keys) back into the same book and the same kernel
/// entries, with the prefix maps' fill counted once per prefix.
#[test]
fn a_restart_restores_a_large_store_as_it_was() {
    let mut c = core(100);
    let mut ds: Vec<Decision> = (0..70_000u32)
        .map(|i| {
            let p = IpNet::from(std::net::IpAddr::from(
                (0x6440_0000u32 + i * 3).to_be_bytes(),
            ));
            Decision::block(p, Holder::of(Origin::Feed), "f", now_unix_ms(), None)
        })
        .collect();
    ds.extend((0..50).map(|i| block(&format!("198.51.{i}.0/31"), Origin::Manual, Some(3600))));
    ds.extend((0..30).map(|i| block(&format!("100.64.{i}.9/32"), Origin::Manual, Some(600))));
    let p = c.engine.propose(ds).unwrap();
    assert_eq!((p.enacted, p.refused.len()), (70_080, 0));
    let fills = c.engine.map_fills();
    let Core { engine, plane, dir } = c;
    let before: Vec<Decision> = engine.book().iter().cloned().collect();
    drop(engine);
    let c = core_in(dir, 100, Config::default());
    assert!(c.engine.book().iter().eq(before.iter()));
    assert_eq!(c.engine.map_fills(), fills);
    let keys = |p: &MemoryEnforcer| p.state().rules.keys().copied().collect::<Vec<_>>();
    assert_eq!(keys(&c.plane), keys(&plane));
    // 70 000 feed /32s (ten of the manual /32s among them) and 50 /31s, 20 manual /32s.
    assert_eq!(keys(&c.plane).len(), 70_070);
}
