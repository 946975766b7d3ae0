//! Hits per decision: what the data plane dropped from each source (sampled, see
//! `ipwarden_common::stats::hit_sampled`), credited to the decision the kernel enforces on that
//! source now.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::Engine;
use crate::decision::Action;

impl Engine {
    /// Sums `hits` (estimated dropped packets per source: an IPv4 /32 or an IPv6 /64) by the
    /// decision the kernel enforces on each source: the longest enforced prefix covering it,
    /// as the kernel's own lookup finds it. A source whose enforced decision is no longer a
    /// block or a challenge (lifted, passed, allowlisted) credits nothing: its drops belong to
    /// a decision that has ended.
    ///
    /// One map lookup per prefix length (at most 33 or 65 per source), never a scan of the book.
    pub fn hits_by_decision(
        &self,
        hits: impl IntoIterator<Item = (IpNet, u64)>,
    ) -> BTreeMap<IpNet, u64> {
        let allowed: Vec<IpNet> = self.allowlist().entries().into_keys().collect();
        let mut out = BTreeMap::new();
        for (source, packets) in hits {
            if packets == 0 || allowed.iter().any(|a| a.contains(&source.addr())) {
                continue;
            }
            let enforced = (0..=source.prefix_len()).rev().find_map(|len| {
                let prefix = IpNet::new(source.addr(), len).ok()?.trunc();
                let d = self.book().effective(&prefix)?;
                self.not_enforced(&prefix).is_none().then_some(d)
            });
            if let Some(d) = enforced
                && matches!(d.action, Action::Block | Action::Challenge)
            {
                *out.entry(d.prefix).or_default() += packets;
            }
        }
        out
    }
}
