//! The IPASIS source: heavy hitters go to the enrichment stage (or are decided at once from a
//! fresh cached answer); answers come back through the daemon's channel as [`Enriched`] and are
//! scored into decisions here.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;

use super::state::{EnrichmentState, Policy};
use crate::{
    config::{OnError, PeerAnswers, Tag},
    decision::{Action, ChallengeRate, Decision, Holder, Origin, now_unix_ms},
    detect::Rates,
    engine::{Engine, EngineError},
    enrich::{
        EnrichError, Pipeline, Record,
        pipeline::{Enriched, Peer},
        queue::Candidate,
    },
    score::{self, Verdict},
    store::CachedAnswer,
};

impl Policy {
    /// Turns enrichment on: heavy hitters go to `pipeline` instead of the velocity-only policy.
    pub fn set_enrichment(&mut self, pipeline: Arc<Pipeline>) {
        self.enrich = Some(pipeline);
        self.enrichment_state = EnrichmentState::On;
    }

    /// Records why enrichment is off, for `status`.
    pub fn set_enrichment_off(&mut self, why: EnrichmentState) {
        self.enrich = None;
        self.enrichment_state = why;
    }

    /// Whether heavy hitters are enriched, and if not, why.
    pub fn enrichment_state(&self) -> EnrichmentState {
        self.enrichment_state
    }

    /// The enrichment stage, when enabled.
    pub fn enrichment(&self) -> Option<&Arc<Pipeline>> {
        self.enrich.as_ref()
    }

    /// Decides from a fresh cached answer, or queues the source for a lookup.
    pub(super) fn enrich_or_queue(
        &mut self,
        engine: &mut Engine,
        pipeline: &Pipeline,
        source: IpNet,
        addr: IpAddr,
        rates: Rates,
    ) -> Result<(), EngineError> {
        if let Some(answer) = self.fresh_answer(engine, source)? {
            pipeline.cache_hit();
            let peer = answer.host.as_deref();
            return self.decide(engine, source, answer.record.as_ref(), rates.pps, peer);
        }
        if pipeline.submit(Candidate {
            source,
            addr,
            pps: rates.pps,
        }) {
            tracing::debug!(%source, %addr, "queued for enrichment");
        }
        Ok(())
    }

    /// The cached answer for a source if it is still within `ipasis.cache_ttl` of its fetch (a
    /// 400 answer this host got never expires).
    pub fn fresh_answer(
        &self,
        engine: &Engine,
        source: IpNet,
    ) -> Result<Option<CachedAnswer>, EngineError> {
        let Some(a) = engine.answer(source)? else {
            return Ok(None);
        };
        Ok(a.is_fresh(now_unix_ms(), self.cfg.ipasis.cache_ttl)
            .then_some(a))
    }

    /// Caches an answer: this host's own, fetched now (`peer`: `None`), or a fleet peer's,
    /// which keeps its fetch time and host.
    pub fn store_answer(
        engine: &Engine,
        source: IpNet,
        record: Option<Record>,
        peer: Option<&Peer>,
    ) -> Result<CachedAnswer, EngineError> {
        let answer = CachedAnswer {
            record,
            fetched_unix_ms: peer.map_or_else(now_unix_ms, |p| p.fetched_unix_ms),
            host: peer.map(|p| p.host.clone()),
        };
        engine.put_answer(source, &answer)?;
        Ok(answer)
    }

    /// A heavy hitter whose feed tags alone reach a verdict is decided with no API call; whether
    /// it was.
    pub fn decide_from_tags(
        &mut self,
        engine: &mut Engine,
        source: IpNet,
        addr: IpAddr,
        pps: f64,
    ) -> Result<bool, EngineError> {
        let tags: Vec<(Tag, String)> = self
            .tags
            .of(addr)
            .into_iter()
            .map(|(t, f)| (t, f.to_owned()))
            .collect();
        if tags.is_empty() {
            return Ok(false);
        }
        let none = Record::default();
        let record = with_tags(&none, &tags);
        let mut sc = score::score(&record, pps, self.cfg.velocity_pps(), &self.cfg.scoring);
        let action = match sc.verdict {
            Verdict::Allow => return Ok(false),
            Verdict::Block => Action::Block,
            Verdict::Challenge => Action::Challenge,
        };
        sc.factors = credit(sc.factors, &none, &tags);
        let feeds: Vec<&str> = tags.iter().map(|(_, f)| f.as_str()).collect();
        let reason = format!(
            "feed {}: {} ({})",
            feeds.join(", "),
            sc.because,
            sc.factors
                .iter()
                .map(|f| format!("{} {:+}", f.name, f.weight))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let d = self.scored(
            source,
            action,
            Holder::named(Origin::Feed, feeds[0]),
            reason,
            sc,
        );
        tracing::info!(%source, feeds = ?feeds, "decided from feed tags, no IPASIS request");
        engine.propose_one(d).map(|_| true)
    }

    /// A scorer's decision: the score and its factors, `decisions.default_ttl`, and the
    /// configured challenge rate.
    fn scored(
        &self,
        source: IpNet,
        action: Action,
        holder: Holder,
        reason: String,
        sc: score::Score,
    ) -> Decision {
        Decision::new(
            source,
            action,
            holder,
            reason,
            now_unix_ms(),
            Some(self.cfg.decisions.default_ttl),
        )
        .with_score(sc.value, sc.factors)
        .with_rate(ChallengeRate {
            pps: self.cfg.scoring.challenge_pps,
            burst: self.cfg.scoring.challenge_burst,
        })
    }

    /// Scores an answer (with any feed tags of the source) and proposes the verdict. An answer
    /// from fleet host `peer` decides at most what `fleet.peer_answers` lets it, and says so.
    fn decide(
        &mut self,
        engine: &mut Engine,
        source: IpNet,
        record: Option<&Record>,
        pps: f64,
        peer: Option<&str>,
    ) -> Result<(), EngineError> {
        let Some(answer) = record else {
            tracing::debug!(%source, "IPASIS rejected the address earlier; no enrichment decision");
            return Ok(());
        };
        let tags: Vec<(Tag, String)> = self
            .tags
            .of(source.network())
            .into_iter()
            .map(|(t, f)| (t, f.to_owned()))
            .collect();
        let merged = with_tags(answer, &tags);
        let record = &merged;
        let extra: Vec<crate::decision::Factor> = self
            .proxy_factor(engine, source, record)
            .into_iter()
            .collect();
        let mut sc = score::score_with(
            record,
            pps,
            self.cfg.velocity_pps(),
            extra,
            &self.cfg.scoring,
        );
        sc.factors = credit(sc.factors, answer, &tags);
        self.vote(engine, source, sc.verdict, record.operator.clone());
        let signals: Vec<String> = sc
            .factors
            .iter()
            .map(|f| format!("{} {:+}", f.name, f.weight))
            .collect();
        let reason = format!(
            "ipasis{}: {} ({}){}",
            peer.map(|h| format!(" (answer from host {h})"))
                .unwrap_or_default(),
            sc.because,
            if signals.is_empty() {
                "no risk signals".to_owned()
            } else {
                signals.join(", ")
            },
            record
                .operator
                .as_ref()
                .map(|o| format!(", operator {o}"))
                .unwrap_or_default()
        );
        let action = match sc.verdict {
            Verdict::Allow => {
                tracing::info!(%source, score = sc.value, "ipasis: allowed ({reason})");
                return Ok(());
            }
            // A peer's word alone blocks only where the operator said it may.
            Verdict::Block if peer.is_some() && self.peer_answers() == PeerAnswers::Challenge => {
                Action::Challenge
            }
            Verdict::Block => Action::Block,
            Verdict::Challenge => Action::Challenge,
        };
        let mut d = self.scored(source, action, Holder::of(Origin::Ipasis), reason, sc);
        d.answer_from = peer.map(Into::into);
        engine.propose_one(d).map(drop)
    }

    /// What a peer's shared answer may decide here.
    fn peer_answers(&self) -> PeerAnswers {
        self.cfg
            .fleet
            .as_ref()
            .map_or(PeerAnswers::Challenge, |f| f.peer_answers)
    }

    /// An answer (or failure) for a queued candidate, from the daemon's channel.
    pub fn on_enriched(&mut self, engine: &mut Engine, enriched: Enriched) {
        let Enriched {
            candidate,
            result,
            peer,
        } = enriched;
        let outcome = match result {
            Ok(record) => Self::store_answer(
                engine,
                candidate.source,
                Some(record.clone()),
                peer.as_ref(),
            )
            .and_then(|_| {
                let from = peer.as_ref().map(|p| p.host.as_str());
                self.decide(engine, candidate.source, Some(&record), candidate.pps, from)
            }),
            Err(EnrichError::Invalid) => {
                Self::store_answer(engine, candidate.source, None, peer.as_ref()).map(drop)
            }
            Err(e) => self.enrichment_failed(engine, &candidate, &e),
        };
        if let Some(p) = &self.enrich {
            // Only now may the source be queued again: its answer is cached.
            p.finished(&candidate.source);
        }
        if let Err(e) = outcome {
            engine.warn(format!("enrichment of {}: {e}", candidate.source));
        }
    }

    fn enrichment_failed(
        &mut self,
        engine: &mut Engine,
        c: &Candidate,
        e: &EnrichError,
    ) -> Result<(), EngineError> {
        tracing::warn!(source = %c.source, error = %e, "enrichment failed");
        let retry = now_unix_ms() + self.cfg.ipasis.retry_failed_after.as_millis() as u64;
        self.retry_at.insert(c.source, retry);
        if self.cfg.ipasis.on_error == OnError::Open
            || engine.allowlist().conflict(&c.source).is_some()
        {
            return Ok(());
        }
        engine
            .propose_one(Decision::block(
                c.source,
                Holder::of(Origin::Ipasis),
                format!("enrichment-failed: {e}"),
                now_unix_ms(),
                Some(self.cfg.ipasis.closed_ttl),
            ))
            .map(drop)
    }
}

/// `r` with the flags feed tags set.
fn with_tags(r: &Record, tags: &[(Tag, String)]) -> Record {
    let mut r = r.clone();
    for (t, _) in tags {
        match t {
            Tag::Hosting => r.hosting = Some(true),
            Tag::Tor => r.tor = Some(true),
            Tag::Proxy => r.proxy = Some(true),
        }
    }
    r
}

/// Names the feed behind each factor that a tag supplied and the answer did not (`explain`
/// shows `hosting (feed aws)`).
fn credit(
    factors: Vec<crate::decision::Factor>,
    answer: &Record,
    tags: &[(Tag, String)],
) -> Vec<crate::decision::Factor> {
    let had = |t: Tag| match t {
        Tag::Hosting => answer.hosting == Some(true),
        Tag::Tor => answer.tor == Some(true),
        Tag::Proxy => answer.proxy == Some(true),
    };
    factors
        .into_iter()
        .map(|mut f| {
            if let Some((_, feed)) = tags.iter().find(|(t, _)| t.name() == f.name && !had(*t)) {
                f.name = format!("{} (feed {feed})", f.name);
            }
            f
        })
        .collect()
}
