//! Faults an edge filter must survive: repeated crashes mid-flood, a lost state database, and
//! attempts to block the host's own gateway.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use ipwarden_common::GlobalCounter;
use ipwarden_tests::{
    Daemon, DaemonEnv,
    topology::{CLIENT_V4, EDGE_IF, EDGE_V4},
    traffic::{UdpSink, udp_flood},
};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

fn env() -> DaemonEnv {
    DaemonEnv::new("[detection]\npoll_interval = \"200ms\"\n", &[ATTACKER])
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn repeated_sigkill_mid_flood_never_lets_a_blocked_source_through() {
    let env = env();
    let mut daemon = Some(env.start());
    env.home.cli(&["block", "203.0.113.7", "--permanent"]);
    env.home.cli(&["block", "192.0.2.0/24", "--ttl", "1h"]);
    let decisions = env.decisions();
    let kernel = env.kernel_blocks();
    let sink = UdpSink::bind(&env.topo.edge, (EDGE_V4, 7300).into());
    let flooding = AtomicBool::new(true);
    let restarts = 3;
    let sent = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            let mut sent = 0;
            while flooding.load(Ordering::Relaxed) {
                sent += udp_flood(
                    &env.topo.client,
                    ATTACKER,
                    (EDGE_V4, 7300).into(),
                    2000,
                    Duration::from_millis(500),
                );
            }
            sent
        });
        for _ in 0..restarts {
            std::thread::sleep(Duration::from_millis(400));
            daemon.take().unwrap().kill9();
            std::thread::sleep(Duration::from_millis(300));
            daemon = Some(env.start());
            assert_eq!(env.decisions(), decisions, "no decision lost");
            assert_eq!(
                env.kernel_blocks(),
                kernel,
                "the maps hold the same entries"
            );
        }
        flooding.store(false, Ordering::Relaxed);
        flood.join().unwrap()
    });
    let got = sink.drain(Duration::from_millis(300));
    eprintln!(
        "{restarts} SIGKILLs mid-flood: {sent} packets sent, {} delivered",
        got.get(&ATTACKER).copied().unwrap_or(0)
    );
    assert_eq!(
        got.get(&ATTACKER),
        None,
        "a blocked packet got through during a restart"
    );
    let dropped = env
        .ipw
        .dataplane()
        .globals()
        .unwrap()
        .get(GlobalCounter::Dropped);
    assert!(dropped >= sent * 9 / 10, "{dropped} of {sent} dropped");
    assert!(
        env.home
            .log_text()
            .matches("adopting the existing attachment")
            .count()
            >= restarts
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_unreadable_store_stops_the_daemon_and_rebuild_recovers_from_the_maps() {
    let env = env();
    let daemon = env.start();
    env.home.cli(&["block", "203.0.113.7", "--ttl", "1h"]);
    env.home.cli(&["block", "2001:db8:2::/48", "--permanent"]);
    env.home.cli(&["allow", "add", "198.51.100.128/25"]);
    assert!(daemon.stop().success());
    let db = env.home.state_dir().join("ipwarden.redb");
    std::fs::write(&db, b"this is not a redb file, it was torn or corrupted").unwrap();

    let mut refused = Daemon::spawn(&env.home, &env.topo.edge, &[]);
    let status = refused
        .wait_exit(Duration::from_secs(10))
        .expect("must exit, not run");
    assert!(!status.success());
    let log = env.home.log_text();
    assert!(
        log.contains("refusing to start")
            && log.contains("ipwarden.redb")
            && log.contains("--rebuild-store"),
        "{log}"
    );
    // Meanwhile the data plane kept enforcing.
    assert!(env.kernel_blocks().contains("203.0.113.7/32"));

    let _d = Daemon::start_args(&env.home, &env.topo.edge, &[], &["--rebuild-store"]);
    let d = env.decisions();
    let by = |p: &str| {
        d.iter()
            .find(|x| x["prefix"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("{p} not rebuilt: {d:?}"))
    };
    let ttl = by("203.0.113.7/32")["expires_unix_ms"].as_u64().unwrap()
        - by("203.0.113.7/32")["created_unix_ms"].as_u64().unwrap();
    assert!(
        ttl > 3_500_000 && ttl <= 3_600_000,
        "expiry kept: {ttl} ms left"
    );
    assert!(by("2001:db8:2::/48")["expires_unix_ms"].is_null());
    let allow = env.home.json(&["allow", "list"]);
    assert!(
        allow["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["prefix"] == "198.51.100.128/25" && a["origin"] == "runtime")
    );
    let aside: Vec<_> = std::fs::read_dir(env.home.state_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("unreadable"))
        .collect();
    assert_eq!(aside.len(), 1, "the unreadable file is kept aside");
}

/// A daemon's test bed whose edge routes by default through the client (198.51.100.2), with
/// `allow` (an `[allow]` section) in its configuration.
fn behind_a_gateway(allow: &str) -> DaemonEnv {
    let env = DaemonEnv::new(
        &format!("[detection]\npoll_interval = \"200ms\"\n\n{allow}"),
        &[ATTACKER],
    );
    env.topo.edge.ip(&[
        "route",
        "add",
        "default",
        "via",
        &CLIENT_V4.to_string(),
        "dev",
        EDGE_IF,
    ]);
    env
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_default_gateway_is_never_blocked() {
    // Turning off the builtin (loopback, link-local) entries leaves the management path
    // protected: it has its own setting.
    let env = behind_a_gateway("[allow]\nbuiltin = false\n");
    let _d = env.start();
    let allow = env.home.json(&["allow", "list"]);
    assert!(
        allow["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["prefix"] == "198.51.100.2/32" && a["origin"] == "protected"),
        "{allow}"
    );
    let out = env.home.cli_output(&["block", "198.51.100.0/24"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to block") && err.contains("protected"),
        "{err}"
    );
    let out = env.home.cli_output(&["allow", "rm", "198.51.100.2/32"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "protected entries cannot be removed"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn management_protection_off_is_said_in_status() {
    let env = behind_a_gateway("[allow]\nprotect_management = false\n");
    let _d = env.start();
    let status = env.home.json(&["status"]);
    assert!(
        status["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("allow.protect_management is off")),
        "{status}"
    );
    // The operator asked for it: the gateway can be blocked.
    env.home.cli(&["block", "198.51.100.2"]);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn acknowledged_blocks_survive_a_kill_during_a_burst() {
    let env = env();
    let daemon = env.start();
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..=255u8 {
                let p = format!("192.0.2.{i}");
                let out = env.home.cli_output(&["block", &p, "--ttl", "1h"]);
                if !out.status.success() {
                    break;
                }
                acked.lock().unwrap().push(format!("{p}/32"));
            }
        });
        std::thread::sleep(Duration::from_millis(400));
        daemon.kill9();
    });
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.len() > 3,
        "the burst had started: {} acknowledged",
        acked.len()
    );
    assert!(acked.len() < 256, "the kill landed mid-burst");
    let _d = env.start();
    let listed: BTreeSet<String> = env
        .decisions()
        .iter()
        .map(|d| d["prefix"].as_str().unwrap().to_owned())
        .collect();
    let kernel = env.kernel_blocks();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|p| !listed.contains(*p) || !kernel.contains(*p))
        .collect();
    eprintln!(
        "kill mid-burst: {} blocks acknowledged, {} stored after restart, lost {}",
        acked.len(),
        listed.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged decisions lost: {lost:?}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_million_source_flood_stays_bounded_and_the_client_keeps_connectivity() {
    use ipwarden_tests::{
        frames::{RawSocket, udp4, udp6},
        ipasis_stub::{IpasisStub, Reply, answers},
        topology::{CLIENT_IF, CLIENT_MAC, EDGE_MAC, EDGE_V6},
        traffic::ping,
    };
    const CAPACITY: usize = 65_536;
    const FLOOD: usize = 1_000_000;
    let env = env();
    let stub = IpasisStub::start_in(&env.topo.edge);
    stub.set_fallback(Reply::json(answers::RESIDENTIAL));
    let key = env.home.config().with_file_name("ipasis.key");
    std::fs::write(&key, "ipasis_flood_test").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(
        env.home.config(),
        format!(
            "[detection]\npoll_interval = \"200ms\"\n[dataplane]\nmax_sources = {CAPACITY}\n[ipasis]\nbase_url = \"{}\"\nkey_file = \"{}\"\nqueue_size = 64\n",
            stub.base_url(),
            key.display()
        ),
    )
    .unwrap();
    let daemon = env.start();
    let sock = RawSocket::open(&env.topo.client, CLIENT_IF);
    // IPv4 sources from 192.0.2.0/24 only: spoofing the test bed's own 198.51.100.0/24 and
    // 203.0.113.0/24 addresses would make the edge answer (ICMP, ARP) on the client's link.
    let started = std::time::Instant::now();
    let (sent, pings) = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(2));
            ping(&env.topo.client, CLIENT_V4.into(), EDGE_V4.into(), 10)
        });
        let mut sent = 0;
        while sent < FLOOD && started.elapsed() < Duration::from_secs(60) {
            let frame = if sent % 16 == 0 {
                let j = (sent / 16) % 256;
                udp4(
                    EDGE_MAC,
                    CLIENT_MAC,
                    Ipv4Addr::new(192, 0, 2, j as u8),
                    EDGE_V4,
                    8,
                )
            } else {
                let src = std::net::Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    (sent >> 16) as u16,
                    sent as u16,
                    0,
                    0,
                    0,
                    1,
                );
                udp6(EDGE_MAC, CLIENT_MAC, src, EDGE_V6, 8)
            };
            match sock.send(&frame) {
                Ok(()) => sent += 1,
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
            // About 50k pps: fast enough for a million sources in ~20 s, slow enough that the
            // edge's kernel stack (which must take every new, unblockable source) keeps up on
            // a 2-vCPU test machine.
            if sent % 512 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        (sent, pinger.join().unwrap())
    });
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(600));
    let status = env.home.json(&["status"]);
    let hwm_kb = daemon.peak_rss_kb();
    let dp = env.ipw.dataplane();
    let (t4, t6) = (
        dp.sources_v4().unwrap().len(),
        dp.sources_v6().unwrap().len(),
    );
    eprintln!(
        "flood: {sent} frames from ~{} distinct sources in {:.1} s; counter maps {t4} v4 + {t6} v6 of {CAPACITY} each; daemon peak RSS {} MB; tracked {}; enrichment queue {}; client pings answered {pings}/10",
        sent - sent / 16 + 256,
        took.as_secs_f64(),
        hwm_kb / 1024,
        status["tracked_sources"],
        status["ipasis"]["queued"]
    );
    assert_eq!(sent, FLOOD, "the whole flood was sent");
    // Reported sources: the LRU map's entries plus those still only in the per-CPU front tables.
    let front = ipwarden_common::front::FRONT_SLOTS as usize * aya::util::nr_cpus().unwrap();
    assert!(
        t6 <= CAPACITY + front && t4 <= CAPACITY + front,
        "maps bounded: {t4} v4, {t6} v6"
    );
    assert!(t6 >= CAPACITY / 2, "the IPv6 map is at capacity: {t6}");
    // A debug build tracking ~98k sources (65 536 in the LRU map, up to 32 768 more only in the
    // front tables) peaked at about 100 MB when this was written; with the control requests on
    // blocking threads (each its own malloc arena) it peaks at 117-160 MB (seven runs, session
    // 7, the same before and after that session's engine changes). Before the detector forgot
    // evicted sources the same flood took it past 240 MB.
    assert!(hwm_kb < 200 * 1024, "daemon peak RSS {} MB", hwm_kb / 1024);
    let tracked = status["tracked_sources"].as_u64().unwrap() as usize;
    assert!(
        tracked <= 2 * (CAPACITY + front) + 64,
        "the detector is bounded by the maps: {tracked}"
    );
    assert!(status["ipasis"]["queued"].as_u64().unwrap() <= 64);
    assert!(
        pings >= 8,
        "the legitimate client kept connectivity: {pings}/10"
    );
    drop(daemon);
}
