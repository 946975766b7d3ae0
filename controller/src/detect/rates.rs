//! Rates between two samples of cumulative counters: the arithmetic sources and aggregates
//! share.

use serde::Serialize;

/// Rates of one source over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    pub pps: f64,
    pub syn_pps: f64,
}

/// Counters at one poll.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub t: u64,
    pub packets: u64,
    pub syn: u64,
}

/// Rates between two samples (also the aggregates' rates).
pub fn rates(from: &Sample, to: &Sample) -> Rates {
    let (t0, p0, s0) = (from.t, from.packets, from.syn);
    let (t1, p1, s1) = (to.t, to.packets, to.syn);
    // Below a millisecond the quotient means nothing; the next poll will tell.
    let dt = t1.saturating_sub(t0);
    if dt < 1_000_000 {
        return Rates::default();
    }
    let secs = dt as f64 / 1e9;
    Rates {
        pps: p1.saturating_sub(p0) as f64 / secs,
        syn_pps: s1.saturating_sub(s0) as f64 / secs,
    }
}
