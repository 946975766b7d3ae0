//! Decisions refused, counted by origin and why: what `status` and `/metrics` show of what a
//! source could not place.

use std::collections::BTreeMap;

use super::EngineError;
use crate::decision::Origin;

/// Refusals since the daemon started.
#[derive(Debug, Default)]
pub struct Refusals(BTreeMap<(Origin, &'static str), u64>);

impl Refusals {
    /// Counts one.
    pub fn count(&mut self, origin: Origin, why: &EngineError) {
        *self.0.entry((origin, label(why))).or_default() += 1;
    }

    /// (origin, why, count), by origin then why.
    pub fn iter(&self) -> impl Iterator<Item = (Origin, &'static str, u64)> + '_ {
        self.0.iter().map(|((o, w), n)| (*o, *w, *n))
    }
}

/// A refusal's short name.
fn label(e: &EngineError) -> &'static str {
    match e {
        EngineError::AllowlistConflict { .. } => "allowlisted",
        EngineError::Everything { .. } => "everything",
        EngineError::TooWide { .. } => "too_wide",
        EngineError::BadRate { .. } => "bad_rate",
        EngineError::MapFull { .. } => "map_full",
        EngineError::PeerFull { .. } => "peer_share",
        _ => "other",
    }
}
