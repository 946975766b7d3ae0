//! The one way decisions enter and leave the book, whatever their source (an operator,
//! velocity, IPASIS, a feed, CrowdSec, the fleet): [`Engine::propose`] applies one rule set
//! (validation, the decision limit, repeat offenders' TTLs, replacement bookkeeping, bounded
//! logging) and [`Engine::replace`] withdraws what a scope no longer lists.

use std::time::Duration;

use ipnet::IpNet;

use super::{
    BlockMap, Engine, EngineError,
    events::{Applied, BlockRequest, Lift, Replacement, Scope, SourceEvent},
    reasons::Reasons,
    room::Room,
};
use crate::decision::{Action, Decision, End, Ended, Holder, Origin, Recidive, now_unix_ms};

/// How many decisions of one proposal are logged one by one (the rest as a sum).
const LOGGED: usize = 10;

impl Engine {
    /// Why `d` may not be enacted, if it may not: one rule set for every origin.
    fn refusal(&self, d: &Decision) -> Option<EngineError> {
        let prefix = d.prefix;
        if prefix.prefix_len() == 0 {
            return Some(EngineError::Everything {
                op: "block",
                prefix,
            });
        }
        if d.action == Action::Challenge
            && let Some(r) = d.rate
            && !r.is_valid()
        {
            return Some(EngineError::BadRate { prefix, rate: r });
        }
        self.allow
            .conflict(&prefix)
            .map(|(allow, origin)| EngineError::AllowlistConflict {
                prefix,
                allow,
                origin,
            })
    }

    /// Why a fleet peer's decision is refused: the peer holds its whole share of
    /// `decisions.max_decisions` already (`fleet.max_share`), so one host cannot fill the
    /// table for all.
    fn peer_refusal(
        &self,
        d: &Decision,
        new: &mut std::collections::HashMap<String, usize>,
    ) -> Option<EngineError> {
        if d.origin != Origin::Fleet || self.book.same_holder(d).is_some() {
            return None;
        }
        let host = d.peer()?;
        let share = self.cfg.fleet.as_ref().map_or(1.0, |f| f.max_share);
        let limit = ((self.cfg.decisions.max_decisions as f64) * share).max(1.0) as usize;
        let held = self.per_peer.get(host).copied().unwrap_or(0);
        let added = new.entry(host.to_owned()).or_default();
        if held + *added >= limit {
            return Some(EngineError::PeerFull {
                host: host.to_owned(),
                limit,
            });
        }
        *added += 1;
        None
    }

    /// Whether `extra` new holders still fit under `decisions.max_decisions`.
    fn room_for(&self, extra: usize) -> Result<(), EngineError> {
        let limit = self.cfg.decisions.max_decisions;
        if self.book.len() + extra > limit {
            return Err(EngineError::Full { limit });
        }
        Ok(())
    }

    /// Normalizes `d` (and bounds a remote one), or says why it may not be enacted: the
    /// refusal rules, a peer's share, and room in its map for a new prefix (`room` counts what
    /// this proposal adds).
    fn admissible(
        &mut self,
        d: &mut Decision,
        now: u64,
        room: &mut Room,
    ) -> Result<(), EngineError> {
        d.prefix = crate::net::unmap(d.prefix).trunc();
        if d.origin.is_remote() {
            *d = super::bounds::remote(&self.cfg.decisions, d.clone(), now)?;
        }
        if let Some(why) = self.refusal(d) {
            return Err(why);
        }
        if let Some(why) = self.peer_refusal(d, &mut room.per_peer) {
            return Err(why);
        }
        if !room.ample && !self.book.contains_prefix(&d.prefix) && room.prefixes.insert(d.prefix) {
            let map = BlockMap::of(&d.prefix);
            if !self.projection.has_room(map, room.per_map[map as usize]) {
                room.prefixes.remove(&d.prefix);
                self.projection.refused(map);
                return Err(EngineError::MapFull {
                    map: map.name(),
                    capacity: self.projection.capacity(map),
                    setting: map.setting(),
                });
            }
            room.per_map[map as usize] += 1;
        }
        Ok(())
    }

    /// Lengthens a repeat offender's TTL: a velocity or IPASIS block of a prefix that such a
    /// block held within `decisions.recidive_window` lasts `recidive_factor` times longer per
    /// earlier block, up to `decisions.max_ttl`.
    fn recidive(&self, d: &mut Decision) -> Result<(), EngineError> {
        let dc = &self.cfg.decisions;
        let (Some(base), true) = (d.ttl(), d.origin.is_recidive_tracked()) else {
            return Ok(());
        };
        if d.action != Action::Block || dc.recidive_factor <= 1 {
            return Ok(());
        }
        let since = d
            .created_unix_ms
            .saturating_sub(dc.recidive_window.as_millis() as u64);
        let earlier = self
            .store
            .history(Some(d.prefix), usize::MAX)?
            .iter()
            .filter(|e| {
                e.decision.origin.is_recidive_tracked()
                    && e.decision.action == Action::Block
                    && e.decision.created_unix_ms >= since
            })
            .count() as u32;
        if earlier == 0 {
            return Ok(());
        }
        let factor = u64::from(dc.recidive_factor).saturating_pow(earlier);
        let wanted = base.saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX));
        let ttl = wanted.min(dc.max_ttl).max(base);
        d.expires_unix_ms = Some(crate::decision::deadline_ms(d.created_unix_ms, ttl));
        d.recidive = Some(Box::new(Recidive {
            earlier,
            base_ttl_secs: base.as_secs(),
            factor: dc.recidive_factor,
            capped: wanted > dc.max_ttl,
        }));
        Ok(())
    }

    /// Enacts decisions, each under its own holder (replacing that holder's earlier one on the
    /// prefix), in one durable transaction. The rules, the same for every source:
    /// - the prefix is normalized (IPv4-mapped to IPv4, host bits cleared);
    /// - a /0 or a prefix overlapping the allowlist is refused: skipped, counted and logged;
    /// - new holders must fit under `decisions.max_decisions`, or nothing is enacted;
    /// - a repeat offender's block lasts longer (`decisions.recidive_*`);
    /// - a replacement in progress records what it keeps;
    /// - each decision is logged (renewals at debug), at most [`LOGGED`] a call, then a sum.
    ///
    /// Returns the decisions as enacted and what was refused.
    pub fn propose(&mut self, mut decisions: Vec<Decision>) -> Result<Proposed, EngineError> {
        let mut out = Proposed::default();
        // What the first LOGGED decisions renewed, for their log lines (only those are logged).
        let mut earlier = Vec::with_capacity(LOGGED);
        let mut fresh = 0;
        let mut room = Room::for_proposal(&decisions, &self.projection);
        let now = now_unix_ms();
        let mut failed = None;
        // Filtered and completed in place: what is enacted stays in the vector it came in, so
        // a bulk load of a million holds each decision once (a second vector doubled it).
        decisions.retain_mut(|d| {
            if failed.is_some() {
                return false;
            }
            if let Err(why) = self.admissible(d, now, &mut room) {
                self.refusals.count(d.origin, &why);
                out.refused.push((d.clone(), why));
                return false;
            }
            let renewal = self.book.same_holder(d);
            fresh += usize::from(renewal.is_none());
            if earlier.len() < LOGGED {
                earlier.push(renewal.cloned());
            }
            if let Err(e) = self.recidive(d) {
                failed = Some(e);
            }
            true
        });
        if let Some(e) = failed {
            return Err(e);
        }
        drop(room); // its tables (40 MB at a million prefixes) are not needed by the commit
        let enacted = decisions;
        self.room_for(fresh)?;
        for r in &mut self.replacing {
            r.kept.extend(
                enacted
                    .iter()
                    .filter(|d| r.scope.covers(d))
                    .map(|d| (d.prefix, d.holder())),
            );
        }
        // The book takes the decisions themselves (a copy would double the memory a bulk load
        // of a million needs): what is reported keeps the first few.
        out.enacted = enacted.len();
        out.first = enacted.iter().take(LOGGED).cloned().collect();
        let origins: std::collections::BTreeSet<&'static str> =
            enacted.iter().map(|d| d.origin.name()).collect();
        self.commit(enacted, Vec::new())?;
        for (d, why) in out.refused.iter().take(LOGGED) {
            tracing::info!(prefix = %d.prefix, holder = %d.holder(), "refused: {why}");
        }
        for (d, e) in out.first.iter().zip(&earlier) {
            log_decision(d, e.as_ref());
        }
        let total = out.enacted + out.refused.len();
        if total > LOGGED {
            tracing::info!(
                enacted = out.enacted,
                new = fresh,
                refused = out.refused.len(),
                origins = ?origins,
                logged = LOGGED,
                "decisions (the rest are in `ipwarden list`)"
            );
        }
        Ok(out)
    }

    /// [`Engine::propose`] for one decision: a refusal is the error.
    pub fn propose_one(&mut self, d: Decision) -> Result<Decision, EngineError> {
        let mut p = self.propose(vec![d])?;
        if let Some((_, why)) = p.refused.pop() {
            return Err(why);
        }
        Ok(p.first.pop().expect("one decision proposed, not refused"))
    }

    /// Withdraws `holder`'s decisions on exactly these prefixes (absent ones are skipped), in
    /// one durable transaction; the withdrawn decisions.
    pub fn withdraw(
        &mut self,
        holder: &Holder,
        prefixes: &[IpNet],
    ) -> Result<Vec<Decision>, EngineError> {
        let now = now_unix_ms();
        let ended: Vec<Ended> = prefixes
            .iter()
            .filter_map(|p| self.book.get(&p.trunc(), holder))
            .map(|d| Ended {
                decision: d.clone(),
                end: End::Lifted,
                ended_unix_ms: now,
            })
            .collect();
        let gone: Vec<Decision> = ended.iter().map(|e| e.decision.clone()).collect();
        self.commit(Vec::new(), ended)?;
        for d in gone.iter().take(LOGGED) {
            tracing::info!(prefix = %d.prefix, holder = %holder, action = d.action.name(), "decision lifted");
        }
        if gone.len() > LOGGED {
            tracing::info!(withdrawn = gone.len(), %holder, logged = LOGGED, "decisions lifted");
        }
        Ok(gone)
    }

    /// Lifts every decision inside `range` (equal or narrower) and of `origin` (and `source`,
    /// when given), whatever else holds it, in one durable transaction; how many.
    pub fn lift_where(
        &mut self,
        range: Option<IpNet>,
        origin: Option<Origin>,
        source: Option<&str>,
    ) -> Result<usize, EngineError> {
        let now = now_unix_ms();
        let range = range.map(|r| crate::net::unmap(r).trunc());
        let ended: Vec<Ended> = self
            .book
            .iter()
            .filter(|d| range.is_none_or(|r| r.contains(&d.prefix)))
            .filter(|d| origin.is_none_or(|o| d.origin == o))
            .filter(|d| source.is_none_or(|s| d.source.as_deref() == Some(s)))
            .map(|d| Ended {
                decision: d.clone(),
                end: End::Lifted,
                ended_unix_ms: now,
            })
            .collect();
        let n = ended.len();
        self.commit(Vec::new(), ended)?;
        tracing::info!(
            lifted = n,
            range = ?range,
            origin = ?origin.map(Origin::name),
            source,
            "decisions lifted in bulk"
        );
        Ok(n)
    }

    /// Withdraws every decision of `scope` whose (prefix, holder) `keep` does not hold; how
    /// many.
    fn withdraw_stale(
        &mut self,
        scope: &Scope,
        keep: impl Fn(&IpNet, &Holder) -> bool,
    ) -> Result<usize, EngineError> {
        let mut stale: std::collections::BTreeMap<Holder, Vec<IpNet>> = Default::default();
        for d in self.book.iter().filter(|d| scope.covers(d)) {
            let holder = d.holder();
            if !keep(&d.prefix, &holder) {
                stale.entry(holder).or_default().push(d.prefix);
            }
        }
        let mut withdrawn = 0;
        for (holder, prefixes) in stale {
            withdrawn += self.withdraw(&holder, &prefixes)?.len();
        }
        Ok(withdrawn)
    }

    /// Makes `scope`'s decisions (one holder's, or one origin's across holders) equal to
    /// `decisions`: the rest of what it holds is withdrawn.
    pub fn replace(
        &mut self,
        scope: &Scope,
        decisions: Vec<Decision>,
    ) -> Result<Applied, EngineError> {
        let wanted: std::collections::HashSet<(IpNet, Holder)> = decisions
            .iter()
            .map(|d| (crate::net::unmap(d.prefix).trunc(), d.holder()))
            .collect();
        let withdrawn = self.withdraw_stale(scope, |p, h| wanted.contains(&(*p, h.clone())))?;
        let mut applied = self.propose(decisions)?.counts();
        applied.withdrawn = withdrawn;
        Ok(applied)
    }

    /// Applies what a source sent.
    pub fn apply(&mut self, event: SourceEvent) -> Result<Applied, EngineError> {
        match event {
            SourceEvent::Propose(ds) => {
                // A part of a replacement that fails aborts the replacement.
                let scopes: Vec<usize> = (0..self.replacing.len())
                    .filter(|i| ds.iter().any(|d| self.replacing[*i].scope.covers(d)))
                    .collect();
                match self.propose(ds) {
                    Ok(p) => Ok(p.counts()),
                    Err(e) => {
                        for i in scopes {
                            self.replacing[i].failed = Some(e.to_string());
                        }
                        Err(e)
                    }
                }
            }
            SourceEvent::Withdraw { holder, prefixes } => Ok(Applied {
                withdrawn: self.withdraw(&holder, &prefixes)?.len(),
                ..Applied::default()
            }),
            SourceEvent::Replace { holder, decisions } => {
                self.replace(&Scope::Holder(holder), decisions)
            }
            SourceEvent::ReplaceOrigin { origin, decisions } => {
                self.replace(&Scope::Origin(origin), decisions)
            }
            SourceEvent::Checkpoint { key, value } => {
                if let Some(why) = self.checkpoint_held.take() {
                    self.warn(format!(
                        "{key} stays at its last checkpoint: a replacement before it failed ({why}); a restart reads again from there"
                    ));
                    return Ok(Applied::default());
                }
                self.store.set_checkpoint(&key, value)?;
                Ok(Applied::default())
            }
            SourceEvent::ReplaceBegin { scope } => {
                self.replacing.retain(|r| r.scope != scope);
                self.replacing.push(Replacement {
                    scope,
                    kept: Default::default(),
                    failed: None,
                });
                Ok(Applied::default())
            }
            SourceEvent::ReplaceEnd { scope } => {
                let Some(at) = self.replacing.iter().position(|r| r.scope == scope) else {
                    return Ok(Applied::default());
                };
                let r = self.replacing.swap_remove(at);
                if let Some(why) = r.failed {
                    self.checkpoint_held = Some(why.clone());
                    return Err(EngineError::ReplacementAborted { why });
                }
                let withdrawn =
                    self.withdraw_stale(&r.scope, |p, h| r.kept.contains(&(*p, h.clone())))?;
                Ok(Applied {
                    withdrawn,
                    ..Applied::default()
                })
            }
            SourceEvent::Tags { .. } => Ok(Applied::default()),
        }
    }

    /// A decision source's stored checkpoint (see [`SourceEvent::Checkpoint`]).
    pub fn checkpoint(&self, key: &str) -> Result<Option<u64>, EngineError> {
        Ok(self.store.checkpoint(key)?)
    }

    /// Every source's stored checkpoint, by key.
    pub fn checkpoints(&self) -> Result<std::collections::BTreeMap<String, u64>, EngineError> {
        Ok(self.store.checkpoints()?)
    }

    /// An operator's `block`, held by `holder` (manual, or a named feed acting for a list the
    /// operator has).
    ///
    /// Blocking again never shortens the holder's existing block unless `req.replace`: the
    /// later expiry is kept, and the second value says so.
    pub fn block(
        &mut self,
        req: BlockRequest,
        holder: Holder,
    ) -> Result<(Decision, bool), EngineError> {
        if !matches!(holder.origin, Origin::Manual | Origin::Feed) {
            return Err(EngineError::NotOperatorOrigin {
                origin: holder.origin,
            });
        }
        let replace = req.replace;
        let mut d = self.operator_block(req, &holder, now_unix_ms(), &mut Reasons::default());
        let mut kept_longer = false;
        if !replace
            && let Some(old) = self.book.get(&d.prefix.trunc(), &holder)
            && old.action == d.action
        {
            let later = match (old.expires_unix_ms, d.expires_unix_ms) {
                (None, Some(_)) => true,
                (Some(o), Some(n)) => o > n,
                _ => false,
            };
            if later {
                d.expires_unix_ms = old.expires_unix_ms;
                kept_longer = true;
            }
        }
        self.propose_one(d).map(|d| (d, kept_longer))
    }

    /// The decision an operator's block request makes: the default TTL unless given or
    /// permanent, a reason naming the origin unless given (from `reasons`, shared by a batch).
    fn operator_block(
        &self,
        req: BlockRequest,
        holder: &Holder,
        now_ms: u64,
        reasons: &mut Reasons,
    ) -> Decision {
        let ttl = if req.permanent {
            None
        } else {
            Some(req.ttl.unwrap_or(self.cfg.decisions.default_ttl))
        };
        let what = if req.challenge.is_some() {
            "challenge"
        } else {
            "block"
        };
        let reason = reasons.get(req.reason, holder, what);
        match req.challenge {
            Some(rate) => Decision::new(
                req.prefix,
                Action::Challenge,
                holder.clone(),
                reason,
                now_ms,
                ttl,
            )
            .with_rate(rate),
            None => Decision::block(req.prefix, holder.clone(), reason, now_ms, ttl),
        }
    }

    /// Many operator blocks at once (a bulk load): one durable transaction, then the planes.
    /// Returns (enacted, refused).
    pub fn bulk_block(
        &mut self,
        requests: Vec<BlockRequest>,
        holder: Holder,
    ) -> Result<(usize, usize), EngineError> {
        let now = now_unix_ms();
        let mut reasons = Reasons::default();
        // Sized at once: collected from the shedding iterator, it grew by doubling.
        let mut batch = Vec::with_capacity(requests.len());
        batch.extend(
            super::shed::shed(requests)
                .map(|req| self.operator_block(req, &holder, now, &mut reasons)),
        );
        let applied = self.propose(batch)?.counts();
        Ok((applied.enacted, applied.refused))
    }

    /// An operator's `unblock`: lifts `what` on exactly `prefix`; returns what was lifted and
    /// what still holds the prefix.
    pub fn unblock(
        &mut self,
        prefix: IpNet,
        what: Lift,
    ) -> Result<(Vec<Decision>, Vec<Decision>), EngineError> {
        let prefix = prefix.trunc();
        let holders: Vec<Holder> = self
            .book
            .holders(&prefix)
            .iter()
            .map(Decision::holder)
            .collect();
        if holders.is_empty() {
            return Err(EngineError::NotBlocked { prefix });
        }
        let lifted = match &what {
            Lift::Holder(h) if !holders.contains(h) => {
                return Err(EngineError::NotHeld {
                    prefix,
                    holder: h.clone(),
                    held_by: holders
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Lift::Holder(h) => self.withdraw(h, &[prefix])?,
            Lift::All => {
                let mut all = Vec::new();
                for h in &holders {
                    all.extend(self.withdraw(h, &[prefix])?);
                }
                tracing::warn!(%prefix, holders = all.len(), "every origin's decision lifted by the operator");
                all
            }
        };
        let still = self.book.holders(&prefix).to_vec();
        Ok((lifted, still))
    }
}

/// What a proposal did: how many decisions were enacted, the first few as enacted (a repeat
/// offender's TTL lengthened; the rest are in the book), and the refused ones with why.
#[derive(Debug, Default)]
pub struct Proposed {
    pub enacted: usize,
    pub first: Vec<Decision>,
    pub refused: Vec<(Decision, EngineError)>,
}

impl Proposed {
    /// The counts.
    pub fn counts(&self) -> Applied {
        Applied {
            enacted: self.enacted,
            refused: self.refused.len(),
            withdrawn: 0,
        }
    }
}

/// Logs a decision once: a renewal with the same action and reason is not news.
fn log_decision(d: &Decision, earlier: Option<&Decision>) {
    if earlier.is_some_and(|e| e.action == d.action && e.reason == d.reason) {
        tracing::debug!(prefix = %d.prefix, holder = %d.holder(), "decision renewed");
        return;
    }
    let ttl = d
        .remaining(now_unix_ms())
        .map(|t| humantime::format_duration(Duration::from_secs(t.as_secs())).to_string())
        .unwrap_or_else(|| "permanent".into());
    let recidive = d.recidive.as_ref().map_or(0, |r| r.earlier);
    tracing::info!(
        prefix = %d.prefix,
        origin = d.origin.name(),
        source = d.source.as_deref().unwrap_or(""),
        reason = %d.reason,
        ttl,
        recidive,
        "decision: {}",
        d.action.name()
    );
}
