//! The real daemon in a namespace, driven through the real CLI: velocity detection, decisions
//! with TTLs, allowlist rules, crash and restart, the control socket's gatekeeping, readiness.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Write as _},
    net::Ipv4Addr,
    os::unix::{fs::PermissionsExt as _, net::UnixStream, process::CommandExt as _},
    time::{Duration, Instant},
};

use ipwarden_common::GlobalCounter;
use ipwarden_tests::{
    Daemon, DaemonEnv,
    topology::{CLIENT_V4, EDGE_IF, EDGE_V4},
    traffic::udp_flood,
};
use serde_json::Value;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// Fast polls so tests finish quickly; thresholds a test can cross with a paced UDP sender.
const CONFIG: &str = r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 500
syn_pps_threshold = 200
hard_pps_limit = 100000
hard_ttl = "10m"
"#;

fn env(config: &str) -> DaemonEnv {
    DaemonEnv::new(config, &[ATTACKER.into()])
}

fn polls(env: &DaemonEnv) -> u64 {
    env.home.json(&["status"])["polls"].as_u64().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_flood_is_blocked_within_two_polls_and_a_quiet_source_is_left_alone() {
    let env = env(CONFIG);
    let _daemon = env.start();
    let client = std::thread::scope(|s| {
        // A legitimate source well below the threshold, throughout.
        let quiet = s.spawn(|| {
            udp_flood(
                &env.topo.client,
                CLIENT_V4.into(),
                (EDGE_V4, 7001).into(),
                100,
                Duration::from_secs(3),
            )
        });
        let polls_before = polls(&env);
        let flood = s.spawn(|| {
            udp_flood(
                &env.topo.client,
                ATTACKER.into(),
                (EDGE_V4, 7001).into(),
                3000,
                Duration::from_secs(3),
            )
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut polls_at_block = None;
        while Instant::now() < deadline {
            let polls = polls(&env);
            if env.prefixes().contains("203.0.113.7/32") {
                polls_at_block = Some(polls);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let polls_at_block =
            polls_at_block.unwrap_or_else(|| panic!("no block: {}", env.home.log_text()));
        // The flood starts right after `polls_before` was read; the daemon needs at most two
        // polls to see it (plus one that may have been in progress).
        assert!(
            polls_at_block - polls_before <= 3,
            "blocked after {} polls",
            polls_at_block - polls_before
        );
        flood.join().unwrap();
        quiet.join().unwrap()
    });
    assert!(client > 0);

    let d = env.decisions();
    let attacker = d.iter().find(|d| d["prefix"] == "203.0.113.7/32").unwrap();
    assert_eq!(attacker["origin"], "velocity");
    assert!(
        attacker["reason"]
            .as_str()
            .unwrap()
            .contains("heavy hitter")
    );
    // The velocity rule's short TTL (10m), not the 24h default.
    let ttl_ms = attacker["expires_unix_ms"].as_u64().unwrap()
        - attacker["created_unix_ms"].as_u64().unwrap();
    assert_eq!(ttl_ms, 600_000);
    // Enforced in the kernel: the attacker's packets die, the quiet client is untouched.
    assert_eq!(env.delivered(ATTACKER.into(), 30), 0);
    assert_eq!(env.delivered(CLIENT_V4.into(), 30), 30);
    assert!(
        !env.prefixes().iter().any(|p| p.starts_with("198.51.100.")),
        "quiet source blocked"
    );
    let top = env.home.json(&["top", "-n", "5"]);
    let rows = top["sources"].as_array().unwrap();
    let client_row = rows
        .iter()
        .find(|r| r["source"] == "198.51.100.2/32")
        .expect("client in top");
    assert_eq!(client_row["heavy"], false);
    assert!(
        env.home.log_text().matches("decision: block").count() == 1,
        "each decision is logged once"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn manual_decisions_ttl_expiry_allow_precedence_and_refusals() {
    let env = env(CONFIG);
    let _daemon = env.start();
    let other = Ipv4Addr::new(203, 0, 113, 9);
    env.topo.add_source(other.into());

    // A manual block with a TTL is enforced, then expires by itself.
    let out = env.home.cli(&[
        "block",
        "203.0.113.7",
        "--ttl",
        "2s",
        "--reason",
        "test run",
    ]);
    assert!(out.contains("blocked 203.0.113.7/32"), "{out}");
    assert_eq!(env.delivered(ATTACKER.into(), 20), 0);
    let d = env.decisions();
    assert_eq!(d[0]["origin"], "manual");
    assert_eq!(d[0]["reason"], "test run");
    std::thread::sleep(Duration::from_millis(2600));
    assert!(env.decisions().is_empty(), "expired decision removed");
    assert!(env.kernel_blocks().is_empty(), "and its map entry");
    assert_eq!(env.delivered(ATTACKER.into(), 20), 20);

    // Without --ttl the default TTL applies; --permanent has none.
    env.home.cli(&["block", "203.0.113.7"]);
    env.home.cli(&["block", "198.51.100.0/25", "--permanent"]);
    let d = env.decisions();
    // The manual holder's (the 20-packet bursts above may also have made a velocity decision).
    let by = |p: &str| {
        d.iter()
            .find(|d| d["prefix"] == p && d["origin"] == "manual")
            .unwrap()
            .clone()
    };
    let ttl = by("203.0.113.7/32")["expires_unix_ms"].as_u64().unwrap()
        - by("203.0.113.7/32")["created_unix_ms"].as_u64().unwrap();
    assert_eq!(ttl, 24 * 3600 * 1000);
    assert!(by("198.51.100.0/25")["expires_unix_ms"].is_null());
    // Unblock lifts it (every origin's, should velocity also hold it).
    env.home.cli(&["unblock", "203.0.113.7", "--all-origins"]);
    assert_eq!(env.delivered(ATTACKER.into(), 20), 20);
    env.home.cli(&["unblock", "198.51.100.0/25"]);

    // Allow precedence: an allow entry added over an existing block wins in the kernel.
    env.home.cli(&["block", "203.0.113.9"]);
    assert_eq!(env.delivered(other.into(), 10), 0);
    env.home.cli(&["allow", "add", "203.0.113.9"]);
    assert_eq!(env.delivered(other.into(), 10), 10);
    let explain = env.home.json(&["explain", "203.0.113.9"]);
    assert_eq!(explain["verdict"], "allowed");

    // A block overlapping an allowlisted prefix is refused, with the reason, and changes nothing.
    let before = env.prefixes();
    for p in [
        "203.0.113.0/24",
        "127.0.0.1",
        "fe80::1",
        "0.0.0.0/0",
        "::/0",
    ] {
        let out = env.home.cli_output(&["block", p]);
        assert_eq!(out.status.code(), Some(1), "{p}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("refusing to block"), "{p}: {err}");
    }
    assert_eq!(env.prefixes(), before);

    // Builtin allow entries cannot be removed at runtime.
    let out = env.home.cli_output(&["allow", "rm", "127.0.0.0/8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("builtin"), "{}", stderr(&out));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn sigkill_mid_flood_keeps_dropping_and_a_restart_restores_everything() {
    let env = env(CONFIG);
    let daemon = env.start();
    env.home.cli(&[
        "block",
        "203.0.113.7",
        "--permanent",
        "--reason",
        "kept across crashes",
    ]);
    env.home.cli(&["block", "2001:db8:2::1", "--ttl", "1h"]);
    env.home.cli(&["block", "192.0.2.0/26"]);
    env.home.cli(&["allow", "add", "198.51.100.128/25"]);
    let decisions_before = env.decisions();
    let kernel_before = env.kernel_blocks();
    assert_eq!(kernel_before.len(), 3);

    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            udp_flood(
                &env.topo.client,
                ATTACKER.into(),
                (EDGE_V4, 7002).into(),
                2000,
                Duration::from_secs(2),
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let dropped_before_kill = env
            .ipw
            .dataplane()
            .globals()
            .unwrap()
            .get(GlobalCounter::Dropped);
        daemon.kill9();
        std::thread::sleep(Duration::from_millis(700));
        let dropped_after_kill = env
            .ipw
            .dataplane()
            .globals()
            .unwrap()
            .get(GlobalCounter::Dropped);
        assert!(
            dropped_after_kill > dropped_before_kill + 500,
            "the data plane kept dropping without the daemon ({dropped_before_kill} -> {dropped_after_kill})"
        );
        flood.join().unwrap();
    });
    assert!(env.ipw.pins().link().exists(), "still attached");

    let _daemon = env.start();
    assert!(
        env.home
            .log_text()
            .contains("adopting the existing attachment")
    );
    assert_eq!(env.decisions(), decisions_before, "the same decisions");
    assert_eq!(env.kernel_blocks(), kernel_before, "the same map entries");
    let allow = env.home.json(&["allow", "list"]);
    assert!(
        allow["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["prefix"] == "198.51.100.128/25" && a["origin"] == "runtime")
    );
    assert_eq!(env.delivered(ATTACKER.into(), 20), 0);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_restart_removes_map_entries_the_store_does_not_have() {
    let env = env(CONFIG);
    let daemon = env.start();
    env.home.cli(&["block", "203.0.113.7"]);
    // The daemon's resync at start left the block index vouching for unblocked sources.
    let vouched = || env.ipw.dataplane().index_vouched().unwrap();
    assert!(
        vouched(),
        "the index does not vouch after the daemon's start"
    );
    daemon.stop();
    // Added behind the daemon's back while it was stopped.
    env.ipw
        .ok(None, &["map", "block", "192.0.2.99", "--iface", EDGE_IF]);
    assert!(env.kernel_blocks().contains("192.0.2.99/32"));
    assert!(vouched(), "a change through the CLI kept the index's rule");
    let _daemon = env.start();
    assert_eq!(
        env.kernel_blocks(),
        BTreeSet::from(["203.0.113.7/32".to_owned()])
    );
    assert!(vouched(), "the index does not vouch after a restart");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn sigterm_leaves_the_program_enforcing() {
    let env = env(CONFIG);
    let daemon = env.start();
    env.home.cli(&["block", "203.0.113.7"]);
    assert!(daemon.stop().success());
    assert!(!env.home.socket().exists(), "socket removed on clean stop");
    assert!(env.ipw.pins().link().exists());
    assert_eq!(env.delivered(ATTACKER.into(), 20), 0);
    let out = env.home.cli_output(&["status"]);
    assert_eq!(out.status.code(), Some(3), "daemon gone: exit 3");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_socket_refuses_non_root_peers_and_survives_garbage() {
    let env = env(CONFIG);
    let mut daemon = env.start();
    let socket = env.home.socket();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let as_nobody = |args: &[&str]| {
        std::process::Command::new(ipwarden_tests::ipwarden::binary())
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    // The file mode stops nobody first…
    let out = as_nobody(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    // …and with the mode opened up, SO_PEERCRED still does. The directory must be traversable.
    std::fs::set_permissions(
        socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["block", "203.0.113.7"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uid 65534 may not use the control socket"),
        "{}",
        stderr(&out)
    );
    assert!(env.decisions().is_empty());

    // Garbage, an unknown command, an oversized line: errors, and the daemon goes on.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for bad in [
        "garbage",
        r#"{"version":1,"cmd":"launch"}"#,
        r#"{"version":9,"cmd":"status"}"#,
    ] {
        writeln!(s, "{bad}").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "error", "{bad}: {line}");
    }
    let mut big = UnixStream::connect(&socket).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = big.write_all(&vec![b'x'; 200 * 1024]);
    let mut line = String::new();
    let _ = BufReader::new(&big).read_line(&mut line);
    assert!(line.contains("larger than"), "{line}");
    // A client that connects and never reads or writes holds nothing up, nor one that sends
    // requests and never reads the answers (its connection is dropped after a write timeout).
    let _idle = UnixStream::connect(&socket).unwrap();
    let mut deaf = UnixStream::connect(&socket).unwrap();
    deaf.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for _ in 0..2000 {
        if deaf
            .write_all(b"{\"version\":1,\"cmd\":\"status\"}\n")
            .is_err()
        {
            break;
        }
    }
    let t = Instant::now();
    assert!(env.home.cli(&["status"]).contains("ipwarden"));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "status took {:?} beside a deaf client",
        t.elapsed()
    );
    assert!(env.home.cli(&["status"]).contains("ipwarden"));
    assert!(daemon.running());

    // Bad CLI input: a clear error, exit 2, nothing changes.
    let out = env.home.cli_output(&["block", "203.0.113.300"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`203.0.113.300`"));
    let out = env.home.cli_output(&["unblock", "203.0.113.8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not blocked"));
    assert!(env.decisions().is_empty());
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn ready_is_notified_only_once_attached_and_listening() {
    let env = env(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _daemon = Daemon::spawn(
        &env.home,
        &env.topo.edge,
        &[("NOTIFY_SOCKET", &notify_path)],
    );
    let mut buf = [0u8; 256];
    let mut recv = || {
        let n = notify.recv(&mut buf).expect("a notification within 15 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // Before READY=1, only a request for more start-up time while the store is restored.
    let first = recv();
    assert!(
        first.starts_with("EXTEND_TIMEOUT_USEC=") && first.contains("STATUS=restoring"),
        "{first}"
    );
    assert_eq!(recv(), "READY=1");
    // At that moment the program is attached and the socket answers.
    assert!(
        env.topo
            .edge
            .ip(&["link", "show", "dev", EDGE_IF])
            .contains("xdp")
    );
    assert!(
        env.home
            .cli(&["status"])
            .contains("interface: edge0 (driver)")
    );
    // Then every poll feeds the watchdog with a one-line status.
    let next = recv();
    assert!(
        next.starts_with("WATCHDOG=1\nSTATUS=") && next.contains("decisions,"),
        "{next}"
    );
    assert!(recv().starts_with("WATCHDOG=1"));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn sighup_reloads_and_a_bad_file_keeps_the_old_configuration() {
    let env = env(CONFIG);
    let daemon = env.start();
    std::fs::write(
        env.home.config(),
        format!("{CONFIG}\n[allow]\nprefixes = [\"203.0.113.0/28\"]\n"),
    )
    .unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env.home.log_text().contains("SIGHUP: reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let allow = env.home.json(&["allow", "list"]);
    assert!(
        allow["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["prefix"] == "203.0.113.0/28" && a["origin"] == "config")
    );
    assert_eq!(
        env.home.cli_output(&["block", "203.0.113.7"]).status.code(),
        Some(1)
    );

    std::fs::write(env.home.config(), "[detection]\npps_threshold = \"lots\"\n").unwrap();
    let out = env.home.cli_output(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("old one stays") && stderr(&out).contains("line 2"),
        "{}",
        stderr(&out)
    );
    // Still the previous configuration.
    assert_eq!(
        env.home.cli_output(&["block", "203.0.113.7"]).status.code(),
        Some(1)
    );
}

/// As under the shipped unit's `ProcSubset=pid`: the daemon runs with a /proc that hides
/// /proc/net. It must still find (and protect) the default gateway, and say so in `status` when
/// there is none. Before the fix it read /proc/net/route, found nothing, and said nothing.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_gateway_is_protected_under_a_subset_pid_proc_and_its_absence_is_said() {
    let env = env(CONFIG);
    env.topo
        .edge
        .ip(&["route", "add", "default", "via", "198.51.100.2"]);
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t proc -o subset=pid proc /proc && test ! -e /proc/net/route && exec \"$@\"",
        "sh",
    ];
    let daemon = Daemon::start_wrapped(&env.home, &env.topo.edge, &wrapper);
    let allow = env.home.json(&["allow", "list"]);
    assert!(
        allow["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["prefix"] == "198.51.100.2/32" && a["origin"] == "protected"),
        "the gateway is not protected: {allow}\n{}",
        env.home.log_text()
    );
    let out = env.home.cli_output(&["block", "198.51.100.2"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "blocking the gateway is refused"
    );
    let warnings = env.home.json(&["status"])["warnings"].clone();
    assert!(
        !warnings.to_string().contains("no default gateway"),
        "{warnings}"
    );
    drop(daemon);

    env.topo.edge.ip(&["route", "del", "default"]);
    let _daemon = Daemon::start_wrapped(&env.home, &env.topo.edge, &wrapper);
    let warnings = env.home.json(&["status"])["warnings"].clone();
    assert!(
        warnings.to_string().contains("no default gateway found"),
        "status does not say the gateway is unprotected: {warnings}"
    );

    // The routes change under the running daemon: a reload (or, later, the periodic re-read)
    // protects the new gateway and ends the warning, and unprotects it when it goes.
    let protected = |env: &DaemonEnv| {
        env.home.json(&["allow", "list"])["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["prefix"] == "198.51.100.2/32" && a["origin"] == "protected")
    };
    env.topo
        .edge
        .ip(&["route", "add", "default", "via", "198.51.100.2"]);
    env.home.cli(&["reload"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !protected(&env) {
        assert!(
            Instant::now() < deadline,
            "the new gateway was not protected after a reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let warnings = env.home.json(&["status"])["warnings"].to_string();
    assert!(!warnings.contains("no default gateway"), "{warnings}");
    assert!(
        env.kernel_allows().contains("198.51.100.2/32"),
        "in the maps too"
    );

    env.topo.edge.ip(&["route", "del", "default"]);
    env.home.cli(&["reload"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while protected(&env) {
        assert!(
            Instant::now() < deadline,
            "the old gateway stayed protected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!env.kernel_allows().contains("198.51.100.2/32"));
    let warnings = env.home.json(&["status"])["warnings"].to_string();
    assert!(warnings.contains("no default gateway found"), "{warnings}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn every_json_answer_is_one_document_on_one_line() {
    let env = env(CONFIG);
    let _daemon = env.start();
    env.home.cli(&["block", "203.0.113.9", "--ttl", "1h"]);
    env.home.cli(&["unblock", "203.0.113.9"]);
    env.home.cli(&["block", "203.0.113.10", "--ttl", "1h"]);
    for cmd in [
        vec!["status"],
        vec!["list"],
        vec!["top"],
        vec!["stats"],
        vec!["explain", "203.0.113.10"],
        vec!["history"],
        vec!["allow", "list"],
        // Without the daemon: the pinned maps themselves.
        vec!["map", "list", "--iface", ipwarden_tests::topology::EDGE_IF],
    ] {
        let mut args = cmd.clone();
        args.push("--json");
        let out = if cmd[0] == "map" {
            env.ipw.ok(Some(&env.topo.edge), &args)
        } else {
            env.home.cli(&args)
        };
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{cmd:?} printed {} lines:\n{out}",
            lines.len()
        );
        serde_json::from_str::<serde_json::Value>(lines[0])
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}: {out}"));
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_second_daemon_on_the_same_state_is_refused_and_harms_nothing() {
    let env = env(CONFIG);
    let first = env.start();
    env.home.cli(&["block", "203.0.113.9", "--ttl", "1h"]);
    for args in [&[][..], &["--rebuild-store"][..]] {
        let before = env.home.log_text().len();
        let mut second = Daemon::spawn_args(&env.home, &env.topo.edge, &[], args);
        let status = second
            .wait_exit(Duration::from_secs(10))
            .expect("the second daemon kept running");
        assert!(!status.success(), "{args:?}");
        let said = env.home.log_text()[before..].to_owned();
        assert!(
            said.contains(&format!("in use by process {}", first.pid())),
            "{args:?}: {said}"
        );
        assert!(!said.contains("--rebuild-store"), "{args:?}: {said}");
    }
    // The first daemon and its store are untouched.
    assert!(
        env.prefixes().contains("203.0.113.9/32"),
        "{:?}",
        env.prefixes()
    );
    let moved = std::fs::read_dir(env.home.state_dir())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("unreadable"));
    assert!(!moved, "the store was moved aside under the running daemon");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn drops_are_counted_by_the_origin_of_the_decision_that_dropped_them() {
    let feed_source = Ipv4Addr::new(203, 0, 113, 8);
    let env = DaemonEnv::new(CONFIG, &[ATTACKER.into(), feed_source.into()]);
    let _daemon = env.start();
    env.home.cli(&["block", &ATTACKER.to_string()]);
    env.home.cli(&[
        "block",
        &feed_source.to_string(),
        "--origin",
        "feed",
        "--name",
        "drop-list",
    ]);
    assert_eq!(env.delivered(ATTACKER.into(), 30), 0);
    assert_eq!(env.delivered(feed_source.into(), 20), 0);
    assert_eq!(env.delivered(feed_source.into(), 20), 0);
    let stats = env.home.json(&["stats"]);
    let by_origin = &stats["interfaces"][0]["dropped_by_origin"];
    let find = |o: &str| {
        by_origin
            .as_array()
            .and_then(|a| a.iter().find(|d| d["origin"] == o))
            .cloned()
            .unwrap_or_else(|| panic!("no {o} drops in {stats}"))
    };
    let (manual, feed) = (find("manual"), find("feed"));
    assert_eq!(manual["packets"], 30, "{stats}");
    assert_eq!(feed["packets"], 40, "{stats}");
    // Each datagram is one frame of the same size: bytes are counted per frame.
    let per_frame = manual["bytes"].as_u64().unwrap() / 30;
    assert!(per_frame >= 58, "{stats}");
    assert_eq!(feed["bytes"].as_u64().unwrap(), 40 * per_frame, "{stats}");
    let total: u64 = by_origin
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["packets"].as_u64().unwrap())
        .sum();
    let dropped = stats["interfaces"][0]["counters"]["dropped"]
        .as_u64()
        .unwrap();
    assert_eq!(total, dropped, "every drop has an origin: {stats}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn list_and_explain_say_what_each_decision_dropped() {
    let neighbour = Ipv4Addr::new(203, 0, 113, 8);
    let env = DaemonEnv::new(CONFIG, &[ATTACKER.into(), neighbour.into()]);
    let _daemon = env.start();
    env.home.cli(&["block", "203.0.113.0/24"]);
    env.home.cli(&["block", "192.0.2.0/24"]);
    assert_eq!(env.delivered(ATTACKER.into(), 4000), 0);
    assert_eq!(env.delivered(neighbour.into(), 2000), 0);
    let sample = ipwarden_common::stats::HIT_SAMPLE;
    let within = |got: u64, sent: u64| {
        got.is_multiple_of(sample) && got * 10 >= sent * 6 && got * 10 <= sent * 14
    };
    let list = env.home.json(&["list"]);
    let hits = list["hits"].as_array().unwrap_or_else(|| panic!("{list}"));
    let of = |hits: &[Value], p: &str| {
        hits.iter()
            .find(|h| h["prefix"] == p)
            .and_then(|h| h["packets"].as_u64())
    };
    let net = of(hits, "203.0.113.0/24").unwrap_or_else(|| panic!("{list}"));
    assert!(within(net, 6000), "the /24 dropped 6000, hits say {net}");
    // A decision that dropped nothing has no hits.
    assert_eq!(of(hits, "192.0.2.0/24"), None, "{list}");
    let explain = env.home.json(&["explain", &ATTACKER.to_string()]);
    let hits = explain["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{explain}"));
    let own = of(hits, "203.0.113.7/32").unwrap_or_else(|| panic!("{explain}"));
    assert!(within(own, 4000), "the source sent 4000, hits say {own}");
    assert_eq!(of(hits, "203.0.113.0/24"), Some(net), "{explain}");
    eprintln!("hits: {net} under the /24 of 6000 dropped, {own} from one source of 4000");
    let text = env.home.cli(&["list"]);
    assert!(text.contains("DROPPED"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("203.0.113.0/24"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains('~'), "{row}");
    let explained = env.home.cli(&["explain", &ATTACKER.to_string()]);
    assert!(
        explained.contains("dropped from this source: about"),
        "{explained}"
    );
}
