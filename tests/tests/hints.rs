//! Loud-source hints (see `ipwarden_common::loud`): the program tells the daemon of a source
//! sending above a threshold between polls, the daemon measures it over
//! `detection.fast_window` and judges it at once. Polls here are 4 s apart, so a flood blocked
//! before the second poll was judged from a hint; with `fast_window = 0` the same flood waits
//! for its poll.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use ipwarden_common::loud::LoudLevels;
use ipwarden_tests::{
    DaemonEnv,
    topology::{CLIENT_V4, EDGE_V4, EDGE_V6},
    traffic::udp_flood,
};
use serde_json::Value;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const ATTACKER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 9);

fn config(fast_window: &str) -> String {
    format!(
        r#"
[detection]
poll_interval = "4s"
window = "8s"
pps_threshold = 500
syn_pps_threshold = 200
hard_pps_limit = 100000
fast_window = "{fast_window}"
"#
    )
}

fn status(env: &DaemonEnv) -> Value {
    env.home.json(&["status"])
}

/// Floods from `src` at 3 000 pps for `secs` while waiting for `prefix` to be decided; the
/// polls counted when it was (`None` if it was not within the flood).
fn flood_until_decided(env: &DaemonEnv, src: IpAddr, prefix: &str, secs: u64) -> Option<u64> {
    let to = match src {
        IpAddr::V4(_) => (EDGE_V4, 7001).into(),
        IpAddr::V6(_) => (EDGE_V6, 7001).into(),
    };
    std::thread::scope(|s| {
        let flood =
            s.spawn(|| udp_flood(&env.topo.client, src, to, 3000, Duration::from_secs(secs)));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut decided = None;
        while Instant::now() < deadline && decided.is_none() {
            if env.prefixes().contains(prefix) {
                decided = Some(status(env)["polls"].as_u64().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(flood.join().unwrap() > 0);
        decided
    })
}

/// Waits for the daemon's first poll (it polls at once on start); the polls then.
fn first_poll(env: &DaemonEnv) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let polls = status(env)["polls"].as_u64().unwrap();
        if polls >= 1 || Instant::now() > deadline {
            return polls;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_loud_source_is_judged_between_polls_and_a_quiet_one_is_not_measured() {
    let env = DaemonEnv::new(&config("50ms"), &[ATTACKER.into(), ATTACKER_V6.into()]);
    let _daemon = env.start();
    let cpus = aya::util::online_cpus().unwrap().len() as u32;
    assert_eq!(
        env.ipw.dataplane().loud_levels().unwrap(),
        LoudLevels::per_cpu(500, 200, cpus),
        "the daemon gives the program its thresholds"
    );
    let polls = first_poll(&env);
    let hints = std::thread::scope(|s| {
        // A legitimate source at a fifth of the threshold throughout: never hinted.
        let quiet = s.spawn(|| {
            udp_flood(
                &env.topo.client,
                CLIENT_V4.into(),
                (EDGE_V4, 7001).into(),
                100,
                Duration::from_millis(2500),
            )
        });
        let at = flood_until_decided(&env, ATTACKER.into(), "203.0.113.9/32", 3)
            .unwrap_or_else(|| panic!("no block within the flood: {}", env.home.log_text()));
        assert_eq!(
            at,
            polls,
            "decided at a poll instead of from a hint: {}",
            env.home.log_text()
        );
        let hints = status(&env)["hints"].clone();
        assert!(quiet.join().unwrap() > 0);
        hints
    });
    eprintln!("hints after the IPv4 flood: {hints}");
    assert_eq!(hints["fast_window_ms"], 50);
    for field in ["sent", "received", "measured", "loud", "decided"] {
        assert!(hints[field].as_u64().unwrap() >= 1, "{field}: {hints}");
    }
    assert_eq!(hints["decided"], 1, "{hints}");
    assert_eq!(hints["lost"], 0, "{hints}");
    // What a poll would have decided: a velocity block, enforced.
    let d = env.decisions();
    let attacker = d.iter().find(|d| d["prefix"] == "203.0.113.9/32").unwrap();
    assert_eq!(attacker["origin"], "velocity");
    assert!(
        attacker["reason"]
            .as_str()
            .unwrap()
            .contains("heavy hitter")
    );
    assert_eq!(env.delivered(ATTACKER.into(), 30), 0);
    assert_eq!(env.delivered(CLIENT_V4.into(), 30), 30);
    assert!(
        !env.prefixes().iter().any(|p| p.starts_with("198.51.100.")),
        "quiet source blocked"
    );

    // IPv6, judged per /64, between polls as well.
    let polls = status(&env)["polls"].as_u64().unwrap();
    let at = flood_until_decided(&env, ATTACKER_V6.into(), "2001:db8:77::/64", 3)
        .unwrap_or_else(|| panic!("no IPv6 block within the flood: {}", env.home.log_text()));
    assert!(
        at <= polls + 1,
        "IPv6 flood decided {} polls later",
        at - polls
    );
    assert_eq!(status(&env)["hints"]["decided"], 2);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn without_a_fast_window_the_program_sends_no_hint_and_the_poll_decides() {
    let env = DaemonEnv::new(&config("0s"), &[ATTACKER.into()]);
    let _daemon = env.start();
    assert_eq!(
        env.ipw.dataplane().loud_levels().unwrap(),
        LoudLevels::default()
    );
    let polls = first_poll(&env);
    let at = flood_until_decided(&env, ATTACKER.into(), "203.0.113.9/32", 6)
        .unwrap_or_else(|| panic!("no block within the flood: {}", env.home.log_text()));
    assert!(at > polls, "decided before the next poll without hints");
    let hints = status(&env)["hints"].clone();
    assert_eq!(hints["sent"], 0, "{hints}");
    assert_eq!(hints["measured"], 0, "{hints}");

    // A reload turns hints on: the program gets its levels.
    std::fs::write(env.home.config(), config("50ms")).unwrap();
    env.home.cli(&["reload"]);
    let cpus = aya::util::online_cpus().unwrap().len() as u32;
    let deadline = Instant::now() + Duration::from_secs(3);
    while env.ipw.dataplane().loud_levels().unwrap() != LoudLevels::per_cpu(500, 200, cpus) {
        assert!(Instant::now() < deadline, "the reload set no levels");
        std::thread::sleep(Duration::from_millis(20));
    }
}
