//! One poll's work: resync planes that fell out of sync, expire decisions into the history,
//! feed the detector, and act on its events (the velocity source, or enrichment).

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;

use super::Policy;
use crate::{
    allowlist::overlaps,
    config::HeavyHitterAction,
    decision::{Action, Decision, Holder, Origin, now_unix_ms},
    detect::{Event, Rates, Reading, Snapshot},
    engine::{Engine, EngineError},
    net::host_prefix,
};

impl Policy {
    /// One poll's worth of work.
    pub fn tick(
        &mut self,
        engine: &mut Engine,
        now_ns: u64,
        readings: Vec<Reading>,
        took: Duration,
    ) -> Vec<Event> {
        self.polls += 1;
        self.last_poll = took;
        engine.maintain();
        self.new_episodes(engine);
        let now_ms = now_unix_ms();
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
        let events = self.detector.observe(now_ns, readings);
        let mut decided = Vec::new();
        for event in &events {
            match self.on_event(engine, event) {
                Ok(Some(d)) => decided.push(d),
                Ok(None) => {}
                Err(e) => engine.warn(format!("acting on {event:?}: {e}")),
            }
        }
        enact(engine, decided);
        events
    }

    /// A source the program hinted and the daemon measured at `rates` over
    /// `detection.fast_window` (counters `s` at kernel time `now_ns`): judged now, as the next
    /// poll would judge it. Whether it started an episode.
    pub fn loud(
        &mut self,
        engine: &mut Engine,
        source: IpNet,
        s: Snapshot,
        rates: Rates,
        now_ns: u64,
    ) -> bool {
        let Some(event) = self.detector.loud(source, &s, rates, now_ns) else {
            return false;
        };
        match self.on_event(engine, &event) {
            Ok(Some(d)) => enact(engine, vec![d]),
            Ok(None) => {}
            Err(e) => engine.warn(format!("acting on {event:?}: {e}")),
        }
        true
    }

    /// Sources whose last decision ended start a new episode: judged afresh if they flood
    /// again.
    pub fn new_episodes(&mut self, engine: &mut Engine) {
        for prefix in engine.take_ended() {
            self.detector.reset(&prefix);
        }
    }

    /// What to do about one event: a velocity decision to enact with the poll's others, or
    /// nothing (covered, allowlisted, observed, or handed to enrichment).
    fn on_event(
        &mut self,
        engine: &mut Engine,
        event: &Event,
    ) -> Result<Option<Decision>, EngineError> {
        let (source, addr, rates, what) = match event {
            Event::HeavyHitter {
                source,
                addr,
                rates,
            } => (*source, Some(*addr), *rates, "heavy hitter"),
            Event::HardLimit { source, rates } => (*source, None, *rates, "hard rate limit"),
        };
        tracing::info!(%source, pps = rates.pps.round(), syn_pps = rates.syn_pps.round(), "{what}");
        if engine
            .book()
            .covering(source.network())
            .iter()
            .any(|d| d.action == Action::Block)
        {
            return Ok(None);
        }
        if let Some((allow, origin)) = engine
            .allowlist()
            .entries()
            .into_iter()
            .find(|(a, _)| overlaps(a, &source))
        {
            tracing::info!(%source, %allow, %origin, "{what} is allowlisted: not blocked");
            return Ok(None);
        }
        // With enrichment on, feed tags that reach a verdict by themselves save the request.
        if let Some(addr) = addr
            && self.enrich.is_some()
            && self.decide_from_tags(engine, source, addr, rates.pps)?
        {
            return Ok(None);
        }
        if let (Some(addr), Some(pipeline)) = (addr, self.enrich.clone()) {
            return self
                .enrich_or_queue(engine, &pipeline, source, addr, rates)
                .map(|()| None);
        }
        if addr.is_some() && self.cfg.detection.on_heavy_hitter == HeavyHitterAction::Observe {
            return Ok(None);
        }
        Ok(Some(self.velocity_block(source, rates, what)))
    }

    /// Records how long a whole poll took; one longer than the interval makes the next start
    /// late, which is counted and warned about (at most once a minute).
    pub fn note_poll_time(&mut self, engine: &mut Engine, spent: Duration, interval: Duration) {
        if spent <= interval {
            return;
        }
        self.late_polls += 1;
        let now_ms = now_unix_ms();
        if now_ms.saturating_sub(self.last_late_warning_ms) >= 60_000 {
            self.last_late_warning_ms = now_ms;
            engine.warn(format!(
                "a poll took {:.0} ms, longer than detection.poll_interval ({:.0} ms): polls start late and detection falls behind ({} late so far)",
                spent.as_secs_f64() * 1e3,
                interval.as_secs_f64() * 1e3,
                self.late_polls
            ));
        }
    }

    /// Whether aggregates are judged (some level configured).
    pub fn aggregates_on(&self) -> bool {
        !self.aggregates.levels().is_empty()
    }

    /// Judges the networks of this poll's active sources from the kernel's aggregate `cells`
    /// and the front tables' `pending` counts (after [`Engine::tick`] has fed the detector).
    pub fn judge_aggregates(
        &mut self,
        engine: &mut Engine,
        now_ns: u64,
        cells: Vec<ipwarden_common::AggCell>,
        pending: Vec<(IpNet, u64, u64)>,
    ) {
        let levels = self.aggregates.levels().to_vec();
        let (fraction, agg) = (self.cfg.detection.admission, &self.cfg.detection.aggregate);
        self.admit_flags.update(
            now_ns,
            &cells,
            &levels,
            agg.pps as f64 * fraction,
            agg.syn_pps as f64 * fraction,
        );
        let candidates = crate::detect::aggregate::members(&levels, self.detector.active());
        let pending = crate::detect::aggregate::pending_by_network(&levels, pending);
        let events = self
            .aggregates
            .observe(now_ns, &cells, &pending, candidates);
        let mut decided: Vec<Decision> = Vec::new();
        for ev in events {
            if let Some(d) = self.on_aggregate(engine, &ev, &decided) {
                decided.push(d);
            }
        }
        enact(engine, decided);
    }

    /// A heavy aggregate: blocked as a prefix for `detection.hard_ttl` unless a narrower heavy
    /// aggregate inside it was just blocked (its traffic still fills this one's window: judged
    /// again once the window has passed), it is already covered, or it holds an allowlisted or
    /// protected address (the allowlist also wins per packet; members may still be blocked one
    /// by one).
    fn on_aggregate(
        &mut self,
        engine: &mut Engine,
        ev: &crate::detect::aggregate::HeavyAggregate,
        decided: &[Decision],
    ) -> Option<Decision> {
        let net = ev.net;
        let busiest: Vec<String> = ev.busiest.iter().map(|m| m.source.to_string()).collect();
        tracing::info!(prefix = %net, members = ev.members, pps = ev.rates.pps.round(), syn_pps = ev.rates.syn_pps.round(), ?busiest, "heavy aggregate");
        if engine
            .book()
            .covering(net.network())
            .iter()
            .any(|d| d.action == Action::Block && d.prefix.contains(&net))
        {
            return None;
        }
        if decided.iter().any(|d| net.contains(&d.prefix))
            || self.recent_aggregate_block_inside(engine, &net)
        {
            self.aggregates.reset(&net);
            return None;
        }
        if let Some((allow, origin)) = engine
            .allowlist()
            .entries()
            .into_iter()
            .find(|(a, _)| overlaps(a, &net))
        {
            tracing::info!(prefix = %net, %allow, %origin, "heavy aggregate holds an allowlisted address: not blocked");
            return None;
        }
        if self.enrich.is_some() {
            // With IP intelligence, the network is judged by its busiest members' answers.
            self.start_vote(engine, ev);
            return None;
        }
        if self.cfg.detection.on_heavy_hitter == HeavyHitterAction::Observe {
            return None;
        }
        Some(Decision::block(
            net,
            Holder::of(Origin::Velocity),
            format!(
                "aggregate heavy hitter: {} active sources, {:.0} pps, {:.0} SYN/s (busiest {})",
                ev.members,
                ev.rates.pps,
                ev.rates.syn_pps,
                busiest.join(", ")
            ),
            now_unix_ms(),
            Some(self.cfg.detection.hard_ttl),
        ))
    }

    /// Whether a velocity decision on a network strictly inside `net` was made within the
    /// detection window (its traffic may still fill `net`'s rate).
    fn recent_aggregate_block_inside(&self, engine: &Engine, net: &IpNet) -> bool {
        let since = now_unix_ms().saturating_sub(self.cfg.detection.window.as_millis() as u64);
        // The prefixes strictly inside `net` only: a scan of the whole book (a million
        // decisions: 27 ms) for every heavy aggregate held the poll up.
        let book = engine.book();
        book.inside(net).flat_map(|p| book.holders(&p)).any(|d| {
            d.origin == Origin::Velocity
                && d.created_unix_ms >= since
                && self
                    .aggregates
                    .levels()
                    .iter()
                    .any(|l| l.prefix_len() == d.prefix.prefix_len())
        })
    }

    /// The velocity source's one decision: a block for `detection.hard_ttl` (longer for a
    /// repeat offender).
    fn velocity_block(&self, source: IpNet, rates: Rates, what: &str) -> Decision {
        Decision::block(
            source,
            Holder::of(Origin::Velocity),
            format!("{what}: {:.0} pps, {:.0} SYN/s", rates.pps, rates.syn_pps),
            now_unix_ms(),
            Some(self.cfg.detection.hard_ttl),
        )
    }

    /// The source unit of an address and the detector's view of it.
    pub fn rates_of(&self, addr: IpAddr) -> Option<crate::detect::SourceView> {
        self.detector.get(&host_prefix(addr))
    }
}

/// Stores and enforces one poll's decisions together (one durable transaction).
fn enact(engine: &mut Engine, decided: Vec<Decision>) {
    let n = decided.len();
    if n == 0 {
        return;
    }
    if let Err(e) = engine.propose(decided) {
        engine.warn(format!("enacting {n} decisions of this poll: {e}"));
    }
}
