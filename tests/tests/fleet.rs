//! Fleet mode end to end: three edge namespaces, each with its own daemon and XDP program, and
//! one JetStream server on a hub namespace linked to all of them.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use ipwarden_common::Reason;
use ipwarden_tests::{
    Daemon, DaemonEnv, eventually,
    fleet::{HUB, Hub},
    ipasis_stub::{self, IpasisStub, Reply, answers},
    topology::EDGE_V4,
    traffic::udp_flood,
};

const FLOODER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const ALLOWED_AT_C: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const NAMES: [&str; 3] = ["edge-a", "edge-b", "edge-c"];

fn config(hub: &Hub, i: usize, extra: &str) -> String {
    let allow = if i == 2 {
        format!("[allow]\nprefixes = [\"{ALLOWED_AT_C}/32\"]\n")
    } else {
        String::new()
    };
    format!(
        r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 500
syn_pps_threshold = 200
hard_pps_limit = 100000
hard_ttl = "10m"
{allow}
[fleet]
url = "{}"
host_id = "{}"
{extra}
"#,
        hub.nats.url(),
        NAMES[i]
    )
}

fn fleet_status(env: &DaemonEnv) -> serde_json::Value {
    env.home.json(&["status"])["fleet"].clone()
}

struct Bed {
    envs: Vec<DaemonEnv>,
    daemons: Vec<Option<Daemon>>,
    hub: Hub,
}

fn bed(extra: &str, sources: &[IpAddr]) -> Bed {
    let hub = Hub::new();
    let envs: Vec<DaemonEnv> = (0..3)
        .map(|i| {
            let env = DaemonEnv::new(&config(&hub, i, extra), sources);
            hub.link(&env, i);
            env
        })
        .collect();
    let daemons = envs.iter().map(|e| Some(e.start())).collect();
    for env in &envs {
        hub.wait_linked(env);
    }
    Bed { envs, daemons, hub }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn what_one_host_learns_protects_the_others() {
    let mut bed = bed("", &[FLOODER.into(), ALLOWED_AT_C.into()]);
    let [a, b, c] = [&bed.envs[0], &bed.envs[1], &bed.envs[2]];
    let flooder = "203.0.113.7/32";

    // A flood seen only by A: velocity blocks it there, and B and C drop it too.
    std::thread::scope(|s| {
        s.spawn(|| {
            udp_flood(
                &a.topo.client,
                FLOODER.into(),
                (EDGE_V4, 7001).into(),
                3000,
                Duration::from_secs(2),
            )
        });
        eventually("A blocks the flood", Duration::from_secs(10), || {
            a.enforced(flooder).map(|e| e.1) == Some(Reason::VELOCITY)
        });
    });
    for env in [b, c] {
        eventually(
            "a peer enforces A's decision",
            Duration::from_secs(5),
            || env.enforced(flooder).map(|e| e.1) == Some(Reason::FLEET),
        );
    }
    assert_eq!(
        b.delivered(FLOODER.into(), 50),
        0,
        "B lets the flooder through"
    );
    let listed = b.home.json(&["list", "--origin", "fleet"]);
    let d = &listed["decisions"][0];
    assert_eq!(d["source"], "edge-a/velocity", "{listed}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("edge-a velocity: heavy hitter"),
        "{d}"
    );

    // An unblock on A lifts it everywhere.
    a.home
        .cli(&["unblock", "203.0.113.7", "--origin", "velocity"]);
    for env in [a, b, c] {
        eventually("the lift propagates", Duration::from_secs(5), || {
            env.enforced(flooder).map(|e| e.1).is_none()
        });
    }
    assert_eq!(b.delivered(FLOODER.into(), 50), 50);

    // A manual block on B reaches A and C.
    b.home.cli(&["block", "203.0.113.8", "--ttl", "1h"]);
    for env in [a, c] {
        eventually(
            "B's manual block reaches a peer",
            Duration::from_secs(5),
            || env.enforced("203.0.113.8/32").map(|e| e.1) == Some(Reason::FLEET),
        );
    }

    // A peer's block over C's allowlisted address is refused at C, applied at B.
    a.home.cli(&["block", "203.0.113.9", "--ttl", "1h"]);
    eventually("B applies A's block", Duration::from_secs(5), || {
        b.enforced("203.0.113.9/32").map(|e| e.1) == Some(Reason::FLEET)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.enforced("203.0.113.9/32").map(|e| e.1), None);
    assert_eq!(c.delivered(ALLOWED_AT_C.into(), 20), 20);
    assert!(
        c.home.log_text().contains("refused"),
        "C does not say it refused the block"
    );

    // NATS stopped: hosts keep deciding and enforcing locally; the link shows it; decisions
    // made meanwhile reach the others once it is back.
    bed.hub.nats.stop();
    eventually("A sees the link down", Duration::from_secs(10), || {
        fleet_status(a)["connected"] == false
    });
    a.home.cli(&["block", "203.0.113.10", "--ttl", "1h"]);
    assert_eq!(
        a.enforced("203.0.113.10/32").map(|e| e.1),
        Some(Reason::MANUAL)
    );
    assert!(fleet_status(a)["last_error"].is_string());
    std::thread::sleep(Duration::from_secs(1));
    bed.hub.nats.restart();
    for env in [b, c] {
        eventually(
            "a decision made during the outage arrives",
            Duration::from_secs(15),
            || env.enforced("203.0.113.10/32").map(|e| e.1) == Some(Reason::FLEET),
        );
    }

    // A host restarted while the others made decisions catches up.
    drop(bed.daemons[2].take());
    a.home.cli(&["block", "203.0.113.11", "--ttl", "1h"]);
    b.home.cli(&["unblock", "203.0.113.8"]);
    std::thread::sleep(Duration::from_millis(500));
    bed.daemons[2] = Some(c.start());
    eventually(
        "the restarted host catches up",
        Duration::from_secs(10),
        || {
            c.enforced("203.0.113.11/32").map(|e| e.1) == Some(Reason::FLEET)
                && c.enforced("203.0.113.8/32").map(|e| e.1).is_none()
        },
    );
    let status = fleet_status(c);
    assert!(status["applied_revision"].as_u64().unwrap() > 0, "{status}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_same_tor_source_flooding_every_host_costs_one_request() {
    let hub = Hub::new();
    let stub = IpasisStub::start_on(&hub.ns, IpAddr::V4(HUB));
    stub.set(
        "203.0.113.66",
        Reply::json(answers::TOR).delayed(Duration::from_millis(300)),
    );
    let key_dir = tempfile::tempdir().unwrap();
    let key = ipasis_stub::key_file(key_dir.path());
    let extra = format!(
        "\n[ipasis]\nbase_url = \"{}\"\nkey_file = \"{}\"\n",
        stub.base_url(),
        key.display()
    );
    let tor: IpAddr = "203.0.113.66".parse().unwrap();
    let envs: Vec<DaemonEnv> = (0..3)
        .map(|i| {
            // [ipasis] must come before [fleet]'s keys end: append it as its own section.
            let env = DaemonEnv::new(&format!("{}{extra}", config(&hub, i, "")), &[tor]);
            hub.link(&env, i);
            env
        })
        .collect();
    let _daemons: Vec<Daemon> = envs.iter().map(|e| e.start()).collect();
    for env in &envs {
        hub.wait_linked(env);
    }
    std::thread::scope(|s| {
        for env in &envs {
            s.spawn(move || env.flood(tor));
        }
    });
    for env in &envs {
        eventually(
            "every host blocks the Tor source",
            Duration::from_secs(10),
            || env.enforced("203.0.113.66/32").map(|e| e.1).is_some(),
        );
    }
    assert_eq!(
        stub.count("203.0.113.66"),
        1,
        "the fleet asked IPASIS more than once: {:?}",
        stub.seen()
    );
}
