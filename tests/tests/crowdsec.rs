//! ipwarden as a CrowdSec bouncer, against a real LAPI (Debian's crowdsec 1.4.6, unpacked by
//! `cargo xtask setup`, run LAPI-only in the edge namespace): decisions added with cscli are
//! dropped in XDP, deletions lift them, ranges cover their hosts, captcha challenges, IPv4-mapped
//! values are enforced as IPv4, a manual block outlives CrowdSec's deletion, a ban and a captcha
//! on one value stay apart, and a refused key is a loud error naming the key file.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use ipwarden_common::{Action, Reason};
use ipwarden_tests::{DaemonEnv, crowdsec::Lapi, eventually};

const BANNED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const IN_RANGE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 33);
const MAPPED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 60);
const BY_HAND: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 70);

fn config(lapi: &Lapi, key: &std::path::Path) -> String {
    format!(
        r#"
[detection]
poll_interval = "200ms"

[crowdsec]
lapi_url = "{}"
api_key_file = "{}"
poll_interval = "300ms"
resync_interval = "3s"
"#,
        lapi.url(),
        key.display()
    )
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn crowdsec_decisions_are_enforced_in_xdp() {
    let env = DaemonEnv::new(
        "",
        &[
            BANNED.into(),
            IN_RANGE.into(),
            MAPPED.into(),
            BY_HAND.into(),
        ],
    );
    let lapi = Lapi::start(Some(&env.topo.edge));
    let key = env.home.config().with_file_name("crowdsec.key");
    lapi.bouncer_key("ipwarden", &key);
    std::fs::write(env.home.config(), config(&lapi, &key)).unwrap();
    let mut daemon = Some(env.start());
    let block = Some((Action::BLOCK, Reason::CROWDSEC));

    // A ban added with cscli is dropped in XDP.
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        "203.0.113.20",
        "--duration",
        "1h",
        "--type",
        "ban",
    ]);
    eventually("the ban reaches the maps", Duration::from_secs(5), || {
        env.enforced("203.0.113.20/32") == block
    });
    assert_eq!(env.delivered(BANNED.into(), 30), 0);
    let listed = env.home.json(&["list", "--origin", "crowdsec"]);
    let d = &listed["decisions"][0];
    assert_eq!(
        (d["source"].as_str(), d["action"].as_str()),
        (Some("ban"), Some("block"))
    );
    assert!(
        d["reason"].as_str().unwrap().contains("manual 'ban'"),
        "{d}"
    );

    // Deleting it lets the traffic through.
    lapi.cscli(&["decisions", "delete", "--ip", "203.0.113.20"]);
    eventually("the deletion lifts it", Duration::from_secs(5), || {
        env.enforced("203.0.113.20/32").is_none()
    });
    assert_eq!(env.delivered(BANNED.into(), 30), 30);

    // A range (host bits as typed) covers its hosts.
    lapi.cscli(&[
        "decisions",
        "add",
        "--range",
        "203.0.113.35/29",
        "--duration",
        "1h",
    ]);
    eventually("the range reaches the maps", Duration::from_secs(5), || {
        env.enforced("203.0.113.32/29") == block
    });
    assert_eq!(env.delivered(IN_RANGE.into(), 30), 0);

    // A captcha challenges; a ban and a captcha on one value are two holders: deleting the ban
    // leaves the challenge.
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        "203.0.113.80",
        "--duration",
        "1h",
        "--type",
        "captcha",
    ]);
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        "203.0.113.80",
        "--duration",
        "1h",
        "--type",
        "ban",
    ]);
    eventually(
        "the ban wins over the captcha",
        Duration::from_secs(5),
        || env.enforced("203.0.113.80/32") == block,
    );
    lapi.cscli(&[
        "decisions",
        "delete",
        "--ip",
        "203.0.113.80",
        "--type",
        "ban",
    ]);
    eventually("the captcha remains", Duration::from_secs(5), || {
        env.enforced("203.0.113.80/32") == Some((Action::CHALLENGE, Reason::CROWDSEC))
    });

    // An IPv4-mapped IPv6 value is enforced as IPv4.
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        "::ffff:203.0.113.60",
        "--duration",
        "1h",
    ]);
    eventually(
        "the mapped value is enforced as IPv4",
        Duration::from_secs(5),
        || env.enforced("203.0.113.60/32") == block,
    );
    assert_eq!(env.delivered(MAPPED.into(), 30), 0);
    // So is one typed by an operator.
    let out = env
        .home
        .cli(&["block", "::ffff:198.51.100.14", "--ttl", "1m"]);
    assert!(out.contains("198.51.100.14/32"), "{out}");

    // A manual block on the same address survives CrowdSec's deletion.
    env.home.cli(&["block", "203.0.113.70", "--ttl", "1h"]);
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        "203.0.113.70",
        "--duration",
        "1h",
    ]);
    eventually("both hold it", Duration::from_secs(5), || {
        env.home.json(&["explain", "203.0.113.70"])["decisions"]
            .as_array()
            .is_some_and(|d| d.len() == 2)
    });
    lapi.cscli(&["decisions", "delete", "--ip", "203.0.113.70"]);
    eventually(
        "CrowdSec's decision is gone",
        Duration::from_secs(5),
        || {
            env.home.json(&["explain", "203.0.113.70"])["decisions"]
                .as_array()
                .is_some_and(|d| d.len() == 1)
        },
    );
    assert_eq!(
        env.enforced("203.0.113.70/32"),
        Some((Action::BLOCK, Reason::MANUAL))
    );
    assert_eq!(env.delivered(BY_HAND.into(), 30), 0);

    let status = env.home.json(&["status"]);
    let cs = &status["crowdsec"];
    assert_eq!(cs["connected"], true, "{cs}");
    assert!(cs["resyncs"].as_u64().unwrap() >= 1, "{cs}");

    // A key the LAPI refuses: a loud error naming the key file; what is known stays enforced.
    drop(daemon.take());
    std::fs::write(&key, "not-the-key").unwrap();
    daemon = Some(env.start());
    eventually(
        "the refusal shows in status",
        Duration::from_secs(10),
        || {
            env.home.json(&["status"])["crowdsec"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("403") && e.contains("crowdsec.key"))
        },
    );
    assert_eq!(
        env.enforced("203.0.113.60/32"),
        block,
        "known decisions stay enforced"
    );
    assert!(
        env.home.log_text().contains("refused the bouncer key"),
        "the daemon log does not say the key was refused"
    );
    assert!(
        !env.home.log_text().contains("not-the-key"),
        "the key was logged"
    );
    drop(daemon);
    let _ = IpAddr::from(BANNED);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn velocity_blocks_are_pushed_to_crowdsec_as_alerts() {
    let flooder = Ipv4Addr::new(203, 0, 113, 7);
    let env = DaemonEnv::new("", &[flooder.into()]);
    let lapi = Lapi::start(Some(&env.topo.edge));
    let dir = env.home.config().parent().unwrap().to_owned();
    let key = dir.join("crowdsec.key");
    let password = dir.join("watcher.password");
    lapi.bouncer_key("ipwarden", &key);
    lapi.machine("ipwarden-push", &password);
    std::fs::write(
        env.home.config(),
        format!(
            "[detection]\npoll_interval = \"200ms\"\nwindow = \"2s\"\npps_threshold = 500\n\n[crowdsec]\nlapi_url = \"{}\"\napi_key_file = \"{}\"\npoll_interval = \"300ms\"\npush = true\nlogin = \"ipwarden-push\"\npassword_file = \"{}\"\n",
            lapi.url(),
            key.display(),
            password.display()
        ),
    )
    .unwrap();
    let _daemon = env.start();
    std::thread::scope(|s| {
        s.spawn(|| {
            ipwarden_tests::traffic::udp_flood(
                &env.topo.client,
                flooder.into(),
                (ipwarden_tests::topology::EDGE_V4, 7001).into(),
                3000,
                Duration::from_secs(2),
            )
        });
        eventually("velocity blocks the flood", Duration::from_secs(8), || {
            env.enforced("203.0.113.7/32") == Some((Action::BLOCK, Reason::VELOCITY))
        });
    });
    eventually(
        "the alert reaches CrowdSec",
        Duration::from_secs(10),
        || {
            let alerts = lapi.cscli(&["alerts", "list", "-o", "json"]);
            alerts.contains("ipwarden/velocity") && alerts.contains("203.0.113.7")
        },
    );
    let status = env.home.json(&["status"]);
    assert!(
        status["crowdsec"]["pushed"].as_u64().unwrap() >= 1,
        "{status}"
    );
    // CrowdSec's copy comes back through the bouncer stream as a second holder, and is not
    // pushed again.
    eventually(
        "CrowdSec's copy is held too",
        Duration::from_secs(5),
        || {
            env.home.json(&["explain", "203.0.113.7"])["decisions"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["origin"] == "crowdsec"))
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        env.home.json(&["status"])["crowdsec"]["pushed"].as_u64(),
        status["crowdsec"]["pushed"].as_u64()
    );
}
