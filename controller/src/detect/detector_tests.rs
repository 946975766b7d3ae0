//! The detector's tests.
use std::time::Duration;

use super::*;

const S: u64 = 1_000_000_000;

fn cfg() -> DetectionConfig {
    DetectionConfig {
        poll_interval: Duration::from_secs(1),
        window: Duration::from_secs(10),
        pps_threshold: 1000,
        syn_pps_threshold: 200,
        hard_pps_limit: 20_000,
        hard_for: Duration::from_secs(5),
        ..DetectionConfig::default()
    }
}

fn src() -> IpNet {
    "203.0.113.7/32".parse().unwrap()
}

fn snap(packets: u64, syn: u64, first: u64) -> Snapshot {
    Snapshot {
        packets,
        bytes: packets * 100,
        syn,
        first_seen_ns: first,
        addr: IpAddr::from([203, 0, 113, 7]),
    }
}

/// A source sending `pps` and `sps` from t = 100 s, polled every second for `secs`.
fn run(d: &mut Detector, pps: u64, sps: u64, secs: u64) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    for i in 1..=secs {
        let now = (100 + i) * S;
        for e in d.observe(now, [(src(), snap(pps * i, sps * i, 100 * S))]) {
            out.push((i, e));
        }
    }
    out
}

#[test]
fn a_flood_is_a_heavy_hitter_at_the_first_poll_and_only_once() {
    let mut d = Detector::new(cfg());
    let ev = run(&mut d, 5000, 0, 8);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(matches!(ev[0], (1, Event::HeavyHitter { .. })));
    let top = d.top(1);
    assert!((top[0].rates.pps - 5000.0).abs() < 1.0, "{top:?}");
}

#[test]
fn a_new_sources_first_burst_is_spread_over_a_poll_interval() {
    let mut d = Detector::new(cfg());
    // 20 packets in the millisecond before the poll, from a source never seen: 20 000 pps
    // measured from its first packet, 20 pps over the poll interval.
    let now = 200 * S;
    let ev = d.observe(now, [(src(), snap(20, 20, now - S / 1000))]);
    assert!(ev.is_empty(), "{ev:?}");
    assert!(d.top(1)[0].rates.pps <= 20.0 + 1e-9);
    // A flood that ran the whole interval is still caught at its first poll.
    let mut d = Detector::new(cfg());
    let ev = d.observe(now, [(src(), snap(5000, 0, now - S))]);
    assert_eq!(ev.len(), 1, "{ev:?}");
}

#[test]
fn a_source_below_the_thresholds_is_never_reported() {
    let mut d = Detector::new(cfg());
    assert!(run(&mut d, 999, 199, 30).is_empty());
    assert_eq!(d.counts(), (1, 0));
}

#[test]
fn syn_rate_alone_makes_a_heavy_hitter() {
    let mut d = Detector::new(cfg());
    let ev = run(&mut d, 300, 300, 3);
    assert!(
        matches!(ev.as_slice(), [(1, Event::HeavyHitter { .. })]),
        "{ev:?}"
    );
}

#[test]
fn the_hard_limit_fires_after_hard_for_once() {
    let mut d = Detector::new(cfg());
    let ev = run(&mut d, 30_000, 0, 12);
    let hard: Vec<u64> = ev
        .iter()
        .filter(|(_, e)| matches!(e, Event::HardLimit { .. }))
        .map(|(i, _)| *i)
        .collect();
    // Above the limit from the first poll (t=1 s): fires once 5 s later.
    assert_eq!(hard, vec![6]);
}

#[test]
fn an_episode_ends_when_the_rate_falls_and_a_new_one_is_reported() {
    let mut d = Detector::new(cfg());
    let mut packets = 0;
    let mut heavy = Vec::new();
    // 5 s flood, 15 s quiet, 5 s flood.
    for i in 1..=25u64 {
        if !(6..=20).contains(&i) {
            packets += 5000;
        }
        for e in d.observe((100 + i) * S, [(src(), snap(packets, 0, 100 * S))]) {
            if let Event::HeavyHitter { .. } = e {
                heavy.push(i);
            }
        }
    }
    assert_eq!(heavy.len(), 2, "{heavy:?}");
    assert_eq!(heavy[0], 1);
    assert!(heavy[1] >= 21, "{heavy:?}");
}

#[test]
fn a_small_step_back_is_noise_and_a_large_one_an_eviction() {
    let mut d = Detector::new(cfg());
    d.observe(101 * S, [(src(), snap(10_000, 0, 100 * S))]);
    d.observe(102 * S, [(src(), snap(20_000, 0, 100 * S))]);
    // 64 packets fewer than last time: the earlier read counted a flush twice.
    d.observe(103 * S, [(src(), snap(19_936, 0, 100 * S))]);
    let v = d.get(&src()).unwrap();
    assert_eq!(v.packets, 20_000, "kept the higher reading");
    assert!(v.rates.pps > 1000.0, "rate not reset: {:?}", v.rates);
    // A drop to a handful: the entry was evicted and re-created.
    d.observe(104 * S, [(src(), snap(5, 0, 103_900_000_000))]);
    assert_eq!(d.get(&src()).unwrap().packets, 5);
}

#[test]
fn reset_allows_a_new_episode_for_a_continuing_flood() {
    let mut d = Detector::new(cfg());
    assert_eq!(run(&mut d, 5000, 0, 3).len(), 1);
    d.reset(&src());
    let ev = d.observe(104 * S, [(src(), snap(5000 * 4, 0, 100 * S))]);
    assert!(
        matches!(ev.as_slice(), [Event::HeavyHitter { .. }]),
        "{ev:?}"
    );
}

#[test]
fn counters_going_backwards_restart_the_track() {
    let mut d = Detector::new(cfg());
    d.observe(101 * S, [(src(), snap(100, 0, 100 * S))]);
    // Evicted and re-created: small counts from a fresh first_seen.
    let ev = d.observe(102 * S, [(src(), snap(10, 0, 101_500_000_000))]);
    assert!(ev.is_empty());
    assert!(d.get(&src()).unwrap().rates.pps < 100.0);
}

#[test]
fn vanished_sources_are_forgotten_heavy_ones_after_the_window() {
    let mut d = Detector::new(cfg());
    let heavy: IpNet = "203.0.113.8/32".parse().unwrap();
    d.observe(
        101 * S,
        [
            (src(), snap(10, 0, 100 * S)),
            (heavy, snap(9000, 0, 100 * S)),
        ],
    );
    d.observe(105 * S, [] as [Reading; 0]);
    assert_eq!(
        d.counts(),
        (1, 1),
        "the quiet source is gone at once, the heavy hitter stays"
    );
    d.observe(112 * S, [] as [Reading; 0]);
    assert_eq!(d.counts().0, 0);
}

/// `n` distinct quiet sources numbered from `from`.
fn quiet(from: u32, n: u32) -> Vec<(IpNet, Snapshot)> {
    (from..from + n)
        .map(|i| {
            let addr = IpAddr::from((0x0A00_0000u32 + i).to_be_bytes());
            let s = Snapshot {
                addr,
                ..snap(1, 0, 100 * S)
            };
            (IpNet::from(addr), s)
        })
        .collect()
}

#[test]
fn a_poll_of_new_sources_replaces_the_old_ones_without_growing_the_table() {
    let mut d = Detector::new(cfg());
    d.observe(101 * S, quiet(0, 10_000));
    let one_poll = d.tracks.capacity();
    // A random-source flood: every poll brings a new set, the last one is evicted.
    for round in 1..5u32 {
        d.observe((101 + u64::from(round)) * S, quiet(round * 10_000, 10_000));
        assert_eq!(d.counts(), (10_000, 0));
    }
    // At most: with a seeded hasher, removals leave a varying number of tombstones, which
    // `capacity()` does not count as room. A table that grew would show twice the room.
    assert!(
        d.tracks.capacity() <= one_poll,
        "the table holds one poll's sources, never two: {} > {one_poll}",
        d.tracks.capacity()
    );
    // A new source is judged like any other: a flood at its first poll.
    let flood: IpNet = "203.0.113.9/32".parse().unwrap();
    let ev = d.observe(107 * S, [(flood, snap(9000, 0, 106 * S))]);
    assert!(matches!(ev[..], [Event::HeavyHitter { source, .. }] if source == flood));
}

#[test]
fn the_table_gives_memory_back_when_most_sources_go() {
    let mut d = Detector::new(cfg());
    d.observe(101 * S, quiet(0, 100_000));
    let big = d.tracks.capacity();
    d.observe(102 * S, quiet(0, 100));
    assert_eq!(d.counts(), (100, 0));
    assert!(
        d.tracks.capacity() * 8 < big,
        "{} of {big}",
        d.tracks.capacity()
    );
}

#[test]
fn old_samples_leave_the_window() {
    let mut d = Detector::new(cfg());
    // 20 s at 5000 pps then 20 s silent: the rate must drop to 0 within the window.
    let mut packets = 0;
    for i in 1..=40u64 {
        if i <= 20 {
            packets += 5000;
        }
        d.observe((100 + i) * S, [(src(), snap(packets, 0, 100 * S))]);
    }
    let v = d.get(&src()).unwrap();
    assert_eq!(v.rates.pps, 0.0);
    assert!(!v.heavy);
}

#[test]
fn a_loud_source_starts_its_episode_at_once_and_only_once() {
    let mut d = Detector::new(cfg());
    // Below both thresholds: nothing, and no track.
    let quiet = Rates {
        pps: 999.0,
        syn_pps: 199.0,
    };
    assert_eq!(d.loud(src(), &snap(50, 10, S), quiet, S + S / 20), None);
    assert_eq!(d.counts(), (0, 0));
    let loud = Rates {
        pps: 5000.0,
        syn_pps: 0.0,
    };
    let e = d.loud(src(), &snap(250, 0, S), loud, S + S / 20);
    assert!(matches!(e, Some(Event::HeavyHitter { source, .. }) if source == src()));
    assert_eq!(d.counts(), (1, 1));
    // Hinted again within the episode: nothing new.
    assert_eq!(d.loud(src(), &snap(500, 0, S), loud, S + S / 10), None);
    // The next poll goes on from the track and starts no second episode.
    let events = d.observe(2 * S, [(src(), snap(5000, 0, S))]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(d.counts(), (1, 1));
    // SYNs alone are enough.
    let syn: IpNet = "203.0.113.8/32".parse().unwrap();
    let e = d.loud(
        syn,
        &snap(30, 30, S),
        Rates {
            pps: 300.0,
            syn_pps: 300.0,
        },
        S + S / 10,
    );
    assert!(matches!(e, Some(Event::HeavyHitter { .. })));
}

#[test]
fn a_hinted_source_is_judged_at_no_more_than_its_rate_since_first_counted() {
    let mut d = Detector::new(cfg());
    // Counted for a second at 1 500 pps; the fast window caught a catch-up burst at 3 000.
    let burst = Rates {
        pps: 3000.0,
        syn_pps: 0.0,
    };
    let Some(Event::HeavyHitter { rates, .. }) = d.loud(src(), &snap(1500, 0, S), burst, 2 * S)
    else {
        panic!("a source above the threshold starts an episode");
    };
    assert_eq!(rates.pps, 1500.0);
    // A flood too young for that: its fast window stands (counted over the window at least).
    let young: IpNet = "203.0.113.9/32".parse().unwrap();
    let fast = Rates {
        pps: 4000.0,
        syn_pps: 0.0,
    };
    let Some(Event::HeavyHitter { rates, .. }) =
        d.loud(young, &snap(400, 0, 2 * S - S / 100), fast, 2 * S)
    else {
        panic!("a young flood starts an episode");
    };
    assert_eq!(rates.pps, 4000.0);
}
