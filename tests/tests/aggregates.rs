//! Floods spread over many sources of one network, each source under `pps_threshold`: the
//! network is blocked as a prefix within a few polls, a client elsewhere keeps full
//! connectivity, and a network holding an allowlisted address is not blocked.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use ipwarden_tests::{
    DaemonEnv,
    frames::{RawSocket, udp4, udp6},
    topology::{CLIENT_IF, CLIENT_MAC, CLIENT_V4, CLIENT_V6, EDGE_MAC, EDGE_V4, EDGE_V6},
    traffic::{UdpSink, udp_send},
};
use serde_json::Value;

/// Per-source threshold far above what any sprayed source sends (about 10 pps).
fn config(aggregate_pps: u64) -> String {
    format!(
        r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 500
syn_pps_threshold = 200
hard_pps_limit = 1000000

[detection.aggregate]
pps = {aggregate_pps}
min_sources = 16
"#
    )
}

/// Sends `frames` round-robin at about `pps` for `duration` (bounded), as many sources would.
fn spray(sock: &RawSocket, frames: &[Vec<u8>], pps: u64, duration: Duration) -> usize {
    let start = Instant::now();
    let mut sent = 0usize;
    while start.elapsed() < duration {
        let due = (start.elapsed().as_secs_f64() * pps as f64) as usize;
        while sent < due {
            match sock.send(&frames[sent % frames.len()]) {
                Ok(()) => sent += 1,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => break,
                Err(e) => panic!("spraying: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    sent
}

fn decision(env: &DaemonEnv, prefix: &str) -> Option<Value> {
    env.decisions().into_iter().find(|d| d["prefix"] == prefix)
}

fn polls(env: &DaemonEnv) -> u64 {
    env.home.json(&["status"])["polls"].as_u64().unwrap()
}

/// Datagrams delivered out of 20 sent from `src` to `dst` on the edge.
fn delivered(env: &DaemonEnv, src: IpAddr, dst: SocketAddr) -> usize {
    let sink = UdpSink::bind(&env.topo.edge, dst);
    udp_send(&env.topo.client, src, dst, 20, 16);
    sink.drain(Duration::from_millis(300))
        .get(&src)
        .copied()
        .unwrap_or(0)
}

/// Sprays `frames` in the background while `check` runs; returns what `check` returned.
fn during_spray<T>(
    env: &DaemonEnv,
    frames: Vec<Vec<u8>>,
    pps: u64,
    secs: u64,
    check: impl FnOnce() -> T,
) -> T {
    std::thread::scope(|s| {
        let client = &env.topo.client;
        s.spawn(move || {
            let sock = RawSocket::open(client, CLIENT_IF);
            spray(&sock, &frames, pps, Duration::from_secs(secs))
        });
        check()
    })
}

/// Waits (bounded) until the decision on `prefix` exists; returns the polls it took.
fn polls_until_blocked(env: &DaemonEnv, prefix: &str, from: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(8);
    while decision(env, prefix).is_none() {
        assert!(
            Instant::now() < deadline,
            "{prefix} was not blocked: {:?}\n{}",
            env.prefixes(),
            env.home.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    polls(env) - from
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_48_spread_over_500_quiet_64s_is_blocked_and_another_48_keeps_connectivity() {
    let env = DaemonEnv::new(&config(2000), &[]);
    let _daemon = env.start();
    // 500 /64s of 2001:db8:66::/48 at ~10 pps each: 5000 pps together.
    let frames: Vec<Vec<u8>> = (0..500u16)
        .map(|i| {
            let src = Ipv6Addr::new(0x2001, 0xdb8, 0x66, i, 0, 0, 0, 1);
            udp6(EDGE_MAC, CLIENT_MAC, src, EDGE_V6, 16)
        })
        .collect();
    let start = polls(&env);
    let took = during_spray(&env, frames, 5000, 5, || {
        let took = polls_until_blocked(&env, "2001:db8:66::/48", start);
        // `explain` shows the aggregate, its members and rate.
        let e = env.home.json(&["explain", "2001:db8:66:7::1"]);
        assert_eq!(e["verdict"], "blocked", "{e}");
        let agg = &e["aggregates"][0];
        assert_eq!(agg["net"], "2001:db8:66::/48", "{e}");
        assert!(agg["members"].as_u64().unwrap() >= 16, "{e}");
        assert!(agg["pps"].as_f64().unwrap() > 1000.0, "{e}");
        let text = env.home.cli(&["explain", "2001:db8:66:7::1"]);
        assert!(text.contains("in 2001:db8:66::/48:"), "{text}");
        // The client, in 2001:db8:1::/48, still gets everything through.
        let to = SocketAddr::new(EDGE_V6.into(), 7000);
        assert_eq!(delivered(&env, CLIENT_V6.into(), to), 20);
        took
    });
    assert!(
        took <= 4,
        "blocked after {took} polls (3 plus the one under way)"
    );
    let d = decision(&env, "2001:db8:66::/48").unwrap();
    assert_eq!(d["origin"], "velocity");
    assert_eq!(d["action"], "block");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("aggregate heavy hitter"),
        "{d}"
    );
    // No member was a heavy hitter by itself, and nothing wider was blocked: the /32 holds the
    // client.
    let prefixes = env.prefixes();
    assert!(
        !prefixes.iter().any(|p| p.ends_with("/64")) && !prefixes.contains("2001:db8::/32"),
        "{prefixes:?}"
    );
    let to = SocketAddr::new(EDGE_V6.into(), 7000);
    assert_eq!(delivered(&env, CLIENT_V6.into(), to), 20);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_24_of_quiet_sources_is_blocked_at_a_lower_aggregate_rate() {
    let env = DaemonEnv::new(&config(500), &[]);
    let _daemon = env.start();
    // 100 sources of 203.0.113.0/24 at ~10 pps each: 1000 pps together.
    let frames: Vec<Vec<u8>> = (1..=100u8)
        .map(|i| {
            udp4(
                EDGE_MAC,
                CLIENT_MAC,
                Ipv4Addr::new(203, 0, 113, i),
                EDGE_V4,
                16,
            )
        })
        .collect();
    let start = polls(&env);
    let took = during_spray(&env, frames, 1000, 5, || {
        let took = polls_until_blocked(&env, "203.0.113.0/24", start);
        assert_eq!(env.delivered(CLIENT_V4.into(), 20), 20);
        took
    });
    assert!(took <= 4, "blocked after {took} polls");
    let prefixes = env.prefixes();
    assert!(
        !prefixes.contains("203.0.0.0/16") && !prefixes.iter().any(|p| p.ends_with("/32")),
        "{prefixes:?}"
    );
    // Blocked in the kernel: a source of the /24 gets nothing through.
    env.topo.add_source(Ipv4Addr::new(203, 0, 113, 200).into());
    assert_eq!(env.delivered(Ipv4Addr::new(203, 0, 113, 200).into(), 20), 0);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_aggregate_holding_an_allowlisted_address_is_not_blocked() {
    let env = DaemonEnv::new(&config(500), &[]);
    let _daemon = env.start();
    env.home.cli(&["allow", "add", "203.0.113.250"]);
    let frames: Vec<Vec<u8>> = (1..=100u8)
        .map(|i| {
            udp4(
                EDGE_MAC,
                CLIENT_MAC,
                Ipv4Addr::new(203, 0, 113, i),
                EDGE_V4,
                16,
            )
        })
        .collect();
    during_spray(&env, frames, 1000, 3, || {});
    std::thread::sleep(Duration::from_millis(400));
    let prefixes = env.prefixes();
    assert!(
        !prefixes.contains("203.0.113.0/24") && !prefixes.contains("203.0.0.0/16"),
        "{prefixes:?}"
    );
    let log = env.home.log_text();
    assert!(
        log.contains("heavy aggregate holds an allowlisted address: not blocked"),
        "the aggregate was not judged heavy at all:\n{log}"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn with_ipasis_a_heavy_24_is_decided_when_its_busiest_members_agree() {
    use ipwarden_tests::{
        BpfFs, Daemon, DaemonHome, Topology,
        ipasis_stub::{IpasisStub, Reply, answers},
        require_privileges,
    };
    require_privileges();
    let bpffs = BpfFs::new();
    let topo = Topology::two_hosts();
    let stub = IpasisStub::start_in(&topo.edge);
    // Every member is a hosting address: scored 50 (+20 velocity), a challenge each.
    stub.set_fallback(Reply::json(answers::HOSTING));
    let home = DaemonHome::with_ipasis(&config(500), &stub.base_url(), bpffs.path());
    let _daemon = Daemon::start(&home, &topo.edge);
    let frames: Vec<Vec<u8>> = (1..=100u8)
        .map(|i| {
            udp4(
                EDGE_MAC,
                CLIENT_MAC,
                Ipv4Addr::new(203, 0, 113, i),
                EDGE_V4,
                16,
            )
        })
        .collect();
    let decided = std::thread::scope(|s| {
        let client = &topo.client;
        s.spawn(move || {
            let sock = RawSocket::open(client, CLIENT_IF);
            spray(&sock, &frames, 1000, Duration::from_secs(4))
        });
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let list = home.json(&["list"]);
            if let Some(d) = list["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["prefix"] == "203.0.113.0/24")
            {
                break d.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the /24 was not decided: {list}\n{}",
                home.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert_eq!(decided["origin"], "ipasis", "{decided}");
    assert_eq!(decided["action"], "challenge", "{decided}");
    assert!(
        decided["reason"]
            .as_str()
            .unwrap()
            .contains("busiest members all challenged"),
        "{decided}"
    );
    // Three lookups (the busiest members), not one per source of the /24.
    assert!(stub.seen().len() <= 4, "{} lookups", stub.seen().len());
}
