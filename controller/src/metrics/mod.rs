//! Prometheus metrics: `[metrics] listen` serves `/metrics` in the OpenMetrics text format.
//!
//! Two kinds of values, kept apart:
//! - histograms and counters of events only the code that saw them can measure (a poll's
//!   duration, an IPASIS request's duration and outcome) live in [`Instruments`], recorded where
//!   the event happens;
//! - everything `status` and `stats` already know (the kernel's counters, decisions, tracked
//!   sources, link states) is read at scrape time from a [`Snapshot`], so that the metrics and
//!   the CLI can never disagree and nothing is kept twice.

mod collect;
mod http;

use prometheus_client::registry::{Registry, Unit};

pub use crate::instruments::{Instruments, OutcomeLabel};
pub use collect::{Snapshot, SnapshotFn};
pub use http::{MetricsError, serve};

/// The registry of one daemon: the instruments plus the scrape-time collector.
pub fn registry(instruments: &Instruments, snapshot: SnapshotFn) -> Registry {
    let mut r = Registry::default();
    r.register_with_unit(
        "ipwarden_poll_duration",
        "Time one poll of the counters took (read, detect, decide)",
        Unit::Seconds,
        instruments.poll_duration.clone(),
    );
    r.register_with_unit(
        "ipwarden_ipasis_request_duration",
        "Time of IPASIS requests, retries included",
        Unit::Seconds,
        instruments.ipasis_duration.clone(),
    );
    r.register(
        "ipwarden_ipasis_requests",
        "IPASIS requests by outcome (answer, invalid, rate_limited, unauthorized, quota, error)",
        instruments.ipasis_requests.clone(),
    );
    r.register_collector(Box::new(collect::StateCollector::new(snapshot)));
    r
}

/// Every metric name a scrape carries (with the `_total`, `_bucket`... suffixes left off):
/// what the dashboard may query. Kept here so that a test can check both.
pub const NAMES: &[&str] = &[
    "ipwarden_build_info",
    "ipwarden_packets_total",
    "ipwarden_decisions",
    "ipwarden_allowlist_entries",
    "ipwarden_heavy_hitters",
    "ipwarden_tracked_sources",
    "ipwarden_polls_total",
    "ipwarden_interface_out_of_sync",
    "ipwarden_warnings",
    "ipwarden_map_entries",
    "ipwarden_map_capacity",
    "ipwarden_map_left_out",
    "ipwarden_map_refused_total",
    "ipwarden_decisions_refused_total",
    "ipwarden_poll_duration_seconds",
    "ipwarden_ipasis_requests_total",
    "ipwarden_ipasis_request_duration_seconds",
    "ipwarden_ipasis_cache_hits_total",
    "ipwarden_ipasis_queue_length",
    "ipwarden_ipasis_quota_remaining",
    "ipwarden_link_up",
    "ipwarden_dropped_packets_by_origin_total",
    "ipwarden_dropped_bytes_total",
    "ipwarden_verdicts_total",
    "ipwarden_challenge_solutions_total",
    "ipwarden_loud_hints_total",
    "ipwarden_syn_signatures_unrecorded_total",
    "ipwarden_admission_total",
    "ipwarden_synproxy_total",
    "ipwarden_synproxy_answering",
    "ipwarden_synproxy_mode_changes_total",
];

/// The metric names a Grafana dashboard's JSON queries, as families (a histogram's `_bucket`,
/// `_sum` and `_count` series name their histogram).
pub fn queried_metrics(dashboard: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = dashboard;
    while let Some(at) = rest.find("ipwarden_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
            .unwrap_or(name);
        out.insert(family.to_owned());
        rest = &tail[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_dashboard_queries_only_metrics_the_daemon_serves() {
        let dashboard = include_str!("../../dist/grafana-dashboard.json");
        let queried = queried_metrics(dashboard);
        assert!(queried.len() >= 10, "{queried:?}");
        for m in &queried {
            assert!(
                NAMES.contains(&m.as_str()),
                "the dashboard queries unknown {m}"
            );
        }
        assert!(queried.contains("ipwarden_poll_duration_seconds"));
    }
}
