//! Reading every attachment's per-source counters into one snapshot per source.

use std::{collections::HashMap, net::IpAddr, time::Instant};

use ipnet::IpNet;

use crate::{
    clock,
    dataplane::{Dataplane, DataplaneError},
    detect::Snapshot,
    net::host_prefix,
};

/// One poll's result.
pub struct Poll {
    /// Kernel-clock time of the read.
    pub now_ns: u64,
    pub snapshots: HashMap<IpNet, Snapshot>,
    pub took: std::time::Duration,
}

fn add(
    map: &mut HashMap<IpNet, Snapshot>,
    key: IpNet,
    addr: IpAddr,
    s: &ipwarden_common::SrcStats,
) {
    let e = map.entry(key).or_insert(Snapshot {
        packets: 0,
        bytes: 0,
        syn: 0,
        first_seen_ns: u64::MAX,
        addr,
    });
    e.packets += s.packets;
    e.bytes += s.bytes;
    e.syn += s.syn;
    if s.first_seen_ns != 0 {
        e.first_seen_ns = e.first_seen_ns.min(s.first_seen_ns);
    }
}

/// Reads all counters of all attachments (batched), summing a source seen on several.
pub fn read(readers: &[Dataplane]) -> Result<Poll, DataplaneError> {
    let start = Instant::now();
    let now_ns = clock::monotonic_ns();
    let mut snapshots = HashMap::new();
    for dp in readers {
        for s in dp.sources_v4()? {
            add(
                &mut snapshots,
                host_prefix(IpAddr::V4(s.addr)),
                IpAddr::V4(s.addr),
                &s.stats,
            );
        }
        for s in dp.sources_v6()? {
            add(
                &mut snapshots,
                IpNet::V6(s.net),
                IpAddr::V6(s.last_addr),
                &s.stats,
            );
        }
    }
    for s in snapshots.values_mut() {
        if s.first_seen_ns == u64::MAX {
            s.first_seen_ns = now_ns;
        }
    }
    Ok(Poll {
        now_ns,
        snapshots,
        took: start.elapsed(),
    })
}
