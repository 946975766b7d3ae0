//! `cargo xtask demo`: a one-command tour of ipwarden on a namespace topology.
//!
//! Builds `client ── veth ── edge`, runs the daemon on the edge, floods it from an IPv4
//! attacker and from an IPv6 host rotating addresses inside its /64 while a normal client keeps
//! talking, and shows the daemon finding and blocking the floods (`top`, `list`, `explain`),
//! what got through before and after, and that enforcement outlives the daemon.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use ipwarden_tests::{
    BpfFs, Daemon, DaemonHome, Ipwarden, Topology, require_privileges,
    topology::{CLIENT_V4, EDGE_IF, EDGE_V4, EDGE_V6},
    traffic::{UdpSink, udp_flood, udp_send},
};

const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
const ATTACKER_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0xa, 0xb, 0xc, 0xd),
];

/// The demo's configuration: faster polls and lower thresholds than production, so a flood a
/// laptop can generate is found in a second.
const CONFIG: &str = r#"[detection]
poll_interval = "500ms"
window = "3s"
pps_threshold = 1000
syn_pps_threshold = 200
hard_ttl = "10m"
"#;

fn step(text: &str) {
    println!("\n=== {text}");
}

fn show(home: &DaemonHome, args: &[&str]) {
    println!("$ ipwarden {}", args.join(" "));
    print!("{}", home.cli(args));
}

/// Sends a round of traffic from everyone and prints what the edge received, per source.
fn round(topo: &Topology, sink4: &UdpSink, sink6: &UdpSink) {
    let to4 = SocketAddr::new(EDGE_V4.into(), 5353);
    let to6 = SocketAddr::new(EDGE_V6.into(), 5353);
    let mut sent = vec![(
        IpAddr::from(CLIENT_V4),
        udp_send(&topo.client, CLIENT_V4.into(), to4, 50, 64),
    )];
    sent.push((
        ATTACKER_V4.into(),
        udp_send(&topo.client, ATTACKER_V4.into(), to4, 100, 64),
    ));
    for a in ATTACKER_V6 {
        sent.push((a.into(), udp_send(&topo.client, a.into(), to6, 50, 64)));
    }
    let mut got = sink4.drain(Duration::from_millis(300));
    got.extend(sink6.drain(Duration::from_millis(300)));
    println!("{:<28} {:>6} {:>9}", "SOURCE", "SENT", "RECEIVED");
    for (src, n) in sent {
        println!(
            "{:<28} {:>6} {:>9}",
            src.to_string(),
            n,
            got.get(&src).copied().unwrap_or(0)
        );
    }
}

fn main() {
    require_privileges();
    step("building a client and an edge host in network namespaces");
    let bpffs = BpfFs::new();
    let topo = Topology::two_hosts();
    topo.add_source(ATTACKER_V4.into());
    for a in ATTACKER_V6 {
        topo.add_source(a.into());
    }
    println!(
        "client {} ── veth ── edge {} ({EDGE_IF})",
        topo.client.name(),
        topo.edge.name()
    );
    let sink4 = UdpSink::bind(&topo.edge, SocketAddr::new(EDGE_V4.into(), 5353));
    let sink6 = UdpSink::bind(&topo.edge, SocketAddr::new(EDGE_V6.into(), 5353));

    step("starting the daemon on the edge (ipwarden run --iface edge0) with this configuration");
    print!("{CONFIG}");
    let home = DaemonHome::new(CONFIG, bpffs.path());
    let daemon = Daemon::start(&home, &topo.edge);
    show(&home, &["status"]);

    step("normal traffic: everything is delivered");
    round(&topo, &sink4, &sink6);

    step(
        "floods: 203.0.113.66 at 4000 pps, and 2001:db8:2::/64 at 3 x 800 pps from rotating addresses; 198.51.100.2 stays at 100 pps",
    );
    std::thread::scope(|s| {
        let dst4 = SocketAddr::new(EDGE_V4.into(), 9);
        let dst6 = SocketAddr::new(EDGE_V6.into(), 9);
        let t = &topo;
        s.spawn(move || {
            udp_flood(
                &t.client,
                CLIENT_V4.into(),
                dst4,
                100,
                Duration::from_secs(3),
            )
        });
        s.spawn(move || {
            udp_flood(
                &t.client,
                ATTACKER_V4.into(),
                dst4,
                4000,
                Duration::from_secs(3),
            )
        });
        for a in ATTACKER_V6 {
            s.spawn(move || udp_flood(&t.client, a.into(), dst6, 800, Duration::from_secs(3)));
        }
        std::thread::sleep(Duration::from_millis(1500));
        show(&home, &["top", "-n", "5"]);
    });

    step("what the daemon decided");
    show(&home, &["list"]);
    show(&home, &["explain", &ATTACKER_V6[2].to_string()]);

    step("the same normal traffic again: the flooders' packets die in XDP, the client's pass");
    round(&topo, &sink4, &sink6);
    show(&home, &["stats"]);

    step("an operator blocks a range by hand, and a block over an allowlisted prefix is refused");
    show(
        &home,
        &[
            "block",
            "192.0.2.0/24",
            "--ttl",
            "1h",
            "--reason",
            "seen in a feed",
        ],
    );
    println!("$ ipwarden block 127.0.0.1");
    let out = home.cli_output(&["block", "127.0.0.1"]);
    print!("{}", String::from_utf8_lossy(&out.stderr));

    step("stopping the daemon: the program stays attached and keeps dropping");
    drop(daemon);
    round(&topo, &sink4, &sink6);

    step("detaching and cleaning up");
    let ipw = Ipwarden::new(&bpffs);
    println!("$ ipwarden detach --iface {EDGE_IF}");
    print!("{}", ipw.ok(None, &["detach", "--iface", EDGE_IF]));
}
