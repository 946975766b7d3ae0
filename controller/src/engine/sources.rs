//! The interface every decision source uses: it proposes and withdraws decisions under its own
//! holder (origin and source name), and the engine checks the allowlist and the limit, stores,
//! projects and logs, once. Manual blocks, velocity and IPASIS use it today; feeds, CrowdSec
//! and the fleet send [`SourceEvent`]s that the daemon hands to [`Engine::apply`].

use std::time::Duration;

use ipnet::IpNet;

use super::{Engine, EngineError};
use crate::decision::{Action, Decision, End, Ended, Holder, Origin, Recidive, now_unix_ms};

/// What a decision source asks of the engine.
#[derive(Clone, Debug)]
pub enum SourceEvent {
    /// Add or renew decisions, each under its own holder.
    Propose(Vec<Decision>),
    /// Withdraw a holder's decisions on exactly these prefixes.
    Withdraw {
        holder: Holder,
        prefixes: Vec<IpNet>,
    },
    /// The holder's whole set: what it held and is not in `decisions` is withdrawn.
    Replace {
        holder: Holder,
        decisions: Vec<Decision>,
    },
    /// Every holder of `origin` at once (a fleet's bucket read afresh): what they held and is
    /// not in `decisions` is withdrawn.
    ReplaceOrigin {
        origin: Origin,
        decisions: Vec<Decision>,
    },
    /// How far a source got (a bucket revision): stored once the events before it are applied,
    /// so that a restart resumes after it.
    Checkpoint {
        key: String,
        value: u64,
    },
    /// The start of a replacement sent in parts (see [`SourceEvent::chunked`]): decisions of
    /// `scope` proposed until the matching `ReplaceEnd` are kept, the others then withdrawn.
    ReplaceBegin {
        scope: Scope,
    },
    ReplaceEnd {
        scope: Scope,
    },
    /// A feed's tagged prefixes (replacing its earlier set): the scorer uses the tag.
    Tags {
        feed: String,
        tag: crate::config::Tag,
        prefixes: Vec<IpNet>,
    },
}

/// Whose decisions a replacement covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Origin(Origin),
    Holder(Holder),
}

impl Scope {
    fn covers(&self, d: &Decision) -> bool {
        match self {
            Self::Origin(o) => d.origin == *o,
            Self::Holder(h) => d.held_by(h),
        }
    }
}

/// Decisions per part when a large event is applied in parts.
pub const CHUNK: usize = 5_000;

impl SourceEvent {
    /// The event as parts of at most `size` decisions, each applied on its own (one durable
    /// transaction each), so that a 100 000-decision set never holds the engine for long: polls
    /// and control requests run between the parts. A replacement becomes `ReplaceBegin`, the
    /// proposals, `ReplaceEnd`.
    pub fn chunked(self, size: usize) -> Vec<SourceEvent> {
        let size = size.max(1);
        let parts = |ds: Vec<Decision>| {
            let mut out = Vec::new();
            let mut it = ds.into_iter().peekable();
            while it.peek().is_some() {
                out.push(SourceEvent::Propose(it.by_ref().take(size).collect()));
            }
            out
        };
        match self {
            SourceEvent::Propose(ds) if ds.len() > size => parts(ds),
            SourceEvent::Replace { holder, decisions } if decisions.len() > size => {
                let scope = Scope::Holder(holder);
                let mut out = vec![SourceEvent::ReplaceBegin {
                    scope: scope.clone(),
                }];
                out.extend(parts(decisions));
                out.push(SourceEvent::ReplaceEnd { scope });
                out
            }
            SourceEvent::ReplaceOrigin { origin, decisions } if decisions.len() > size => {
                let scope = Scope::Origin(origin);
                let mut out = vec![SourceEvent::ReplaceBegin {
                    scope: scope.clone(),
                }];
                out.extend(parts(decisions));
                out.push(SourceEvent::ReplaceEnd { scope });
                out
            }
            other => vec![other],
        }
    }
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Decisions added or renewed.
    pub enacted: usize,
    /// Refused: over an allowlisted prefix, or a /0.
    pub refused: usize,
    /// Decisions withdrawn.
    pub withdrawn: usize,
}

/// A manual block request.
#[derive(Debug, Clone)]
pub struct BlockRequest {
    pub prefix: IpNet,
    pub ttl: Option<Duration>,
    pub permanent: bool,
    pub reason: Option<String>,
}

/// What `unblock` lifts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lift {
    /// One holder's decision.
    Holder(Holder),
    /// Every holder's (`unblock --all-origins`).
    All,
}

impl Engine {
    /// Why `prefix` may not be blocked, if it may not.
    fn refusal(&self, prefix: IpNet) -> Option<EngineError> {
        if prefix.prefix_len() == 0 {
            return Some(EngineError::Everything {
                op: "block",
                prefix,
            });
        }
        self.allow
            .conflict(&prefix)
            .map(|(allow, origin)| EngineError::AllowlistConflict {
                prefix,
                allow,
                origin,
            })
    }

    /// Whether `extra` new holders still fit under `decisions.max_decisions`.
    fn room_for(&self, extra: usize) -> Result<(), EngineError> {
        let limit = self.cfg.decisions.max_decisions;
        if self.book.len() + extra > limit {
            return Err(EngineError::Full { limit });
        }
        Ok(())
    }

    /// Lengthens a repeat offender's TTL: a velocity or IPASIS block of a prefix that such a
    /// block held within `decisions.recidive_window` lasts `recidive_factor` times longer per
    /// earlier block, up to `decisions.max_ttl`.
    fn with_recidive(&self, mut d: Decision) -> Result<Decision, EngineError> {
        let dc = &self.cfg.decisions;
        let (Some(base), true) = (d.ttl(), d.origin.is_recidive_tracked()) else {
            return Ok(d);
        };
        if d.action != Action::Block || dc.recidive_factor <= 1 {
            return Ok(d);
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
            return Ok(d);
        }
        let factor = u64::from(dc.recidive_factor).saturating_pow(earlier);
        let wanted = base.saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX));
        let ttl = wanted.min(dc.max_ttl).max(base);
        d.expires_unix_ms = Some(crate::decision::deadline_ms(d.created_unix_ms, ttl));
        d.recidive = Some(Recidive {
            earlier,
            base_ttl_secs: base.as_secs(),
            factor: dc.recidive_factor,
            capped: wanted > dc.max_ttl,
        });
        Ok(d)
    }

    /// Enacts one decision under its holder, replacing that holder's earlier one on the prefix;
    /// returns it as enacted (a repeat offender's TTL lengthened).
    pub fn propose(&mut self, d: Decision) -> Result<Decision, EngineError> {
        let mut d = d;
        d.prefix = crate::net::unmap(d.prefix).trunc();
        if let Some(refused) = self.refusal(d.prefix) {
            return Err(refused);
        }
        let renewal = self.book.get(&d.prefix, &d.holder()).cloned();
        if renewal.is_none() {
            self.room_for(1)?;
        }
        let d = self.with_recidive(d)?;
        self.commit(vec![d.clone()], Vec::new())?;
        log_decision(&d, renewal.as_ref());
        Ok(d)
    }

    /// Enacts what one poll decided (velocity blocks of many sources, heavy aggregates) in one
    /// durable transaction: a spread flood that makes 10 000 decisions in a poll costs one
    /// fsync under the engine lock, not 10 000. Refusals (allowlisted, protected) are skipped
    /// with their reason; recidive TTLs apply as for one decision. Returns how many were enacted.
    pub fn propose_all(&mut self, decisions: Vec<Decision>) -> Result<usize, EngineError> {
        if decisions.is_empty() {
            return Ok(0);
        }
        let mut batch = Vec::with_capacity(decisions.len());
        let mut earlier = Vec::with_capacity(decisions.len());
        let mut fresh = 0;
        for mut d in decisions {
            d.prefix = crate::net::unmap(d.prefix).trunc();
            if let Some(why) = self.refusal(d.prefix) {
                tracing::info!(prefix = %d.prefix, holder = %d.holder(), "refused: {why}");
                continue;
            }
            let renewal = self.book.get(&d.prefix, &d.holder()).cloned();
            fresh += usize::from(renewal.is_none());
            batch.push(self.with_recidive(d)?);
            earlier.push(renewal);
        }
        self.room_for(fresh)?;
        self.commit(batch.clone(), Vec::new())?;
        const LOGGED: usize = 100;
        for (d, e) in batch.iter().zip(&earlier).take(LOGGED) {
            log_decision(d, e.as_ref());
        }
        if batch.len() > LOGGED {
            tracing::info!(
                decisions = batch.len(),
                logged = LOGGED,
                "decisions of one poll enacted (the rest are in `ipwarden list`)"
            );
        }
        Ok(batch.len())
    }

    /// Enacts many decisions in one durable transaction (a feed, a CrowdSec startup set).
    /// Refusals are skipped and counted (and logged once, as a sum).
    pub fn propose_batch(&mut self, decisions: Vec<Decision>) -> Result<Applied, EngineError> {
        let mut applied = Applied::default();
        let mut batch = Vec::with_capacity(decisions.len());
        let mut fresh = 0;
        for mut d in decisions {
            d.prefix = crate::net::unmap(d.prefix).trunc();
            if let Some(why) = self.refusal(d.prefix) {
                applied.refused += 1;
                if applied.refused <= 10 {
                    tracing::info!(prefix = %d.prefix, holder = %d.holder(), "refused: {why}");
                }
                continue;
            }
            fresh += usize::from(self.book.get(&d.prefix, &d.holder()).is_none());
            batch.push(d);
        }
        self.room_for(fresh)?;
        applied.enacted = batch.len();
        for (scope, kept) in &mut self.replacing {
            kept.extend(
                batch
                    .iter()
                    .filter(|d| scope.covers(d))
                    .map(|d| (d.prefix, d.holder())),
            );
        }
        let origins: std::collections::BTreeSet<Origin> = batch.iter().map(|d| d.origin).collect();
        self.commit(batch, Vec::new())?;
        if applied.enacted + applied.refused > 0 {
            tracing::info!(
                enacted = applied.enacted,
                new = fresh,
                refused = applied.refused,
                origins = ?origins,
                "decisions"
            );
        }
        Ok(applied)
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
        for d in &gone {
            tracing::info!(prefix = %d.prefix, holder = %holder, action = d.action.name(), "decision lifted");
        }
        Ok(gone)
    }

    /// Makes `holder`'s decisions equal to `decisions`: the rest of what it holds is withdrawn.
    pub fn replace(
        &mut self,
        holder: &Holder,
        decisions: Vec<Decision>,
    ) -> Result<Applied, EngineError> {
        let wanted: std::collections::HashSet<IpNet> =
            decisions.iter().map(|d| d.prefix.trunc()).collect();
        let stale: Vec<IpNet> = self
            .book
            .iter()
            .filter(|d| d.held_by(holder) && !wanted.contains(&d.prefix))
            .map(|d| d.prefix)
            .collect();
        let withdrawn = self.withdraw(holder, &stale)?.len();
        let mut applied = self.propose_batch(decisions)?;
        applied.withdrawn = withdrawn;
        Ok(applied)
    }

    /// Applies what a source sent.
    pub fn apply(&mut self, event: SourceEvent) -> Result<Applied, EngineError> {
        match event {
            SourceEvent::Propose(ds) => self.propose_batch(ds),
            SourceEvent::Withdraw { holder, prefixes } => Ok(Applied {
                withdrawn: self.withdraw(&holder, &prefixes)?.len(),
                ..Applied::default()
            }),
            SourceEvent::Replace { holder, decisions } => self.replace(&holder, decisions),
            SourceEvent::ReplaceOrigin { origin, decisions } => {
                self.replace_origin(origin, decisions)
            }
            SourceEvent::Checkpoint { key, value } => {
                self.store.set_meta(&key, value)?;
                Ok(Applied::default())
            }
            SourceEvent::ReplaceBegin { scope } => {
                self.replacing.retain(|(s, _)| *s != scope);
                self.replacing.push((scope, Default::default()));
                Ok(Applied::default())
            }
            SourceEvent::ReplaceEnd { scope } => {
                let Some(at) = self.replacing.iter().position(|(s, _)| *s == scope) else {
                    return Ok(Applied::default());
                };
                let (scope, kept) = self.replacing.swap_remove(at);
                let mut stale: std::collections::BTreeMap<Holder, Vec<IpNet>> = Default::default();
                for d in self.book.iter().filter(|d| scope.covers(d)) {
                    if !kept.contains(&(d.prefix, d.holder())) {
                        stale.entry(d.holder()).or_default().push(d.prefix);
                    }
                }
                let mut withdrawn = 0;
                for (holder, prefixes) in stale {
                    withdrawn += self.withdraw(&holder, &prefixes)?.len();
                }
                Ok(Applied {
                    withdrawn,
                    ..Applied::default()
                })
            }
            SourceEvent::Tags {
                feed,
                tag,
                prefixes,
            } => {
                let n = prefixes.len();
                self.tags.set(feed, tag, prefixes);
                Ok(Applied {
                    enacted: n,
                    ..Applied::default()
                })
            }
        }
    }

    /// A decision source's stored checkpoint (see [`SourceEvent::Checkpoint`]).
    pub fn checkpoint(&self, key: &str) -> Result<Option<u64>, EngineError> {
        Ok(self.store.meta(key)?)
    }

    /// Makes `origin`'s decisions, all holders together, equal to `decisions`.
    pub fn replace_origin(
        &mut self,
        origin: Origin,
        decisions: Vec<Decision>,
    ) -> Result<Applied, EngineError> {
        let wanted: std::collections::HashSet<(IpNet, Holder)> = decisions
            .iter()
            .map(|d| (d.prefix.trunc(), d.holder()))
            .collect();
        let mut stale: std::collections::BTreeMap<Holder, Vec<IpNet>> = Default::default();
        for d in self.book.iter().filter(|d| d.origin == origin) {
            if !wanted.contains(&(d.prefix, d.holder())) {
                stale.entry(d.holder()).or_default().push(d.prefix);
            }
        }
        let mut withdrawn = 0;
        for (holder, prefixes) in stale {
            withdrawn += self.withdraw(&holder, &prefixes)?.len();
        }
        let mut applied = self.propose_batch(decisions)?;
        applied.withdrawn = withdrawn;
        Ok(applied)
    }

    /// An operator's `block`, held by `holder` (manual, or a named feed acting for a list the
    /// operator has).
    pub fn block(&mut self, req: BlockRequest, holder: Holder) -> Result<Decision, EngineError> {
        if !matches!(holder.origin, Origin::Manual | Origin::Feed) {
            return Err(EngineError::NotOperatorOrigin {
                origin: holder.origin,
            });
        }
        let d = self.operator_block(req, &holder, now_unix_ms());
        self.propose(d)
    }

    /// The decision an operator's block request makes: the default TTL unless given or
    /// permanent, a reason naming the origin unless given.
    fn operator_block(&self, req: BlockRequest, holder: &Holder, now_ms: u64) -> Decision {
        let ttl = if req.permanent {
            None
        } else {
            Some(req.ttl.unwrap_or(self.cfg.decisions.default_ttl))
        };
        let reason = req
            .reason
            .unwrap_or_else(|| format!("{} block", holder.origin));
        Decision::block(req.prefix, holder.clone(), reason, now_ms, ttl)
    }

    /// Many operator blocks at once (a bulk load): one durable transaction, then the planes.
    /// Returns (enacted, refused).
    pub fn bulk_block(
        &mut self,
        requests: Vec<BlockRequest>,
        holder: Holder,
    ) -> Result<(usize, usize), EngineError> {
        let now = now_unix_ms();
        let batch = requests
            .into_iter()
            .map(|req| self.operator_block(req, &holder, now))
            .collect();
        let applied = self.propose_batch(batch)?;
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
    let recidive = d.recidive.map(|r| r.earlier).unwrap_or(0);
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
