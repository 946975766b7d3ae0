//! Real packets over a veth pair into the XDP program: verdicts and counters.
//!
//! Privileged: run with `cargo xtask test` (as root). Each test builds its own namespaces.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ipwarden_common::GlobalCounter;
use ipwarden_tests::{
    Fixture,
    topology::{CLIENT_V4, CLIENT_V6, EDGE_V4},
    traffic::{ping, udp_send},
};

const QUIET: Duration = Duration::from_millis(300);

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// Sends `n` datagrams from each source and returns what the edge received from each.
fn exchange(fx: &Fixture, sources: &[IpAddr], n: usize) -> Vec<usize> {
    let sink = fx.sink_for(sources[0]);
    for &src in sources {
        assert_eq!(
            udp_send(&fx.topo.client, src, Fixture::sink_addr(src), n, 64),
            n
        );
    }
    let got = sink.drain(QUIET);
    sources
        .iter()
        .map(|s| got.get(s).copied().unwrap_or(0))
        .collect()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn drops_blocked_ipv4_source_and_passes_others() {
    let fx = Fixture::attached(&[]);
    let attacker = v4("203.0.113.7");
    fx.topo.add_source(attacker);
    fx.map(&["block", "203.0.113.7"]);

    let got = exchange(&fx, &[attacker, CLIENT_V4.into()], 100);
    assert_eq!(got, vec![0, 100], "attacker dropped, client delivered");

    let dp = fx.dp();
    let g = dp.globals().unwrap();
    assert_eq!(g.get(GlobalCounter::Dropped), 100);
    // Blocked packets are not counted per source (a blocked source needs no velocity): the
    // attacker holds only a cached verdict and is not reported; the client is, exactly.
    let src = dp.sources_v4().unwrap();
    assert!(!src.iter().any(|s| IpAddr::V4(s.addr) == attacker));
    let client = src
        .iter()
        .find(|s| IpAddr::V4(s.addr) == IpAddr::from(CLIENT_V4))
        .unwrap();
    assert_eq!(client.stats.packets, 100);
}

/// Verdicts are cached beside the per-source counters; every change to the block set or the
/// allowlist must reach sources whose verdict is already cached, in both directions.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cached_verdicts_follow_every_change_to_the_maps() {
    let fx = Fixture::attached(&[]);
    let a = v4("203.0.113.7");
    let b = v4("203.0.113.8");
    let six = v6("2001:db8:2::5");
    for s in [a, b, six] {
        fx.topo.add_source(s);
    }
    // (`exchange` listens on one family at a time.)
    let both = |want_v4: Vec<usize>, want_v6: usize| {
        assert_eq!(exchange(&fx, &[a, b], 20), want_v4);
        assert_eq!(exchange(&fx, &[six], 20), vec![want_v6]);
    };
    // Cached as passing.
    both(vec![20, 20], 20);
    // Cached pass → block (exact), for both families.
    fx.map(&["block", "203.0.113.7"]);
    fx.map(&["block", "2001:db8:2::/64"]);
    both(vec![0, 20], 0);
    // Cached block → pass.
    fx.map(&["unblock", "203.0.113.7"]);
    fx.map(&["unblock", "2001:db8:2::/64"]);
    both(vec![20, 20], 20);
    // A prefix covers both cached sources.
    fx.map(&["block", "203.0.113.0/24"]);
    assert_eq!(exchange(&fx, &[a, b], 20), vec![0, 0]);
    // An allow entry lifts one of them; removing it blocks it again.
    fx.map(&["allow", "add", "203.0.113.8"]);
    assert_eq!(exchange(&fx, &[a, b], 20), vec![0, 20]);
    assert_eq!(
        fx.dp().globals().unwrap().get(GlobalCounter::Allowed),
        20,
        "allowed is counted from the cached verdict too"
    );
    fx.map(&["allow", "rm", "203.0.113.8"]);
    assert_eq!(exchange(&fx, &[a, b], 20), vec![0, 0]);
    // A source blocked before it ever sent: dropped, not reported, and passes once lifted,
    // counted from its first delivered packet.
    let fresh = v4("192.0.2.9");
    fx.topo.add_source(fresh);
    fx.map(&["block", "192.0.2.9"]);
    assert_eq!(exchange(&fx, &[fresh], 20), vec![0]);
    let reported = |ip: IpAddr| {
        fx.dp()
            .sources_v4()
            .unwrap()
            .into_iter()
            .find(|s| IpAddr::V4(s.addr) == ip)
            .map(|s| s.stats.packets)
    };
    assert_eq!(reported(fresh), None);
    fx.map(&["unblock", "192.0.2.9"]);
    assert_eq!(exchange(&fx, &[fresh], 20), vec![20]);
    assert_eq!(reported(fresh), Some(20));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn blocked_prefix_covers_its_hosts() {
    let fx = Fixture::attached(&[]);
    let (a, b) = (v4("203.0.113.7"), v4("203.0.113.200"));
    fx.topo.add_source(a);
    fx.topo.add_source(b);
    fx.map(&["block", "203.0.113.0/24"]);

    assert_eq!(exchange(&fx, &[a, b, CLIENT_V4.into()], 50), vec![0, 0, 50]);
    // ICMP too: the attacker's pings die, the client's are answered.
    assert_eq!(ping(&fx.topo.client, a, EDGE_V4.into(), 2), 0);
    assert_eq!(
        ping(&fx.topo.client, CLIENT_V4.into(), EDGE_V4.into(), 2),
        2
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn allow_entry_beats_block_entry() {
    let fx = Fixture::attached(&[]);
    let (friend, foe) = (v4("203.0.113.7"), v4("203.0.113.8"));
    fx.topo.add_source(friend);
    fx.topo.add_source(foe);
    fx.map(&["block", "203.0.113.0/24"]);
    fx.map(&["block", "203.0.113.7"]);
    fx.map(&["allow", "add", "203.0.113.7"]);

    assert_eq!(exchange(&fx, &[friend, foe], 40), vec![40, 0]);
    let g = fx.dp().globals().unwrap();
    assert_eq!(g.get(GlobalCounter::Allowed), 40);
    assert_eq!(g.get(GlobalCounter::Dropped), 40);

    // Removing the allow entry lets the blocks apply again.
    fx.map(&["allow", "rm", "203.0.113.7"]);
    assert_eq!(exchange(&fx, &[friend], 10), vec![0]);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn ipv6_block_covers_its_slash_64_and_not_the_neighbour() {
    let fx = Fixture::attached(&[]);
    let same_a = v6("2001:db8:2::5");
    let same_b = v6("2001:db8:2::9:9");
    let neighbour = v6("2001:db8:2:1::5");
    let neighbour_host = v6("2001:db8:2:1::6");
    for a in [same_a, same_b, neighbour, neighbour_host] {
        fx.topo.add_source(a);
    }
    // A bare IPv6 address means its /64.
    let out = fx.map(&["block", "2001:db8:2::5"]);
    assert!(out.contains("2001:db8:2::/64"), "{out}");

    assert_eq!(
        exchange(&fx, &[same_a, same_b, neighbour, CLIENT_V6.into()], 30),
        vec![0, 0, 30, 30]
    );

    // A /128 (kept in the LPM trie) blocks exactly one address of the neighbouring /64.
    fx.map(&["block", "2001:db8:2:1::5/128"]);
    assert_eq!(exchange(&fx, &[neighbour, neighbour_host], 30), vec![0, 30]);
    // Sent in the other order (the /64's cached verdict must not decide for its other host).
    assert_eq!(exchange(&fx, &[neighbour_host, neighbour], 30), vec![30, 0]);
    fx.map(&["unblock", "2001:db8:2:1::5/128"]);
    assert_eq!(
        exchange(&fx, &[neighbour, neighbour_host], 30),
        vec![30, 30]
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn per_source_counters_are_exact_and_ipv6_is_aggregated_per_slash_64() {
    use ipwarden_tests::traffic::tcp_connect;

    let fx = Fixture::attached(&[]);
    let src4 = v4("203.0.113.7");
    let syn4 = v4("203.0.113.8");
    let v6_hosts = [
        v6("2001:db8:2::1"),
        v6("2001:db8:2::2"),
        v6("2001:db8:2::3:4"),
    ];
    let syn6 = v6("2001:db8:2:5::8");
    for a in [src4, syn4, syn6].into_iter().chain(v6_hosts) {
        fx.topo.add_source(a);
    }

    assert_eq!(exchange(&fx, &[src4], 100), vec![100]);
    // From one CPU: the latest address of a /64 is ordered only within a CPU (the counters are
    // per CPU and carry no timestamp); across CPUs the one that counted the most wins.
    let got = ipwarden_tests::cpu::on_cpu(0, || exchange(&fx, &v6_hosts, 40)).unwrap();
    assert_eq!(got, vec![40, 40, 40]);
    // Connection attempts to a closed port: one SYN each, answered by a RST.
    for _ in 0..3 {
        let r = tcp_connect(
            &fx.topo.client,
            syn4,
            (EDGE_V4, 9).into(),
            Duration::from_secs(2),
        );
        assert!(r.is_err(), "port 9 must be closed");
    }
    for _ in 0..2 {
        let dst = (ipwarden_tests::topology::EDGE_V6, 9).into();
        assert!(tcp_connect(&fx.topo.client, syn6, dst, Duration::from_secs(2)).is_err());
    }

    let dp = fx.dp();
    let s4 = dp.sources_v4().unwrap();
    let udp4 = s4
        .iter()
        .find(|s| IpAddr::V4(s.addr) == src4)
        .unwrap()
        .stats;
    assert_eq!(udp4.packets, 100);
    // Ethernet 14 + IPv4 20 + UDP 8 + payload 64.
    assert_eq!(udp4.bytes, 100 * (14 + 20 + 8 + 64));
    assert_eq!(udp4.syn, 0);
    assert!(udp4.first_seen_ns > 0);
    let tcp4 = s4
        .iter()
        .find(|s| IpAddr::V4(s.addr) == syn4)
        .unwrap()
        .stats;
    assert_eq!((tcp4.packets, tcp4.syn), (3, 3));

    let s6 = dp.sources_v6().unwrap();
    let agg = s6
        .iter()
        .find(|s| s.net.to_string() == "2001:db8:2::/64")
        .expect("one entry for the /64");
    assert_eq!(agg.stats.packets, 120, "three hosts, one /64");
    assert_eq!(agg.stats.bytes, 120 * (14 + 40 + 8 + 64));
    assert_eq!(
        IpAddr::V6(agg.last_addr),
        v6_hosts[2],
        "the last address sent from"
    );
    assert!(
        !s6.iter()
            .any(|s| s.net.to_string().starts_with("2001:db8:2::") && s.net.prefix_len() != 64),
        "entries are /64s"
    );
    let tcp6 = s6
        .iter()
        .find(|s| s.net.to_string() == "2001:db8:2:5::/64")
        .unwrap();
    assert_eq!((tcp6.stats.packets, tcp6.stats.syn), (2, 2));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn monitor_mode_passes_and_counts_would_be_drops() {
    let fx = Fixture::attached(&["--monitor"]);
    let attacker = v4("203.0.113.7");
    fx.topo.add_source(attacker);
    fx.map(&["block", "203.0.113.7"]);
    assert!(fx.dp().monitor().unwrap());

    assert_eq!(
        exchange(&fx, &[attacker], 50),
        vec![50],
        "monitor mode passes"
    );
    let g = fx.dp().globals().unwrap();
    assert_eq!(g.get(GlobalCounter::Monitored), 50);
    assert_eq!(g.get(GlobalCounter::Dropped), 0);

    fx.map(&["monitor", "off"]);
    assert_eq!(exchange(&fx, &[attacker], 50), vec![0], "enforcing again");
    let g = fx.dp().globals().unwrap();
    assert_eq!(g.get(GlobalCounter::Monitored), 50);
    assert_eq!(g.get(GlobalCounter::Dropped), 50);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn expired_block_no_longer_drops() {
    let fx = Fixture::attached(&[]);
    let attacker = v4("203.0.113.7");
    fx.topo.add_source(attacker);
    fx.map(&["block", "203.0.113.7", "--ttl", "1s"]);
    assert_eq!(exchange(&fx, &[attacker], 20), vec![0]);

    std::thread::sleep(Duration::from_millis(1500));
    // The kernel checks the deadline itself: nobody removed the entry.
    let list = fx.map(&["list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(json["blocks"][0]["prefix"], "203.0.113.7/32");
    assert_eq!(json["blocks"][0]["expired"], true);
    assert_eq!(exchange(&fx, &[attacker], 20), vec![20]);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn challenge_rate_limits_each_source_to_about_its_rate() {
    use ipwarden_tests::traffic::{UdpSink, udp_flood};

    let fx = Fixture::attached(&[]);
    let (a, b) = (v4("203.0.113.7"), v4("203.0.113.8"));
    fx.topo.add_source(a);
    fx.topo.add_source(b);
    // 50 pps with bursts of 10, for every source in the /24, each with its own bucket.
    fx.map(&[
        "block",
        "203.0.113.0/24",
        "--challenge",
        "50",
        "--burst",
        "10",
    ]);
    let list = fx.map(&["list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(json["blocks"][0]["action"], "challenge", "{list}");

    let sink = UdpSink::bind(&fx.topo.edge, Fixture::sink_addr(a));
    let secs = 2.0;
    let (sent_a, sent_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| {
            udp_flood(
                &fx.topo.client,
                a,
                Fixture::sink_addr(a),
                500,
                Duration::from_secs_f64(secs),
            )
        });
        let tb = s.spawn(|| {
            udp_flood(
                &fx.topo.client,
                b,
                Fixture::sink_addr(b),
                500,
                Duration::from_secs_f64(secs),
            )
        });
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let got = sink.drain(QUIET);
    drop(sink);
    for (src, sent) in [(a, sent_a), (b, sent_b)] {
        let delivered = got.get(&src).copied().unwrap_or(0) as f64;
        eprintln!("challenge: {src} sent {sent}, delivered {delivered}");
        // Burst + rate x duration = 10 + 100; allow for timer slack on a busy 2-vCPU VM.
        assert!(
            (70.0..=150.0).contains(&delivered),
            "{src}: {delivered} of {sent} delivered, expected about 110"
        );
    }
    let g = fx.dp().globals().unwrap();
    let delivered_total: usize = got.values().sum();
    assert_eq!(
        g.get(GlobalCounter::Limited),
        sent_a + sent_b - delivered_total as u64,
        "everything not delivered was rate-limited"
    );
    // A source outside the challenged prefix is not limited.
    assert_eq!(exchange(&fx, &[CLIENT_V4.into()], 100), vec![100]);
}
