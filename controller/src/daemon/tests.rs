//! The engine on in-memory enforcers: every control request, precedence across origins, TTL and
//! recidive arithmetic, partial interface failure and resync, allowlist refusals. No root.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use ipwarden_common::{GlobalCounter, Reason};
use tempfile::TempDir;

use super::{handlers, state::State};
use crate::{
    allowlist::AllowOrigin,
    config::Config,
    decision::{Action, Decision, End, Holder, Origin, now_unix_ms},
    detect::Snapshot,
    engine::{AttachKind, Enforcer as _, Engine, EngineError, MemoryEnforcer, Plane, SourceEvent},
    enrich::{Record, pipeline::Enriched, queue::Candidate},
    net::host_prefix,
    store::Store,
    wire::{Request, Response},
};

const S: u64 = 1_000_000_000;

/// A prefix, or a bare address as the CLI reads it (IPv4 /32, IPv6 /64).
fn net(s: &str) -> IpNet {
    crate::net::parse_prefix(s).unwrap()
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.allow.prefixes = vec![net("192.0.2.0/24")];
    cfg.detection.pps_threshold = 1000;
    cfg.detection.hard_ttl = Duration::from_secs(600);
    cfg
}

struct Fixture {
    state: State,
    planes: Vec<MemoryEnforcer>,
    dir: TempDir,
}

impl Fixture {
    fn with(cfg: Config, n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let planes: Vec<MemoryEnforcer> = (0..n).map(|_| MemoryEnforcer::new()).collect();
        let store = Store::open(dir.path()).unwrap();
        let state = State::new(
            cfg,
            None,
            store,
            planes
                .iter()
                .enumerate()
                .map(|(i, m)| Plane::new(format!("if{i}"), AttachKind::Memory, Box::new(m.clone())))
                .collect(),
        );
        let mut f = Self { state, planes, dir };
        f.state.engine.restore().unwrap();
        f
    }

    fn new() -> Self {
        Self::with(config(), 1)
    }

    fn ok(&mut self, request: Request) -> Response {
        match handlers::handle(&mut self.state, request) {
            Response::Error { message, .. } => panic!("unexpected error: {message}"),
            r => r,
        }
    }

    fn err(&mut self, request: Request) -> String {
        match handlers::handle(&mut self.state, request) {
            Response::Error { message, .. } => message,
            r => panic!("expected an error, got {r:?}"),
        }
    }

    /// The kernel entry of `prefix` on plane `i`: (action, reason code).
    fn entry(&self, i: usize, prefix: &str) -> Option<(u8, u32)> {
        self.planes[i]
            .state()
            .rules
            .get(&net(prefix))
            .map(|e| (e.action, e.reason))
    }

    /// Stops the engine and reopens the store it left.
    fn reopened_store(self) -> (Store, TempDir) {
        let Self { state, dir, .. } = self;
        drop(state);
        (Store::open(dir.path()).unwrap(), dir)
    }
}

fn block(prefix: &str) -> Request {
    Request::Block {
        prefix: net(prefix),
        ttl_secs: Some(3600),
        permanent: false,
        replace: false,
        reason: Some("by hand".into()),
        origin: None,
        source: None,
        challenge_pps: None,
        challenge_burst: None,
    }
}

fn feed_block(prefix: &str, name: &str, ttl_secs: u64) -> Request {
    Request::Block {
        prefix: net(prefix),
        ttl_secs: Some(ttl_secs),
        permanent: false,
        replace: false,
        reason: None,
        origin: Some(Origin::Feed),
        source: Some(name.into()),
        challenge_pps: None,
        challenge_burst: None,
    }
}

fn unblock(prefix: &str, origin: Option<Origin>, all: bool) -> Request {
    Request::Unblock {
        prefix: net(prefix),
        origin,
        source: None,
        all_origins: all,
    }
}

/// This host's own answer (no fleet peer) for a queued candidate.
fn own_answer(
    source: IpNet,
    addr: IpAddr,
    pps: f64,
    result: Result<Record, crate::enrich::EnrichError>,
) -> Enriched {
    Enriched {
        candidate: Candidate { source, addr, pps },
        result,
        peer: None,
    }
}

fn velocity(prefix: &str, ttl: Duration) -> Decision {
    Decision::block(
        net(prefix),
        Holder::of(Origin::Velocity),
        "heavy hitter",
        now_unix_ms(),
        Some(ttl),
    )
}

/// Snapshots of one source sending `pps` from t = 100 s, `secs` polls of one second.
fn flood(f: &mut Fixture, addr: &str, pps: u64, secs: u64) {
    let a: IpAddr = addr.parse().unwrap();
    for i in 1..=secs {
        let snap = Snapshot {
            packets: pps * i,
            bytes: pps * i * 100,
            syn: 0,
            first_seen_ns: 100 * S,
            addr: a,
        };
        f.state.tick(
            (100 + i) * S,
            vec![(host_prefix(a), snap).into()],
            Duration::ZERO,
        );
    }
}

// --- control requests ---------------------------------------------------------------------

#[test]
fn one_polls_ten_thousand_decisions_cost_one_write_transaction() {
    let mut f = Fixture::new();
    let sources: Vec<crate::detect::Reading> = (0..10_000u32)
        .map(|i| {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            let snap = Snapshot {
                packets: 50_000,
                bytes: 5_000_000,
                syn: 0,
                first_seen_ns: 100 * S,
                addr: a,
            };
            (host_prefix(a), snap).into()
        })
        .collect();
    // The first poll also prunes the history (one write of its own).
    f.state.tick(109 * S, Vec::new(), Duration::ZERO);
    let before = f.state.engine.store_writes();
    let start = std::time::Instant::now();
    f.state.tick(110 * S, sources, Duration::ZERO);
    let took = start.elapsed();
    assert_eq!(f.state.engine.book().len(), 10_000);
    assert_eq!(
        f.state.engine.store_writes() - before,
        1,
        "10 000 velocity decisions in one transaction ({took:?})"
    );
    assert_eq!(f.planes[0].rules().unwrap().len(), 10_000, "all enforced");
}

#[test]
fn block_is_stored_projected_listed_and_restored() {
    let mut f = Fixture::new();
    let Response::Blocked { decision, .. } = f.ok(block("203.0.113.7")) else {
        panic!()
    };
    assert_eq!(decision.prefix, net("203.0.113.7/32"));
    assert_eq!(decision.origin, Origin::Manual);
    assert_eq!(
        f.entry(0, "203.0.113.7/32"),
        Some((ipwarden_common::Action::BLOCK, Reason::MANUAL))
    );
    let Response::Decisions { decisions, .. } = f.ok(Request::List {
        origin: None,
        after: None,
        limit: None,
    }) else {
        panic!()
    };
    assert_eq!(decisions, vec![decision.clone()]);
    let (store, _dir) = f.reopened_store();
    assert_eq!(store.decisions().unwrap(), vec![decision]);
}

#[test]
fn unblock_lifts_the_manual_decision_and_says_what_still_holds() {
    let mut f = Fixture::new();
    f.ok(block("203.0.113.7"));
    f.state
        .engine
        .propose_one(velocity("203.0.113.7/32", Duration::from_secs(600)))
        .unwrap();
    f.ok(feed_block("203.0.113.7", "drop", 1800));
    assert_eq!(
        f.state.engine.book().holders(&net("203.0.113.7/32")).len(),
        3
    );
    // Manual lasts longest (1 h): it is what the kernel holds.
    assert_eq!(f.entry(0, "203.0.113.7/32").unwrap().1, Reason::MANUAL);
    let Response::Unblocked {
        decision,
        lifted,
        still,
    } = f.ok(unblock("203.0.113.7", None, false))
    else {
        panic!()
    };
    assert_eq!((decision.origin, lifted.len()), (Origin::Manual, 1));
    assert_eq!(still.len(), 2);
    // The feed's 30 min now outlast velocity's 10 min.
    assert_eq!(f.entry(0, "203.0.113.7/32").unwrap().1, Reason::FEED);
    // A manual decision is no longer there: the refusal names who holds the prefix.
    let message = f.err(unblock("203.0.113.7", None, false));
    assert!(
        message.contains("velocity") && message.contains("feed:drop"),
        "{message}"
    );
    f.ok(Request::Unblock {
        prefix: net("203.0.113.7/32"),
        origin: Some(Origin::Feed),
        source: Some("drop".into()),
        all_origins: false,
    });
    assert_eq!(f.entry(0, "203.0.113.7/32").unwrap().1, Reason::VELOCITY);
    f.ok(unblock("203.0.113.7", Some(Origin::Velocity), false));
    assert_eq!(f.entry(0, "203.0.113.7/32"), None);
    let message = f.err(unblock("203.0.113.7", None, false));
    assert!(message.contains("is not blocked"), "{message}");
    // Inside a wider block: which prefix and holder cover it, and how to lift that.
    f.ok(feed_block("203.0.113.0/24", "drop", 3600));
    let message = f.err(unblock("203.0.113.7", None, false));
    assert!(
        message.contains("203.0.113.0/24 covers it")
            && message.contains("ipwarden unblock 203.0.113.0/24 --origin feed --name drop"),
        "{message}"
    );
}

#[test]
fn unblock_all_origins_lifts_every_holder_into_the_history() {
    let mut f = Fixture::new();
    f.ok(block("2001:db8:2::1"));
    f.ok(feed_block("2001:db8:2::/64", "tor", 60));
    let Response::Unblocked { lifted, still, .. } = f.ok(unblock("2001:db8:2::9", None, true))
    else {
        panic!()
    };
    assert_eq!((lifted.len(), still.len()), (2, 0));
    assert!(f.planes[0].state().rules.is_empty());
    let Response::History { entries } = f.ok(Request::History {
        prefix: Some(net("2001:db8:2::/64")),
        limit: 10,
    }) else {
        panic!()
    };
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.end == End::Lifted));
    let Response::History { entries } = f.ok(Request::History {
        prefix: Some(net("2001:db8:3::/64")),
        limit: 10,
    }) else {
        panic!()
    };
    assert!(entries.is_empty());
}

#[test]
fn list_filters_by_origin() {
    let mut f = Fixture::new();
    f.ok(block("203.0.113.7"));
    f.ok(feed_block("203.0.113.7", "drop", 60));
    f.ok(feed_block("203.0.113.8", "drop", 60));
    let Response::Decisions { decisions, .. } = f.ok(Request::List {
        origin: Some(Origin::Feed),
        after: None,
        limit: None,
    }) else {
        panic!()
    };
    assert_eq!(decisions.len(), 2);
    assert!(
        decisions
            .iter()
            .all(|d| d.source.as_deref() == Some("drop"))
    );
}

#[test]
fn an_import_is_one_batch_with_refusals_counted() {
    let mut f = Fixture::new();
    let parsed = crate::import::parse("203.0.113.1\n192.0.2.5\n::ffff:198.51.100.3\nbad\n");
    assert_eq!(parsed.skipped.len(), 1);
    let Response::Imported {
        enacted,
        refused,
        refused_prefixes,
        ..
    } = f.ok(Request::Import {
        decisions: parsed.entries.clone(),
        origin: Some(Origin::Feed),
        source: Some("list".into()),
        ttl_secs: Some(60),
    })
    else {
        panic!()
    };
    assert_eq!((enacted, refused), (2, 1), "192.0.2.5 is allowlisted");
    // The refused entry is named, and the reader knows its line.
    assert_eq!(refused_prefixes, [net("192.0.2.5/32")]);
    assert_eq!(
        parsed.lines_of(&refused_prefixes[0]).collect::<Vec<_>>(),
        [2]
    );
    // A feed import without the feed's name would make a holder no one can lift by name.
    let message = f.err(Request::Import {
        decisions: parsed.entries,
        origin: Some(Origin::Feed),
        source: None,
        ttl_secs: None,
    });
    assert!(message.contains("--name"), "{message}");
    assert_eq!(f.entry(0, "198.51.100.3/32").unwrap().1, Reason::FEED);
    let d = f
        .state
        .engine
        .book()
        .get(&net("203.0.113.1/32"), &Holder::named(Origin::Feed, "list"))
        .unwrap()
        .clone();
    assert_eq!(d.ttl(), Some(Duration::from_secs(60)));
    // Pages: everything once, in prefix order.
    let Response::Decisions {
        decisions, next, ..
    } = f.ok(Request::List {
        origin: None,
        after: None,
        limit: Some(1),
    })
    else {
        panic!()
    };
    assert_eq!((decisions.len(), next), (1, Some(net("198.51.100.3/32"))));
    let Response::Decisions {
        decisions, next, ..
    } = f.ok(Request::List {
        origin: None,
        after: next,
        limit: Some(1),
    })
    else {
        panic!()
    };
    assert_eq!((decisions[0].prefix, next), (net("203.0.113.1/32"), None));
    let message = f.err(Request::Import {
        decisions: Vec::new(),
        origin: Some(Origin::Crowdsec),
        source: None,
        ttl_secs: None,
    });
    assert!(message.contains("not on the command line"), "{message}");
}

#[test]
fn only_operator_origins_can_be_given_on_the_command_line() {
    let mut f = Fixture::new();
    let message = f.err(Request::Block {
        prefix: net("203.0.113.7/32"),
        ttl_secs: None,
        permanent: true,
        replace: false,
        reason: None,
        origin: Some(Origin::Velocity),
        source: None,
        challenge_pps: None,
        challenge_burst: None,
    });
    assert!(
        message.contains("velocity decisions are made by"),
        "{message}"
    );
    assert!(f.state.engine.book().is_empty());
}

#[test]
fn allow_requests_and_refusals() {
    let mut f = Fixture::new();
    // Configured: 192.0.2.0/24; builtin: loopback and link-local.
    let message = f.err(block("192.0.2.0/16"));
    assert!(message.contains("192.0.2.0/24 (config)"), "{message}");
    let message = f.err(block("0.0.0.0/0"));
    assert!(message.contains("a /0 covers every address"), "{message}");
    let message = f.err(block("::1"));
    assert!(message.contains("builtin"), "{message}");
    f.ok(Request::AllowAdd {
        prefix: net("203.0.113.0/28"),
    });
    assert!(f.planes[0].state().allow.contains(&net("203.0.113.0/28")));
    let message = f.err(block("203.0.113.9"));
    assert!(message.contains("203.0.113.0/28 (runtime)"), "{message}");
    let Response::Allow { allow } = f.ok(Request::AllowList) else {
        panic!()
    };
    assert!(
        allow
            .iter()
            .any(|a| a.prefix == net("203.0.113.0/28") && a.origin == AllowOrigin::Runtime)
    );
    assert!(allow.iter().any(|a| a.origin == AllowOrigin::Builtin));
    let message = f.err(Request::AllowRm {
        prefix: net("192.0.2.0/24"),
    });
    assert!(message.contains("configuration file"), "{message}");
    let message = f.err(Request::AllowRm {
        prefix: net("198.51.100.0/24"),
    });
    assert!(
        message.contains("not a runtime allowlist entry"),
        "{message}"
    );
    f.ok(Request::AllowRm {
        prefix: net("203.0.113.0/28"),
    });
    assert!(!f.planes[0].state().allow.contains(&net("203.0.113.0/28")));
    f.ok(block("203.0.113.9"));
    let message = f.err(Request::AllowAdd {
        prefix: net("::/0"),
    });
    assert!(message.contains("/0"), "{message}");
}

#[test]
fn a_batch_counts_refusals_and_respects_the_limit() {
    let mut cfg = config();
    cfg.decisions.max_decisions = 3;
    let mut f = Fixture::with(cfg, 1);
    let feed = |p: &str| {
        Decision::block(
            net(p),
            Holder::named(Origin::Feed, "list"),
            "listed",
            now_unix_ms(),
            Some(Duration::from_secs(60)),
        )
    };
    let applied = f
        .state
        .engine
        .propose(vec![
            feed("203.0.113.1"),
            feed("192.0.2.7"),
            feed("203.0.113.2"),
        ])
        .unwrap()
        .counts();
    assert_eq!((applied.enacted, applied.refused), (2, 1));
    assert_eq!(f.planes[0].state().rules.len(), 2);
    // Renewing what is held needs no room; two new ones do not fit.
    f.state
        .engine
        .propose(vec![feed("203.0.113.1"), feed("203.0.113.2")])
        .unwrap();
    let err = f
        .state
        .engine
        .propose(vec![feed("203.0.113.3"), feed("203.0.113.4")])
        .unwrap_err();
    assert!(matches!(err, EngineError::Full { limit: 3 }), "{err}");
    assert_eq!(
        f.state.engine.book().len(),
        2,
        "a refused batch changes nothing"
    );
    f.ok(block("203.0.113.5"));
    let message = f.err(block("203.0.113.1"));
    assert!(message.contains("decisions.max_decisions"), "{message}");
    assert_eq!(f.state.engine.book().len(), 3);
}

#[test]
fn replace_withdraws_what_a_source_no_longer_lists_and_nothing_else() {
    let mut f = Fixture::new();
    let holder = Holder::named(Origin::Feed, "drop");
    let listed = |ps: &[&str]| {
        ps.iter()
            .map(|p| {
                Decision::block(
                    net(p),
                    holder.clone(),
                    "drop list",
                    now_unix_ms(),
                    Some(Duration::from_secs(60)),
                )
            })
            .collect::<Vec<_>>()
    };
    f.state
        .apply(SourceEvent::Replace {
            holder: holder.clone(),
            decisions: listed(&["203.0.113.0/24", "198.51.100.0/25"]),
        })
        .unwrap();
    f.ok(block("203.0.113.0/24"));
    let applied = f
        .state
        .engine
        .apply(SourceEvent::Replace {
            holder: holder.clone(),
            decisions: listed(&["198.51.100.0/25", "2001:db8:4::/48"]),
        })
        .unwrap();
    assert_eq!((applied.enacted, applied.withdrawn), (2, 1));
    // The operator's block on the dropped prefix stays enforced.
    assert_eq!(f.entry(0, "203.0.113.0/24").unwrap().1, Reason::MANUAL);
    assert!(f.entry(0, "2001:db8:4::/48").is_some());
    let applied = f
        .state
        .engine
        .apply(SourceEvent::Withdraw {
            holder,
            prefixes: vec![net("198.51.100.0/25"), net("203.0.113.0/24")],
        })
        .unwrap();
    assert_eq!(applied.withdrawn, 1);
    assert_eq!(f.entry(0, "198.51.100.0/25"), None);
}

#[test]
fn a_replacement_in_parts_withdraws_only_what_no_part_kept() {
    let mut f = Fixture::new();
    let holder = Holder::named(Origin::Crowdsec, "ban");
    let d = |p: &str| {
        Decision::block(
            net(p),
            holder.clone(),
            "ssh-bf",
            now_unix_ms(),
            Some(Duration::from_secs(60)),
        )
    };
    f.state
        .apply(SourceEvent::Propose(vec![
            d("203.0.113.1"),
            d("203.0.113.2"),
            d("203.0.113.3"),
        ]))
        .unwrap();
    f.ok(block("203.0.113.2"));
    let parts = SourceEvent::ReplaceOrigin {
        origin: Origin::Crowdsec,
        decisions: vec![d("203.0.113.3"), d("203.0.113.4"), d("203.0.113.5")],
    }
    .chunked(2);
    // Begin, two parts, end.
    assert_eq!(parts.len(), 4);
    let mut withdrawn = 0;
    for p in parts {
        withdrawn += f.state.apply(p).unwrap().withdrawn;
    }
    assert_eq!(withdrawn, 2);
    let held: Vec<String> = f
        .state
        .engine
        .book()
        .iter()
        .filter(|d| d.origin == Origin::Crowdsec)
        .map(|d| d.prefix.to_string())
        .collect();
    assert_eq!(held, ["203.0.113.3/32", "203.0.113.4/32", "203.0.113.5/32"]);
    assert_eq!(
        f.entry(0, "203.0.113.2/32").unwrap().1,
        Reason::MANUAL,
        "another origin stays"
    );
    assert!(f.entry(0, "203.0.113.1/32").is_none());
    // Small events stay whole.
    assert_eq!(
        SourceEvent::Propose(vec![d("203.0.113.9")])
            .chunked(2)
            .len(),
        1
    );
}

#[test]
fn a_poll_longer_than_the_interval_is_counted_and_said() {
    let mut f = Fixture::new();
    f.state
        .note_poll_time(Duration::from_millis(150), Duration::from_millis(200));
    f.state
        .note_poll_time(Duration::from_millis(340), Duration::from_millis(200));
    f.state
        .note_poll_time(Duration::from_millis(400), Duration::from_millis(200));
    let Response::Status(s) = f.ok(Request::Status) else {
        panic!()
    };
    assert_eq!(s.late_polls, 2);
    let late: Vec<_> = s
        .warnings
        .iter()
        .filter(|w| w.contains("longer than detection.poll_interval"))
        .collect();
    assert_eq!(late.len(), 1, "warned once a minute: {:?}", s.warnings);
    assert!(late[0].contains("took 340 ms"), "{late:?}");
}

#[test]
fn status_stats_explain_top_and_lookup_views() {
    let mut f = Fixture::with(config(), 2);
    f.planes[1].state().globals.0[GlobalCounter::Dropped as usize] = 42;
    flood(&mut f, "203.0.113.66", 5000, 2);
    f.ok(block("203.0.113.0/24"));
    let Response::Status(s) = f.ok(Request::Status) else {
        panic!()
    };
    assert_eq!(s.decisions, 2);
    assert_eq!(s.decisions_by_origin["velocity"], 1);
    assert_eq!(s.decisions_by_origin["manual"], 1);
    assert_eq!(s.interfaces.len(), 2);
    assert!(
        s.interfaces
            .iter()
            .all(|i| i.attach == "memory" && i.out_of_sync.is_none())
    );
    assert_eq!(s.polls, 2);
    assert_eq!(s.enrichment, "off: velocity-only policy");
    let Response::Stats { interfaces } = f.ok(Request::Stats) else {
        panic!()
    };
    assert_eq!(interfaces[1].counters["dropped"], 42);
    let Response::Explain(e) = f.ok(Request::Explain {
        addr: "203.0.113.66".parse().unwrap(),
    }) else {
        panic!()
    };
    assert_eq!(e.verdict, "blocked");
    let holders: Vec<(IpNet, Origin)> = e.decisions.iter().map(|d| (d.prefix, d.origin)).collect();
    assert_eq!(
        holders,
        vec![
            (net("203.0.113.66/32"), Origin::Velocity),
            (net("203.0.113.0/24"), Origin::Manual)
        ]
    );
    assert!(e.rates.is_some_and(|r| r.heavy));
    let Response::Top { sources } = f.ok(Request::Top { n: 5 }) else {
        panic!()
    };
    assert_eq!(sources[0].decision.map(Action::name), Some("block"));
    let message = f.err(Request::Lookup {
        addr: "203.0.113.66".parse().unwrap(),
        fresh: false,
    });
    assert!(message.contains("no cached IPASIS answer"), "{message}");
    f.state
        .store_answer(net("203.0.113.66/32"), Some(Record::default()))
        .unwrap();
    assert!(matches!(
        f.ok(Request::Lookup {
            addr: "203.0.113.66".parse().unwrap(),
            fresh: false
        }),
        Response::Lookup(v) if v.cached
    ));
}

#[test]
fn reload_applies_a_good_file_and_keeps_the_old_config_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipwarden.toml");
    std::fs::write(&path, "[allow]\nprefixes = [\"198.51.100.0/24\"]\n").unwrap();
    let mut f = Fixture::new();
    f.state.config_path = Some(path.clone());
    let Response::Done { message } = f.ok(Request::Reload) else {
        panic!()
    };
    assert!(message.contains("reloaded"), "{message}");
    assert!(f.planes[0].state().allow.contains(&net("198.51.100.0/24")));
    assert!(!f.planes[0].state().allow.contains(&net("192.0.2.0/24")));
    std::fs::write(&path, "[allow]\nprefixes = [\"not a prefix\"]\n").unwrap();
    let message = f.err(Request::Reload);
    assert!(message.contains("the old one stays"), "{message}");
    assert!(f.planes[0].state().allow.contains(&net("198.51.100.0/24")));
}

#[test]
fn reload_names_every_change_it_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipwarden.toml");
    std::fs::write(&path, "").unwrap();
    let mut f = Fixture::new();
    f.state.config_path = Some(path.clone());
    f.state.daemon_in_file = Some(Config::default().daemon);
    let Response::Done { message } = f.ok(Request::Reload) else {
        panic!()
    };
    assert!(
        !message.contains("next start"),
        "nothing changed: {message}"
    );
    std::fs::write(
        &path,
        "[daemon]\nifaces = [\"eth9\"]\n\n[[feeds]]\nname = \"drop\"\nurl = \"http://192.0.2.1/drop.txt\"\nformat = \"cidr-list\"\n\n[verdict]\n",
    )
    .unwrap();
    let Response::Done { message } = f.ok(Request::Reload) else {
        panic!()
    };
    for part in [
        "[daemon] changes",
        "[[feeds]] changes (added drop)",
        "[verdict] changes",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(
        f.state.engine.warnings().any(|w| w.contains("[[feeds]]")),
        "status shows it"
    );
    // What did apply is confirmed in `status`.
    std::fs::write(&path, "[detection]\npps_threshold = 777\n").unwrap();
    f.ok(Request::Reload);
    let Response::Status(s) = f.ok(Request::Status) else {
        panic!()
    };
    assert_eq!(s.policy.map(|p| p.pps_threshold), Some(777));
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_starts_a_feed_it_adds_and_lifts_one_it_removes() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("drop.txt");
    std::fs::write(&list, "203.0.113.0/24\n198.51.100.0/25\n").unwrap();
    let path = dir.path().join("ipwarden.toml");
    std::fs::write(&path, "").unwrap();
    let mut cfg = Config::default();
    cfg.daemon.state_dir = dir.path().join("state");
    let mut f = Fixture::with(cfg, 1);
    f.state.config_path = Some(path.clone());
    let (events, mut sent) = tokio::sync::mpsc::channel(8);
    f.state.set_feed_events(events);

    let feed = format!(
        "[[feeds]]\nname = \"drop\"\nurl = \"file:{}\"\nformat = \"cidr-list\"\n",
        list.display()
    );
    std::fs::write(&path, &feed).unwrap();
    let Response::Done { message } = f.ok(Request::Reload) else {
        panic!()
    };
    assert!(message.contains("feeds: started drop"), "{message}");
    assert!(!message.contains("next start"), "{message}");
    let set = tokio::time::timeout(Duration::from_secs(5), sent.recv())
        .await
        .expect("the started feed sends its set")
        .unwrap();
    f.state.apply(set).unwrap();
    assert_eq!(
        f.entry(0, "203.0.113.0/24"),
        Some((ipwarden_common::Action::BLOCK, Reason::FEED))
    );
    let Response::Status(s) = f.ok(Request::Status) else {
        panic!()
    };
    assert!(
        s.feeds.iter().any(|v| v.name == "drop"),
        "status shows the feed: {:?}",
        s.feeds
    );

    // Removed: stopped, and what it held is lifted at once.
    std::fs::write(&path, "").unwrap();
    let Response::Done { message } = f.ok(Request::Reload) else {
        panic!()
    };
    assert!(
        message.contains("feeds: stopped and lifted drop"),
        "{message}"
    );
    assert_eq!(f.entry(0, "203.0.113.0/24"), None);
    assert_eq!(f.entry(0, "198.51.100.0/25"), None);
    // A set it sent just before it stopped does not bring it back.
    let late = SourceEvent::Replace {
        holder: Holder::named(Origin::Feed, "drop"),
        decisions: vec![Decision::block(
            net("203.0.113.0/24"),
            Holder::named(Origin::Feed, "drop"),
            "feed drop",
            now_unix_ms(),
            Some(Duration::from_secs(3600)),
        )],
    };
    f.state.apply(late).unwrap();
    assert_eq!(f.entry(0, "203.0.113.0/24"), None);
}

// --- precedence, TTLs, recidive -------------------------------------------------------------

#[test]
fn block_beats_challenge_and_expiry_falls_back_to_the_next_holder() {
    let mut f = Fixture::new();
    let p = "203.0.113.9/32";
    let challenge = Decision::new(
        net(p),
        Action::Challenge,
        Holder::of(Origin::Ipasis),
        "score 50",
        now_unix_ms(),
        Some(Duration::from_secs(3600)),
    );
    f.state.engine.propose_one(challenge).unwrap();
    assert_eq!(
        f.entry(0, p),
        Some((ipwarden_common::Action::CHALLENGE, Reason::IPASIS))
    );
    // A short velocity block wins over a longer challenge ...
    f.state
        .engine
        .propose_one(velocity(p, Duration::from_millis(30)))
        .unwrap();
    assert_eq!(
        f.entry(0, p),
        Some((ipwarden_common::Action::BLOCK, Reason::VELOCITY))
    );
    // ... and when it expires the challenge is enforced again.
    std::thread::sleep(Duration::from_millis(40));
    f.state.tick(1, Vec::new(), Duration::ZERO);
    assert_eq!(
        f.entry(0, p),
        Some((ipwarden_common::Action::CHALLENGE, Reason::IPASIS))
    );
    let Response::History { entries } = f.ok(Request::History {
        prefix: None,
        limit: 10,
    }) else {
        panic!()
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].end, entries[0].decision.origin),
        (End::Expired, Origin::Velocity)
    );
}

#[test]
fn a_heavy_hitter_is_blocked_by_velocity_for_hard_ttl_unless_allowlisted() {
    let mut f = Fixture::new();
    flood(&mut f, "203.0.113.66", 5000, 2);
    flood(&mut f, "192.0.2.5", 5000, 2);
    let d = f
        .state
        .engine
        .book()
        .get(&net("203.0.113.66/32"), &Holder::of(Origin::Velocity))
        .cloned()
        .expect("velocity decision");
    assert_eq!(d.ttl(), Some(Duration::from_secs(600)));
    assert!(d.reason.contains("heavy hitter: 5000 pps"), "{}", d.reason);
    assert_eq!(
        f.state.engine.book().len(),
        1,
        "the allowlisted flood is not blocked"
    );
}

#[test]
fn repeat_offenders_get_longer_ttls_up_to_max_ttl() {
    let mut cfg = config();
    cfg.decisions.recidive_factor = 3;
    cfg.decisions.max_ttl = Duration::from_secs(4000);
    let mut f = Fixture::with(cfg, 1);
    let p = "203.0.113.7/32";
    let base = Duration::from_secs(600);
    let mut ttls = Vec::new();
    for _ in 0..4 {
        let d = f.state.engine.propose_one(velocity(p, base)).unwrap();
        ttls.push((
            d.ttl().unwrap().as_secs(),
            d.recidive.map(|r| (r.earlier, r.capped)),
        ));
        f.state
            .engine
            .withdraw(&Holder::of(Origin::Velocity), &[net(p)])
            .unwrap();
    }
    assert_eq!(
        ttls,
        vec![
            (600, None),
            (1800, Some((1, false))),
            (4000, Some((2, true))),
            (4000, Some((3, true)))
        ]
    );
    // Manual blocks are the operator's: never lengthened, and they do not count.
    let m = f
        .state
        .engine
        .block(BlockRequestFor::manual(p, 60), Holder::of(Origin::Manual))
        .unwrap()
        .0;
    assert_eq!((m.ttl(), m.recidive), (Some(Duration::from_secs(60)), None));
    // IPASIS blocks count with velocity ones.
    let ipasis = Decision::block(
        net(p),
        Holder::of(Origin::Ipasis),
        "tor",
        now_unix_ms(),
        Some(base),
    );
    let d = f.state.engine.propose_one(ipasis).unwrap();
    assert_eq!(d.recidive.map(|r| r.earlier), Some(4));
}

#[test]
fn offences_before_the_recidive_window_do_not_count() {
    let mut f = Fixture::new();
    let p = "198.51.100.77/32";
    let old_ms = now_unix_ms() - 2 * 24 * 3600 * 1000;
    let mut old = velocity(p, Duration::from_secs(600));
    old.created_unix_ms = old_ms;
    old.expires_unix_ms = Some(old_ms + 600_000);
    f.state.engine.propose_one(old).unwrap();
    f.state.tick(1, Vec::new(), Duration::ZERO); // expires it into the history
    assert!(f.state.engine.book().is_empty());
    let d = f
        .state
        .engine
        .propose_one(velocity(p, Duration::from_secs(600)))
        .unwrap();
    assert_eq!(
        (d.ttl(), d.recidive),
        (Some(Duration::from_secs(600)), None)
    );
    let d2 = {
        f.state
            .engine
            .withdraw(&Holder::of(Origin::Velocity), &[net(p)])
            .unwrap();
        f.state
            .engine
            .propose_one(velocity(p, Duration::from_secs(600)))
            .unwrap()
    };
    assert_eq!(
        d2.ttl(),
        Some(Duration::from_secs(1200)),
        "default factor 2"
    );
}

/// `BlockRequest` shorthands for tests.
struct BlockRequestFor;

impl BlockRequestFor {
    fn manual(p: &str, ttl_secs: u64) -> crate::engine::BlockRequest {
        crate::engine::BlockRequest {
            challenge: None,
            prefix: net(p),
            ttl: Some(Duration::from_secs(ttl_secs)),
            permanent: false,
            reason: None,
            replace: false,
        }
    }
}

#[test]
fn feed_tags_join_the_score_and_name_their_feed() {
    let mut f = Fixture::new();
    f.state
        .apply(SourceEvent::Tags {
            feed: "cloud".into(),
            tag: crate::config::Tag::Hosting,
            prefixes: vec![net("203.0.113.0/24")],
        })
        .unwrap();
    // Tags alone: hosting +50 reaches the challenge threshold.
    assert!(
        f.state
            .policy
            .decide_from_tags(
                &mut f.state.engine,
                net("203.0.113.66/32"),
                "203.0.113.66".parse().unwrap(),
                10.0
            )
            .unwrap()
    );
    let d = f
        .state
        .engine
        .book()
        .get(
            &net("203.0.113.66/32"),
            &Holder::named(Origin::Feed, "cloud"),
        )
        .expect("a decision from the tags")
        .clone();
    assert_eq!(d.action, Action::Challenge);
    assert_eq!(d.factors[0].name, "hosting (feed cloud)");
    assert!(d.reason.starts_with("feed cloud:"), "{}", d.reason);
    // Untagged: nothing decided from tags.
    assert!(
        !f.state
            .policy
            .decide_from_tags(
                &mut f.state.engine,
                net("198.51.100.9/32"),
                "198.51.100.9".parse().unwrap(),
                10.0
            )
            .unwrap()
    );
    // An IPASIS answer (proxy) plus the tag (hosting): 80, a block, the tag credited.
    f.state.on_enriched(own_answer(
        net("203.0.113.77/32"),
        "203.0.113.77".parse().unwrap(),
        10.0,
        Ok(Record {
            proxy: Some(true),
            ..Record::default()
        }),
    ));
    let d = f
        .state
        .engine
        .book()
        .get(&net("203.0.113.77/32"), &Holder::of(Origin::Ipasis))
        .expect("an ipasis decision")
        .clone();
    assert_eq!((d.action, d.score), (Action::Block, Some(80)));
    let names: Vec<&str> = d.factors.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["hosting (feed cloud)", "proxy"]);
}

// --- partial failure and resync -------------------------------------------------------------

#[test]
fn a_failing_interface_is_marked_out_of_sync_and_rebuilt_at_the_next_tick() {
    let mut f = Fixture::with(config(), 2);
    f.ok(block("203.0.113.1"));
    f.planes[1].state().failing = true;
    // Stored and enforced where possible: the request succeeds.
    f.ok(block("203.0.113.2"));
    f.ok(unblock("203.0.113.1", None, false));
    assert_eq!(f.entry(0, "203.0.113.2/32").unwrap().1, Reason::MANUAL);
    assert_eq!(f.entry(0, "203.0.113.1/32"), None);
    assert_eq!(f.entry(1, "203.0.113.2/32"), None);
    assert!(f.entry(1, "203.0.113.1/32").is_some(), "missed the unblock");
    let Response::Status(s) = f.ok(Request::Status) else {
        panic!()
    };
    assert!(s.interfaces[0].out_of_sync.is_none());
    let why = s.interfaces[1].out_of_sync.as_deref().expect("out of sync");
    assert!(why.contains("injected failure"), "{why}");
    assert!(
        s.warnings.iter().any(|w| w.contains("if1 is out of sync")),
        "{:?}",
        s.warnings
    );
    // Still failing: the tick's resync fails and it stays out of sync.
    f.state.tick(1, Vec::new(), Duration::ZERO);
    assert!(f.state.engine.planes().any_out_of_sync());
    f.planes[1].state().failing = false;
    f.state.tick(2, Vec::new(), Duration::ZERO);
    assert!(!f.state.engine.planes().any_out_of_sync());
    let held = |i: usize| -> Vec<(IpNet, u8, u32)> {
        f.planes[i]
            .state()
            .rules
            .iter()
            .map(|(p, e)| (*p, e.action, e.reason))
            .collect()
    };
    assert_eq!(held(0), held(1));
    assert_eq!(f.planes[0].state().allow, f.planes[1].state().allow);
}

#[test]
fn restore_makes_every_plane_equal_to_the_store_and_ends_expired_decisions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let live = velocity("203.0.113.1/32", Duration::from_secs(600));
        let mut gone = velocity("203.0.113.2/32", Duration::from_secs(1));
        gone.expires_unix_ms = Some(1);
        store.put_decisions(&[&live, &gone]).unwrap();
        store.put_allow(net("198.51.100.0/24")).unwrap();
    }
    let plane = MemoryEnforcer::new();
    plane
        .clone()
        .put_rules(&[(
            net("203.0.113.99/32"),
            ipwarden_common::BlockEntry::block(Reason::MANUAL, 0),
        )])
        .unwrap();
    let mut engine = Engine::new(
        config(),
        Store::open(dir.path()).unwrap(),
        vec![Plane::new(
            "if0",
            AttachKind::Memory,
            Box::new(plane.clone()),
        )],
    );
    let r = engine.restore().unwrap();
    assert_eq!((r.decisions, r.expired), (1, 1));
    let rules: Vec<IpNet> = plane.state().rules.keys().copied().collect();
    assert_eq!(
        rules,
        vec![net("203.0.113.1/32")],
        "the stray entry is gone"
    );
    assert!(plane.state().allow.contains(&net("198.51.100.0/24")));
    assert!(plane.state().allow.contains(&net("192.0.2.0/24")));
    assert_eq!(engine.history(None, 10).unwrap().len(), 1);
    // A plane that cannot be made equal fails the start, naming it.
    drop(engine);
    let broken = MemoryEnforcer::new();
    broken.state().failing = true;
    let mut engine = Engine::new(
        config(),
        Store::open(dir.path()).unwrap(),
        vec![Plane::new("eth9", AttachKind::Memory, Box::new(broken))],
    );
    let err = engine.restore().unwrap_err().to_string();
    assert!(err.contains("eth9"), "{err}");
}

#[test]
fn rebuilding_from_the_maps_keeps_origins_and_remaining_time() {
    let mut f = Fixture::new();
    f.state
        .engine
        .propose_one(velocity("203.0.113.1/32", Duration::from_secs(600)))
        .unwrap();
    f.ok(feed_block("198.51.100.0/24", "drop", 60));
    f.ok(Request::AllowAdd {
        prefix: net("203.0.113.128/25"),
    });
    let planes = f.planes.clone();
    let (_, dir) = f.reopened_store();
    // The database is lost: a fresh one next to the same maps.
    let fresh = tempfile::tempdir().unwrap();
    let mut engine = Engine::new(
        config(),
        Store::open(fresh.path()).unwrap(),
        vec![Plane::new(
            "if0",
            AttachKind::Memory,
            Box::new(planes[0].clone()),
        )],
    );
    assert_eq!(engine.import_from_maps().unwrap(), (2, 1));
    engine.restore().unwrap();
    let mut origins: Vec<Origin> = engine.book().iter().map(|d| d.origin).collect();
    origins.sort();
    assert_eq!(origins, vec![Origin::Velocity, Origin::Feed]);
    let v = engine
        .book()
        .get(&net("203.0.113.1/32"), &Holder::of(Origin::Velocity))
        .unwrap();
    let left = v.remaining(now_unix_ms()).unwrap();
    assert!(
        left > Duration::from_secs(590) && left <= Duration::from_secs(600),
        "{left:?}"
    );
    drop(dir);
}

// --- enrichment results -------------------------------------------------------------------

/// A SYN as the data plane keeps it: IPv4, TTL 61, DF, window 64240 and `options`.
fn syn_entry(
    addr: [u8; 4],
    ttl: u8,
    window: u16,
    options: &[u8],
) -> ipwarden_common::fingerprint::SigEntry {
    let mut e = ipwarden_common::fingerprint::SigEntry {
        version: 4,
        ttl,
        flags: ipwarden_common::fingerprint::SynSignature::DF,
        header_len: (20 + options.len()) as u8,
        window,
        captured: options.len() as u8,
        ..Default::default()
    };
    e.options[..options.len()].copy_from_slice(options);
    e.last_addr[..4].copy_from_slice(&addr);
    e
}

#[test]
fn a_residential_source_with_a_linux_server_stack_gets_the_proxy_factor() {
    let linux: &[u8] = &[
        2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let windows: &[u8] = &[2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2];
    let mut f = Fixture::new();
    f.planes[0].state().signatures = vec![
        (
            net("203.0.113.70/32"),
            syn_entry([203, 0, 113, 70], 61, 64240, linux),
        ),
        (
            net("203.0.113.71/32"),
            syn_entry([203, 0, 113, 71], 119, 64240, windows),
        ),
    ];
    let residential = Record {
        hosting: Some(false),
        vpn: Some(false),
        crawler: Some(false),
        ..Record::default()
    };
    for last in [70u8, 71] {
        let addr = IpAddr::from([203, 0, 113, last]);
        f.state.on_enriched(own_answer(
            host_prefix(addr),
            addr,
            50_000.0,
            Ok(residential.clone()),
        ));
    }
    // Velocity 20 + suspect 30 = 50: challenged.
    let d = f
        .state
        .engine
        .book()
        .get(&net("203.0.113.70/32"), &Holder::of(Origin::Ipasis))
        .expect("the Linux-stack residential source is decided");
    assert_eq!(d.action, Action::Challenge, "{d:?}");
    assert!(
        d.factors
            .iter()
            .any(|x| x.name.starts_with("residential_proxy_suspect") && x.weight == 30),
        "{:?}",
        d.factors
    );
    // The Windows desktop on a residential line: velocity alone, 20, allowed.
    assert!(
        f.state
            .engine
            .book()
            .covering("203.0.113.71".parse().unwrap())
            .is_empty()
    );
    let Response::Explain(e) = f.ok(Request::Explain {
        addr: "203.0.113.70".parse().unwrap(),
    }) else {
        panic!()
    };
    assert_eq!(e.fingerprints.len(), 1);
    assert_eq!(e.fingerprints[0].os, "linux");
    assert_eq!(e.fingerprints[0].hops, 3);
    // A hosting answer is not residential: no factor.
    let mut g = Fixture::new();
    g.planes[0].state().signatures = vec![(
        net("203.0.113.70/32"),
        syn_entry([203, 0, 113, 70], 61, 64240, linux),
    )];
    let addr = IpAddr::from([203, 0, 113, 70]);
    g.state.on_enriched(own_answer(
        host_prefix(addr),
        addr,
        50_000.0,
        Ok(Record {
            hosting: Some(true),
            ..Record::default()
        }),
    ));
    let d = g
        .state
        .engine
        .book()
        .get(&net("203.0.113.70/32"), &Holder::of(Origin::Ipasis))
        .unwrap();
    assert!(
        !d.factors.iter().any(|x| x.name.starts_with("residential")),
        "{:?}",
        d.factors
    );
}

#[test]
fn an_enrichment_answer_becomes_an_ipasis_decision_and_is_cached() {
    let mut f = Fixture::new();
    let source = net("203.0.113.66/32");
    f.state.on_enriched(own_answer(
        source,
        "203.0.113.66".parse().unwrap(),
        5000.0,
        Ok(Record {
            tor: Some(true),
            ..Record::default()
        }),
    ));
    let d = f
        .state
        .engine
        .book()
        .get(&source, &Holder::of(Origin::Ipasis))
        .expect("an ipasis decision");
    assert_eq!(d.action, Action::Block);
    assert!(d.factors.iter().any(|x| x.name == "tor"), "{:?}", d.factors);
    assert_eq!(f.entry(0, "203.0.113.66/32").unwrap().1, Reason::IPASIS);
    assert!(
        f.state
            .policy
            .fresh_answer(&f.state.engine, source)
            .unwrap()
            .is_some()
    );
    // A rejected address is cached as such and decides nothing.
    let other = net("203.0.113.67/32");
    f.state.on_enriched(own_answer(
        other,
        "203.0.113.67".parse().unwrap(),
        5000.0,
        Err(crate::enrich::EnrichError::Invalid),
    ));
    assert!(
        f.state
            .policy
            .fresh_answer(&f.state.engine, other)
            .unwrap()
            .unwrap()
            .record
            .is_none()
    );
    assert_eq!(f.state.engine.book().len(), 1);
}

#[test]
fn a_peers_shared_answer_challenges_at_most_says_whose_it_is_and_expires_by_its_fetch() {
    let tor = Record {
        tor: Some(true),
        ..Record::default()
    };
    let answer = |source: &str, fetched: u64| Enriched {
        candidate: Candidate {
            source: net(source),
            addr: net(source).addr(),
            pps: 5000.0,
        },
        result: Ok(tor.clone()),
        peer: Some(crate::enrich::pipeline::Peer {
            host: "edge-b".into(),
            fetched_unix_ms: fetched,
        }),
    };
    let mut f = Fixture::new();
    let now = crate::decision::now_unix_ms();
    f.state.on_enriched(answer("203.0.113.66/32", now));
    let d = f
        .state
        .engine
        .book()
        .get(&net("203.0.113.66/32"), &Holder::of(Origin::Ipasis))
        .expect("a decision from the peer's answer");
    // Tor blocks on this host's own answer; on a peer's word alone it challenges.
    assert_eq!(d.action, Action::Challenge);
    assert_eq!(d.answer_from.as_deref(), Some("edge-b"));
    assert!(d.reason.contains("answer from host edge-b"), "{}", d.reason);
    let cached = f
        .state
        .policy
        .fresh_answer(&f.state.engine, net("203.0.113.66/32"))
        .unwrap()
        .expect("cached");
    assert_eq!(cached.host.as_deref(), Some("edge-b"));
    assert_eq!(cached.fetched_unix_ms, now);
    // An answer fetched a cache_ttl ago is not fresh here, however recently it arrived.
    let ttl = f.state.engine.config().ipasis.cache_ttl.as_millis() as u64;
    f.state
        .on_enriched(answer("203.0.113.67/32", now - ttl - 1000));
    assert!(
        f.state
            .policy
            .fresh_answer(&f.state.engine, net("203.0.113.67/32"))
            .unwrap()
            .is_none()
    );
    // With fleet.peer_answers = "block" the operator trusts peers' answers fully.
    let mut cfg = config();
    cfg.fleet = Some(crate::config::FleetConfig {
        peer_answers: crate::config::PeerAnswers::Block,
        ..crate::config::FleetConfig::default()
    });
    let mut g = Fixture::with(cfg, 1);
    g.state.on_enriched(answer("203.0.113.66/32", now));
    let d = g
        .state
        .engine
        .book()
        .get(&net("203.0.113.66/32"), &Holder::of(Origin::Ipasis))
        .unwrap();
    assert_eq!(d.action, Action::Block);
}

#[test]
fn blocking_again_never_shortens_a_block_unless_asked() {
    let mut f = Fixture::new();
    let with_ttl = |secs: u64, replace: bool| Request::Block {
        prefix: net("203.0.113.7/32"),
        ttl_secs: Some(secs),
        permanent: false,
        replace,
        reason: None,
        origin: None,
        source: None,
        challenge_pps: None,
        challenge_burst: None,
    };
    let Response::Blocked { decision: long, .. } = f.ok(with_ttl(7200, false)) else {
        panic!()
    };
    // A shorter TTL keeps the later expiry, and says so.
    let Response::Blocked {
        decision,
        kept_longer,
    } = f.ok(with_ttl(60, false))
    else {
        panic!()
    };
    assert!(kept_longer);
    assert_eq!(decision.expires_unix_ms, long.expires_unix_ms);
    // A longer one extends.
    let Response::Blocked {
        decision,
        kept_longer,
    } = f.ok(with_ttl(10_800, false))
    else {
        panic!()
    };
    assert!(!kept_longer);
    assert!(decision.expires_unix_ms > long.expires_unix_ms);
    // --replace sets the new TTL.
    let Response::Blocked {
        decision,
        kept_longer,
    } = f.ok(with_ttl(60, true))
    else {
        panic!()
    };
    assert!(!kept_longer);
    assert!(decision.expires_unix_ms < long.expires_unix_ms);
}

#[test]
fn bulk_unblock_lifts_by_range_and_by_holder_in_one_transaction_and_refuses_empty_filters() {
    let mut f = Fixture::new();
    for p in [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.128/25",
        "198.51.100.9",
    ] {
        f.ok(block(p));
    }
    f.ok(feed_block("203.0.113.3", "drop", 3600));
    f.ok(feed_block("198.51.100.128/25", "drop", 3600));
    f.ok(feed_block("198.51.100.200", "other", 3600));
    let lift =
        |range: Option<&str>, origin: Option<Origin>, source: Option<&str>| Request::UnblockWhere {
            range: range.map(net),
            origin,
            source: source.map(str::to_owned),
        };
    for bad in [
        lift(None, None, None),
        lift(Some("0.0.0.0/0"), None, None),
        lift(Some("203.0.113.0/24"), None, Some("drop")),
    ] {
        let e = f.err(bad);
        assert!(!e.is_empty());
    }
    // Every origin's decisions inside the range, one transaction.
    let writes = f.state.engine.store_writes();
    match f.ok(lift(Some("203.0.113.0/24"), None, None)) {
        Response::LiftedMany { lifted } => assert_eq!(lifted, 4),
        r => panic!("{r:?}"),
    }
    assert_eq!(f.state.engine.store_writes(), writes + 1);
    assert_eq!(f.entry(0, "203.0.113.128/25"), None);
    assert!(f.entry(0, "198.51.100.9/32").is_some(), "outside the range");
    // One holder's, everywhere.
    match f.ok(lift(None, Some(Origin::Feed), Some("drop"))) {
        Response::LiftedMany { lifted } => assert_eq!(lifted, 1),
        r => panic!("{r:?}"),
    }
    assert!(f.entry(0, "198.51.100.200/32").is_some(), "another feed's");
    match f.ok(lift(None, Some(Origin::Feed), None)) {
        Response::LiftedMany { lifted } => assert_eq!(lifted, 1),
        r => panic!("{r:?}"),
    }
    assert_eq!(f.state.engine.book().len(), 1);
}

#[test]
fn config_show_prints_the_configuration_in_force_as_a_file_that_loads_back_identically() {
    let mut cfg = config();
    cfg.detection.pps_threshold = 4321;
    cfg.feeds.push(
        Config::parse(
            "[[feeds]]\nname = \"drop\"\nurl = \"https://192.0.2.1/drop.txt\"\nformat = \"spamhaus-drop\"\n",
            "t",
        )
        .unwrap()
        .feeds
        .remove(0),
    );
    cfg.verdict = Some(Default::default());
    let mut f = Fixture::with(cfg.clone(), 1);
    let Response::Config { toml } = f.ok(Request::ConfigShow) else {
        panic!()
    };
    assert!(toml.contains("pps_threshold = 4321"), "{toml}");
    assert_eq!(Config::parse(&toml, "config show").unwrap(), cfg);
}
