//! What a proposal adds, counted against the limits it must fit.

use ipnet::IpNet;

use super::projection::{BlockMap, Projection};
use crate::decision::Decision;

/// What one proposal adds, for its limits: new prefixes (each needs a kernel entry), per map,
/// and new holders per fleet peer.
#[derive(Default)]
pub(super) struct Room {
    /// Every map could take the whole proposal as new prefixes, so none can refuse one and
    /// the new ones need not be collected (a million-prefix set cost a bulk load 0.1 s).
    pub(super) ample: bool,
    pub(super) prefixes: foldhash::HashSet<IpNet>,
    pub(super) per_map: [usize; 4],
    pub(super) per_peer: std::collections::HashMap<String, usize>,
}

impl Room {
    /// The room for `decisions`: ample when, per map, their count (which bounds the new
    /// prefixes they can add: duplicates and prefixes already held count too) fits.
    pub(super) fn for_proposal(decisions: &[Decision], projection: &Projection) -> Self {
        let mut count = [0usize; 4];
        for d in decisions {
            count[BlockMap::of(&crate::net::unmap(d.prefix)) as usize] += 1;
        }
        let ample = BlockMap::ALL
            .into_iter()
            .all(|m| projection.has_room(m, count[m as usize]));
        Self {
            ample,
            ..Self::default()
        }
    }
}
