//! Reading every attachment's per-source counters into one snapshot per source.

use std::{net::IpAddr, time::Instant};

use ipnet::IpNet;

use crate::{
    clock,
    dataplane::{Dataplane, DataplaneError},
    detect::{Key, Reading},
    net::host_prefix,
};

/// The aggregate counters of one poll: the kernel's cells (summed over attachments), read before
/// the sources, and what the front tables held after them.
pub struct AggregateReading {
    pub cells: Vec<ipwarden_common::AggCell>,
    /// Per source: pending packets and SYNs.
    pub pending: Vec<(IpNet, u64, u64)>,
}

/// One poll's result.
pub struct Poll {
    /// Kernel-clock time of the read.
    pub now_ns: u64,
    /// One entry per source (summed over attachments).
    pub readings: Vec<Reading>,
    /// `None` when aggregates are off, or no attachment has the aggregate map yet.
    pub aggregates: Option<AggregateReading>,
    pub took: std::time::Duration,
}

/// A source's counters as the detector takes them (a first-seen time of 0, never set, is now).
pub(super) fn reading(
    source: &IpNet,
    addr: IpAddr,
    s: &ipwarden_common::SrcStats,
    now_ns: u64,
) -> Reading {
    Reading {
        key: Key::of(source),
        packets: s.packets,
        bytes: s.bytes,
        syn: s.syn,
        first_seen_ns: if s.first_seen_ns == 0 {
            now_ns
        } else {
            s.first_seen_ns
        },
        addr_low: Key::low(&addr),
    }
}

/// Reads all counters of all attachments (batched). With one attachment (the usual case) the
/// result is built straight from the batches; with several, a source seen on more than one is
/// summed.
pub fn read(readers: &[Dataplane], aggregates: bool) -> Result<Poll, DataplaneError> {
    let start = Instant::now();
    let now_ns = clock::monotonic_ns();
    // The cells first: a front-table flush racing the reads then adds to neither the cells nor
    // the pending counts read after them, never to both.
    let mut cells = Vec::new();
    let mut have_cells = false;
    if aggregates {
        cells = vec![
            ipwarden_common::AggCell::default();
            ipwarden_common::aggregate::AGG_TOTAL as usize
        ];
        for dp in readers {
            have_cells |= dp.add_aggregate_cells(&mut cells)?;
        }
    }
    // Room for every map entry: pages the poll does not fill are never touched, so this costs
    // address space, not memory, and the vector never reallocates (and briefly doubles) mid-read.
    let room: usize = readers
        .iter()
        .map(|dp| {
            let (v4, v6) = dp.source_capacity();
            v4 as usize + v6 as usize
        })
        .sum();
    let mut readings = Vec::with_capacity(room);
    for dp in readers {
        dp.visit_sources_v4(|s| {
            let addr = IpAddr::V4(s.addr);
            readings.push(reading(&host_prefix(addr), addr, &s.stats, now_ns));
        })?;
        dp.visit_sources_v6(|s| {
            let addr = IpAddr::V6(s.last_addr);
            readings.push(reading(&IpNet::V6(s.net), addr, &s.stats, now_ns));
        })?;
    }
    if readers.len() > 1 {
        // Keyed by sources a sender chooses: a seeded hasher, so that no flood of chosen
        // addresses can make the merge quadratic.
        let mut merged: foldhash::HashMap<Key, Reading> = foldhash::HashMap::default();
        for r in readings.drain(..) {
            merged.entry(r.key).and_modify(|m| m.add(&r)).or_insert(r);
        }
        readings = merged.into_values().collect();
    }
    let aggregates = if have_cells {
        let mut pending = Vec::new();
        for dp in readers {
            dp.visit_pending(|addr, packets, syn| {
                pending.push((host_prefix(addr), packets, syn));
            })?;
        }
        Some(AggregateReading { cells, pending })
    } else {
        None
    };
    Ok(Poll {
        now_ns,
        readings,
        aggregates,
        took: start.elapsed(),
    })
}
