//! The scrape-time collector: what `status` and `stats` know, as metrics.

use std::{collections::BTreeMap, fmt, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

use crate::wire::{InterfaceStats, StatusView};

/// The kernel counters exported per interface, by the `verdict` label (`seen` is their sum and
/// is left out, so that `sum by (iface)` of the metric is the frames seen).
const VERDICTS: [&str; 7] = [
    "passed",
    "dropped",
    "limited",
    "allowed",
    "monitored",
    "not_ip",
    "malformed",
];

/// The state one scrape shows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub status: StatusView,
    pub stats: Vec<InterfaceStats>,
    /// Held decisions by (origin, action).
    pub decisions: BTreeMap<(String, String), usize>,
}

pub(super) struct StateCollector {
    snapshot: SnapshotFn,
}

impl StateCollector {
    pub(super) fn new(snapshot: SnapshotFn) -> Self {
        Self { snapshot }
    }
}

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateCollector")
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(Labels<'_>, i64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, ConstGauge::new(0i64).metric_type())?;
    for (labels, v) in series {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn as_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        gauge(
            &mut enc,
            "ipwarden_build_info",
            "The running ipwarden: version and data plane build (always 1)",
            None,
            &[(
                vec![
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("dataplane_build", crate::dataplane::stamp::BUILD),
                ],
                1,
            )],
        )?;
        // The daemon's state is read under its lock; if it cannot be (the daemon is stopping),
        // the scrape carries the build info only and the missing series say so.
        let Some(snap) = (self.snapshot)() else {
            return Ok(());
        };
        let s = &snap.status;

        let mut packets = Vec::new();
        for i in &snap.stats {
            for v in VERDICTS {
                let n = i.counters.get(v).copied().unwrap_or(0);
                packets.push((vec![("iface", i.iface.as_str()), ("verdict", v)], n));
            }
        }
        counter(
            &mut enc,
            "ipwarden_packets",
            "Frames the XDP program handled, by interface and verdict (allowed and monitored are sub-counts of passed)",
            &packets,
        )?;
        let unrecorded: Vec<(Labels<'_>, u64)> = snap
            .stats
            .iter()
            .map(|i| {
                let n = i
                    .counters
                    .get(crate::wire::UNRECORDED_SIGNATURES)
                    .copied()
                    .unwrap_or(0);
                (vec![("iface", i.iface.as_str())], n)
            })
            .collect();
        counter(
            &mut enc,
            "ipwarden_syn_signatures_unrecorded",
            "New SYN signatures the XDP program did not record because its per-CPU budget (64 a jiffy) was spent: a SYN flood from new sources",
            &unrecorded,
        )?;
        if let Some(h) = &s.hints {
            counter(
                &mut enc,
                "ipwarden_loud_hints",
                "Loud-source hints: sent by the XDP program, lost (ring full), measured by the daemon, found loud, judged before their poll",
                &[
                    (vec![("outcome", "sent")], h.sent),
                    (vec![("outcome", "lost")], h.lost),
                    (vec![("outcome", "measured")], h.measured),
                    (vec![("outcome", "loud")], h.loud),
                    (vec![("outcome", "decided")], h.decided),
                ],
            )?;
        }
        if let Some(a) = &s.admission {
            counter(
                &mut enc,
                "ipwarden_admission",
                "Front-table flushes of untracked sources: admitted into the per-source tables, or held in the sketch",
                &[
                    (vec![("outcome", "admitted")], a.admitted),
                    (vec![("outcome", "held")], a.held),
                ],
            )?;
        }
        if let Some(p) = &s.synproxy {
            let c = &p.counts;
            counter(
                &mut enc,
                "ipwarden_synproxy",
                "What the synproxy did with SYNs and handshake ACKs to the protected ports: SYNs answered with a cookie, passed to an existing connection, to no listener, unfit; ACKs whose cookie was accepted or refused (dropped)",
                &[
                    (vec![("outcome", "answered")], c.answered),
                    (vec![("outcome", "existing")], c.existing),
                    (vec![("outcome", "no_listener")], c.no_listener),
                    (vec![("outcome", "unfit")], c.unfit),
                    (vec![("outcome", "accepted")], c.accepted),
                    (vec![("outcome", "refused")], c.refused),
                ],
            )?;
            gauge(
                &mut enc,
                "ipwarden_synproxy_answering",
                "1 while SYNs to the protected ports are answered with cookies",
                None,
                &[(vec![], i64::from(p.answering))],
            )?;
            counter(
                &mut enc,
                "ipwarden_synproxy_mode_changes",
                "Times the synproxy started and stopped answering SYNs",
                &[
                    (vec![("to", "answering")], p.entered),
                    (vec![("to", "waiting")], p.left),
                ],
            )?;
        }
        let mut drop_packets = Vec::new();
        let mut drop_bytes = Vec::new();
        for i in &snap.stats {
            for d in &i.dropped_by_origin {
                let labels = vec![("iface", i.iface.as_str()), ("origin", d.origin.as_str())];
                drop_packets.push((labels.clone(), d.packets));
                drop_bytes.push((labels, d.bytes));
            }
        }
        if !drop_packets.is_empty() {
            counter(
                &mut enc,
                "ipwarden_dropped_packets_by_origin",
                "Frames dropped (blocked, or over a challenge's rate), by interface and the origin of the decision that dropped them",
                &drop_packets,
            )?;
            counter(
                &mut enc,
                "ipwarden_dropped_bytes",
                "Bytes of the frames dropped, by interface and the origin of the decision that dropped them",
                &drop_bytes,
            )?;
        }

        let decisions: Vec<_> = snap
            .decisions
            .iter()
            .map(|((o, a), n)| {
                (
                    vec![("origin", o.as_str()), ("action", a.as_str())],
                    as_i64(*n),
                )
            })
            .collect();
        gauge(
            &mut enc,
            "ipwarden_decisions",
            "Decisions held, by origin and action (a prefix held by several origins counts once per origin)",
            None,
            &decisions,
        )?;
        gauge(
            &mut enc,
            "ipwarden_allowlist_entries",
            "Allowlist entries (configured, runtime, protected and built-in)",
            None,
            &[(vec![], as_i64(s.allow))],
        )?;
        gauge(
            &mut enc,
            "ipwarden_heavy_hitters",
            "Sources above a detection threshold at the last poll",
            None,
            &[(vec![], as_i64(s.heavy_hitters))],
        )?;
        gauge(
            &mut enc,
            "ipwarden_tracked_sources",
            "Sources (IPv4 /32, IPv6 /64) the detector tracks",
            None,
            &[(vec![], as_i64(s.tracked_sources))],
        )?;
        counter(
            &mut enc,
            "ipwarden_polls",
            "Polls of the counters since the daemon started",
            &[(vec![], s.polls)],
        )?;
        let sync: Vec<_> = s
            .interfaces
            .iter()
            .map(|i| {
                (
                    vec![("iface", i.iface.as_str())],
                    i64::from(i.out_of_sync.is_some()),
                )
            })
            .collect();
        gauge(
            &mut enc,
            "ipwarden_interface_out_of_sync",
            "1 while an interface's maps differ from the store (rebuilt at the next poll)",
            None,
            &sync,
        )?;
        let map = |f: &dyn Fn(&crate::wire::MapView) -> i64| -> Vec<(Labels<'_>, i64)> {
            s.maps
                .iter()
                .map(|m| (vec![("map", m.map.as_str())], f(m)))
                .collect()
        };
        gauge(
            &mut enc,
            "ipwarden_map_entries",
            "Entries a block map holds",
            None,
            &map(&|m| as_i64(m.entries)),
        )?;
        gauge(
            &mut enc,
            "ipwarden_map_capacity",
            "Entries a block map can hold (dataplane.max_blocks, dataplane.max_block_prefixes)",
            None,
            &map(&|m| as_i64(m.capacity)),
        )?;
        gauge(
            &mut enc,
            "ipwarden_map_left_out",
            "Decisions held but not enforced because their block map is full",
            None,
            &map(&|m| as_i64(m.left_out)),
        )?;
        let refused: Vec<(Labels<'_>, u64)> = s
            .maps
            .iter()
            .map(|m| (vec![("map", m.map.as_str())], m.refused))
            .collect();
        counter(
            &mut enc,
            "ipwarden_map_refused",
            "Decisions refused because their block map was full",
            &refused,
        )?;
        let refused: Vec<(Labels<'_>, u64)> = s
            .refusals
            .iter()
            .map(|r| {
                (
                    vec![("origin", r.origin.name()), ("why", r.why.as_str())],
                    r.count,
                )
            })
            .collect();
        if !refused.is_empty() {
            counter(
                &mut enc,
                "ipwarden_decisions_refused",
                "Decisions refused, by origin and why (allowlisted, everything, too_wide, bad_rate, map_full, peer_share)",
                &refused,
            )?;
        }
        gauge(
            &mut enc,
            "ipwarden_warnings",
            "Warnings `ipwarden status` shows",
            None,
            &[(vec![], as_i64(s.warnings.len()))],
        )?;

        if let Some(p) = &s.ipasis {
            counter(
                &mut enc,
                "ipwarden_ipasis_cache_hits",
                "Heavy hitters decided from cached IPASIS answers, without a request",
                &[(vec![], p.stats.cache_hits)],
            )?;
            gauge(
                &mut enc,
                "ipwarden_ipasis_queue_length",
                "Heavy hitters waiting for an IPASIS lookup",
                None,
                &[(vec![], as_i64(p.queued))],
            )?;
            gauge(
                &mut enc,
                "ipwarden_ipasis_quota_remaining",
                "IPASIS requests left today under ipasis.daily_quota",
                None,
                &[(
                    vec![],
                    as_i64(p.daily_quota.saturating_sub(p.requests_today)),
                )],
            )?;
        }

        if let Some(v) = &s.verdict {
            counter(
                &mut enc,
                "ipwarden_verdicts",
                "Forward-auth verdicts answered by the verdict endpoint, by action",
                &[
                    (vec![("action", "allow")], v.allowed),
                    (vec![("action", "challenge")], v.challenged),
                    (vec![("action", "block")], v.blocked),
                ],
            )?;
            counter(
                &mut enc,
                "ipwarden_challenge_solutions",
                "Challenge solutions: passed (a pass given), refused (wrong, expired, spent, another address's, over the hourly limit)",
                &[
                    (vec![("result", "passed")], v.passes),
                    (vec![("result", "refused")], v.refused),
                ],
            )?;
        }

        let mut links: Vec<(Labels<'_>, i64)> = Vec::new();
        if let Some(f) = &s.fleet {
            links.push((vec![("link", "fleet")], i64::from(f.connected)));
        }
        if let Some(c) = &s.crowdsec {
            links.push((vec![("link", "crowdsec")], i64::from(c.connected)));
        }
        if !links.is_empty() {
            gauge(
                &mut enc,
                "ipwarden_link_up",
                "1 while the connection to a decision source or sink (fleet, crowdsec) works",
                None,
                &links,
            )?;
        }
        Ok(())
    }
}

/// Reads the state every scrape shows (runs on a blocking thread: it takes the engine lock).
pub type SnapshotFn = Arc<dyn Fn() -> Option<Snapshot> + Send + Sync>;
