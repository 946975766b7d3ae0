//! Upgrades and where the pins live: a daemon that finds another build's program attached swaps
//! its own in on the same link with no gap; pins of a newer layout are refused; a bpffs the
//! daemon had to mount in a private mount namespace is said to end with it.
//!
//! Privileged: run with `cargo xtask test`.

use std::{net::Ipv4Addr, time::Duration};

use ipwarden::{dataplane::stamp, net::host_prefix};
use ipwarden_common::{LAYOUT_VERSION, Stamp, names};
use ipwarden_tests::{
    Daemon, DaemonEnv,
    topology::{EDGE_IF, EDGE_V4},
    traffic::{UdpSink, udp_flood},
};

const ATTACKER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

const CONFIG: &str = r#"
[detection]
poll_interval = "200ms"
"#;

/// Another build's stamp, as an older release would have left it.
const OTHER_BUILD: u64 = 0x0bad_c0de_0000_0001;

/// Runs `during` half a second into a 3-second flood of 3 000 datagrams a second from the
/// blocked attacker to the edge's UDP port 7002; how many were sent, and what `during` gave.
fn while_flooding<T: Send>(env: &DaemonEnv, during: impl FnOnce() -> T + Send) -> (u64, T) {
    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            udp_flood(
                &env.topo.client,
                ATTACKER.into(),
                (EDGE_V4, 7002).into(),
                3000,
                Duration::from_secs(3),
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let got = during();
        (flood.join().unwrap(), got)
    })
}

fn program_id(env: &DaemonEnv) -> u64 {
    env.home.json(&["status"])["interfaces"][0]["program"]["program_id"]
        .as_u64()
        .expect("status shows the program id")
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_daemon_swaps_another_builds_program_on_the_link_while_a_blocked_flood_gets_nothing_through() {
    let env = DaemonEnv::new(CONFIG, &[ATTACKER.into()]);
    let daemon = env.start();
    env.home.cli(&["block", "203.0.113.7", "--permanent"]);
    let before = program_id(&env);
    let status = env.home.json(&["status"]);
    assert_eq!(
        status["interfaces"][0]["program"]["current"], true,
        "{status}"
    );
    assert!(daemon.stop().success());

    // The pins now say another build attached the program: what a package upgrade leaves. A
    // release before the block index left no index pins either, nor marks of tracked sources.
    let pins = env.ipw.pins();
    stamp::write(&pins, &Stamp::new(OTHER_BUILD, "0.0.9")).unwrap();
    for map in [names::INDEX_V4, names::INDEX_V6, names::TRACKED] {
        std::fs::remove_file(pins.map(map)).unwrap();
    }

    let sink = UdpSink::bind(&env.topo.edge, (EDGE_V4, 7002).into());
    let (sent, ()) = while_flooding(&env, || {
        let _daemon = env.start();
        let log = env.home.log_text();
        assert!(
            log.contains("replaced the attached XDP program of another build"),
            "{log}"
        );
        let after = program_id(&env);
        assert_ne!(after, before, "the program on the link was replaced");
        let status = env.home.json(&["status"]);
        let iface = &status["interfaces"][0];
        assert_eq!(iface["attach"], "upgraded", "{status}");
        assert_eq!(iface["program"]["current"], true, "{status}");
        assert_eq!(
            iface["program"]["build"],
            stamp::BUILD,
            "the pins carry this build's stamp again"
        );
        assert_eq!(iface["program"]["version"], env!("CARGO_PKG_VERSION"));
    });
    assert!(sent > 3000, "the flood ran ({sent} sent)");
    // The upgrade created the index maps and the restore filled them; the start marked the
    // tracked sources the old program left and let the new one trust the marks.
    for map in [names::INDEX_V4, names::INDEX_V6, names::TRACKED] {
        assert!(pins.map(map).exists(), "{map} pinned again");
    }
    assert!(env.ipw.dataplane().tracked_marked().unwrap());
    assert_eq!(
        env.ipw
            .dataplane()
            .indexed(host_prefix(ATTACKER.into()))
            .unwrap(),
        Some(u64::MAX),
        "the stored block is indexed after the upgrade"
    );
    let got = sink.drain(Duration::from_millis(300));
    assert_eq!(
        got.get(&ATTACKER.into()).copied().unwrap_or(0),
        0,
        "packets of the blocked source got through during the upgrade: {got:?}"
    );
    assert!(env.ipw.pins().link().exists());
    assert_eq!(
        env.delivered(ATTACKER.into(), 20),
        0,
        "still blocked after it"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn pins_of_a_newer_layout_are_refused_with_what_to_do() {
    let env = DaemonEnv::new(CONFIG, &[ATTACKER.into()]);
    let daemon = env.start();
    env.home.cli(&["block", "203.0.113.7", "--permanent"]);
    assert!(daemon.stop().success());
    let mut newer = Stamp::new(OTHER_BUILD, "9.0.0");
    newer.layout = LAYOUT_VERSION + 1;
    stamp::write(&env.ipw.pins(), &newer).unwrap();

    let mut daemon = Daemon::spawn(&env.home, &env.topo.edge, &[]);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("the daemon refuses to start");
    assert!(!status.success());
    let log = env.home.log_text();
    assert!(
        log.contains(&format!("has data plane layout {}", LAYOUT_VERSION + 1))
            && log.contains("written by ipwarden 9.0.0")
            && log.contains("will not read those maps blindly"),
        "{log}"
    );
    // The program the newer release attached keeps enforcing.
    assert!(env.ipw.pins().link().exists());
    assert_eq!(env.delivered(ATTACKER.into(), 20), 0);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_bpffs_mounted_in_a_private_mount_namespace_is_said_to_end_with_the_daemon() {
    let env = DaemonEnv::new(CONFIG, &[ATTACKER.into()]);
    // As `ip netns exec` alone would leave it: no bpffs at the configured path, and a mount
    // namespace of the daemon's own. The test's bpffs is unmounted only in that namespace.
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "umount \"$IPWARDEN_BPFFS\" && exec \"$@\"",
        "sh",
    ];
    let daemon = Daemon::start_wrapped(&env.home, &env.topo.edge, &wrapper);
    let warnings = env.home.json(&["status"])["warnings"].to_string();
    assert!(
        warnings.contains("in a private mount namespace")
            && warnings.contains("enforcement will not survive it"),
        "status does not warn: {warnings}"
    );
    assert!(
        env.home
            .log_text()
            .contains("enforcement will NOT survive it"),
        "the start-up log does not say it"
    );
    assert!(
        !env.ipw.pins().link().exists(),
        "the pins are not in the host's bpffs"
    );
    assert!(daemon.stop().success());
    // What the warning said: with the namespace gone, so is the program.
    let link = env.topo.edge.ip(&["link", "show", "dev", EDGE_IF]);
    assert!(!link.contains("xdp"), "{link}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_index_way_a_release_without_the_index_left_stale_is_cleared_at_start() {
    let env = DaemonEnv::new(CONFIG, &[ATTACKER.into()]);
    let daemon = env.start();
    assert!(daemon.stop().success());
    // A downgrade's release unblocked ATTACKER in the hash but knew nothing of the index: the
    // way stays, and the program would keep dropping an unblocked source.
    let mut dp = env.ipw.dataplane();
    let net = host_prefix(ATTACKER.into());
    dp.block(net, ipwarden_common::BlockEntry::block(1, 0))
        .unwrap();
    let map = aya::maps::Map::from_map_data(
        aya::maps::MapData::from_pin(env.ipw.pins().map(names::BLOCK_V4)).unwrap(),
    )
    .unwrap();
    let mut hash: aya::maps::HashMap<_, [u8; 4], ipwarden_common::BlockEntry> =
        map.try_into().unwrap();
    hash.remove(&ATTACKER.octets()).unwrap();
    assert!(dp.indexed(net).unwrap().is_some(), "the stale way");
    assert_eq!(env.delivered(ATTACKER.into(), 20), 0, "dropped through it");

    let _daemon = env.start();
    assert_eq!(
        dp.indexed(net).unwrap(),
        None,
        "cleared by the start's resync"
    );
    assert_eq!(env.delivered(ATTACKER.into(), 20), 20, "the source passes");
}

/// The swap itself, without a daemon after it: the index authority the last daemon gave its
/// index maps does not carry over to the new program's (created empty here, as for pins a
/// release before the index left), so the new program asks the hash until a resync vouches
/// again. Before this was so, a change of generation between the swap and the daemon's resync
/// let the program trust its empty index and pass a blocked source (312 packets of a flood in
/// one run of the test above).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_swapped_program_does_not_trust_an_index_it_was_not_vouched_for() {
    let env = DaemonEnv::new(CONFIG, &[ATTACKER.into()]);
    let daemon = env.start();
    env.home.cli(&["block", "203.0.113.7", "--permanent"]);
    assert!(daemon.stop().success());
    let pins = env.ipw.pins();
    assert!(
        env.ipw.dataplane().index_vouched().unwrap(),
        "the daemon vouched"
    );
    assert_eq!(
        env.delivered(ATTACKER.into(), 20),
        0,
        "blocked before the swap"
    );
    stamp::write(&pins, &Stamp::new(OTHER_BUILD, "0.0.9")).unwrap();
    for map in [names::INDEX_V4, names::INDEX_V6] {
        std::fs::remove_file(pins.map(map)).unwrap();
    }
    let adopted = ipwarden::dataplane::adopt(&ipwarden::dataplane::AttachOptions {
        pins: pins.clone(),
        mode: ipwarden::dataplane::AttachMode::Auto,
        capacities: ipwarden::dataplane::Capacities::default(),
        build: stamp::this_build(),
    })
    .unwrap();
    assert!(
        matches!(adopted, ipwarden::dataplane::Adoption::Replaced { .. }),
        "{adopted:?}"
    );
    let mut dp = env.ipw.dataplane();
    assert!(
        !dp.index_vouched().unwrap(),
        "authority withdrawn at the swap"
    );
    // A change of generation (what any write of the daemon's start makes) keeps it withdrawn,
    // and the blocked source is judged by the hash: dropped.
    dp.block(
        "198.51.100.99/32".parse().unwrap(),
        ipwarden_common::BlockEntry::block(1, 0),
    )
    .unwrap();
    assert!(!dp.index_vouched().unwrap());
    assert_eq!(
        dp.indexed(host_prefix(ATTACKER.into())).unwrap(),
        None,
        "empty index"
    );
    assert_eq!(env.delivered(ATTACKER.into(), 20), 0, "dropped by the hash");
}

/// A configuration whose IPv4 prefix map holds `n` entries.
fn prefixes_config(n: u32) -> String {
    format!("{CONFIG}\n[dataplane]\nmax_block_prefixes = {n}\n")
}

fn block_net_v4(env: &DaemonEnv) -> serde_json::Value {
    let status = env.home.json(&["status"]);
    status["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["map"] == names::BLOCK_NET_V4)
        .unwrap_or_else(|| panic!("no {} in {status}", names::BLOCK_NET_V4))
        .clone()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_restart_with_other_map_sizes_resizes_the_pinned_maps_while_a_blocked_flood_gets_nothing_through()
 {
    let env = DaemonEnv::new(&prefixes_config(64), &[ATTACKER.into()]);
    let daemon = env.start();
    // The /24 holding the attacker, then 63 /30s with a TTL (weaker than the permanent /24):
    // the 64-entry map is full and one more prefix is refused.
    env.home.cli(&["block", "203.0.113.0/24", "--permanent"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nets.txt");
    let nets: String = (0..63)
        .map(|i| format!("198.51.100.{}/30\n", i * 4))
        .collect();
    std::fs::write(&file, nets).unwrap();
    env.home
        .cli(&["import", file.to_str().unwrap(), "--ttl", "1h"]);
    assert_eq!(block_net_v4(&env)["entries"], 64);
    let refused = env.home.cli_output(&["block", "192.0.2.0/30"]);
    assert_eq!(refused.status.code(), Some(1), "the map is full");
    let before = program_id(&env);
    assert!(daemon.stop().success());

    // The operator raises the size and restarts, while the attacker floods.
    std::fs::write(env.home.config(), prefixes_config(128)).unwrap();
    let staging = env
        .ipw
        .pins()
        .bpffs()
        .join("ipwarden")
        .join(format!("{EDGE_IF}:staged"));
    let sink = UdpSink::bind(&env.topo.edge, (EDGE_V4, 7002).into());
    let (sent, daemon) = while_flooding(&env, || env.start());
    assert!(sent > 3000, "the flood ran ({sent} sent)");
    let got = sink.drain(Duration::from_millis(300));
    assert_eq!(
        got.get(&ATTACKER.into()).copied().unwrap_or(0),
        0,
        "packets of the blocked source got through during the resize: {got:?}"
    );
    let log = env.home.log_text();
    assert!(
        log.contains("resized a pinned map") && log.contains("BLOCK_NET_V4"),
        "{log}"
    );
    let status = env.home.json(&["status"]);
    let iface = &status["interfaces"][0];
    assert_eq!(iface["attach"], "resized", "{status}");
    assert_eq!(iface["program"]["current"], true, "{status}");
    assert_ne!(program_id(&env), before, "a new program runs on the link");
    assert!(
        !status["warnings"]
            .to_string()
            .contains("max_block_prefixes"),
        "no size mismatch left: {status}"
    );
    let map = block_net_v4(&env);
    assert_eq!(map["capacity"], 128, "{map}");
    assert_eq!(map["entries"], 64, "{map}");
    assert!(!staging.exists(), "the staging pins are gone");
    assert!(env.ipw.pins().link().exists());
    env.home.cli(&["block", "192.0.2.0/30"]);
    assert_eq!(block_net_v4(&env)["entries"], 65, "room for more");
    assert_eq!(env.delivered(ATTACKER.into(), 20), 0, "still blocked");
    assert!(daemon.stop().success());

    // Smaller again: 65 decisions, 64 slots. The weakest is left out and said; the permanent
    // /24 is still enforced.
    std::fs::write(env.home.config(), prefixes_config(64)).unwrap();
    // A resize interrupted before its swap left a staged pin behind: removed at start, the
    // map it names untouched.
    std::fs::create_dir(&staging).unwrap();
    std::fs::hard_link(
        env.ipw.pins().map(names::BLOCK_V4),
        staging.join(names::BLOCK_V4),
    )
    .unwrap();
    let _daemon = env.start();
    assert!(
        env.home
            .log_text()
            .contains("removing the staged maps of a resize"),
        "{}",
        env.home.log_text()
    );
    let map = block_net_v4(&env);
    assert_eq!(map["capacity"], 64, "{map}");
    assert_eq!(map["entries"], 64, "{map}");
    assert_eq!(map["left_out"], 1, "{map}");
    assert_eq!(env.decisions().len(), 65, "the store keeps every decision");
    assert_eq!(
        env.enforced("203.0.113.0/24").map(|(action, _)| action),
        Some(ipwarden_common::Action::BLOCK),
        "the strongest decision is enforced"
    );
    assert_eq!(env.delivered(ATTACKER.into(), 20), 0, "still blocked");
    assert!(!staging.exists(), "the staging pins are gone");
}
