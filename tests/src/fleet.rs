//! Several edge hosts and one NATS hub: each host is a [`DaemonEnv`] (its own client, edge, bpffs
//! and daemon home), and every edge gets a second link to a hub namespace where a bridge joins
//! them, with the JetStream server (and, when asked, a stand-in IPASIS) on the hub.
//!
//! ```text
//!  client-i ── edge-i (edge0: ipwarden)    edge-i fl0 192.0.2.1i/24 ──┐
//!                                                         hub br0 192.0.2.1/24: nats-server
//! ```

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use crate::{DaemonEnv, cmd, nats::NatsServer, netns::NetNs};

/// The hub's address on the fleet link.
pub const HUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// Host `i`'s address on the fleet link.
pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 11 + i as u8)
}

/// The hub and its server. Field order is drop order: the server before its namespace.
pub struct Hub {
    pub nats: NatsServer,
    pub ns: NetNs,
}

impl Hub {
    pub fn new() -> Self {
        let ns = NetNs::new("hub");
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["addr", "add", &format!("{HUB}/24"), "dev", "br0"]);
        ns.ip(&["link", "set", "br0", "up"]);
        let nats = NatsServer::start_in(&ns, IpAddr::V4(HUB));
        Self { nats, ns }
    }

    /// Links `env`'s edge to the hub as host `i`.
    pub fn link(&self, env: &DaemonEnv, i: usize) {
        let (edge_if, hub_if) = ("fl0", format!("hub{i}"));
        cmd::ip(&[
            "link",
            "add",
            "name",
            edge_if,
            "netns",
            env.topo.edge.name(),
            "type",
            "veth",
            "peer",
            "name",
            &hub_if,
            "netns",
            self.ns.name(),
        ]);
        env.topo.edge.ip(&[
            "addr",
            "add",
            &format!("{}/24", host_addr(i)),
            "dev",
            edge_if,
        ]);
        env.topo.edge.ip(&["link", "set", edge_if, "up"]);
        self.ns.ip(&["link", "set", &hub_if, "master", "br0"]);
        self.ns.ip(&["link", "set", &hub_if, "up"]);
    }

    /// Waits until `env`'s daemon reports its fleet link up. The link opens four buckets and
    /// claims the host id, each bounded by the daemon's 3 s operation timeout with retries, so
    /// a slow first JetStream start can take more than a few seconds; after 30 s the panic
    /// carries what the daemon said (`status` and its log) and what the server logged.
    pub fn wait_linked(&self, env: &DaemonEnv) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let fleet = env.home.json(&["status"])["fleet"].clone();
            if fleet["connected"] == true {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the fleet link is not up within 30 s\n--- status.fleet ---\n{fleet:#}\n--- daemon log ---\n{}\n--- nats-server log ---\n{}",
                    env.home.log_text(),
                    self.nats.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}
