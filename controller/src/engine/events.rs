//! What decision sources send the engine, and what it answers.

use std::time::Duration;

use ipnet::IpNet;

use crate::decision::{Decision, Holder, Origin};

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
    pub fn covers(&self, d: &Decision) -> bool {
        match self {
            Self::Origin(o) => d.origin == *o,
            Self::Holder(h) => d.held_by(h),
        }
    }
}

/// A replacement sent in parts, in progress: what its parts kept, and why it failed if a
/// part did (then nothing is withdrawn at its end: a decision that failed to be placed is
/// still wanted).
#[derive(Debug)]
pub struct Replacement {
    pub scope: Scope,
    pub kept: std::collections::HashSet<(IpNet, Holder)>,
    pub failed: Option<String>,
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
    /// Set the TTL even when it shortens the holder's existing block.
    pub replace: bool,
    /// Challenge at this rate instead of blocking.
    pub challenge: Option<crate::decision::ChallengeRate>,
}

/// What `unblock` lifts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lift {
    /// One holder's decision.
    Holder(Holder),
    /// Every holder's (`unblock --all-origins`).
    All,
}
