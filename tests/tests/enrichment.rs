//! The daemon with IPASIS enrichment against the stand-in API, inside the edge namespace:
//! verdicts per kind of source, the challenge rate, one lookup per source and cache period,
//! IPv6 per /64, failure policies, and the key's secrecy.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::PermissionsExt as _,
    time::{Duration, Instant},
};

use ipwarden_tests::{
    BpfFs, Daemon, DaemonHome, Topology,
    ipasis_stub::{IpasisStub, Reply, answers},
    require_privileges,
    topology::EDGE_V4,
    traffic::{UdpSink, udp_flood},
};
use serde_json::Value;

const KEY: &str = "ipasis_4f3c2b1a09f8e7d6c5b4a392";

struct Env {
    topo: Topology,
    stub: IpasisStub,
    home: DaemonHome,
    _bpffs: BpfFs,
}

fn config(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 500
hard_pps_limit = 1000000

[ipasis]
base_url = "{base_url}"
key_file = "KEYFILE"
timeout = "500ms"
retries = 1
backoff = "50ms"
requests_per_second = 50
retry_failed_after = "1h"
{extra}
"#
    )
}

impl Env {
    fn new(extra: &str, sources: &[IpAddr]) -> Self {
        require_privileges();
        let bpffs = BpfFs::new();
        let topo = Topology::two_hosts();
        for s in sources {
            topo.add_source(*s);
        }
        let stub = IpasisStub::start_in(&topo.edge);
        let home = DaemonHome::new("", bpffs.path());
        let key_file = home.config().with_file_name("ipasis.key");
        std::fs::write(&key_file, KEY).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = config(&stub.base_url(), extra).replace("KEYFILE", key_file.to_str().unwrap());
        std::fs::write(home.config(), cfg).unwrap();
        Self {
            topo,
            stub,
            home,
            _bpffs: bpffs,
        }
    }

    fn start(&self) -> Daemon {
        Daemon::start(&self.home, &self.topo.edge)
    }

    fn flood(&self, sources: &[IpAddr], pps: u64, secs: f64) {
        std::thread::scope(|s| {
            for src in sources {
                s.spawn(|| {
                    udp_flood(
                        &self.topo.client,
                        *src,
                        (EDGE_V4, 9).into(),
                        pps,
                        Duration::from_secs_f64(secs),
                    )
                });
            }
        });
    }

    fn decision(&self, prefix: &str) -> Option<Value> {
        self.home.json(&["list"])["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["prefix"] == prefix)
            .cloned()
    }

    /// Waits (bounded) until `f` holds.
    fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.home.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn status(&self) -> Value {
        self.home.json(&["status"])
    }
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn each_kind_of_source_gets_its_verdict() {
    let (tor, hp, hosting, home_isp, vpn) = (v4(10), v4(11), v4(12), v4(13), v4(14));
    let env = Env::new("", &[tor, hp, hosting, home_isp, vpn]);
    env.stub.set("203.0.113.10", Reply::json(answers::TOR));
    env.stub
        .set("203.0.113.11", Reply::json(answers::HOSTING_PROXY));
    env.stub.set("203.0.113.12", Reply::json(answers::HOSTING));
    env.stub
        .set("203.0.113.13", Reply::json(answers::RESIDENTIAL));
    env.stub.set("203.0.113.14", Reply::json(answers::VPN));
    let _d = env.start();

    std::thread::scope(|s| {
        let polls_before = env.status()["polls"].as_u64().unwrap();
        s.spawn(|| env.flood(&[tor, hp, hosting, home_isp, vpn], 1500, 1.5));
        env.wait("the Tor block", || {
            env.decision("203.0.113.10/32").is_some()
        });
        let polls = env.status()["polls"].as_u64().unwrap() - polls_before;
        eprintln!("polls from flood start to the Tor block: {polls}");
        // Seen within two polls (plus one in progress), decided once the answer is in.
        assert!(polls <= 3, "Tor flood blocked after {polls} polls");
    });
    env.wait("five lookups", || env.stub.seen().len() >= 5);
    env.wait("three decisions", || {
        env.home.json(&["list"])["decisions"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    });
    let tor_d = env.decision("203.0.113.10/32").expect("tor blocked");
    assert_eq!(
        (tor_d["action"].as_str(), tor_d["origin"].as_str()),
        (Some("block"), Some("ipasis"))
    );
    assert!(
        tor_d["reason"].as_str().unwrap().contains("tor exit"),
        "{tor_d}"
    );
    let hp_d = env
        .decision("203.0.113.11/32")
        .expect("hosting+proxy blocked");
    assert_eq!(
        (hp_d["action"].as_str(), hp_d["score"].as_i64()),
        (Some("block"), Some(80))
    );
    let h_d = env.decision("203.0.113.12/32").expect("hosting challenged");
    assert_eq!(
        (h_d["action"].as_str(), h_d["score"].as_i64()),
        (Some("challenge"), Some(50))
    );
    assert_eq!(h_d["rate"]["pps"], 50);
    assert!(
        env.decision("203.0.113.13/32").is_none(),
        "residential: not blocked by enrichment"
    );
    assert!(
        env.decision("203.0.113.14/32").is_none(),
        "VPN: neutral by default"
    );

    // The challenged source keeps about its rate: burst 20 + 50 pps for 2 s, of 1000 sent.
    let sink = UdpSink::bind(&env.topo.edge, (EDGE_V4, 7100).into());
    let sent = udp_flood(
        &env.topo.client,
        hosting,
        (EDGE_V4, 7100).into(),
        500,
        Duration::from_secs(2),
    );
    let got = sink
        .drain(Duration::from_millis(300))
        .get(&hosting)
        .copied()
        .unwrap_or(0);
    eprintln!("challenged source: {got} of {sent} delivered");
    assert!(
        (80..=160).contains(&got),
        "{got} of {sent} delivered, expected about 120"
    );

    // explain shows the factors and the answer.
    let e = env.home.cli(&["explain", "203.0.113.11"]);
    assert!(
        e.contains("+50  hosting") && e.contains("+30  proxy") && e.contains("Big Cloud Hosting"),
        "{e}"
    );
    // The challenge set for an L7 proxy.
    let c = env.home.json(&["list", "--action", "challenge"]);
    let set: Vec<&str> = c["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(set, vec!["203.0.113.12/32"]);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn one_lookup_per_source_per_cache_period_even_across_restarts() {
    let src = v4(13);
    let env = Env::new("", &[src]);
    let d = env.start();
    env.flood(&[src], 1500, 1.0);
    env.wait("a lookup", || env.stub.count("203.0.113.13") == 1);
    // Quiet longer than the window ends the episode; a second flood starts a new one.
    std::thread::sleep(Duration::from_millis(2500));
    env.flood(&[src], 1500, 1.0);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        env.stub.count("203.0.113.13"),
        1,
        "second episode answered from the cache"
    );
    assert!(env.status()["ipasis"]["cache_hits"].as_u64().unwrap() >= 1);

    drop(d);
    let _d = env.start();
    let look = env.home.json(&["lookup", "203.0.113.13"]);
    assert_eq!(look["cached"], true);
    assert_eq!(look["record"]["operator"], "Home ISP");
    env.flood(&[src], 1500, 1.0);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        env.stub.count("203.0.113.13"),
        1,
        "the cache survived the restart"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_ipv6_slash_64_is_looked_up_once_and_decided_as_a_whole() {
    let hosts: Vec<IpAddr> = ["2001:db8:2::1", "2001:db8:2::2", "2001:db8:2::3:4"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let env = Env::new("", &hosts);
    env.stub.set_fallback(Reply::json(answers::TOR));
    let _d = env.start();
    std::thread::scope(|s| {
        for h in &hosts {
            s.spawn(|| {
                udp_flood(
                    &env.topo.client,
                    *h,
                    (ipwarden_tests::topology::EDGE_V6, 9).into(),
                    600,
                    Duration::from_millis(1500),
                )
            });
        }
    });
    env.wait("the /64 decision", || {
        env.decision("2001:db8:2::/64").is_some()
    });
    assert_eq!(
        env.stub.seen().len(),
        1,
        "one lookup for the /64: {:?}",
        env.stub.seen()
    );
    assert!(
        hosts.iter().any(|h| env.stub.seen()[0].ip == h.to_string()),
        "asked about a real address of the /64"
    );
    let list = env.home.json(&["list"]);
    assert_eq!(list["decisions"].as_array().unwrap().len(), 1);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn api_faults_never_crash_the_daemon_and_the_open_policy_decides_nothing() {
    let (slow, limited, broken, huge, failing) = (v4(20), v4(21), v4(22), v4(24), v4(25));
    let env = Env::new("", &[slow, limited, broken, huge, failing]);
    // A 5xx storm: every try of this source fails, retried and given up.
    env.stub
        .set("203.0.113.25", Reply::status(503, "unavailable"));
    // 10 MB, trickled: the daemon must stop reading at ipasis.max_body.
    let mut big = Reply::json(&format!("{{\"pad\":\"{}\"}}", "x".repeat(10 << 20)));
    big.trickle = Some(1 << 20);
    env.stub.set("203.0.113.24", big);
    env.stub.set(
        "203.0.113.20",
        Reply::json(answers::TOR).delayed(Duration::from_secs(3)),
    );
    env.stub.set(
        "203.0.113.21",
        Reply::status(429, "slow down").retry_after(30),
    );
    env.stub
        .set("203.0.113.22", Reply::json("<html>502</html>"));
    let mut d = env.start();
    // `status` stays quick while lookups hang and fail: the slowest answer of 20 over 2 s.
    let slowest = std::thread::scope(|s| {
        // The 429 pauses every lookup for 30 s, so the rate-limited source floods only once
        // the others have failed: a source judged heavy a poll after the 429 was never looked
        // up (seen twice in CI, on a loaded 2-CPU machine: four failures of five).
        s.spawn(|| env.flood(&[huge, slow, broken, failing], 1500, 2.0));
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let t = Instant::now();
            env.status();
            slowest = slowest.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(100));
        }
        slowest
    });
    env.wait("four failures", || {
        env.status()["ipasis"]["failures"].as_u64().unwrap_or(0) >= 4
    });
    env.flood(&[limited], 1500, 2.0);
    env.wait("five failures", || {
        env.status()["ipasis"]["failures"].as_u64().unwrap_or(0) >= 5
    });
    // 503 was retried (ipasis.retries = 1 in this configuration): two requests, then failure.
    assert_eq!(env.stub.count("203.0.113.25"), 2);
    let hwm_kb = d.peak_rss_kb();
    eprintln!(
        "API faults: slowest status {slowest:?}, daemon peak RSS {} MB",
        hwm_kb / 1024
    );
    assert!(
        slowest < Duration::from_millis(100),
        "status took {slowest:?}"
    );
    assert!(hwm_kb < 100 * 1024, "memory bounded: {} MB", hwm_kb / 1024);
    assert!(
        env.home.log_text().contains("larger than"),
        "the 10 MB body was cut off"
    );
    let s = env.status();
    assert!(
        s["ipasis"]["paused_secs"].as_u64().is_some_and(|p| p > 20),
        "429 pauses lookups: {s}"
    );
    assert!(
        s["ipasis"]["pause_reason"]
            .as_str()
            .unwrap()
            .contains("429")
    );
    assert!(
        env.home.json(&["list"])["decisions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "open: no decision"
    );
    assert!(d.running());
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_refused_key_pauses_lookups_and_says_so() {
    let refused = v4(23);
    let env = Env::new("", &[refused]);
    env.stub.set_fallback(Reply::status(401, "bad key"));
    let d = env.start();
    env.flood(&[refused], 1500, 1.0);
    env.wait("the 401", || {
        env.status()["ipasis"]["pause_reason"]
            .as_str()
            .is_some_and(|r| r.contains("401"))
    });
    drop(d);
    assert!(env.home.log_text().contains("IPASIS unusable"));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_closed_policy_blocks_briefly_when_the_api_is_down() {
    let src = v4(30);
    let env = Env::new("on_error = \"closed\"\nclosed_ttl = \"10m\"", &[src]);
    // Point the daemon at a port nobody listens on: connection refused.
    let dead = {
        let l = env
            .topo
            .edge
            .run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        l.local_addr().unwrap().port()
    };
    let cfg = std::fs::read_to_string(env.home.config())
        .unwrap()
        .replace(&env.stub.base_url(), &format!("http://127.0.0.1:{dead}"));
    std::fs::write(env.home.config(), cfg).unwrap();
    let _d = env.start();
    env.flood(&[src], 1500, 1.0);
    env.wait("the fail-closed block", || {
        env.decision("203.0.113.30/32").is_some()
    });
    let d = env.decision("203.0.113.30/32").unwrap();
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .starts_with("enrichment-failed"),
        "{d}"
    );
    let ttl = d["expires_unix_ms"].as_u64().unwrap() - d["created_unix_ms"].as_u64().unwrap();
    assert_eq!(ttl, 600_000);
    assert!(
        env.status()["ipasis"]["last_error"]
            .as_str()
            .unwrap()
            .contains("connect")
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_key_is_sent_only_as_the_header_and_never_shown() {
    let src = v4(10);
    let env = Env::new("", &[src]);
    env.stub.set("203.0.113.10", Reply::json(answers::TOR));
    let d = env.start();
    env.flood(&[src], 1500, 1.0);
    env.wait("the decision", || env.decision("203.0.113.10/32").is_some());
    for seen in env.stub.seen() {
        assert_eq!(seen.headers.get("x-api-key").map(String::as_str), Some(KEY));
        assert!(!seen.target.contains(KEY));
    }
    let mut shown = String::new();
    for args in [
        &["status"][..],
        &["list"],
        &["top"],
        &["explain", "203.0.113.10"],
        &["lookup", "203.0.113.10"],
    ] {
        shown.push_str(&env.home.cli(args));
        let mut json = args.to_vec();
        json.push("--json");
        shown.push_str(&env.home.cli(&json));
    }
    drop(d);
    shown.push_str(&env.home.log_text());
    assert!(!shown.contains(KEY), "the key leaked");
    assert!(!shown.contains(&KEY[8..]), "part of the key leaked");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_readable_key_file_stops_the_daemon_from_starting() {
    let env = Env::new("", &[]);
    let key_file = env.home.config().with_file_name("ipasis.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut d = Daemon::spawn(&env.home, &env.topo.edge, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.running(), "must refuse to start");
    let log = env.home.log_text();
    assert!(log.contains("chmod 600") && !log.contains(KEY), "{log}");
}
