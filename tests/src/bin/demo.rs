//! `cargo xtask demo`: a one-command tour of ipwarden on a namespace topology.
//!
//! Builds `client ── veth ── edge`, attaches ipwarden to the edge, sends traffic from a normal
//! client and from two "attackers" (an IPv4 address and an IPv6 host rotating addresses inside
//! its /64), blocks the attackers with the CLI and shows what got through before and after.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use ipwarden_tests::{
    BpfFs, Ipwarden, Topology, require_privileges,
    topology::{CLIENT_V4, EDGE_IF, EDGE_V4, EDGE_V6},
    traffic::{UdpSink, udp_send},
};

const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
const ATTACKER_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0xa, 0xb, 0xc, 0xd),
];

fn step(text: &str) {
    println!("\n=== {text}");
}

fn show(ipw: &Ipwarden, args: &[&str]) {
    println!("$ ipwarden {}", args.join(" "));
    print!("{}", ipw.ok(None, args));
}

/// Sends a round of traffic and prints what the edge host received, per source.
fn round(topo: &Topology, sink4: &UdpSink, sink6: &UdpSink) {
    let to4 = SocketAddr::new(EDGE_V4.into(), 5353);
    let to6 = SocketAddr::new(EDGE_V6.into(), 5353);
    let mut sent = vec![(
        IpAddr::from(CLIENT_V4),
        udp_send(&topo.client, CLIENT_V4.into(), to4, 50, 64),
    )];
    sent.push((
        ATTACKER_V4.into(),
        udp_send(&topo.client, ATTACKER_V4.into(), to4, 400, 64),
    ));
    for a in ATTACKER_V6 {
        sent.push((a.into(), udp_send(&topo.client, a.into(), to6, 100, 64)));
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
    let ipw = Ipwarden::new(&bpffs);
    let sink4 = UdpSink::bind(&topo.edge, SocketAddr::new(EDGE_V4.into(), 5353));
    let sink6 = UdpSink::bind(&topo.edge, SocketAddr::new(EDGE_V6.into(), 5353));

    step("attaching ipwarden to the edge interface");
    println!("$ ipwarden attach --iface {EDGE_IF}");
    print!("{}", ipw.attach(&topo.edge, &[]));

    step("traffic with an empty block set: everything is delivered");
    round(&topo, &sink4, &sink6);
    show(&ipw, &["stats", "--iface", EDGE_IF, "--top", "5"]);

    step("blocking the attackers (the IPv6 address widens to its /64)");
    show(
        &ipw,
        &[
            "block",
            &ATTACKER_V4.to_string(),
            "--iface",
            EDGE_IF,
            "--ttl",
            "10m",
        ],
    );
    show(
        &ipw,
        &["block", &ATTACKER_V6[0].to_string(), "--iface", EDGE_IF],
    );
    show(&ipw, &["list", "--iface", EDGE_IF]);

    step("the same traffic again: the attackers' packets die in XDP, the client's pass");
    round(&topo, &sink4, &sink6);
    show(&ipw, &["stats", "--iface", EDGE_IF, "--top", "5"]);

    step("detaching and cleaning up");
    show(&ipw, &["detach", "--iface", EDGE_IF]);
}
