//! The hit tables: one dropped frame in `HIT_SAMPLE`, recorded against its source (see
//! `ipwarden_common::stats::hit_sampled`), so that `list` and `explain` can say how much each
//! decision dropped without a counter in every block entry (a layout change, and a shared
//! cache line written by every CPU on every drop).

use ipnet::IpNet;
use ipwarden_common::stats::HIT_SAMPLE;

use super::{Dataplane, DataplaneError};

impl Dataplane {
    /// Estimated dropped packets per source (IPv4 /32, IPv6 /64) still in the hit tables: the
    /// samples summed over CPUs, times `HIT_SAMPLE`. At most 2 × `capacity::HITS` rows; read
    /// when asked (`list`, `explain`), never by the poll.
    pub fn hits(&self) -> Result<Vec<(IpNet, u64)>, DataplaneError> {
        let Some(t) = &self.hits else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in t.v4.iter() {
            // An entry evicted while iterating ends the walk of that key only.
            let Ok((k, per_cpu)) = item else { continue };
            let samples: u64 = per_cpu.iter().sum();
            out.push((
                crate::net::host_prefix(std::net::Ipv4Addr::from(k).into()),
                samples * HIT_SAMPLE,
            ));
        }
        for item in t.v6.iter() {
            let Ok((k, per_cpu)) = item else { continue };
            let samples: u64 = per_cpu.iter().sum();
            out.push((
                IpNet::V6(crate::net::v6_prefix_net(k)),
                samples * HIT_SAMPLE,
            ));
        }
        Ok(out)
    }
}
