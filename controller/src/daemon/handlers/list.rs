//! `list` (a page of decisions) and `history`.

use ipnet::IpNet;

use super::reply::engine_error;
use crate::daemon::state::State;
use crate::{
    decision::Origin,
    wire::{Hits, Response},
};

pub fn list(
    state: &State,
    origin: Option<Origin>,
    after: Option<IpNet>,
    limit: Option<usize>,
) -> Response {
    let (page, next) = state
        .engine
        .book()
        .page(after, limit.unwrap_or(usize::MAX), |d| {
            origin.is_none_or(|o| d.origin == o)
        });
    // The hit tables are read once per listing, on its first page.
    let hits = if after.is_none() {
        hits(state, |prefix| {
            origin.is_none_or(|o| {
                state
                    .engine
                    .book()
                    .effective(prefix)
                    .is_some_and(|d| d.origin == o)
            })
        })
    } else {
        Vec::new()
    };
    Response::Decisions {
        decisions: page.into_iter().cloned().collect(),
        next,
        hits,
    }
}

/// What each enforced decision dropped (of those `keep` keeps), from every plane's hit tables.
pub fn hits(state: &State, keep: impl Fn(&IpNet) -> bool) -> Vec<Hits> {
    state
        .engine
        .hits_by_decision(state.engine.planes().hits())
        .into_iter()
        .filter(|(prefix, _)| keep(prefix))
        .map(|(prefix, packets)| Hits { prefix, packets })
        .collect()
}

pub fn history(state: &State, prefix: Option<IpNet>, limit: usize) -> Response {
    match state.engine.history(prefix, limit) {
        Ok(entries) => Response::History { entries },
        Err(e) => engine_error(&e),
    }
}
