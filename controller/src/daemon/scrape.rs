//! What a metrics scrape reads: the same views `status` and `stats` answer with.

use super::{handlers, state::State};
use crate::metrics::Snapshot;

/// `None` when the counters cannot be read (the scrape then carries the build info only).
pub fn snapshot(state: &State) -> Option<Snapshot> {
    let stats = handlers::stats(state).ok()?;
    let decisions = state
        .engine
        .book()
        .count_by_origin_action()
        .into_iter()
        .map(|((o, a), n)| ((o.name().to_owned(), a.to_owned()), n))
        .collect();
    Some(Snapshot {
        status: handlers::status(state),
        stats,
        decisions,
    })
}
