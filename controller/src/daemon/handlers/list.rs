//! `list` (a page of decisions) and `history`.

use ipnet::IpNet;

use super::reply::engine_error;
use crate::daemon::state::State;
use crate::{decision::Origin, wire::Response};

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
    Response::Decisions {
        decisions: page.into_iter().cloned().collect(),
        next,
    }
}

pub fn history(state: &State, prefix: Option<IpNet>, limit: usize) -> Response {
    match state.engine.history(prefix, limit) {
        Ok(entries) => Response::History { entries },
        Err(e) => engine_error(&e),
    }
}
