//! Bounded trust, end to end: a daemon fed more prefixes than its kernel map holds keeps
//! enforcing and restarts cleanly; a challenge inside a block is dropped in the kernel; a
//! fleet peer writing 0.0.0.0/1 and 2000::/3, and a poisoned shared IPASIS answer, are held to
//! their bounds.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use ipwarden::decision::{Decision, Holder, Origin, now_unix_ms};
use ipwarden_common::Action;
use ipwarden_tests::{
    DaemonEnv, eventually,
    fleet::{HUB, Hub},
    ipasis_stub::{self, IpasisStub, Reply, answers},
};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));

fn status_map(env: &DaemonEnv, map: &str) -> serde_json::Value {
    let status = env.home.json(&["status"]);
    status["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["map"] == map)
        .unwrap_or_else(|| panic!("no {map} in {status}"))
        .clone()
}

fn refusals(env: &DaemonEnv, origin: &str, why: &str) -> u64 {
    env.home.json(&["status"])["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["origin"] == origin && r["why"] == why)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn twenty_thousand_prefixes_fill_one_map_and_enforcement_goes_on() {
    let env = DaemonEnv::new(
        "[detection]\npoll_interval = \"200ms\"\n",
        &[ATTACKER, BYSTANDER],
    );
    let daemon = env.start();
    // 20 000 IPv6 /96s: non-exact, so all for BLOCK_NET_V6 (16 384 entries).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.txt");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..20_000u32 {
        // Away from the test bed's own 2001:db8:1::/64.
        writeln!(f, "2001:db8:{:x}:{:x}::/96", 0x100 + (i >> 8), i & 0xff).unwrap();
    }
    drop(f);
    let out = env
        .home
        .cli_output(&["import", file.to_str().unwrap(), "--ttl", "1h"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("dataplane.max_block_prefixes"),
        "the refusal names the setting: {stdout}{stderr}"
    );
    let map = status_map(&env, "BLOCK_NET_V6");
    assert_eq!(map["entries"], map["capacity"], "{map}");
    assert_eq!(map["refused"].as_u64().unwrap(), 20_000 - 16_384, "{map}");
    assert_eq!(refusals(&env, "manual", "map_full"), 20_000 - 16_384);
    // Everything else still reaches the kernel: a new exact block, a new IPv4 prefix, an
    // allowlist entry.
    env.home.cli(&["block", &ATTACKER.to_string()]);
    env.home.cli(&["block", "198.51.100.128/25"]);
    env.home.cli(&["allow", "add", "192.0.2.64/26"]);
    assert_eq!(
        env.delivered(ATTACKER, 50),
        0,
        "the new block is not enforced"
    );
    assert!(env.delivered(BYSTANDER, 50) > 0, "a bystander was dropped");
    let blocks = env.kernel_blocks();
    assert!(
        blocks.contains("198.51.100.128/25"),
        "{} entries",
        blocks.len()
    );
    assert!(env.kernel_allows().contains("192.0.2.64/26"));
    // A clean restart: the stored decisions that fit are enforced, the others said.
    drop(daemon);
    let _daemon = env.start();
    let map = status_map(&env, "BLOCK_NET_V6");
    assert_eq!(map["entries"], map["capacity"], "{map}");
    assert_eq!(
        env.delivered(ATTACKER, 50),
        0,
        "not enforced after the restart"
    );
    assert_eq!(env.home.json(&["status"])["decisions"], 16_384 + 2);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_challenge_inside_a_block_is_dropped_until_the_block_ends() {
    let env = DaemonEnv::new("[detection]\npoll_interval = \"200ms\"\n", &[ATTACKER]);
    let _daemon = env.start();
    env.home.cli(&["block", "203.0.113.0/24"]);
    // A CrowdSec-style captcha on one address inside it, from a feed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("captcha.jsonl");
    std::fs::write(
        &file,
        format!("{{\"prefix\":\"{ATTACKER}/32\",\"action\":\"challenge\"}}\n"),
    )
    .unwrap();
    env.home.cli(&[
        "import",
        file.to_str().unwrap(),
        "--origin",
        "feed",
        "--name",
        "captcha",
    ]);
    // The kernel would take the /32 (longest match) and let 20 pps through: it is kept out
    // while the /24 block holds.
    assert_eq!(env.enforced("203.0.113.7/32"), None);
    assert_eq!(
        env.delivered(ATTACKER, 200),
        0,
        "the challenge let traffic through"
    );
    let explain = env.home.json(&["explain", &ATTACKER.to_string()]);
    assert_eq!(explain["verdict"], "blocked", "{explain}");
    // The block ends: the challenge comes back.
    env.home.cli(&["unblock", "203.0.113.0/24"]);
    assert_eq!(
        env.enforced("203.0.113.7/32").map(|e| e.0),
        Some(Action::CHALLENGE)
    );
    let got = env.delivered(ATTACKER, 200);
    assert!(got > 0 && got < 200, "challenged: {got} of 200 delivered");
}

/// Writes `value` at `key` of bucket `ipwarden-<bucket>` on the hub's server, as a rogue peer
/// with write access would.
fn rogue_put(hub: &Hub, bucket: &str, entries: Vec<(String, Vec<u8>)>) {
    let url = hub.nats.url();
    let bucket = format!("ipwarden-{bucket}");
    hub.ns.run(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let client = async_nats::connect(url).await.unwrap();
                let kv = async_nats::jetstream::new(client)
                    .get_key_value(bucket)
                    .await
                    .unwrap();
                for (k, v) in entries {
                    kv.put(k, v.into()).await.unwrap();
                }
            });
    });
}

fn peer_value(prefix: &str) -> (String, Vec<u8>) {
    let d = Decision::block(
        prefix.parse().unwrap(),
        Holder::of(Origin::Velocity),
        "rogue",
        now_unix_ms(),
        None,
    );
    let key = ipwarden::fleet::keys::decision_key("edge-x", &d.holder(), &d.prefix);
    let value = serde_json::to_vec(&ipwarden::fleet::wire::Shared::of("edge-x", &d)).unwrap();
    (key, value)
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_rogue_peer_and_a_poisoned_answer_are_held_to_their_bounds() {
    let hub = Hub::new();
    let stub = IpasisStub::start_on(&hub.ns, IpAddr::V4(HUB));
    stub.set_fallback(Reply::json(answers::TOR));
    let key_dir = tempfile::tempdir().unwrap();
    let key = ipasis_stub::key_file(key_dir.path());
    let poisoned: IpAddr = "203.0.113.66".parse().unwrap();
    let rejected: IpAddr = "203.0.113.67".parse().unwrap();
    let config = format!(
        r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 500
hard_pps_limit = 100000

[ipasis]
base_url = "{}"
key_file = "{}"

[fleet]
url = "{}"
host_id = "edge-a"
"#,
        stub.base_url(),
        key.display(),
        hub.nats.url()
    );
    let bystander: IpAddr = "203.0.113.200".parse().unwrap();
    let env = DaemonEnv::new(&config, &[poisoned, rejected, bystander]);
    hub.link(&env, 0);
    let _daemon = env.start();
    hub.wait_linked(&env);
    // A peer writes the whole IPv4 half-space, a third of IPv6, and one real decision.
    rogue_put(
        &hub,
        "decisions",
        vec![
            peer_value("0.0.0.0/1"),
            peer_value("2000::/3"),
            peer_value("203.0.113.99/32"),
        ],
    );
    eventually("the narrow peer decision", Duration::from_secs(10), || {
        env.enforced("203.0.113.99/32").is_some()
    });
    let blocks = env.kernel_blocks();
    assert!(
        !blocks.contains("0.0.0.0/1") && !blocks.contains("2000::/3"),
        "{blocks:?}"
    );
    assert_eq!(refusals(&env, "fleet", "too_wide"), 2);
    assert!(env.delivered(bystander, 50) > 0, "a bystander was dropped");
    // The peer's permanent decision is not permanent here.
    let d = env
        .decisions()
        .into_iter()
        .find(|d| d["prefix"] == "203.0.113.99/32")
        .unwrap();
    assert!(d["expires_unix_ms"].as_u64().is_some(), "{d}");
    // Poisoned answers: "Tor" for one source, "rejected by IPASIS" for another.
    let now = now_unix_ms();
    rogue_put(
        &hub,
        "enrich",
        vec![
            (
                "203.0.113.66/32".into(),
                format!(
                    r#"{{"record":{{"tor":true}},"fetched_unix_ms":{now},"host":"edge-evil"}}"#
                )
                .into_bytes(),
            ),
            (
                "203.0.113.67/32".into(),
                format!(r#"{{"record":null,"fetched_unix_ms":{now},"host":"edge-evil"}}"#)
                    .into_bytes(),
            ),
        ],
    );
    std::thread::scope(|s| {
        for src in [poisoned, rejected] {
            let env = &env;
            s.spawn(move || env.flood(src));
        }
    });
    // The peer's word alone challenges, says whose it is, and costs no request.
    eventually(
        "a decision on the poisoned source",
        Duration::from_secs(10),
        || env.enforced("203.0.113.66/32").is_some(),
    );
    assert_eq!(
        env.enforced("203.0.113.66/32").map(|e| e.0),
        Some(Action::CHALLENGE)
    );
    let d = env
        .decisions()
        .into_iter()
        .find(|d| d["prefix"] == "203.0.113.66/32")
        .unwrap();
    assert_eq!(d["answer_from"], "edge-evil", "{d}");
    assert_eq!(stub.count("203.0.113.66"), 0);
    // A peer's "rejected" is not taken: this host asked IPASIS itself, and blocks the Tor exit.
    eventually("this host's own answer", Duration::from_secs(10), || {
        env.enforced("203.0.113.67/32").map(|e| e.0) == Some(Action::BLOCK)
    });
    assert_eq!(stub.count("203.0.113.67"), 1, "{:?}", stub.seen());
}
