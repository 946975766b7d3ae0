//! Admission into the per-source LRU maps (see `ipwarden_common::admit`): a flush of a source
//! with no entry goes into this CPU's sketch, and creates the entry only once the source's
//! estimate reaches the level, its chunk was loud, or its network is flagged.

use ipwarden_common::{
    Pending, SrcStats,
    admit::{self, ADMITTED, HELD, Place, flagged},
};

use crate::maps::{ADMIT_CELLS, ADMIT_LEVEL, ADMIT_SKETCH, ADMIT_STATS};

/// The level in force: packets per CPU and epoch, 0 when admission is off.
#[inline(always)]
fn level() -> u32 {
    ADMIT_LEVEL.get(0).map_or(0, |l| l.packets)
}

/// A chunk's counts as they are, for when admission is off.
#[inline(always)]
fn plain(p: &Pending, first_seen_ns: u64) -> SrcStats {
    SrcStats {
        packets: p.packets,
        bytes: p.bytes,
        syn: p.syn,
        first_seen_ns,
    }
}

/// Adds the chunk to this CPU's sketch; the counts an entry starts from, given the estimate.
#[inline(always)]
fn sketched(place: &Place, p: &Pending, first_seen_ns: u64, now: u64) -> Option<(u32, SrcStats)> {
    let line = ADMIT_SKETCH.get_ptr_mut(place.line)?;
    let packets = if p.packets > u32::MAX as u64 {
        u32::MAX
    } else {
        p.packets as u32
    };
    // SAFETY: a per-CPU array slot is only written by this CPU, and XDP does not nest.
    let estimate = unsafe { (*line).add(admit::epoch(now), place, packets) };
    let seed = admit::seed(p, estimate as u64, first_seen_ns, admit::epoch_start(now));
    Some((estimate, seed))
}

/// A flush of a source with no entry at kernel time `now_ns`: the counts to create its entry
/// with when it is admitted, `None` when the sketch holds it.
#[inline(always)]
pub fn untracked(
    place: &Place,
    p: &Pending,
    first_seen_ns: u64,
    loud: bool,
    cells: [u32; 2],
    now_ns: u64,
) -> Option<SrcStats> {
    let level = level();
    if level == 0 {
        return Some(plain(p, first_seen_ns));
    }
    let Some((estimate, seed)) = sketched(place, p, first_seen_ns, now_ns) else {
        return Some(plain(p, first_seen_ns));
    };
    if estimate < level && !loud && !cells_flagged(cells) {
        bump(HELD);
        return None;
    }
    bump(ADMITTED);
    Some(seed)
}

/// This CPU's first flush of a source another CPU admitted: its share starts from this CPU's
/// estimate, which holds what the sketch took of it before.
#[inline(always)]
pub fn joined(place: &Place, p: &Pending, first_seen_ns: u64, now_ns: u64) -> SrcStats {
    if level() == 0 {
        return plain(p, first_seen_ns);
    }
    sketched(place, p, first_seen_ns, now_ns).map_or_else(|| plain(p, first_seen_ns), |(_, s)| s)
}

/// Whether user space flagged either of the source's aggregate cells.
#[inline(always)]
fn cells_flagged(cells: [u32; 2]) -> bool {
    for c in cells {
        if ADMIT_CELLS.get(c / 64).is_some_and(|w| flagged(*w, c)) {
            return true;
        }
    }
    false
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(c) = ADMIT_STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU array slot is only written by this CPU, and XDP does not nest.
        unsafe { *c += 1 };
    }
}
