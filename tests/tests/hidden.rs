//! Heavy hitters hidden in a spray: 50 heavy sources (2.6 × `pps_threshold`) and 50 medium
//! ones (0.33 ×) mixed into a random-source spray over a million IPv6 /64s, which churns the
//! counter maps (262 144 entries) and the front tables many times over. Every heavy source
//! must be found within three poll intervals of the spray's start, and no medium or sprayed one
//! ever.
//!
//! The spray is itself a flood from a few /48s, which `[detection.aggregate]` blocks as such
//! (the aggregate tests cover that): aggregates are off here, so that what is judged is each
//! source on its own.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipwarden_tests::{
    DaemonEnv,
    spray::{self, Shape, Spray},
};

/// 200 000 frames a second: one in 20 from a heavy source (200 pps each), one in 160 from a
/// medium one (25 pps each), the rest from a million /64s in turn (0.19 pps each).
const SHAPE: Shape = Shape {
    sources: 1_000_000,
    heavy: 50,
    period: 20,
    medium: 50,
    rate: 200_000,
};

const PPS_THRESHOLD: u64 = 75;
const POLL: Duration = Duration::from_secs(1);

fn config(fast_window: &str) -> String {
    format!(
        r#"
[detection]
fast_window = "{fast_window}"
poll_interval = "{}ms"
window = "4s"
pps_threshold = {PPS_THRESHOLD}
syn_pps_threshold = 100000
hard_pps_limit = 1000000

[detection.aggregate]
v4_levels = []
v6_levels = []
"#,
        POLL.as_millis()
    )
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn every_heavy_source_hidden_in_a_million_source_spray_is_found_and_no_other() {
    let hints = hidden_heavy_sources("50ms");
    assert_eq!(hints["decided"], 50, "the hints found them: {hints}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn polls_alone_find_every_hidden_heavy_source_too() {
    let hints = hidden_heavy_sources("0s");
    assert_eq!(hints["sent"], 0, "{hints}");
}

/// Sprays [`SHAPE`] at a daemon with `fast_window`, checks what it decided, and returns its
/// `status`'s hints.
fn hidden_heavy_sources(fast_window: &str) -> serde_json::Value {
    assert!(SHAPE.heavy_pps() >= 2.5 * PPS_THRESHOLD as f64);
    assert!(SHAPE.medium_pps() <= 0.35 * PPS_THRESHOLD as f64);
    let env = DaemonEnv::new(&config(fast_window), &[]);
    let _daemon = env.start();
    let mut generator = Spray::new(&env.topo);
    let start_ms = unix_ms();
    // 6 s: the spray's million sources all come round once (5.3 s at this rate).
    let sent = generator.send(SHAPE, Duration::from_secs(6));
    let status = env.home.json(&["status"]);
    eprintln!(
        "sent {sent} frames; tracked {}, last poll {} ms, hints {}",
        status["tracked_sources"], status["last_poll_ms"], status["hints"]
    );
    assert!(sent >= 1_100_000, "the spray fell short: {sent} frames");
    let decisions = env.decisions();
    let heavy: Vec<String> = (0..50).map(spray::heavy).collect();
    let decided: Vec<&str> = decisions
        .iter()
        .map(|d| d["prefix"].as_str().unwrap())
        .collect();
    let missed: Vec<&String> = heavy
        .iter()
        .filter(|h| !decided.contains(&h.as_str()))
        .collect();
    let others: Vec<&&str> = decided
        .iter()
        .filter(|p| !heavy.iter().any(|h| h == **p))
        .collect();
    assert!(
        missed.is_empty(),
        "{} of 50 heavy sources missed: {missed:?}",
        missed.len()
    );
    assert!(others.is_empty(), "blocked though not heavy: {others:?}");
    let mut latest = 0;
    for d in &decisions {
        assert_eq!(d["origin"], "velocity", "{d}");
        latest = latest.max(d["created_unix_ms"].as_u64().unwrap() - start_ms);
    }
    eprintln!("the last heavy source was decided {latest} ms after the spray's start");
    assert!(
        latest <= 3 * POLL.as_millis() as u64,
        "a heavy source was decided {latest} ms after the spray's start, more than three polls"
    );
    // The medium sources were seen and counted: judged below the threshold, not missed.
    let counted: std::collections::BTreeSet<String> = env
        .ipw
        .dataplane()
        .sources_v6()
        .unwrap()
        .iter()
        .map(|s| s.net.to_string())
        .collect();
    let medium_seen = (0..50)
        .map(spray::medium)
        .filter(|m| counted.contains(m))
        .count();
    assert!(
        medium_seen >= 45,
        "only {medium_seen} of 50 medium sources still counted"
    );
    status["hints"].clone()
}
