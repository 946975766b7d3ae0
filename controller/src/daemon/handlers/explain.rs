//! `explain`: every reason an address is treated as it is.

use std::net::IpAddr;

use super::{lookup::lookup_view, top::row};
use crate::daemon::state::State;
use crate::{
    decision::{Action, Decision},
    net::host_prefix,
    wire::{AllowView, ExplainView, Verdict},
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
        (false, _) => Verdict::Allowed,
        (true, Some(Action::Block)) => Verdict::Blocked,
        (true, Some(Action::Challenge)) => Verdict::Challenged,
        (true, None) => Verdict::NoDecision,
    };
    ExplainView {
        addr,
        source,
        verdict,
        allow,
        decisions,
        rates: state.policy.rates_of(addr).map(|s| row(state, s)),
        enrichment: lookup_view(state, addr),
        aggregates: state.policy.aggregates().containing(addr),
        fingerprints: state.policy.fingerprints_of(&state.engine, source),
    }
}
