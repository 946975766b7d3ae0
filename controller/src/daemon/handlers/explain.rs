//! `explain`: every reason an address is treated as it is.

use std::net::IpAddr;

use super::{lookup::lookup_view, top::row};
use crate::daemon::state::State;
use crate::{
    decision::{Action, Decision},
    net::host_prefix,
    wire::{AllowView, ExplainView},
};

pub fn explain(state: &State, addr: IpAddr) -> ExplainView {
    let source = host_prefix(addr);
    let allow: Vec<AllowView> = state
        .engine
        .allowlist()
        .covering(addr)
        .into_iter()
        .map(|(prefix, origin)| AllowView { prefix, origin })
        .collect();
    let decisions: Vec<Decision> = state
        .engine
        .book()
        .covering_all(addr)
        .into_iter()
        .cloned()
        .collect();
    let verdict = match (allow.is_empty(), decisions.first().map(|d| d.action)) {
        (false, _) => "allowed",
        (true, Some(Action::Block)) => "blocked",
        (true, Some(Action::Challenge)) => "challenged",
        (true, None) => "no decision",
    };
    ExplainView {
        addr,
        source,
        verdict: verdict.to_owned(),
        allow,
        decisions,
        rates: state.policy.rates_of(addr).map(|s| row(state, s)),
        enrichment: lookup_view(state, addr),
        aggregates: state.policy.aggregates().containing(addr),
        fingerprints: state.policy.fingerprints_of(&state.engine, source),
    }
}
