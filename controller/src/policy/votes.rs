//! Heavy aggregates under the IPASIS policy: the busiest members are looked up, and the network
//! is blocked or challenged when their verdicts agree (e.g. three members of one hosting
//! operator). A member the score allows, or members that disagree, leave the network undecided
//! (each member keeps its own decision).

use std::collections::HashMap;

use ipnet::IpNet;

use super::state::{Policy, VOTE_TTL_MS, Vote};
use crate::{
    decision::{Action, ChallengeRate, Decision, Holder, Origin, now_unix_ms},
    detect::Rates,
    detect::aggregate::HeavyAggregate,
    engine::Engine,
    score::Verdict,
};

impl Policy {
    /// Starts a vote on `ev`'s network: its busiest members are looked up (or decided from the
    /// cache at once).
    pub(super) fn start_vote(&mut self, engine: &mut Engine, ev: &HeavyAggregate) {
        let Some(pipeline) = self.enrich.clone() else {
            return;
        };
        let now = now_unix_ms();
        self.votes
            .retain(|_, v| now.saturating_sub(v.since_ms) < VOTE_TTL_MS);
        self.votes.insert(
            ev.net,
            Vote {
                members: ev.busiest.iter().map(|m| m.source).collect(),
                verdicts: HashMap::new(),
                count: ev.members,
                rates: ev.rates,
                since_ms: now,
            },
        );
        tracing::info!(prefix = %ev.net, members = ?ev.busiest.iter().map(|m| m.source.to_string()).collect::<Vec<_>>(), "heavy aggregate: looking up its busiest members");
        for m in ev.busiest.clone() {
            let rates = Rates {
                pps: m.pps,
                syn_pps: 0.0,
            };
            if let Err(e) = self.enrich_or_queue(engine, &pipeline, m.source, m.addr, rates) {
                engine.warn(format!("looking up {} for {}: {e}", m.source, ev.net));
            }
        }
    }

    /// A member's verdict; decides the network when every member has answered alike.
    pub(super) fn vote(
        &mut self,
        engine: &mut Engine,
        source: IpNet,
        verdict: Verdict,
        operator: Option<String>,
    ) {
        let nets: Vec<IpNet> = self
            .votes
            .iter()
            .filter(|(_, v)| v.members.contains(&source))
            .map(|(n, _)| *n)
            .collect();
        for net in nets {
            let Some(v) = self.votes.get_mut(&net) else {
                continue;
            };
            v.verdicts.insert(source, (verdict, operator.clone()));
            if v.verdicts.len() < v.members.len() {
                continue;
            }
            let Some(v) = self.votes.remove(&net) else {
                continue;
            };
            let verdicts: Vec<&(Verdict, Option<String>)> = v.verdicts.values().collect();
            let first = verdicts[0];
            let action = match first.0 {
                Verdict::Block => Action::Block,
                Verdict::Challenge => Action::Challenge,
                Verdict::Allow => {
                    tracing::info!(prefix = %net, "heavy aggregate: its busiest members are allowed; not decided");
                    continue;
                }
            };
            if verdicts.iter().any(|(vd, _)| *vd != first.0) {
                tracing::info!(prefix = %net, "heavy aggregate: its busiest members disagree; not decided");
                continue;
            }
            let mut operators: Vec<&str> =
                verdicts.iter().filter_map(|(_, o)| o.as_deref()).collect();
            operators.sort_unstable();
            operators.dedup();
            let reason = format!(
                "aggregate heavy hitter: {} active sources, {:.0} pps; its {} busiest members all {}{}",
                v.count,
                v.rates.pps,
                v.members.len(),
                match action {
                    Action::Block => "blocked",
                    Action::Challenge => "challenged",
                    Action::Pass => "passed",
                },
                if operators.is_empty() {
                    String::new()
                } else {
                    format!(" (operator {})", operators.join(", "))
                }
            );
            let d = Decision::new(
                net,
                action,
                Holder::of(Origin::Ipasis),
                reason,
                now_unix_ms(),
                Some(self.cfg.decisions.default_ttl),
            )
            .with_rate(ChallengeRate {
                pps: self.cfg.scoring.challenge_pps,
                burst: self.cfg.scoring.challenge_burst,
            });
            if let Err(e) = engine.propose_one(d) {
                engine.warn(format!("deciding heavy aggregate {net}: {e}"));
            }
        }
    }
}
