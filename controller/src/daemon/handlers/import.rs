//! `import`: many decisions in one durable transaction.

use std::time::Duration;

use super::reply::engine_error;
use crate::daemon::state::State;
use crate::{
    decision::{Action, ChallengeRate, Decision, Holder, Origin, Text, now_unix_ms},
    engine::EngineError,
    wire::{ImportEntry, Response},
};

pub fn import(
    state: &mut State,
    entries: Vec<ImportEntry>,
    holder: Holder,
    ttl_secs: Option<u64>,
) -> Response {
    if !matches!(holder.origin, Origin::Manual | Origin::Feed) {
        return engine_error(&EngineError::NotOperatorOrigin {
            origin: holder.origin,
        });
    }
    if holder.origin == Origin::Feed && holder.source.is_none() {
        // A nameless feed holder could be lifted only with every other feed's decisions.
        return super::reply::error(
            crate::wire::ErrorKind::Invalid,
            "a feed import needs the feed's name (--name NAME): its decisions are lifted by that name",
        );
    }
    let cfg = state.engine.config();
    let now = now_unix_ms();
    let default_ttl = ttl_secs
        .map(Duration::from_secs)
        .unwrap_or(cfg.decisions.default_ttl);
    let rate = ChallengeRate {
        pps: cfg.scoring.challenge_pps,
        burst: cfg.scoring.challenge_burst,
    };
    // One reason shared by the entries that give none (each its own: 40 MB at a million).
    let imported: Text = format!("imported ({holder})").into();
    // An import is a remote source whatever origin it names: bounded in width as feeds are.
    let (mut decisions, mut too_wide) = (Vec::with_capacity(entries.len()), Vec::new());
    for e in crate::engine::shed(entries) {
        let d = decision(e, &holder, &imported, now, default_ttl, rate);
        let width = crate::engine::bounds::remote(&cfg.decisions, d.clone(), now);
        match width {
            // The width, whatever the origin (a manual import's TTL stays the operator's).
            Ok(_) => decisions.push(d),
            Err(why) => too_wide.push((d, why)),
        }
    }
    match state.engine.propose(decisions) {
        Ok(mut p) => {
            p.refused.extend(too_wide);
            let a = p.counts();
            Response::Imported {
                enacted: a.enacted,
                refused: a.refused,
                reasons: reasons(&p.refused),
                refused_prefixes: p
                    .refused
                    .iter()
                    .take(NAMED)
                    .map(|(d, _)| d.prefix)
                    .collect(),
            }
        }
        Err(e) => engine_error(&e),
    }
}

/// How many entries one answer names one by one.
const NAMED: usize = 20;

/// Why entries were refused: a full map once with its count, other refusals one by one (at
/// most [`NAMED`], then a count).
fn reasons(refused: &[(Decision, EngineError)]) -> Vec<String> {
    let mut full: std::collections::BTreeMap<String, usize> = Default::default();
    let mut named = Vec::new();
    let mut more = 0;
    for (_, e) in refused {
        if matches!(e, EngineError::MapFull { .. }) {
            *full.entry(e.to_string()).or_default() += 1;
        } else if named.len() < NAMED {
            named.push(e.to_string());
        } else {
            more += 1;
        }
    }
    let mut out: Vec<String> = full
        .into_iter()
        .map(|(why, n)| format!("{n} refused: {why}"))
        .collect();
    out.extend(named);
    if more > 0 {
        out.push(format!("… and {more} more refused"));
    }
    out
}

/// The decision an imported entry becomes under `holder`.
fn decision(
    e: ImportEntry,
    holder: &Holder,
    imported: &Text,
    now_ms: u64,
    default_ttl: Duration,
    rate: ChallengeRate,
) -> Decision {
    let ttl = e.ttl_secs.map_or(default_ttl, Duration::from_secs);
    let reason = e.reason.map_or_else(|| imported.clone(), Text::from);
    Decision::new(
        e.prefix,
        e.action.unwrap_or(Action::Block),
        holder.clone(),
        reason,
        now_ms,
        Some(ttl),
    )
    .with_rate(rate)
}
