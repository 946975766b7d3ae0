//! One poll's work: resync planes that fell out of sync, expire decisions into the history,
//! feed the detector, and act on its events (the velocity source, or enrichment).

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;

use super::Engine;
use crate::{
    allowlist::overlaps,
    config::HeavyHitterAction,
    decision::{Action, Decision, Holder, Origin, now_unix_ms},
    detect::{Event, Rates, Snapshot},
    store::{End, Ended},
};

impl Engine {
    /// One poll's worth of work.
    pub fn tick(
        &mut self,
        now_ns: u64,
        snapshots: Vec<(IpNet, Snapshot)>,
        took: Duration,
    ) -> Vec<Event> {
        self.polls += 1;
        self.last_poll = took;
        for f in self.resync(false) {
            let why = super::enforce::error_chain(&f.error);
            self.warn(format!("{} is still out of sync: {why}", f.iface));
        }
        let now_ms = now_unix_ms();
        self.expire(now_ms);
        self.prune_history(now_ms);
        let due: Vec<IpNet> = self
            .retry_at
            .iter()
            .filter(|(_, t)| **t <= now_ms)
            .map(|(s, _)| *s)
            .collect();
        for source in due {
            self.retry_at.remove(&source);
            // A new episode if it is still a heavy hitter: enrichment is tried again.
            self.detector.reset(&source);
        }
        let events = self.detector.observe(now_ns, snapshots);
        for event in &events {
            if let Err(e) = self.on_event(event) {
                self.warn(format!("acting on {event:?}: {e}"));
            }
        }
        events
    }

    /// Ends expired decisions: one transaction, the next holder of each prefix enforced.
    fn expire(&mut self, now_ms: u64) {
        let ended: Vec<Ended> = self
            .book
            .expired(now_ms)
            .into_iter()
            .map(|d| Ended {
                decision: d.clone(),
                end: End::Expired,
                ended_unix_ms: now_ms,
            })
            .collect();
        if ended.is_empty() {
            return;
        }
        let names: Vec<(IpNet, Holder)> = ended
            .iter()
            .map(|e| (e.decision.prefix, e.decision.holder()))
            .collect();
        if let Err(e) = self.commit(Vec::new(), ended) {
            self.warn(format!("removing expired decisions: {e}"));
            return;
        }
        for (prefix, holder) in names {
            tracing::info!(%prefix, %holder, "decision expired");
        }
    }

    fn on_event(&mut self, event: &Event) -> Result<(), super::EngineError> {
        let (source, addr, rates, what) = match event {
            Event::HeavyHitter {
                source,
                addr,
                rates,
            } => (*source, Some(*addr), *rates, "heavy hitter"),
            Event::HardLimit { source, rates } => (*source, None, *rates, "hard rate limit"),
        };
        tracing::info!(%source, pps = rates.pps.round(), syn_pps = rates.syn_pps.round(), "{what}");
        if self
            .book
            .covering(source.network())
            .iter()
            .any(|d| d.action == Action::Block)
        {
            return Ok(());
        }
        if let Some((allow, origin)) = self
            .allow
            .entries()
            .into_iter()
            .find(|(a, _)| overlaps(a, &source))
        {
            tracing::info!(%source, %allow, %origin, "{what} is allowlisted: not blocked");
            return Ok(());
        }
        // With enrichment on, feed tags that reach a verdict by themselves save the request.
        if let Some(addr) = addr
            && self.enrich.is_some()
            && self.decide_from_tags(source, addr, rates.pps)?
        {
            return Ok(());
        }
        if let (Some(addr), Some(pipeline)) = (addr, self.enrich.clone()) {
            return self.enrich_or_queue(&pipeline, source, addr, rates);
        }
        if addr.is_some() && self.cfg.detection.on_heavy_hitter == HeavyHitterAction::Observe {
            return Ok(());
        }
        self.velocity_block(source, rates, what).map(drop)
    }

    /// The velocity source's one decision: a block for `detection.hard_ttl` (longer for a
    /// repeat offender).
    fn velocity_block(
        &mut self,
        source: IpNet,
        rates: Rates,
        what: &str,
    ) -> Result<Decision, super::EngineError> {
        self.propose(Decision::block(
            source,
            Holder::of(Origin::Velocity),
            format!("{what}: {:.0} pps, {:.0} SYN/s", rates.pps, rates.syn_pps),
            now_unix_ms(),
            Some(self.cfg.detection.hard_ttl),
        ))
    }

    /// The source unit of an address and the detector's view of it.
    pub(super) fn rates_of(&self, addr: IpAddr) -> Option<crate::detect::SourceView> {
        self.detector.get(&Self::source_of(addr))
    }
}
