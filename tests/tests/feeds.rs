//! Threat feeds from fixture files (no network): a feed blocks its prefixes in XDP, a prefix
//! that leaves the file is lifted at the next refresh, a malformed line is reported with its
//! number, a large shrink is held until confirmed, and a tag feed changes a score with no API
//! request.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    time::Duration,
};

use ipwarden_common::{Action, Reason};
use ipwarden_tests::{
    DaemonEnv, eventually,
    ipasis_stub::{self, IpasisStub, Reply, answers},
};

const LISTED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const LISTED_TOO: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const CLOUD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 88);

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn feeds_block_lift_report_hold_and_tag() {
    let env = DaemonEnv::new("", &[LISTED.into(), LISTED_TOO.into(), CLOUD.into()]);
    let stub = IpasisStub::start_in(&env.topo.edge);
    stub.set_fallback(Reply::json(answers::RESIDENTIAL));
    let dir = env.home.config().parent().unwrap().to_owned();
    let drop_file = dir.join("drop.txt");
    let cloud_file = dir.join("ip-ranges.json");
    let key = ipasis_stub::key_file(&dir);
    write(
        &drop_file,
        "; Spamhaus DROP List (fixture)\n203.0.113.0/28 ; SBL1\n203.0.113.16/28 ; SBL2\nnot a prefix ; SBL3\n",
    );
    write(
        &cloud_file,
        r#"{"syncToken":"1","prefixes":[{"ip_prefix":"203.0.113.64/26","region":"x","service":"EC2"}],"ipv6_prefixes":[]}"#,
    );
    let config = format!(
        r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 500

[ipasis]
base_url = "{}"
key_file = "{}"

[[feeds]]
name = "drop"
url = "file:{}"
format = "spamhaus-drop"
refresh = "1s"

[[feeds]]
name = "cloud"
url = "file:{}"
format = "aws-ip-ranges"
use = "tag"
tag = "hosting"
refresh = "1s"
"#,
        stub.base_url(),
        key.display(),
        drop_file.display(),
        cloud_file.display()
    );
    std::fs::write(env.home.config(), config).unwrap();
    let _daemon = env.start();

    // The feed's prefixes are blocked; the malformed line is reported with its number.
    let block = Some((Action::BLOCK, Reason::FEED));
    eventually("the feed reaches the maps", Duration::from_secs(5), || {
        env.enforced("203.0.113.0/28") == block && env.enforced("203.0.113.16/28") == block
    });
    assert_eq!(env.delivered(LISTED.into(), 30), 0);
    let log = env.home.log_text();
    assert!(
        log.contains("line=4") && log.contains("not a prefix"),
        "the malformed line is not reported with its number:\n{log}"
    );
    let status = env.home.json(&["status"]);
    let feed = status["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "drop")
        .unwrap()
        .clone();
    assert_eq!(
        (feed["prefixes"].as_u64(), feed["bad_lines"].as_u64()),
        (Some(2), Some(1))
    );

    // A prefix removed from the file is lifted at the next refresh; a manual block on it stays.
    env.home.cli(&["block", "203.0.113.20", "--ttl", "1h"]);
    write(&drop_file, "203.0.113.0/28 ; SBL1\n");
    eventually(
        "the removed prefix is lifted",
        Duration::from_secs(5),
        || env.enforced("203.0.113.16/28").is_none(),
    );
    assert_eq!(
        env.delivered(LISTED_TOO.into(), 30),
        0,
        "the manual block is gone"
    );
    assert_eq!(env.enforced("203.0.113.0/28"), block);

    // Emptied at once (a truncated download, say): held until seen three times in a row.
    write(&drop_file, "; nothing\n");
    eventually("the shrink is held", Duration::from_secs(5), || {
        env.home.json(&["status"])["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "drop" && f["held"].is_string())
    });
    assert_eq!(
        env.enforced("203.0.113.0/28"),
        block,
        "held: still enforced"
    );
    eventually(
        "the confirmed shrink applies",
        Duration::from_secs(8),
        || env.enforced("203.0.113.0/28").is_none(),
    );

    // A flood from the tagged cloud range: decided from the tag, no IPASIS request.
    std::thread::scope(|s| {
        s.spawn(|| env.flood(CLOUD.into()));
        eventually(
            "the tagged source is decided",
            Duration::from_secs(8),
            || env.enforced("203.0.113.88/32").is_some(),
        );
    });
    let explain = env.home.json(&["explain", "203.0.113.88"]);
    let d = &explain["decisions"][0];
    assert_eq!(d["origin"], "feed", "{explain}");
    assert!(
        d["factors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "hosting (feed cloud)"),
        "{explain}"
    );
    assert_eq!(stub.count("203.0.113.88"), 0, "an IPASIS request was made");
    let _ = IpAddr::from(CLOUD);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_reload_starts_an_added_feed_and_lifts_a_removed_one_in_xdp() {
    let env = DaemonEnv::new("[detection]\npoll_interval = \"200ms\"\n", &[LISTED.into()]);
    let dir = env.home.config().parent().unwrap().to_owned();
    let drop_file = dir.join("drop.txt");
    write(&drop_file, "203.0.113.0/28 ; SBL1\n");
    let _daemon = env.start();
    assert_eq!(env.delivered(LISTED.into(), 20), 20, "no feed yet");

    let with_feed = format!(
        "[detection]\npoll_interval = \"200ms\"\n\n[[feeds]]\nname = \"drop\"\nurl = \"file:{}\"\nformat = \"spamhaus-drop\"\nrefresh = \"1s\"\n",
        drop_file.display()
    );
    std::fs::write(env.home.config(), with_feed).unwrap();
    let answer = env.home.cli(&["reload"]);
    assert!(answer.contains("feeds: started drop"), "{answer}");
    assert!(!answer.contains("next start"), "{answer}");
    eventually(
        "the added feed's block reaches XDP",
        Duration::from_secs(5),
        || env.enforced("203.0.113.0/28") == Some((Action::BLOCK, Reason::FEED)),
    );
    assert_eq!(env.delivered(LISTED.into(), 20), 0, "blocked by the feed");
    let status = env.home.json(&["status"]);
    assert!(
        status["feeds"].to_string().contains("\"drop\""),
        "status shows the feed: {status}"
    );

    std::fs::write(
        env.home.config(),
        "[detection]\npoll_interval = \"200ms\"\n",
    )
    .unwrap();
    let answer = env.home.cli(&["reload"]);
    assert!(
        answer.contains("feeds: stopped and lifted drop"),
        "{answer}"
    );
    assert_eq!(env.enforced("203.0.113.0/28"), None, "lifted at once");
    assert_eq!(env.delivered(LISTED.into(), 20), 20, "passes again");
    // It stays lifted after what would have been its next refresh.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(env.enforced("203.0.113.0/28"), None);
    assert!(
        !env.home.json(&["status"])["feeds"]
            .to_string()
            .contains("\"drop\""),
        "status no longer shows it"
    );
}
