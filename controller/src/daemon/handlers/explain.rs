//! `explain`: every reason an address is treated as it is.

use std::net::IpAddr;

use super::{lookup::lookup_view, top::row};
use crate::daemon::state::State;
use crate::{
    decision::{Action, Decision},
    net::host_prefix,
    wire::{AllowView, ExplainView, Hits, NotEnforced, Verdict},
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
    let mut not_enforced: Vec<NotEnforced> = Vec::new();
    for d in &decisions {
        if let Some(why) = state.engine.not_enforced(&d.prefix)
            && !not_enforced.iter().any(|n| n.prefix == d.prefix)
        {
            not_enforced.push(NotEnforced {
                prefix: d.prefix,
                why: why.to_owned(),
            });
        }
    }
    let enforced = state.engine.enforced_for(addr).map(|d| d.action);
    let verdict = match (allow.is_empty(), enforced) {
        (false, _) => Verdict::Allowed,
        (true, Some(Action::Block)) => Verdict::Blocked,
        (true, Some(Action::Challenge)) => Verdict::Challenged,
        (true, Some(Action::Pass)) => Verdict::Passed,
        (true, None) => Verdict::NoDecision,
    };
    // The source's own drops, then what each covering decision dropped from all its sources.
    let by_source = state.engine.planes().hits();
    let mut hits: Vec<Hits> = by_source
        .get(&source)
        .map(|&packets| Hits {
            prefix: source,
            packets,
        })
        .into_iter()
        .collect();
    let by_decision = state.engine.hits_by_decision(by_source);
    for d in &decisions {
        if let Some(&packets) = by_decision.get(&d.prefix)
            && !hits.iter().any(|h| h.prefix == d.prefix)
        {
            hits.push(Hits {
                prefix: d.prefix,
                packets,
            });
        }
    }
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
        not_enforced,
        hits,
    }
}
