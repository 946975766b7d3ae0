//! `top`: the busiest sources the detector tracks.

use crate::daemon::state::State;
use crate::{
    detect::SourceView,
    wire::{Response, TopRow},
};

pub fn top(state: &State, n: usize) -> Response {
    let mut rows: Vec<TopRow> = state
        .policy
        .detector()
        .top(n)
        .into_iter()
        .map(|s| row(state, s))
        .collect();
    let sources: Vec<_> = rows.iter().map(|r| r.source).collect();
    for (row, os) in rows
        .iter_mut()
        .zip(state.policy.os_guesses(&state.engine, &sources))
    {
        row.os = os;
    }
    Response::Top { sources: rows }
}

/// One source's row (`top`, and the rates `explain` shows).
pub(super) fn row(state: &State, s: SourceView) -> TopRow {
    let decision = state
        .engine
        .enforced_for(s.source.network())
        .map(|d| d.action);
    TopRow {
        source: s.source,
        pps: (s.rates.pps * 10.0).round() / 10.0,
        syn_pps: (s.rates.syn_pps * 10.0).round() / 10.0,
        packets: s.packets,
        bytes: s.bytes,
        heavy: s.heavy,
        decision,
        os: None,
    }
}
