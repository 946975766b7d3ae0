//! Decisions held per fleet peer, for each peer's share of the decision limit.

use std::collections::HashMap;

/// Counts `by` more (or fewer) decisions of `host`, a fleet decision's peer (`None` for any
/// other origin: nothing to count). A peer at zero leaves the map.
pub(super) fn count_peer(per_peer: &mut HashMap<String, usize>, host: Option<&str>, by: isize) {
    let Some(host) = host else {
        return;
    };
    let n = per_peer.entry(host.to_owned()).or_default();
    *n = n.saturating_add_signed(by);
    if *n == 0 {
        per_peer.remove(host);
    }
}
