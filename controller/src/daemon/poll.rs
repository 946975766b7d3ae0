//! Reading every attachment's per-source counters into one snapshot per source.

use std::{net::IpAddr, time::Instant};

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
    /// One entry per source (summed over attachments).
    pub snapshots: Vec<(IpNet, Snapshot)>,
    pub took: std::time::Duration,
}

fn snapshot(addr: IpAddr, s: &ipwarden_common::SrcStats, now_ns: u64) -> Snapshot {
    Snapshot {
        packets: s.packets,
        bytes: s.bytes,
        syn: s.syn,
        first_seen_ns: if s.first_seen_ns == 0 {
            now_ns
        } else {
            s.first_seen_ns
        },
        addr,
    }
}

/// Reads all counters of all attachments (batched). With one attachment (the usual case) the
/// result is built straight from the batches; with several, a source seen on more than one is
/// summed.
pub fn read(readers: &[Dataplane]) -> Result<Poll, DataplaneError> {
    let start = Instant::now();
    let now_ns = clock::monotonic_ns();
    // Room for every map entry: pages the poll does not fill are never touched, so this costs
    // address space, not memory, and the vector never reallocates (and briefly doubles) mid-read.
    let room: usize = readers
        .iter()
        .map(|dp| {
            let (v4, v6) = dp.source_capacity();
            v4 as usize + v6 as usize
        })
        .sum();
    let mut snapshots = Vec::with_capacity(room);
    for dp in readers {
        dp.visit_sources_v4(|s| {
            let addr = IpAddr::V4(s.addr);
            snapshots.push((host_prefix(addr), snapshot(addr, &s.stats, now_ns)));
        })?;
        dp.visit_sources_v6(|s| {
            snapshots.push((
                IpNet::V6(s.net),
                snapshot(IpAddr::V6(s.last_addr), &s.stats, now_ns),
            ));
        })?;
    }
    if readers.len() > 1 {
        // Keyed by sources a sender chooses: a seeded hasher, so that no flood of chosen
        // addresses can make the merge quadratic.
        let mut merged: foldhash::HashMap<IpNet, Snapshot> = foldhash::HashMap::default();
        for (k, s) in snapshots.drain(..) {
            merged
                .entry(k)
                .and_modify(|m| {
                    m.packets += s.packets;
                    m.bytes += s.bytes;
                    m.syn += s.syn;
                    m.first_seen_ns = m.first_seen_ns.min(s.first_seen_ns);
                })
                .or_insert(s);
        }
        snapshots = merged.into_iter().collect();
    }
    Ok(Poll {
        now_ns,
        snapshots,
        took: start.elapsed(),
    })
}
