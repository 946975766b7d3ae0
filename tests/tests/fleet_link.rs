//! The fleet link against a real JetStream server (Debian's nats-server 2.9.10, started here on
//! 127.0.0.1): decisions published by one host reach another as fleet decisions, deletions
//! follow, a joining host takes the bucket's contents, a restarted one resumes after its
//! revision, changes made while the server is down arrive after it comes back, unreadable
//! values are counted and ignored, and one lookup claim serves every host.
//!
//! No root needed: the daemon's channels are driven directly.

use std::{sync::Arc, time::Duration};

use ipnet::IpNet;
use ipwarden::{
    config::FleetConfig,
    decision::{Decision, End, Ended, Holder, Origin, now_unix_ms},
    engine::{Sink as _, SourceEvent},
    enrich::{
        Record,
        pipeline::{Shared, SharedLookups as _},
    },
    fleet,
};
use ipwarden_tests::{
    fleet_host::{self, Host},
    nats::NatsServer,
};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn config(server: &NatsServer) -> FleetConfig {
    FleetConfig {
        url: vec![ipwarden::config::Url::parse(&server.url()).unwrap()],
        claim_ttl: Duration::from_secs(2),
        claim_wait: Duration::from_secs(4),
        ..FleetConfig::default()
    }
}

fn velocity(prefix: &str) -> Decision {
    Decision::block(
        net(prefix),
        Holder::of(Origin::Velocity),
        "heavy hitter: 4000 pps",
        now_unix_ms(),
        Some(Duration::from_secs(600)),
    )
}

async fn host(cfg: &FleetConfig, name: &str, applied: Option<u64>, held: Vec<Decision>) -> Host {
    fleet_host::start(cfg, fleet_host::local(name), applied, held).await
}

/// A host on a named machine: two machines may not hold one host id.
async fn host_on(
    cfg: &FleetConfig,
    name: &str,
    machine: &str,
    applied: Option<u64>,
    held: Vec<Decision>,
) -> Host {
    let here = fleet::Local {
        machine: machine.to_owned(),
        ..fleet_host::local(name)
    };
    fleet_host::start(cfg, here, applied, held).await
}

/// A host whose link is up and whose first sync (of an empty bucket) is done.
async fn joined(cfg: &FleetConfig, name: &str) -> Host {
    let mut h = host(cfg, name, None, Vec::new()).await;
    h.connected().await;
    assert!(matches!(h.next().await, SourceEvent::ReplaceOrigin { .. }));
    h
}

/// The decisions bucket, through a client of the test's own (as any writer with access).
async fn bucket(server: &NatsServer) -> async_nats::jetstream::kv::Store {
    let client = async_nats::connect(server.url()).await.unwrap();
    async_nats::jetstream::new(client)
        .get_key_value("ipwarden-decisions")
        .await
        .unwrap()
}

fn proposed(e: SourceEvent) -> Vec<Decision> {
    match e {
        SourceEvent::Propose(ds) => ds,
        other => panic!("expected proposed decisions, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_reach_peers_and_deletions_follow() {
    let server = NatsServer::start();
    let cfg = config(&server);
    let mut a = host(&cfg, "edge-a", None, Vec::new()).await;
    let mut b = host(&cfg, "edge-b", None, Vec::new()).await;
    a.connected().await;
    b.connected().await;
    // A joiner with an empty store first takes the (empty) bucket as the fleet's whole set.
    assert!(matches!(
        b.next().await,
        SourceEvent::ReplaceOrigin { origin: Origin::Fleet, ref decisions } if decisions.is_empty()
    ));
    let d = velocity("203.0.113.7/32");
    a.fleet.outbox.changed(&[&d], &[]);
    let got = proposed(b.next().await);
    assert_eq!(got.len(), 1);
    let f = &got[0];
    assert_eq!((f.prefix, f.origin), (d.prefix, Origin::Fleet));
    assert_eq!(f.source.as_deref(), Some("edge-a/velocity"));
    assert_eq!(
        f.expires_unix_ms, d.expires_unix_ms,
        "the maker's expiry is kept"
    );
    assert!(
        f.reason.contains("edge-a velocity: heavy hitter"),
        "{}",
        f.reason
    );
    let rev = b.checkpoint().await;
    assert!(rev > 0);
    // A does not receive its own decision back.
    assert!(matches!(a.next().await, SourceEvent::ReplaceOrigin { .. }));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), a.next())
            .await
            .is_err(),
        "a host applied its own decision"
    );
    // Fleet and CrowdSec decisions are never re-published.
    let mut relayed = velocity("198.51.100.9/32");
    relayed.origin = Origin::Fleet;
    // Nor is a decision resting on a peer's IPASIS answer.
    let mut hearsay = velocity("198.51.100.10/32");
    hearsay.origin = Origin::Ipasis;
    hearsay.answer_from = Some("edge-b".into());
    a.fleet.outbox.changed(&[&relayed, &hearsay], &[]);
    // The lift propagates as a withdrawal of that holder.
    a.fleet.outbox.changed(
        &[],
        &[Ended {
            decision: d.clone(),
            end: End::Lifted,
            ended_unix_ms: now_unix_ms(),
        }],
    );
    match b.next().await {
        SourceEvent::Withdraw { holder, prefixes } => {
            assert_eq!(holder, Holder::named(Origin::Fleet, "edge-a/velocity"));
            assert_eq!(prefixes, vec![d.prefix]);
        }
        other => panic!("expected a withdrawal, got {other:?}"),
    }
    assert!(
        b.checkpoint().await > rev,
        "the deletion has a later revision"
    );
    let view = b.fleet.link.view();
    assert!(view.connected && view.applied >= 2, "{view:?}");
    // Two publications (the decision, its deletion); the relayed ones are not among them.
    for _ in 0..100 {
        if a.fleet.link.view().published >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        a.fleet.link.view().published,
        2,
        "{:?}",
        a.fleet.link.view()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_takes_the_contents_and_a_restarted_host_resumes_after_its_revision() {
    let server = NatsServer::start();
    let cfg = config(&server);
    let first = velocity("203.0.113.7/32");
    // A host that holds decisions publishes them when its link comes up (its snapshot).
    let mut a = host(&cfg, "edge-a", None, vec![first.clone()]).await;
    a.connected().await;
    let mut c = host(&cfg, "edge-c", None, Vec::new()).await;
    let decisions = match c.next().await {
        SourceEvent::ReplaceOrigin { decisions, .. } if !decisions.is_empty() => decisions,
        // Joined before A's snapshot was published: it arrives live.
        SourceEvent::ReplaceOrigin { .. } => proposed(c.next().await),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].prefix, first.prefix);
    let rev = c.checkpoint().await;
    drop(c);
    // While C is away, A makes another decision.
    let second = velocity("203.0.113.8/32");
    a.fleet.outbox.changed(&[&second], &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = host(&cfg, "edge-c", Some(rev), Vec::new()).await;
    let got = proposed(c.next().await);
    assert_eq!(
        got.iter().map(|d| d.prefix).collect::<Vec<_>>(),
        vec![second.prefix],
        "only what came after the stored revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_server_is_down_reach_every_peer_within_the_bound() {
    let mut server = NatsServer::start();
    let cfg = config(&server);
    let mut hosts = Vec::new();
    for name in ["edge-a", "edge-b", "edge-c"] {
        let mut h = host(&cfg, name, None, Vec::new()).await;
        h.connected().await;
        assert!(matches!(h.next().await, SourceEvent::ReplaceOrigin { .. }));
        hosts.push(h);
    }
    // Three outages: the report was of one peer in two runs taking over 5 s.
    let mut worst = Duration::ZERO;
    let mut withdrawn = Vec::new();
    for round in 0..3u8 {
        server.stop();
        for h in &hosts {
            for _ in 0..100 {
                if !h.fleet.link.view().connected {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let view = h.fleet.link.view();
            assert!(!view.connected, "the link still says connected: {view:?}");
        }
        let heard_before = hosts[1].fleet.link.view().last_heard_unix_ms.unwrap();
        let d = velocity(&format!("192.0.2.{}/32", 70 + round));
        hosts[0].fleet.outbox.changed(&[&d], &[]);
        // The last outage is long enough for every backoff to reach its ceiling.
        let outage = if round == 2 { 4000 } else { 300 };
        tokio::time::sleep(Duration::from_millis(outage)).await;
        server.restart();
        let t0 = std::time::Instant::now();
        for h in &mut hosts[1..] {
            // (A's snapshot in this harness is empty: on reconnecting it withdraws the earlier
            // rounds' decisions, which peers receive too.)
            loop {
                match h.next().await {
                    SourceEvent::Propose(got) if got.iter().any(|g| g.prefix == d.prefix) => break,
                    SourceEvent::Withdraw { prefixes, .. } => withdrawn.extend(prefixes),
                    SourceEvent::Propose(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            worst = worst.max(t0.elapsed());
        }
        assert!(hosts[0].fleet.link.view().connected);
        let heard = hosts[1].fleet.link.view().last_heard_unix_ms.unwrap();
        assert!(heard > heard_before, "last_heard did not move");
    }
    // Reconnect attempts are at most 1 s apart and the link restarts within 2 s of the
    // client's reconnection (documented in README: within 3 s of the server's return).
    println!("slowest peer after a server restart: {worst:?}");
    assert!(
        worst < Duration::from_secs(4),
        "a peer took {worst:?} after the server came back"
    );
    // A's snapshot (in this harness) is empty: on each return it deleted its earlier keys,
    // found by listing its own keys.
    while let Ok(e) = tokio::time::timeout(Duration::from_secs(1), hosts[1].next()).await {
        if let SourceEvent::Withdraw { prefixes, .. } = e {
            withdrawn.extend(prefixes);
        }
    }
    for earlier in ["192.0.2.70/32", "192.0.2.71/32"] {
        assert!(
            withdrawn.contains(&net(earlier)),
            "{earlier} not withdrawn: {withdrawn:?}"
        );
    }
    // A's own count settles after its batch completes (a peer may see the value first).
    for _ in 0..100 {
        if hosts[0].fleet.link.view().pending_publish == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hosts[0].fleet.link.view().pending_publish, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_values_are_counted_and_never_applied() {
    let server = NatsServer::start();
    let cfg = config(&server);
    let mut b = joined(&cfg, "edge-b").await;
    let kv = bucket(&server).await;
    kv.put("edge-x.velocity._.203.0.113.9/32", "{not json".into())
        .await
        .unwrap();
    kv.put("edge-x.fleet._.203.0.113.9/32", "{}".into())
        .await
        .unwrap();
    // A value naming another prefix than its key.
    let d = velocity("198.51.100.1/32");
    let value = serde_json::to_vec(&fleet::wire::Shared::of("edge-x", &d)).unwrap();
    kv.put("edge-x.velocity._.203.0.113.10/32", value.into())
        .await
        .unwrap();
    // Then a good one: the only thing applied.
    let good = serde_json::to_vec(&fleet::wire::Shared::of(
        "edge-x",
        &velocity("203.0.113.11/32"),
    ))
    .unwrap();
    kv.put("edge-x.velocity._.203.0.113.11/32", good.into())
        .await
        .unwrap();
    let got = proposed(b.next().await);
    assert_eq!(
        got.iter().map(|d| d.prefix).collect::<Vec<_>>(),
        vec![net("203.0.113.11/32")]
    );
    assert_eq!(b.fleet.link.view().unreadable, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claim_serves_the_fleet_and_a_quiet_claimer_is_not_waited_for_forever() {
    let server = NatsServer::start();
    let cfg = config(&server);
    let hosts = [
        host(&cfg, "edge-a", None, Vec::new()).await,
        host(&cfg, "edge-b", None, Vec::new()).await,
        host(&cfg, "edge-c", None, Vec::new()).await,
    ];
    for h in &hosts {
        h.connected().await;
    }
    let shared: Vec<Arc<fleet::answers::SharedAnswers>> = hosts
        .iter()
        .map(|h| h.fleet.answers.clone().expect("sharing is on by default"))
        .collect();
    let source = net("203.0.113.66/32");
    let tor = Record {
        tor: Some(true),
        ..Record::default()
    };
    // All three ask at once: exactly one claims the lookup; the others wait for its answer.
    let asks: Vec<_> = shared
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.before_lookup(source).await }))
        .collect();
    let mut claimer = None;
    for _ in 0..100 {
        claimer = hosts
            .iter()
            .position(|h| h.fleet.link.view().claims_won == 1);
        if claimer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claimer = claimer.expect("nobody claimed the lookup within 2 s");
    shared[claimer]
        .after_lookup(source, Some(tor.clone()))
        .await;
    let mut lookups = 0;
    for (i, ask) in asks.into_iter().enumerate() {
        match ask.await.unwrap() {
            Shared::LookUp => {
                assert_eq!(i, claimer);
                lookups += 1;
            }
            Shared::Answer(r, from) => {
                assert_eq!(r.tor, Some(true));
                // The answer names the host that asked IPASIS.
                assert_eq!(from.host, ["edge-a", "edge-b", "edge-c"][claimer]);
            }
        }
    }
    assert_eq!(lookups, 1);
    let claims: u64 = hosts.iter().map(|h| h.fleet.link.view().claims_won).sum();
    assert_eq!(claims, 1);
    // Later asks are served from the bucket at once.
    assert!(matches!(
        shared[(claimer + 1) % 3].before_lookup(source).await,
        Shared::Answer(..)
    ));
    // A claimer that goes quiet: the others ask IPASIS themselves after claim_wait.
    let other = net("2001:db8:2::/64");
    assert!(matches!(
        shared[0].before_lookup(other).await,
        Shared::LookUp
    ));
    let t0 = std::time::Instant::now();
    assert!(matches!(
        shared[1].before_lookup(other).await,
        Shared::LookUp
    ));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(8),
        "waited {waited:?} for a quiet claimer (claim_wait 4 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_machine_with_a_held_host_id_publishes_and_applies_nothing() {
    let server = NatsServer::start();
    let cfg = config(&server);
    let mut a = host_on(&cfg, "edge-a", "machine-1", None, Vec::new()).await;
    a.connected().await;
    assert!(matches!(a.next().await, SourceEvent::ReplaceOrigin { .. }));
    let mut b = host(&cfg, "edge-b", None, Vec::new()).await;
    b.connected().await;
    assert!(matches!(b.next().await, SourceEvent::ReplaceOrigin { .. }));
    // The impostor: another machine configured with edge-a's id.
    let mut twin = host_on(&cfg, "edge-a", "machine-2", None, Vec::new()).await;
    let mut said = None;
    for _ in 0..100 {
        let v = twin.fleet.link.view();
        if let Some(e) = v
            .last_error
            .clone()
            .filter(|e| e.contains("held by machine machine-1"))
        {
            assert!(!v.connected, "{v:?}");
            said = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said = said.expect("the twin never said its id is held");
    assert!(said.contains("fleet.host_id"), "{said}");
    // What it decides is not published (its key would be edge-a's) ...
    twin.fleet
        .outbox
        .changed(&[&velocity("203.0.113.66/32")], &[]);
    // ... and peers' decisions are not applied under the borrowed id.
    b.fleet.outbox.changed(&[&velocity("203.0.113.77/32")], &[]);
    let got = proposed(a.next().await);
    assert_eq!(got[0].prefix, net("203.0.113.77/32"));
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), b.next())
            .await
            .is_err(),
        "the twin's decision reached a peer"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), twin.next())
            .await
            .is_err(),
        "the twin applied a peer's decision"
    );
    assert_eq!(twin.fleet.link.view().published, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiners_first_sync_is_streamed_in_parts_not_held_whole() {
    let server = NatsServer::start();
    let cfg = config(&server);
    // A host makes the buckets; a peer's 2 500 decisions are written as it would.
    let _a = joined(&cfg, "edge-a").await;
    let kv = bucket(&server).await;
    const N: usize = 2_500;
    for i in 0..N {
        let d = velocity(&format!("2001:db8::{i:x}/128"));
        let value = serde_json::to_vec(&fleet::wire::Shared::of("edge-x", &d)).unwrap();
        let key = fleet::keys::decision_key("edge-x", &d.holder(), &d.prefix);
        kv.put(key, value.into()).await.unwrap();
    }
    let mut c = host(&cfg, "edge-c", None, Vec::new()).await;
    let first = c.event().await;
    assert!(
        matches!(&first, SourceEvent::ReplaceBegin { .. }),
        "a large bucket begins a replacement in parts: {first:?}"
    );
    let mut got = 0;
    let mut parts = 0;
    loop {
        match c.event().await {
            SourceEvent::Propose(ds) => {
                assert!(ds.len() <= 1_000, "a part of {}", ds.len());
                got += ds.len();
                parts += 1;
            }
            SourceEvent::ReplaceEnd { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, N);
    assert!(parts >= 3, "{parts} parts");
    // The checkpoint follows the end, never a part.
    assert!(c.checkpoint().await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_markers_older_than_max_ttl_are_purged() {
    let server = NatsServer::start();
    let cfg = config(&server);
    let start = |max_ttl: Duration| {
        let here = fleet::Local {
            max_ttl,
            ..fleet_host::local("edge-a")
        };
        fleet_host::start(&cfg, here, None, Vec::new())
    };
    let mut a = start(Duration::from_secs(1)).await;
    a.connected().await;
    let d = velocity("203.0.113.5/32");
    let key = fleet::keys::decision_key("edge-a", &d.holder(), &d.prefix);
    a.fleet.outbox.changed(&[&d], &[]);
    a.fleet.outbox.changed(
        &[],
        &[Ended {
            decision: d.clone(),
            end: End::Lifted,
            ended_unix_ms: now_unix_ms(),
        }],
    );
    let client = async_nats::connect(server.url()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("KV_ipwarden-decisions")
        .await
        .unwrap();
    let subject = format!("$KV.ipwarden-decisions.{key}");
    let held = |stream: async_nats::jetstream::stream::Stream, subject: String| async move {
        use futures_util::TryStreamExt as _;
        let mut info = stream.info_with_subjects(&subject).await.unwrap();
        let mut n = 0;
        while let Some((_, c)) = info.try_next().await.unwrap() {
            n += c;
        }
        n
    };
    // The marker stays while it may matter to a peer ...
    for _ in 0..100 {
        if a.fleet.link.view().published >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(held(stream.clone(), subject.clone()).await, 1, "no marker");
    drop(a);
    // ... and is purged once it is older than max_ttl (here 1 s) and its margin.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let a = start(Duration::from_secs(1)).await;
    a.connected().await;
    let mut n = 1;
    for _ in 0..100 {
        n = held(stream.clone(), subject.clone()).await;
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n, 0, "the old marker of {key} is still in the bucket");
}
