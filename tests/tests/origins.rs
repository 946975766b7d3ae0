//! Several origins deciding about one prefix, on the real daemon and data plane: velocity (a
//! real flood), an operator (manual) and a test-only feed source hold the same /32 at once;
//! lifting each in turn leaves the next-strongest enforced, and traffic passes only when the
//! last one is gone.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use ipwarden_common::Reason;
use ipwarden_tests::{DaemonEnv, topology::EDGE_V4, traffic::udp_flood};

const ATTACKER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

const CONFIG: &str = r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 500
syn_pps_threshold = 200
hard_pps_limit = 100000
hard_ttl = "10m"
"#;

/// The holders of the attacker's /32 as `list --json` shows them: `origin` or `origin:source`.
fn holders(env: &DaemonEnv) -> Vec<String> {
    let mut out: Vec<String> = env
        .decisions()
        .iter()
        .filter(|d| d["prefix"] == "203.0.113.7/32")
        .map(|d| match d["source"].as_str() {
            Some(s) => format!("{}:{s}", d["origin"].as_str().unwrap()),
            None => d["origin"].as_str().unwrap().to_owned(),
        })
        .collect();
    out.sort();
    out
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn lifting_each_origin_in_turn_leaves_the_right_action_enforced() {
    let env = DaemonEnv::new(CONFIG, &[ATTACKER.into()]);
    let _daemon = env.start();
    let attacker = IpAddr::V4(ATTACKER);

    // Velocity: a real flood, well above pps_threshold, for a bounded 3 s.
    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            udp_flood(
                &env.topo.client,
                attacker,
                (EDGE_V4, 7001).into(),
                3000,
                Duration::from_secs(3),
            )
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !holders(&env).contains(&"velocity".to_owned()) {
            assert!(
                Instant::now() < deadline,
                "no velocity decision within 10 s:\n{}",
                env.home.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        flood.join().expect("flood thread");
    });
    assert_eq!(
        env.enforced("203.0.113.7/32").map(|e| e.1),
        Some(Reason::VELOCITY)
    );

    // An operator (1 h) and a test-only feed source (30 min) decide about the same /32.
    env.home.cli(&[
        "block",
        "203.0.113.7",
        "--ttl",
        "1h",
        "--reason",
        "seen in logs",
    ]);
    env.home.cli(&[
        "block",
        "203.0.113.7",
        "--ttl",
        "30m",
        "--origin",
        "feed",
        "--name",
        "testfeed",
    ]);
    assert_eq!(holders(&env), ["feed:testfeed", "manual", "velocity"]);
    // Of three blocks, the latest expiry (manual) is what the kernel holds.
    assert_eq!(
        env.enforced("203.0.113.7/32").map(|e| e.1),
        Some(Reason::MANUAL)
    );
    assert_eq!(env.delivered(attacker, 50), 0);
    let explain = env.home.cli(&["explain", "203.0.113.7"]);
    for who in ["by manual", "by feed:testfeed", "by velocity"] {
        assert!(explain.contains(who), "explain lacks `{who}`:\n{explain}");
    }

    // Lift manual: the feed's 30 min now outlast velocity's 10 min.
    let out = env.home.cli(&["unblock", "203.0.113.7"]);
    assert!(
        out.contains("still blocked") && out.contains("feed:testfeed") && out.contains("velocity"),
        "{out}"
    );
    assert_eq!(holders(&env), ["feed:testfeed", "velocity"]);
    assert_eq!(
        env.enforced("203.0.113.7/32").map(|e| e.1),
        Some(Reason::FEED)
    );
    assert_eq!(env.delivered(attacker, 50), 0);

    // Lifting manual again is refused, naming who still holds it.
    let refused = env.home.cli_output(&["unblock", "203.0.113.7"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("held by"), "{err}");

    // Lift the feed's: velocity's block is enforced.
    env.home.cli(&[
        "unblock",
        "203.0.113.7",
        "--origin",
        "feed",
        "--name",
        "testfeed",
    ]);
    assert_eq!(holders(&env), ["velocity"]);
    assert_eq!(
        env.enforced("203.0.113.7/32").map(|e| e.1),
        Some(Reason::VELOCITY)
    );
    assert_eq!(env.delivered(attacker, 50), 0);

    // Lift velocity's: nothing holds the source, and its traffic passes.
    env.home
        .cli(&["unblock", "203.0.113.7", "--origin", "velocity"]);
    assert!(holders(&env).is_empty());
    assert_eq!(env.enforced("203.0.113.7/32").map(|e| e.1), None);
    let delivered = env.delivered(attacker, 50);
    assert!(
        delivered >= 45,
        "only {delivered} of 50 delivered after the last lift"
    );

    // Every lift is in the history.
    let history = env.home.json(&["history", "203.0.113.7"]);
    let ended: Vec<&str> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["end"].as_str().unwrap())
        .collect();
    assert_eq!(ended, ["lifted", "lifted", "lifted"]);
}
