//! Admission (see `ipwarden_common::admit`): the level user space sets, the aggregate cells whose
//! members it admits, what the program admitted and held, and a source's sketch estimate.

use ipnet::IpNet;
use ipwarden_common::{
    admit::{ADMIT_CELL_WORDS, ADMITTED, AdmitLevel, HELD, epoch, place_v4, place_v6},
    names,
};

use super::{Dataplane, DataplaneError};

/// Flushes the program admitted into the per-source maps and held in its sketch, summed over
/// CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AdmitCounts {
    pub admitted: u64,
    pub held: u64,
}

impl Dataplane {
    /// Whether the program has admission (a build before it tracks every source).
    pub fn has_admission(&self) -> bool {
        self.admit.is_some()
    }

    /// Sets the level, and the aggregate cells whose members are admitted whatever their
    /// estimate (a bitmap of `ADMIT_CELL_WORDS` words; shorter means the rest are clear). Only
    /// words that changed since the last call are written. Without the maps, nothing is done.
    pub fn set_admission(
        &mut self,
        level: AdmitLevel,
        flags: &[u64],
    ) -> Result<(), DataplaneError> {
        let Some(a) = &mut self.admit else {
            return Ok(());
        };
        a.level
            .set(0, level, 0)
            .map_err(|e| DataplaneError::map("writing", names::ADMIT_LEVEL, e))?;
        let fresh = a.written.is_empty();
        a.written.resize(ADMIT_CELL_WORDS as usize, 0);
        for i in 0..ADMIT_CELL_WORDS as usize {
            let w = flags.get(i).copied().unwrap_or(0);
            if fresh || a.written[i] != w {
                a.cells
                    .set(i as u32, w, 0)
                    .map_err(|e| DataplaneError::map("writing", names::ADMIT_CELLS, e))?;
                a.written[i] = w;
            }
        }
        Ok(())
    }

    /// The level in force (off when the map is missing).
    pub fn admit_level(&self) -> Result<AdmitLevel, DataplaneError> {
        let Some(a) = &self.admit else {
            return Ok(AdmitLevel::default());
        };
        a.level
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::ADMIT_LEVEL, e))
    }

    /// Flushes admitted and held so far; `None` for pins of a build before admission.
    pub fn admit_counts(&self) -> Result<Option<AdmitCounts>, DataplaneError> {
        let Some(a) = &self.admit else {
            return Ok(None);
        };
        let sum = |slot: u32| -> Result<u64, DataplaneError> {
            Ok(a.stats
                .get(&slot, 0)
                .map_err(|e| DataplaneError::map("reading", names::ADMIT_STATS, e))?
                .iter()
                .sum())
        };
        Ok(Some(AdmitCounts {
            admitted: sum(ADMITTED)?,
            held: sum(HELD)?,
        }))
    }

    /// The sketch's estimate of `source`'s packets (an IPv4 /32 or IPv6 /64) in the epoch of
    /// kernel time `now_ns`, summed over CPUs: at least what it sent in that epoch and was not
    /// admitted with. `None` without the maps or for a source of another length.
    pub fn admit_estimate(
        &self,
        source: &IpNet,
        now_ns: u64,
    ) -> Result<Option<u64>, DataplaneError> {
        let Some(a) = &self.admit else {
            return Ok(None);
        };
        let place = match source {
            IpNet::V4(n) if n.prefix_len() == 32 => place_v4(&n.addr().octets()),
            IpNet::V6(n) if n.prefix_len() == 64 => place_v6(&crate::net::v6_prefix_key(n)),
            _ => return Ok(None),
        };
        let lines = a
            .sketch
            .get(&place.line, 0)
            .map_err(|e| DataplaneError::map("reading", names::ADMIT_SKETCH, e))?;
        let e = epoch(now_ns);
        Ok(Some(
            lines.iter().map(|l| u64::from(l.estimate(e, &place))).sum(),
        ))
    }
}
