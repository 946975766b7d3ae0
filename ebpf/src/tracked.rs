//! The marks of sources that may have a per-source entry (see `ipwarden_common::tracked`).

use ipwarden_common::tracked::line_and_byte;

use crate::maps::TRACKED;

/// Whether `mark` is set: its source (or another sharing it) may have an entry.
#[inline(always)]
pub fn marked(mark: u32) -> bool {
    let (line, byte) = line_and_byte(mark);
    // A missing line cannot say "no entry": treated as set.
    TRACKED.get(line).is_none_or(|l| l.bytes[byte] != 0)
}

/// Sets `mark`: a byte store, which no other CPU's store to a neighbouring mark can undo.
#[inline(always)]
pub fn mark(mark: u32) {
    let (line, byte) = line_and_byte(mark);
    if let Some(l) = TRACKED.get_ptr_mut(line) {
        // SAFETY: a valid array value; a concurrent store to this byte writes the same value.
        unsafe { (*l).bytes[byte] = 1 };
    }
}
