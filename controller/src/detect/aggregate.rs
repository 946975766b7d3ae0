//! Aggregate heavy hitters: networks (IPv4 /24, /16; IPv6 /48, /32) whose sources together
//! flood while each stays under the per-source thresholds.
//!
//! Input per poll: the kernel's aggregate cells (see `ipwarden_common::aggregate`) plus what the
//! front tables still hold, and the detector's active sources, which name the candidate networks
//! and their members. An aggregate is heavy when its rate passes `detection.aggregate.pps` (or
//! `syn_pps`) while at least `min_sources` distinct members are active. Pure logic: no kernel,
//! no I/O.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipwarden_common::{
    AggCell,
    aggregate::{Level, cell},
};
use serde::Serialize;

use crate::wire::AggregateView;
use crate::{
    config::AggregateConfig,
    detect::rates::{Rates, Sample, rates},
};

/// How many of an aggregate's busiest members are kept (shown, and looked up with IPASIS).
pub const BUSIEST: usize = 3;

/// One active source, as the detector sees it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Member {
    pub source: IpNet,
    pub addr: IpAddr,
    pub pps: f64,
}

/// What a network's active members look like this poll.
#[derive(Clone, Debug, Default)]
pub struct Members {
    pub count: usize,
    /// Busiest first.
    pub busiest: Vec<Member>,
}

impl Members {
    fn add(&mut self, m: Member) {
        self.count += 1;
        let at = self
            .busiest
            .iter()
            .position(|b| m.pps > b.pps)
            .unwrap_or(self.busiest.len());
        if at < BUSIEST {
            self.busiest.insert(at, m);
            self.busiest.truncate(BUSIEST);
        }
    }
}

/// The level and network of `source` at `level`, if the family matches.
pub fn network(source: &IpNet, level: Level) -> Option<IpNet> {
    let len = level.prefix_len();
    match (source, level) {
        (IpNet::V4(n), Level::V4Slash24 | Level::V4Slash16) => Ipv4Net::new(n.addr(), len)
            .ok()
            .map(|n| IpNet::V4(n.trunc())),
        (IpNet::V6(n), Level::V6Slash48 | Level::V6Slash32) => Ipv6Net::new(n.addr(), len)
            .ok()
            .map(|n| IpNet::V6(n.trunc())),
        _ => None,
    }
}

/// The kernel cell of a network counted at `level`.
pub fn cell_of(net: &IpNet, level: Level) -> u32 {
    let len = u32::from(level.prefix_len());
    let bits = match net {
        IpNet::V4(n) => u64::from(u32::from(n.network())) >> (32 - len),
        IpNet::V6(n) => {
            let hi = (u128::from(n.network()) >> 64) as u64;
            hi >> (64 - len)
        }
    };
    cell(level, bits)
}

/// Groups active sources into their networks at every level in `levels`.
pub fn members(
    levels: &[Level],
    active: impl IntoIterator<Item = Member>,
) -> foldhash::HashMap<IpNet, (Level, Members)> {
    let mut out: foldhash::HashMap<IpNet, (Level, Members)> = foldhash::HashMap::default();
    for m in active {
        for level in levels {
            if let Some(net) = network(&m.source, *level) {
                out.entry(net)
                    .or_insert_with(|| (*level, Members::default()))
                    .1
                    .add(m);
            }
        }
    }
    out
}

/// What the front tables hold per network, from per-source pending counts.
pub fn pending_by_network(
    levels: &[Level],
    pending: impl IntoIterator<Item = (IpNet, u64, u64)>,
) -> foldhash::HashMap<IpNet, (u64, u64)> {
    let mut out: foldhash::HashMap<IpNet, (u64, u64)> = foldhash::HashMap::default();
    for (source, packets, syn) in pending {
        for level in levels {
            if let Some(net) = network(&source, *level) {
                let e = out.entry(net).or_default();
                e.0 += packets;
                e.1 += syn;
            }
        }
    }
    out
}

/// Heavy-aggregate events.
#[derive(Clone, Debug, PartialEq)]
pub struct HeavyAggregate {
    pub net: IpNet,
    pub rates: Rates,
    pub members: usize,
    pub busiest: Vec<Member>,
}

#[derive(Debug)]
struct Track {
    now: Sample,
    mid: Sample,
    old: Sample,
    members: usize,
    rates: Rates,
    heavy: bool,
    last_poll: u32,
}

/// Tracks of the candidate networks.
#[derive(Debug)]
pub struct Aggregates {
    cfg: AggregateConfig,
    levels: Vec<Level>,
    window_ns: u64,
    tracks: foldhash::HashMap<IpNet, Track>,
    polls: u32,
}

impl Aggregates {
    pub fn new(cfg: AggregateConfig, window: std::time::Duration) -> Self {
        Self {
            levels: cfg.levels(),
            cfg,
            window_ns: window.as_nanos() as u64,
            tracks: foldhash::HashMap::default(),
            polls: 0,
        }
    }

    pub fn reconfigure(&mut self, cfg: AggregateConfig, window: std::time::Duration) {
        self.levels = cfg.levels();
        self.cfg = cfg;
        self.window_ns = window.as_nanos() as u64;
    }

    /// The judged levels (empty: aggregates are off).
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Feeds one poll: the summed kernel `cells`, the front tables' pending counts by network,
    /// and the candidate networks with their active members. Returns the aggregates that became
    /// heavy (once per episode), narrowest first.
    pub fn observe(
        &mut self,
        now_ns: u64,
        cells: &[AggCell],
        pending: &foldhash::HashMap<IpNet, (u64, u64)>,
        candidates: foldhash::HashMap<IpNet, (Level, Members)>,
    ) -> Vec<HeavyAggregate> {
        self.polls = self.polls.wrapping_add(1);
        let polls = self.polls;
        let half = self.window_ns / 2;
        let mut events = Vec::new();
        for (net, (level, members)) in candidates {
            let c = cells
                .get(cell_of(&net, level) as usize)
                .copied()
                .unwrap_or_default();
            let (pp, ps) = pending.get(&net).copied().unwrap_or_default();
            let s = Sample {
                t: now_ns,
                packets: c.packets + pp,
                syn: c.syn + ps,
            };
            let t = self.tracks.entry(net).or_insert_with(|| Track {
                now: s,
                mid: s,
                old: s,
                members: 0,
                rates: Rates::default(),
                heavy: false,
                last_poll: polls,
            });
            // A count that went back is a read that missed a flush: keep the higher.
            let s = Sample {
                packets: s.packets.max(t.now.packets),
                syn: s.syn.max(t.now.syn),
                ..s
            };
            t.now = s;
            if now_ns.saturating_sub(t.mid.t) >= half {
                t.old = t.mid;
                t.mid = s;
            }
            t.members = members.count;
            t.last_poll = polls;
            t.rates = rates(&t.old, &s);
            let heavy = members.count >= self.cfg.min_sources
                && (t.rates.pps >= self.cfg.pps as f64
                    || t.rates.syn_pps >= self.cfg.syn_pps as f64);
            if heavy && !t.heavy {
                events.push(HeavyAggregate {
                    net,
                    rates: t.rates,
                    members: members.count,
                    busiest: members.busiest,
                });
            }
            t.heavy = heavy;
        }
        // Networks with no active member are forgotten once their window has passed.
        let window = self.window_ns;
        self.tracks
            .retain(|_, t| t.last_poll == polls || t.now.t + window > now_ns);
        events.sort_by(|a, b| {
            b.net
                .prefix_len()
                .cmp(&a.net.prefix_len())
                .then(a.net.cmp(&b.net))
        });
        events
    }

    /// Ends an aggregate's episode, so that it is judged again.
    pub fn reset(&mut self, net: &IpNet) {
        if let Some(t) = self.tracks.get_mut(net) {
            t.heavy = false;
        }
    }

    /// The tracked aggregates containing `addr`, narrowest first.
    pub fn containing(&self, addr: IpAddr) -> Vec<AggregateView> {
        let source = crate::net::host_prefix(addr);
        self.levels
            .iter()
            .filter_map(|l| network(&source, *l))
            .filter_map(|net| {
                self.tracks.get(&net).map(|t| AggregateView {
                    net,
                    pps: (t.rates.pps * 10.0).round() / 10.0,
                    syn_pps: (t.rates.syn_pps * 10.0).round() / 10.0,
                    members: t.members,
                    heavy: t.heavy,
                })
            })
            .collect()
    }

    /// Aggregates tracked, and how many are heavy.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.tracks.len(),
            self.tracks.values().filter(|t| t.heavy).count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> AggregateConfig {
        AggregateConfig {
            pps: 1000,
            syn_pps: 500,
            min_sources: 4,
            ..AggregateConfig::default()
        }
    }

    fn member(s: &str, pps: f64) -> Member {
        let source: IpNet = s.parse().unwrap();
        Member {
            source,
            addr: source.addr(),
            pps,
        }
    }

    /// One poll where `n` sources of 203.0.113.0/24 are active and the /24's cell holds
    /// `packets`.
    fn poll(a: &mut Aggregates, t_s: u64, n: u8, packets: u64) -> Vec<HeavyAggregate> {
        let levels = a.levels().to_vec();
        let active = (1..=n).map(|i| member(&format!("203.0.113.{i}/32"), 10.0 + f64::from(i)));
        let candidates = members(&levels, active);
        let mut cells = vec![AggCell::default(); ipwarden_common::aggregate::AGG_TOTAL as usize];
        let net: IpNet = "203.0.113.0/24".parse().unwrap();
        cells[cell_of(&net, Level::V4Slash24) as usize].packets = packets;
        a.observe(
            t_s * 1_000_000_000,
            &cells,
            &foldhash::HashMap::default(),
            candidates,
        )
    }

    #[test]
    fn a_spread_flood_makes_its_network_heavy_once_with_its_busiest_members() {
        let mut a = Aggregates::new(cfg(), Duration::from_secs(4));
        assert!(
            poll(&mut a, 1, 8, 0).is_empty(),
            "no rate at the first sight"
        );
        // 3000 packets in a second from 8 sources: each ~375 pps, the /24 3000.
        let ev = poll(&mut a, 2, 8, 3000);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].net.to_string(), "203.0.113.0/24");
        assert_eq!(ev[0].members, 8);
        assert!((ev[0].rates.pps - 3000.0).abs() < 1.0);
        assert_eq!(ev[0].busiest.len(), BUSIEST);
        assert_eq!(ev[0].busiest[0].source.to_string(), "203.0.113.8/32");
        // The /16 holds nothing in its own cell here: not heavy.
        assert!(poll(&mut a, 3, 8, 6000).is_empty(), "one event per episode");
        let v = a.containing("203.0.113.5".parse().unwrap());
        assert_eq!(v[0].net.to_string(), "203.0.113.0/24");
        assert!(v[0].heavy && v[0].members == 8);
    }

    #[test]
    fn too_few_members_or_too_little_traffic_is_not_heavy() {
        let mut a = Aggregates::new(cfg(), Duration::from_secs(4));
        poll(&mut a, 1, 3, 0);
        assert!(
            poll(&mut a, 2, 3, 5000).is_empty(),
            "3 members < min_sources"
        );
        let mut a = Aggregates::new(cfg(), Duration::from_secs(4));
        poll(&mut a, 1, 8, 0);
        assert!(poll(&mut a, 2, 8, 500).is_empty(), "500 pps < 1000");
    }

    #[test]
    fn pending_counts_join_the_cells_and_networks_nest() {
        let levels = cfg().levels();
        let p = pending_by_network(
            &levels,
            [
                ("203.0.113.7/32".parse().unwrap(), 5, 1),
                ("203.0.114.7/32".parse().unwrap(), 7, 0),
                ("2001:db8:66:1::/64".parse().unwrap(), 3, 3),
            ],
        );
        let get = |s: &str| p.get(&s.parse::<IpNet>().unwrap()).copied();
        assert_eq!(get("203.0.113.0/24"), Some((5, 1)));
        assert_eq!(get("203.0.0.0/16"), Some((12, 1)));
        assert_eq!(get("2001:db8:66::/48"), Some((3, 3)));
        assert_eq!(get("2001:db8::/32"), Some((3, 3)));
        // The cell user space computes is the kernel's.
        let net: IpNet = "2001:db8:66::/48".parse().unwrap();
        assert_eq!(
            cell_of(&net, Level::V6Slash48),
            ipwarden_common::aggregate::cells_v6(&[0x20, 0x01, 0x0d, 0xb8, 0, 0x66, 0, 1])[0]
        );
        let net: IpNet = "203.0.0.0/16".parse().unwrap();
        assert_eq!(
            cell_of(&net, Level::V4Slash16),
            ipwarden_common::aggregate::cells_v4(&[203, 0, 113, 7])[1]
        );
    }
}
