//! The attachment's life through the CLI: it outlives the process that loaded it, refuses bad
//! input without changing anything, and `detach` ends it.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{net::IpAddr, time::Duration};

use ipwarden_tests::{
    BpfFs, Fixture, Ipwarden, Topology,
    topology::{CLIENT_V4, EDGE_IF},
    traffic::udp_send,
};

fn delivered(fx: &Fixture, src: IpAddr, n: usize) -> usize {
    let sink = fx.sink_for(src);
    assert_eq!(
        udp_send(&fx.topo.client, src, Fixture::sink_addr(src), n, 32),
        n
    );
    sink.drain(Duration::from_millis(300))
        .get(&src)
        .copied()
        .unwrap_or(0)
}

fn xdp_attached(fx: &Fixture) -> bool {
    fx.topo
        .edge
        .ip(&["link", "show", "dev", EDGE_IF])
        .contains("xdp")
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn program_outlives_its_loader_and_detach_removes_it() {
    // `attach` and `block` are separate processes that have exited by the time traffic flows.
    let fx = Fixture::attached(&[]);
    assert!(xdp_attached(&fx));
    fx.map(&["block", &CLIENT_V4.to_string()]);
    assert_eq!(delivered(&fx, CLIENT_V4.into(), 30), 0);

    fx.ipw.ok(None, &["detach", "--iface", EDGE_IF]);
    assert!(!xdp_attached(&fx), "program detached");
    assert!(!fx.ipw.pins().dir().exists(), "pins removed");
    assert_eq!(delivered(&fx, CLIENT_V4.into(), 30), 30);

    // And a second detach says so.
    let out = fx.ipw.output(None, &["detach", "--iface", EDGE_IF]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not attached"));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn generic_skb_mode_also_filters() {
    let fx = Fixture::attached(&["--skb"]);
    assert!(
        fx.topo
            .edge
            .ip(&["link", "show", "dev", EDGE_IF])
            .contains("xdpgeneric")
    );
    fx.map(&["block", &CLIENT_V4.to_string()]);
    assert_eq!(delivered(&fx, CLIENT_V4.into(), 20), 0);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn attaching_twice_is_refused_and_keeps_the_first_attachment() {
    let fx = Fixture::attached(&[]);
    fx.map(&["block", "203.0.113.0/24"]);
    let out = fx
        .ipw
        .output(Some(&fx.topo.edge), &["attach", "--iface", EDGE_IF]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already attached"));
    assert_eq!(fx.dp().blocks().unwrap().len(), 1, "block set untouched");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bad_input_is_rejected_and_changes_nothing() {
    let fx = Fixture::attached(&[]);
    fx.map(&["block", "203.0.113.9"]);
    let before = fx.map(&["list", "--json"]);
    for (args, code, needle) in [
        (
            vec!["block", "203.0.113.300"],
            2,
            "`203.0.113.300` is not an IP address",
        ),
        (vec!["block", "10.0.0.0/33"], 2, "`10.0.0.0/33`"),
        (
            vec!["block", "203.0.113.9", "--ttl", "soon"],
            2,
            "`soon` is not a duration",
        ),
        (vec!["unblock", "198.51.100.77"], 1, "is not blocked"),
        (
            vec!["allow", "rm", "198.51.100.0/24"],
            1,
            "not on the allowlist",
        ),
    ] {
        let mut all = vec!["map"];
        all.extend(args.iter().copied());
        all.extend(["--iface", EDGE_IF]);
        let out = fx.ipw.output(None, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert_eq!(fx.map(&["list", "--json"]), before);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn commands_on_an_unattached_interface_say_what_to_do() {
    ipwarden_tests::require_privileges();
    let bpffs = BpfFs::new();
    let _topo = Topology::two_hosts();
    let ipw = Ipwarden::new(&bpffs);
    let out = ipw.output(None, &["map", "list", "--iface", EDGE_IF]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not attached") && stderr.contains("ipwarden attach"),
        "{stderr}"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_failed_attach_leaves_nothing_and_detach_removes_leftover_pins() {
    let bpffs = BpfFs::new();
    let topo = Topology::two_hosts();
    let ipw = Ipwarden::new(&bpffs);
    // No such interface: said plainly, nothing loaded or pinned, no talk of a fallback.
    let out = ipw.output(Some(&topo.edge), &["attach", "--iface", "nosuchif"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("there is no network interface nosuchif"),
        "{err}"
    );
    assert!(!err.contains("falling back"), "{err}");
    let leftover = ipwarden::dataplane::PinDir::new(bpffs.path(), "nosuchif").dir();
    assert!(
        !leftover.exists(),
        "a failed attach left {}",
        leftover.display()
    );
    // Maps left pinned without a program (the link pin gone): detach removes them.
    ipw.attach(&topo.edge, &[]);
    std::fs::remove_file(ipw.pins().link()).unwrap();
    assert!(ipw.pins().dir().exists());
    ipw.ok(None, &["detach", "--iface", EDGE_IF]);
    assert!(!ipw.pins().dir().exists(), "leftover pins stayed");
}
