//! The privileged test bed: network namespaces, veth topologies, a private bpffs, bounded traffic
//! generators and a driver for the real `ipwarden` binary.
//!
//! Everything here panics on failure with the command or syscall that failed: tests want
//! backtraces, not `Result`s. Nothing here skips: a missing privilege is a loud failure.
//!
//! Addresses come only from 198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24 and 2001:db8::/32;
//! every send loop is bounded by a count and a deadline.

pub mod bpffs;
pub mod browser;
pub mod cmd;
pub mod cpu;
pub mod crowdsec;
pub mod daemon;
pub mod fixture;
pub mod fleet;
pub mod fleet_host;
pub mod frames;
pub mod ipasis_stub;
pub mod ipwarden;
pub mod nats;
pub mod netns;
pub mod nginx;
pub mod privilege;
pub mod spray;
pub mod topology;
pub mod traffic;

pub use bpffs::BpfFs;
pub use daemon::{Daemon, DaemonEnv, DaemonHome};
pub use fixture::Fixture;
pub use ipwarden::Ipwarden;
pub use netns::NetNs;
pub use privilege::require_privileges;
pub use topology::Topology;

/// Polls `cond` every 50 ms until it holds; panics naming `what` after `limit`. For conditions
/// that become true by themselves (a decision propagating), never for timings.
pub fn eventually(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
