//! `/metrics` on a real daemon during a flood: Debian's `promtool check metrics` accepts the
//! scrape, the counters agree with `stats`, and every metric the shipped Grafana dashboard
//! queries is in the scrape.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use ipwarden_tests::{
    BpfFs, Daemon, DaemonHome, Topology,
    ipasis_stub::IpasisStub,
    require_privileges,
    topology::{EDGE_IF, EDGE_V4},
    traffic::udp_flood,
};

const BLOCKED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const LOUD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 8);
const METRICS: &str = "127.0.0.1:9720";

fn promtool() -> PathBuf {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/prometheus/usr/bin/promtool");
    assert!(
        p.is_file(),
        "promtool is not unpacked at {}: run `cargo xtask setup`",
        p.display()
    );
    p
}

/// One GET of /metrics inside the edge namespace, in the classic text format: the body.
fn scrape(topo: &Topology) -> String {
    topo.edge.run(|| {
        let mut s = TcpStream::connect(METRICS).expect("connecting to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: edge\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // Without an Accept header for OpenMetrics: the classic format promtool lints.
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        body.to_owned()
    })
}

/// The value of the sample `name{labels}` (labels as they appear, in order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every metric family the scrape declares (`# TYPE name ...`).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| Some(l.strip_prefix("# TYPE ")?.split(' ').next()?.to_owned()))
        .collect()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_scrape_during_a_flood_passes_promtool_and_agrees_with_stats() {
    require_privileges();
    let bpffs = BpfFs::new();
    let topo = Topology::two_hosts();
    topo.add_source(BLOCKED.into());
    topo.add_source(LOUD.into());
    let stub = IpasisStub::start_in(&topo.edge);
    let home = DaemonHome::with_ipasis(
        &format!(
            r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 300
hard_pps_limit = 1000000

[metrics]
listen = "{METRICS}"
"#
        ),
        &stub.base_url(),
        bpffs.path(),
    );
    // Logs as JSON lines, for collectors other than journald.
    let _daemon = Daemon::start_args(&home, &topo.edge, &[], &["--log-format", "json"]);
    home.cli(&["block", "203.0.113.7"]);
    let log = home.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["message"] == "ipwarden running"),
        "{log}"
    );
    let decision = lines
        .iter()
        .find(|l| l["prefix"] == "203.0.113.7/32")
        .unwrap_or_else(|| panic!("the decision's log line carries its prefix as a field: {log}"));
    assert_eq!(decision["origin"], "manual", "{decision}");

    let during = std::thread::scope(|s| {
        for (src, pps) in [(BLOCKED, 2000), (LOUD, 1000)] {
            let topo = &topo;
            s.spawn(move || {
                udp_flood(
                    &topo.client,
                    IpAddr::V4(src),
                    (EDGE_V4, 9).into(),
                    pps,
                    Duration::from_secs(3),
                )
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        scrape(&topo)
    });

    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(during.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{during}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dropped_during = sample(
        &during,
        &format!("ipwarden_packets_total{{iface=\"{EDGE_IF}\",verdict=\"dropped\"}}"),
    );
    assert!(
        dropped_during.is_some_and(|d| d > 500.0),
        "drops counted during the flood: {dropped_during:?}\n{during}"
    );
    assert!(
        sample(
            &during,
            "ipwarden_decisions{origin=\"manual\",action=\"block\"}"
        ) == Some(1.0),
        "{during}"
    );
    assert!(
        sample(
            &during,
            "ipwarden_ipasis_requests_total{outcome=\"answer\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "the loud source was looked up: {during}"
    );

    // `top --watch` into a pipe: successive timestamped tables, no terminal escapes.
    let watched = home.cli(&["top", "--watch", "0.2", "--iterations", "3"]);
    assert_eq!(watched.matches("== ").count(), 3, "{watched}");
    assert_eq!(watched.matches("SOURCE").count(), 3, "{watched}");
    assert!(!watched.contains('\x1b'), "{watched}");

    // Quiet again: the scrape and `stats` read the same kernel counters.
    std::thread::sleep(Duration::from_millis(500));
    let after = scrape(&topo);
    let stats = home.json(&["stats"]);
    let iface = &stats["interfaces"][0];
    let name = iface["iface"].as_str().unwrap();
    for verdict in ["dropped", "limited", "not_ip", "malformed"] {
        let metric = sample(
            &after,
            &format!("ipwarden_packets_total{{iface=\"{name}\",verdict=\"{verdict}\"}}"),
        );
        assert_eq!(
            metric,
            iface["counters"][verdict].as_f64(),
            "{verdict}: the scrape and `stats` disagree\n{after}\n{stats}"
        );
    }
    // Passed frames move with neighbour discovery; never fewer in the later read.
    let passed = sample(
        &after,
        &format!("ipwarden_packets_total{{iface=\"{name}\",verdict=\"passed\"}}"),
    )
    .unwrap();
    let passed_stats = iface["counters"]["passed"].as_f64().unwrap();
    assert!(
        passed <= passed_stats && passed_stats - passed < 50.0,
        "{passed} {passed_stats}"
    );

    // Every metric the dashboard queries exists in a real scrape (link_up needs a fleet or
    // CrowdSec link and the synproxy's need `[synproxy]`, absent here: they are checked
    // against the list the daemon declares).
    let declared = families(&after);
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../controller/dist/grafana-dashboard.json"),
    )
    .unwrap();
    let queried = ipwarden::metrics::queried_metrics(&dashboard);
    assert!(queried.len() >= 10, "{queried:?}");
    for m in &queried {
        // The synproxy's families exist with `[synproxy]` only (tests/tests/synproxy.rs
        // scrapes them there).
        if m == "ipwarden_link_up" || m.starts_with("ipwarden_synproxy") {
            assert!(ipwarden::metrics::NAMES.contains(&m.as_str()));
            continue;
        }
        assert!(
            declared.contains(m),
            "the dashboard queries {m}, which the scrape lacks:\n{after}"
        );
    }
}
