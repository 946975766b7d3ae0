//! What the program admits into its per-source tables (see `ipwarden_common::admit`): the level,
//! from the lowest per-source threshold, and the aggregate cells whose members are admitted
//! whatever their own rate, because their network is loud enough to be judged as a whole and
//! aggregate detection needs to see its members. Pure logic: no kernel, no I/O.

use ipwarden_common::{
    AggCell,
    admit::{ADMIT_CELL_WORDS, AdmitLevel},
    aggregate::{AGG_CELLS, Level},
};

use crate::config::DetectionConfig;

/// The level for `cfg` on `cpus` CPUs: `detection.admission` of the lowest per-source threshold
/// that acts on counts (packets, SYNs, the hard limit).
pub fn level(cfg: &DetectionConfig, cpus: u32) -> AdmitLevel {
    let lowest = [cfg.pps_threshold, cfg.syn_pps_threshold, cfg.hard_pps_limit]
        .into_iter()
        .filter(|&r| r > 0)
        .min()
        .unwrap_or(0);
    AdmitLevel::per_cpu(lowest, cfg.admission, cpus)
}

/// The cells flagged at the last poll, and the cells' totals then.
#[derive(Debug, Default)]
pub struct CellFlags {
    last: Option<(u64, Vec<AggCell>)>,
    flags: Vec<u64>,
}

impl CellFlags {
    /// Takes this poll's cells (summed over CPUs and attachments) at kernel time `now_ns` and
    /// returns the bitmap of cells of `levels` whose rate since the last poll reached `pps`
    /// packets or `syn_pps` SYNs a second. A flagged cell stays flagged while it runs at half
    /// that, so that members are not dropped and readmitted around the line.
    pub fn update(
        &mut self,
        now_ns: u64,
        cells: &[AggCell],
        levels: &[Level],
        pps: f64,
        syn_pps: f64,
    ) -> &[u64] {
        let mut flags = vec![0u64; ADMIT_CELL_WORDS as usize];
        if pps <= 0.0 || syn_pps <= 0.0 {
            // Admission off: nothing to flag.
            self.clear();
            return &self.flags;
        }
        if let Some((then, before)) = &self.last
            && now_ns > *then
            && before.len() == cells.len()
        {
            let secs = (now_ns - then) as f64 / 1e9;
            for level in levels {
                let start = *level as usize * AGG_CELLS as usize;
                let end = (start + AGG_CELLS as usize).min(cells.len());
                for i in start..end {
                    let (b, c) = (before[i], cells[i]);
                    let rate = c.packets.saturating_sub(b.packets) as f64 / secs;
                    let syn_rate = c.syn.saturating_sub(b.syn) as f64 / secs;
                    let (w, bit) = (i / 64, 1u64 << (i % 64));
                    let was = self.flags.get(w).is_some_and(|f| f & bit != 0);
                    let k = if was { 0.5 } else { 1.0 };
                    if rate >= pps * k || syn_rate >= syn_pps * k {
                        flags[w] |= bit;
                    }
                }
            }
        }
        self.last = Some((now_ns, cells.to_vec()));
        self.flags = flags;
        &self.flags
    }

    /// The bitmap of the last update (empty before the first).
    pub fn flags(&self) -> &[u64] {
        &self.flags
    }

    /// How many cells are flagged.
    pub fn count(&self) -> u32 {
        self.flags.iter().map(|w| w.count_ones()).sum()
    }

    /// Forgets everything (aggregates turned off).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use ipwarden_common::aggregate::{AGG_TOTAL, cells_v6};

    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_level_follows_the_lowest_threshold() {
        let cfg = DetectionConfig {
            admission: 0.5,
            ..DetectionConfig::default()
        };
        // syn_pps_threshold 200 is the lowest: 200 × 0.5 × 1.074 / 2.
        assert_eq!(level(&cfg, 2).packets, 53);
        let off = DetectionConfig {
            admission: 0.0,
            ..cfg
        };
        assert!(!level(&off, 2).on());
    }

    #[test]
    fn a_loud_cell_of_a_judged_level_is_flagged_and_keeps_its_flag_at_half() {
        let mut f = CellFlags::default();
        let mut cells = vec![AggCell::default(); AGG_TOTAL as usize];
        let [c48, c32] = cells_v6(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0]);
        let levels = [Level::V6Slash48];
        assert!(
            f.update(0, &cells, &levels, 1000.0, 100.0)
                .iter()
                .all(|w| *w == 0)
        );
        cells[c48 as usize].packets += 1500;
        cells[c32 as usize].packets += 1500;
        let flags = f.update(S, &cells, &levels, 1000.0, 100.0).to_vec();
        let on = |flags: &[u64], c: u32| flags[c as usize / 64] & (1 << (c % 64)) != 0;
        assert!(on(&flags, c48), "1 500 pps over 1 000");
        assert!(!on(&flags, c32), "the /32 level is not judged");
        assert_eq!(f.count(), 1);
        cells[c48 as usize].packets += 600;
        assert!(
            on(f.update(2 * S, &cells, &levels, 1000.0, 100.0), c48),
            "600 ≥ half"
        );
        cells[c48 as usize].packets += 400;
        assert!(
            !on(f.update(3 * S, &cells, &levels, 1000.0, 100.0), c48),
            "400 < half"
        );
        cells[c48 as usize].syn += 150;
        assert!(
            on(f.update(4 * S, &cells, &levels, 1000.0, 100.0), c48),
            "SYNs alone"
        );
    }
}
