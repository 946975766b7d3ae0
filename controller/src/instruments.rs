//! What is measured where it happens (a poll's duration, an IPASIS request's duration and
//! outcome), recorded into metrics handles that `/metrics` serves. Cheap to clone: every metric
//! is an `Arc` inside.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

/// Label of `ipwarden_ipasis_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// What is recorded as it happens. Cheap to clone (every metric is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Instruments {
    pub poll_duration: Histogram,
    pub ipasis_duration: Histogram,
    pub ipasis_requests: Family<OutcomeLabel, Counter>,
}

impl Default for Instruments {
    fn default() -> Self {
        Self {
            // 1 ms .. ~4 s: a poll of a quiet host takes well under 1 ms, one of a million
            // sources about a second.
            poll_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 13),
            ),
            // 5 ms .. ~10 s: the client's timeout is seconds.
            ipasis_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 12),
            ),
            ipasis_requests: Family::default(),
        }
    }
}
