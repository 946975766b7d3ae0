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
    let rates = state.policy.rates_of(addr).map(|s| row(state, s));
    let untracked = if rates.is_none() {
        untracked(state, &source)
    } else {
        None
    };
    ExplainView {
        addr,
        source,
        verdict,
        allow,
        decisions,
        rates,
        enrichment: lookup_view(state, addr),
        aggregates: state.policy.aggregates().containing(addr),
        fingerprints: state.policy.fingerprints_of(&state.engine, source),
        not_enforced,
        hits,
        untracked,
    }
}

/// The admission sketch's bound for a source the detector does not track; `None` when no plane
/// has a sketch or admission is off.
fn untracked(state: &State, source: &ipnet::IpNet) -> Option<crate::wire::UntrackedView> {
    let (level, _) = state.policy.admission();
    if !level.on() {
        return None;
    }
    let now_ns = crate::clock::monotonic_ns();
    let mut packets = None;
    for p in state.engine.planes().iter() {
        if let Some(n) = p.enforcer.admit_estimate(source, now_ns) {
            *packets.get_or_insert(0) += n;
        }
    }
    let packets = packets?;
    let elapsed_ns = now_ns - ipwarden_common::admit::epoch_start(now_ns);
    let elapsed_ms = elapsed_ns / 1_000_000;
    Some(crate::wire::UntrackedView {
        packets_at_most: packets,
        epoch_elapsed_ms: elapsed_ms,
        pps_at_most: (packets * 1000).checked_div(elapsed_ms).unwrap_or(0),
        level_packets_per_cpu: level.packets,
    })
}
