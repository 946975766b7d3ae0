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

use std::time::Duration;

use ipwarden_tests::spray::{self, Shape};

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
    // 6 s: the spray's million sources all come round once (5.3 s at this rate).
    let h = spray::hidden(&config(fast_window), SHAPE, Duration::from_secs(6));
    eprintln!(
        "sent {} frames; tracked {}, last poll {} ms, hints {}; the last decision {} ms after the spray's start",
        h.sent,
        h.status["tracked_sources"],
        h.status["last_poll_ms"],
        h.status["hints"],
        h.last_decided.as_millis()
    );
    assert!(
        h.sent >= 1_100_000,
        "the spray fell short: {} frames",
        h.sent
    );
    assert!(
        h.heavy_missed.is_empty(),
        "{} of 50 heavy sources missed: {:?}",
        h.heavy_missed.len(),
        h.heavy_missed
    );
    assert!(
        h.others.is_empty(),
        "blocked though not heavy: {:?}",
        h.others
    );
    assert!(h.origins.iter().all(|o| o == "velocity"), "{:?}", h.origins);
    assert!(
        h.last_decided <= 3 * POLL,
        "a heavy source was decided {} ms after the spray's start, more than three polls",
        h.last_decided.as_millis()
    );
    // The medium sources were seen and counted: judged below the threshold, not missed.
    assert!(
        h.medium_counted >= 45,
        "only {} of 50 medium sources still counted",
        h.medium_counted
    );
    h.status["hints"].clone()
}
