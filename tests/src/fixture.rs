//! The usual start of a packet test: privileges checked, a private bpffs, the two-host topology
//! and ipwarden attached to the edge interface through its CLI.

use std::net::{IpAddr, SocketAddr};

use ipwarden::dataplane::Dataplane;

use crate::{
    bpffs::BpfFs,
    ipwarden::Ipwarden,
    privilege::require_privileges,
    topology::{EDGE_IF, EDGE_V4, EDGE_V6, Topology},
    traffic::UdpSink,
};

/// UDP port the edge listens on in tests.
pub const SINK_PORT: u16 = 5353;

/// Field order is drop order: namespaces go first (detaching the program with the veth), then
/// the bpffs holding the pins.
pub struct Fixture {
    pub topo: Topology,
    pub ipw: Ipwarden,
    _bpffs: BpfFs,
}

impl Fixture {
    /// Everything up, ipwarden attached with `attach_args`.
    pub fn attached(attach_args: &[&str]) -> Self {
        require_privileges();
        let bpffs = BpfFs::new();
        let topo = Topology::two_hosts();
        let ipw = Ipwarden::new(&bpffs);
        ipw.attach(&topo.edge, attach_args);
        Self {
            topo,
            ipw,
            _bpffs: bpffs,
        }
    }

    /// Sends `n` UDP frames from `src` to the edge from the client's CPU 0 (so one CPU's front
    /// table tells the story), waits until the program has seen them, and returns how much each
    /// of `counters` moved.
    ///
    /// The client's kernel may send a frame of its own meanwhile (an MLD report after the link
    /// comes up): the frames the client's interface transmitted beyond the `n` are taken out of
    /// `Seen`, which the program counts for every frame, so that it reads exactly what was sent.
    pub fn send_counting<const N: usize>(
        &self,
        sock: &crate::frames::RawSocket,
        src: IpAddr,
        n: u64,
        counters: [ipwarden_common::GlobalCounter; N],
    ) -> [u64; N] {
        use crate::topology::{CLIENT_MAC, EDGE_MAC};
        let frame = match src {
            IpAddr::V4(a) => crate::frames::udp4(EDGE_MAC, CLIENT_MAC, a, EDGE_V4, 32),
            IpAddr::V6(a) => crate::frames::udp6(EDGE_MAC, CLIENT_MAC, a, EDGE_V6, 32),
        };
        let seen = || {
            self.dp()
                .globals()
                .unwrap()
                .get(ipwarden_common::GlobalCounter::Seen)
        };
        let read = || {
            let g = self.dp().globals().unwrap();
            counters.map(|c| g.get(c))
        };
        let transmitted = || self.topo.client.transmitted(crate::topology::CLIENT_IF);
        let (before, seen_before, tx_before) = (read(), seen(), transmitted());
        let sent = crate::cpu::on_cpu(0, || sock.send_many(n as usize, |_| frame.clone()));
        assert_eq!(sent.unwrap(), n as usize);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut stray = 0;
        loop {
            stray = transmitted().saturating_sub(tx_before + n).max(stray);
            if seen() >= seen_before + n + stray || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let after = read();
        std::array::from_fn(|i| {
            let moved = after[i] - before[i];
            if counters[i] == ipwarden_common::GlobalCounter::Seen {
                moved.saturating_sub(stray)
            } else {
                moved
            }
        })
    }

    /// The pinned maps, opened in this process.
    pub fn dp(&self) -> Dataplane {
        self.ipw.dataplane()
    }

    /// `ipwarden map args… --iface edge0` (direct map access), panicking on failure.
    pub fn map(&self, args: &[&str]) -> String {
        let mut all = vec!["map"];
        all.extend_from_slice(args);
        all.extend(["--iface", EDGE_IF]);
        self.ipw.ok(None, &all)
    }

    /// A UDP sink on the edge's address of `family_of`'s family.
    pub fn sink_for(&self, family_of: IpAddr) -> UdpSink {
        let addr: IpAddr = if family_of.is_ipv4() {
            EDGE_V4.into()
        } else {
            EDGE_V6.into()
        };
        UdpSink::bind(&self.topo.edge, SocketAddr::new(addr, SINK_PORT))
    }

    /// Where UDP test traffic of `family_of`'s family goes.
    pub fn sink_addr(family_of: IpAddr) -> SocketAddr {
        let addr: IpAddr = if family_of.is_ipv4() {
            EDGE_V4.into()
        } else {
            EDGE_V6.into()
        };
        SocketAddr::new(addr, SINK_PORT)
    }
}
