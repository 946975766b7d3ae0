//! `client ns ── veth ── edge ns`, the shape every packet test uses.
//!
//! ```text
//!  client (cl0)                          edge (edge0, ipwarden attached here)
//!  198.51.100.2/24  2001:db8:1::2/64 ──  198.51.100.1/24  2001:db8:1::1/64
//!  + extra sources from 203.0.113.0/24 and 2001:db8:2::/48 (add_source)
//! ```
//!
//! Neighbour entries are static and DAD is off, so no ARP or ND traffic is ever sent on the link
//! unprompted: per-source counters then see exactly the packets a test sends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{cmd, netns::NetNs};

/// Client-side interface name (inside the client namespace).
pub const CLIENT_IF: &str = "cl0";
/// Edge-side interface name (inside the edge namespace); ipwarden attaches here.
pub const EDGE_IF: &str = "edge0";
/// Locally administered MACs, fixed so frames can be built by hand.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x02];
pub const EDGE_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const EDGE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const EDGE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn quiet_ipv6(ns: &NetNs) {
    ns.run(|| {
        for key in ["accept_dad", "dad_transmits", "router_solicitations"] {
            for scope in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{scope}/{key}");
                std::fs::write(&path, "0").unwrap_or_else(|e| panic!("writing {path}: {e}"));
            }
        }
    });
}

/// Two namespaces joined by a veth pair.
pub struct Topology {
    pub client: NetNs,
    pub edge: NetNs,
}

impl Topology {
    /// Builds the topology in the diagram above.
    pub fn two_hosts() -> Self {
        let client = NetNs::new("client");
        let edge = NetNs::new("edge");
        quiet_ipv6(&client);
        quiet_ipv6(&edge);
        cmd::ip(&[
            "link",
            "add",
            "name",
            CLIENT_IF,
            "netns",
            client.name(),
            "address",
            &mac(CLIENT_MAC),
            "type",
            "veth",
            "peer",
            "name",
            EDGE_IF,
            "netns",
            edge.name(),
            "address",
            &mac(EDGE_MAC),
        ]);
        let topo = Self { client, edge };
        for (ns, ifname, v4, v6) in [
            (&topo.client, CLIENT_IF, CLIENT_V4, CLIENT_V6),
            (&topo.edge, EDGE_IF, EDGE_V4, EDGE_V6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"]);
            ns.ip(&["link", "set", ifname, "up"]);
        }
        topo.client.ip(&[
            "neigh",
            "replace",
            &EDGE_V4.to_string(),
            "lladdr",
            &mac(EDGE_MAC),
            "dev",
            CLIENT_IF,
            "nud",
            "permanent",
        ]);
        topo.client.ip(&[
            "neigh",
            "replace",
            &EDGE_V6.to_string(),
            "lladdr",
            &mac(EDGE_MAC),
            "dev",
            CLIENT_IF,
            "nud",
            "permanent",
        ]);
        topo.edge.ip(&[
            "neigh",
            "replace",
            &CLIENT_V4.to_string(),
            "lladdr",
            &mac(CLIENT_MAC),
            "dev",
            EDGE_IF,
            "nud",
            "permanent",
        ]);
        topo.edge.ip(&[
            "neigh",
            "replace",
            &CLIENT_V6.to_string(),
            "lladdr",
            &mac(CLIENT_MAC),
            "dev",
            EDGE_IF,
            "nud",
            "permanent",
        ]);
        // Replies to extra sources go back over the link.
        topo.edge
            .ip(&["route", "add", "203.0.113.0/24", "dev", EDGE_IF]);
        topo.edge
            .ip(&["-6", "route", "add", "2001:db8:2::/48", "dev", EDGE_IF]);
        topo
    }

    /// Attaches an empty XDP program to the client's veth: frames the edge's program sends back
    /// with `XDP_TX` (the synproxy's SYN-ACKs) need NAPI on this side to arrive, and GRO alone
    /// did not turn it on here.
    pub fn give_client_napi(&self) {
        let pass = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(pass.path(), ipwarden::dataplane::object::baseline::PASS)
            .expect("writing the empty program");
        self.client.ip(&[
            "link",
            "set",
            "dev",
            CLIENT_IF,
            "xdp",
            "obj",
            pass.path().to_str().expect("a UTF-8 path"),
            "sec",
            "xdp",
        ]);
    }

    /// Gives the client an extra source address (203.0.113.0/24 or 2001:db8:2::/48), reachable
    /// from the edge without neighbour discovery.
    pub fn add_source(&self, addr: IpAddr) {
        let (plen, family) = match addr {
            IpAddr::V4(_) => ("32", "-4"),
            IpAddr::V6(_) => ("128", "-6"),
        };
        let mut args = vec!["addr", "add"];
        let cidr = format!("{addr}/{plen}");
        args.extend([cidr.as_str(), "dev", CLIENT_IF]);
        if addr.is_ipv6() {
            args.push("nodad");
        }
        self.client.ip(&args);
        self.edge.ip(&[
            family,
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            &mac(CLIENT_MAC),
            "dev",
            EDGE_IF,
            "nud",
            "permanent",
        ]);
    }
}
