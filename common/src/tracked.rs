//! Marks of the sources that may have an entry in the per-source maps (`SRC_V4`, `SRC_V6`).
//!
//! A flush of a source the maps do not hold used to begin with a lookup in a 262 144-entry LRU
//! hash: a hash computation and a chain walk, mostly cache misses, for every new source of a
//! sprayed flood, nearly all of which the sketch then holds (see [`crate::admit`]). Measured
//! with `perf` on a 1M-source unblocked spray, that lookup was about 30 % of the program's cost.
//!
//! The marks answer first: one byte per mark, [`MARKS`] of them in one shared mmapable array,
//! at a place derived from the source's sketch hash. The program sets a source's mark before it
//! creates the source's entry, and user space sets the marks of entries it finds at start. A
//! source whose mark is clear has no entry, so its flush goes straight to the sketch; a set mark
//! (its own, or another source's sharing the byte) means the lookup as before. Marks are never
//! cleared while the program runs with them: an entry the LRU evicted leaves its mark, which
//! costs a lookup and is never wrong.
//!
//! The program trusts the marks only while [`crate::DataplaneConfig::TRACKED_MARKED`] is set:
//! user space sets it once every entry has its mark (an upgrade from a build without marks
//! brings entries that have none) and withdraws it before it swaps a program in.
//!
//! Bytes, not bits: a byte store is atomic, so two CPUs marking neighbours lose neither mark,
//! where a read-modify-write of a shared word could.

/// log2 of the marks.
pub const MARK_BITS: u32 = 20;
/// Marks: 1 MiB of bytes.
pub const MARKS: u32 = 1 << MARK_BITS;
/// Marks per line of the `TRACKED` array.
pub const MARKS_PER_LINE: u32 = 64;
/// Lines of the `TRACKED` array.
pub const MARK_LINES: u32 = MARKS / MARKS_PER_LINE;

/// One line of marks: a value of the `TRACKED` array.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkLine {
    pub bytes: [u8; MARKS_PER_LINE as usize],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for MarkLine {}

impl Default for MarkLine {
    fn default() -> Self {
        Self {
            bytes: [0; MARKS_PER_LINE as usize],
        }
    }
}

const _: () = assert!(core::mem::size_of::<MarkLine>() == MARKS_PER_LINE as usize);

/// A mark's line and byte.
#[inline(always)]
pub const fn line_and_byte(mark: u32) -> (u32, usize) {
    (
        (mark / MARKS_PER_LINE) & (MARK_LINES - 1),
        (mark % MARKS_PER_LINE) as usize,
    )
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::admit::{place_v4, place_v6};

    #[test]
    fn every_mark_has_a_line_and_byte_inside_the_array() {
        for m in [0, 1, 63, 64, MARKS - 1] {
            let (line, byte) = line_and_byte(m);
            assert!(line < MARK_LINES && byte < MARKS_PER_LINE as usize);
            assert_eq!(line * MARKS_PER_LINE + byte as u32, m);
        }
    }

    #[test]
    fn sources_spread_over_the_marks() {
        // 100 000 sequential /64s (a spray's shape) and addresses: few share a mark.
        let mut seen = std::collections::HashSet::new();
        for i in 0u64..50_000 {
            seen.insert(place_v6(&(0x2001_0db8_2000_0000 + i).to_be_bytes()).mark);
            seen.insert(place_v4(&(0xC633_6400u32 + i as u32).to_be_bytes()).mark);
        }
        // Random placement of 100 000 into 2^20 gives about 95 300 distinct.
        assert!(seen.len() > 93_000, "{}", seen.len());
        assert!(seen.iter().all(|&m| m < MARKS));
    }
}
