//! Admission (see `ipwarden_common::admit`): a spray of one- and two-packet sources is held in
//! the program's sketch and never reaches the per-source tables, while heavy sources hidden in
//! it are admitted, counted and found as before, and sources between the level and the
//! threshold are tracked without being decided. With `detection.admission = 0` the same spray
//! fills the tables, as before admission existed.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::time::Duration;

use ipwarden_common::front::FRONT_SLOTS;
use ipwarden_tests::spray::{self, Hidden, Shape};

/// 50 000 frames a second for 4 s: one in 20 from 5 heavy sources (500 pps each), one in 160
/// from 5 medium ones (62 pps each), the rest from 100 000 /64s in turn (each sends 2 packets).
const SHAPE: Shape = Shape {
    sources: 100_000,
    heavy: 5,
    period: 20,
    medium: 5,
    rate: 50_000,
};

const PPS_THRESHOLD: u64 = 200;

fn config(admission: &str) -> String {
    format!(
        r#"
[detection]
admission = {admission}
poll_interval = "1s"
window = "4s"
pps_threshold = {PPS_THRESHOLD}
syn_pps_threshold = 100000
hard_pps_limit = 1000000

[detection.aggregate]
v4_levels = []
v6_levels = []
"#
    )
}

fn run(admission: &str) -> (Hidden, usize) {
    let h = spray::hidden(&config(admission), SHAPE, Duration::from_secs(4));
    eprintln!(
        "admission {admission}: sent {} frames; {} sources counted; admission {}",
        h.sent, h.counted, h.status["admission"]
    );
    assert!(h.sent >= 180_000, "the spray fell short: {} frames", h.sent);
    assert!(
        h.heavy_missed.is_empty(),
        "admission {admission}: heavy sources missed: {:?}",
        h.heavy_missed
    );
    assert!(
        h.others.is_empty(),
        "blocked though not heavy: {:?}",
        h.others
    );
    let counted = h.counted;
    (h, counted)
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_spray_is_held_in_the_sketch_and_heavy_sources_are_still_found() {
    assert!(SHAPE.heavy_pps() >= 2.5 * PPS_THRESHOLD as f64);
    let (h, counted) = run("0.5");
    let a = &h.status["admission"];
    // 200 × 0.5 × 1.07 s over the online CPUs.
    assert!(a["level_packets_per_cpu"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a["level_pps"], 100, "{a}");
    // Nearly every sprayed frame evicts a front slot's one-packet occupant into the sketch.
    assert!(
        a["held"].as_u64().unwrap() >= 100_000,
        "few flushes held: {a}"
    );
    // What is counted per source: the admitted ones and what the front tables hold now.
    let cpus = aya::util::online_cpus().unwrap().len();
    assert!(
        counted <= FRONT_SLOTS as usize * cpus + 1_000,
        "{counted} sources in the counters: the spray reached them"
    );
    // Medium sources run above the level (62 pps against 100): tracked, judged, not decided.
    assert!(
        h.medium_counted >= 4,
        "only {} of 5 medium sources tracked",
        h.medium_counted
    );

    let (h0, counted0) = run("0");
    assert_eq!(h0.status["admission"]["level_packets_per_cpu"], 0);
    assert_eq!(h0.status["admission"]["held"], 0);
    assert!(
        counted0 >= 90_000,
        "without admission every sprayed source is counted: {counted0}"
    );
}

/// The same spray, for 6 s, with aggregates judged: the two sprayed /48s run far above
/// `admission × detection.aggregate.pps`, so the daemon flags their cells and the program admits
/// their members whatever their own rate; both networks are blocked as aggregates, and the
/// heavy sources still one by one (their /48 runs below the limit). The spray takes the /64s in
/// order, so 2001:db8:2001::/48 (a third of them) is loud in bursts: 6 s give it two, and its
/// average (~16 000 pps) is four times the limit.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_loud_network_has_its_members_admitted_and_is_blocked_as_a_whole() {
    let config = format!(
        r#"
[detection]
poll_interval = "1s"
window = "4s"
pps_threshold = {PPS_THRESHOLD}
syn_pps_threshold = 100000
hard_pps_limit = 1000000

[detection.aggregate]
v4_levels = []
v6_levels = [48]
pps = 4000
min_sources = 16
"#
    );
    let h = spray::hidden(&config, SHAPE, Duration::from_secs(6));
    let a = &h.status["admission"];
    eprintln!(
        "sent {}; decided others {:?}; admission {a}",
        h.sent, h.others
    );
    assert!(h.heavy_missed.is_empty(), "{:?}", h.heavy_missed);
    let mut others = h.others.clone();
    others.sort();
    assert_eq!(
        others,
        ["2001:db8:2000::/48", "2001:db8:2001::/48"],
        "the sprayed networks, and nothing else"
    );
    // Members of the flagged networks were admitted: far more than the 10 heavy and medium
    // sources (until the networks were blocked, which stops their counting).
    assert!(a["admitted"].as_u64().unwrap() > 100, "{a}");
}
