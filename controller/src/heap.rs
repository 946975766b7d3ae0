//! The daemon's use of the C allocator (glibc's malloc): large blocks go back to the system
//! when freed, and a bulk load's freed pages are handed back.
//!
//! By default glibc raises its mmap threshold to the size of each large block freed (up to
//! 32 MB) and keeps twice that free at the heap's top. A poll of a million sources frees tens
//! of megabytes of read buffers every second, so the heap kept them resident for good, and the
//! detector's index and the next poll's buffers sat in them: 30 MB more resident at a million
//! sources (`ipwarden-bench probe engine`: 417 MB, 387 MB with the threshold fixed).

/// Blocks at least this large are mapped on their own and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_FROM: libc::c_int = 256 * 1024;

/// Fixes the allocator's thresholds (setting one turns their adjustment off). Called once,
/// first thing in the daemon, and by the benches that measure its memory.
pub fn settle() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_FROM);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MMAP_FROM);
    }
}

/// Hands the heap's free pages back to the system, after a bulk load. The load's short-lived
/// allocations (the store's encodings, the tree's nodes before compaction) sit between the
/// book's nodes in the heap, and the allocator returns only the heap's top by itself: a
/// million-decision load left 75 MB of free but resident pages.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}
