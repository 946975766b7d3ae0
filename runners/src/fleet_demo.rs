//! `cargo xtask demo --fleet`: three edge hosts and a NATS hub, in network namespaces.
//!
//! Each host runs its own daemon and XDP program; a JetStream server on a hub namespace joins
//! them. A flood seen by one host only is blocked there and, through the fleet, dropped by the
//! two others before it reaches them; a lift on the first host lifts it everywhere; with the hub
//! down each host keeps deciding alone, and what it decided meanwhile reaches the others when the
//! hub returns.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ipwarden_tests::{DaemonEnv, fleet::Hub, topology::EDGE_V4, traffic::udp_flood};

const FLOODER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const NAMES: [&str; 3] = ["edge-a", "edge-b", "edge-c"];

fn step(text: &str) {
    println!("\n=== {text}");
}

fn show(env: &DaemonEnv, host: &str, args: &[&str]) {
    println!("[{host}] $ ipwarden {}", args.join(" "));
    print!("{}", env.home.cli(args));
}

fn holds(env: &DaemonEnv, prefix: &str) -> bool {
    env.ipw
        .dataplane()
        .blocks()
        .map(|b| b.iter().any(|r| r.net.to_string() == prefix))
        .unwrap_or(false)
}

/// Waits (bounded) for `cond`; how long it took, or `None`.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn config(hub: &Hub, name: &str) -> String {
    format!(
        r#"[detection]
poll_interval = "500ms"
window = "3s"
pps_threshold = 1000
hard_ttl = "10m"

[fleet]
url = "{}"
host_id = "{name}"
"#,
        hub.nats.url()
    )
}

pub fn run() {
    ipwarden_tests::require_privileges();
    step("a NATS JetStream hub (nats-server -js) and three edge hosts, each with a client");
    let mut hub = Hub::new();
    println!("hub: {} in namespace {}", hub.nats.url(), hub.ns.name());
    let envs: Vec<DaemonEnv> = NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let env = DaemonEnv::new(&config(&hub, name), &[FLOODER.into()]);
            hub.link(&env, i);
            env
        })
        .collect();
    let daemons: Vec<_> = envs.iter().map(|e| e.start()).collect();
    println!("each edge runs `ipwarden run` with this configuration (host_id differs):");
    print!("{}", config(&hub, NAMES[0]));
    within(Duration::from_secs(10), || {
        envs.iter()
            .all(|e| e.home.json(&["status"])["fleet"]["connected"] == true)
    });
    show(&envs[1], NAMES[1], &["status"]);

    step("203.0.113.7 floods edge-a only, at 3000 pps for 2 s");
    let flooder = "203.0.113.7/32";
    let mut seen = [None; 3];
    std::thread::scope(|s| {
        let a = &envs[0];
        s.spawn(move || {
            udp_flood(
                &a.topo.client,
                FLOODER.into(),
                (EDGE_V4, 9).into(),
                3000,
                Duration::from_secs(2),
            )
        });
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) && seen.iter().any(Option::is_none) {
            for (i, env) in envs.iter().enumerate() {
                if seen[i].is_none() && holds(env, flooder) {
                    seen[i] = Some(t0.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    for (i, t) in seen.iter().enumerate() {
        match t {
            Some(t) => println!(
                "{}: {flooder} in its XDP block map {:.0} ms after the flood began",
                NAMES[i],
                t.as_secs_f64() * 1e3
            ),
            None => println!("{}: {flooder} not in its maps within 5 s", NAMES[i]),
        }
    }
    show(&envs[0], NAMES[0], &["list"]);
    show(&envs[2], NAMES[2], &["list"]);
    println!(
        "edge-c never saw the flood; its attacker's packets now die in XDP: {} of 50 delivered",
        envs[2].delivered(FLOODER.into(), 50)
    );

    step("an operator lifts the block on edge-a: it is lifted everywhere");
    show(
        &envs[0],
        NAMES[0],
        &["unblock", "203.0.113.7", "--origin", "velocity"],
    );
    let gone = within(Duration::from_secs(5), || {
        envs.iter().all(|e| !holds(e, flooder))
    });
    println!(
        "lifted on all three hosts after {}",
        gone.map_or("(not within 5 s)".to_owned(), |t| format!(
            "{:.0} ms",
            t.as_secs_f64() * 1e3
        ))
    );

    step("the hub goes down: edge-b keeps deciding alone, and says so");
    hub.nats.stop();
    within(Duration::from_secs(10), || {
        envs[1].home.json(&["status"])["fleet"]["connected"] == false
    });
    show(
        &envs[1],
        NAMES[1],
        &[
            "block",
            "198.51.100.99",
            "--ttl",
            "1h",
            "--reason",
            "abuse report",
        ],
    );
    let f = envs[1].home.json(&["status"])["fleet"].clone();
    println!(
        "[edge-b] fleet link: connected {}, {} change(s) waiting, last error: {}",
        f["connected"], f["pending_publish"], f["last_error"]
    );
    step("the hub returns: what edge-b decided meanwhile reaches edge-a and edge-c");
    hub.nats.restart();
    let arrived = within(Duration::from_secs(15), || {
        holds(&envs[0], "198.51.100.99/32") && holds(&envs[2], "198.51.100.99/32")
    });
    println!(
        "arrived {} after the hub came back",
        arrived.map_or("(not within 15 s)".to_owned(), |t| format!(
            "{:.1} s",
            t.as_secs_f64()
        ))
    );
    show(&envs[2], NAMES[2], &["explain", "198.51.100.99"]);
    drop(daemons);
    step("done: the daemons stopped, the namespaces and the hub are removed");
}
