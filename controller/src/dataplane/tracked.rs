//! The marks of sources that may have a per-source entry (see `ipwarden_common::tracked`): the
//! program skips the per-source lookup for a source whose mark is clear, once user space has
//! marked every entry it finds and set `DataplaneConfig::TRACKED_MARKED`.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    time::Duration,
};

use aya::maps::MapData;
use ipwarden_common::{
    DataplaneConfig,
    admit::{place_v4, place_v6},
    names,
    tracked::{MARK_LINES, MARKS, MarkLine},
};

use super::{
    Dataplane, DataplaneError, batch,
    front::{SRC_V4, SRC_V6},
};

/// The mmapable-array flag (`BPF_F_MMAPABLE`).
const MMAPABLE: u32 = 1 << 10;

/// Above this share of marks set, a start clears them and marks again: marks of entries the LRU
/// evicted accumulate (a lookup each, never a wrong answer) until most sources would take the
/// lookup anyway.
const CLEAR_ABOVE: f64 = 0.25;

/// What [`Dataplane::mark_tracked`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Marked {
    /// Entries found in the per-source maps and marked.
    pub entries: usize,
    /// Whether the marks were cleared first.
    pub cleared: bool,
    /// Share of the marks set after.
    pub fill: f64,
}

/// The whole array, mapped for the duration of one marking.
struct Marks {
    ptr: NonNull<u8>,
}

impl Marks {
    fn map(data: &MapData) -> Result<Self, DataplaneError> {
        let err = |source| DataplaneError::Syscall {
            op: "mapping the marks",
            map: names::TRACKED,
            source,
        };
        let info = data
            .info()
            .map_err(|e| DataplaneError::map("reading map info", names::TRACKED, e))?;
        if info.value_size() as usize != size_of::<MarkLine>()
            || info.max_entries() != MARK_LINES
            || info.map_flags() & MMAPABLE == 0
        {
            return Err(err(io::Error::other(format!(
                "the pinned marks have {} values of {} bytes (flags {:#x}); this build expects {MARK_LINES} of {} bytes, mmapable",
                info.max_entries(),
                info.value_size(),
                info.map_flags(),
                size_of::<MarkLine>()
            ))));
        }
        // SAFETY: a fresh shared mapping of the array's whole value area, which the kernel
        // checks against the map's size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MARKS as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(err(io::Error::last_os_error()));
        }
        Ok(Self {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned a non-null address"),
        })
    }

    /// Sets mark `m` with a byte store: the program's stores to other marks stay.
    fn set(&self, m: u32) {
        debug_assert!(m < MARKS);
        // SAFETY: `m` is inside the mapping; volatile, as the program reads it.
        unsafe { self.ptr.as_ptr().add(m as usize).write_volatile(1) };
    }

    /// Marks set.
    fn count(&self) -> usize {
        (0..MARKS as usize)
            // SAFETY: inside the mapping.
            .filter(|&i| unsafe { self.ptr.as_ptr().add(i).read_volatile() } != 0)
            .count()
    }

    /// Clears every mark, byte by byte.
    fn clear(&self) {
        for i in 0..MARKS as usize {
            // SAFETY: inside the mapping.
            unsafe { self.ptr.as_ptr().add(i).write_volatile(0) };
        }
    }
}

impl Drop for Marks {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of this length, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), MARKS as usize) };
    }
}

impl Dataplane {
    /// Marks every entry of the per-source maps and lets the program trust the marks (see
    /// `ipwarden_common::tracked`). `None` for pins of a build before marks.
    ///
    /// The flag is withdrawn first, so the program looks every source up meanwhile. When more
    /// than a quarter of the marks are set, they are cleared and the entries marked again: a
    /// mark the program set just before the clear belongs to an entry it creates within the
    /// same run, which the pause after the clear lets finish, so the marking below finds it.
    pub fn mark_tracked(&mut self) -> Result<Option<Marked>, DataplaneError> {
        let Some(data) = &self.tracked else {
            return Ok(None);
        };
        let marks = Marks::map(data)?;
        self.withdraw_tracked_marks()?;
        let cleared = marks.count() as f64 > CLEAR_ABOVE * f64::from(MARKS);
        if cleared {
            marks.clear();
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut entries = 0;
        let iface = self.pins.iface().to_owned();
        batch::for_each_percpu(&self.src_v4, &SRC_V4, &iface, |k, _| {
            marks.set(place_v4(&k).mark);
            entries += 1;
        })?;
        batch::for_each_percpu(&self.src_v6, &SRC_V6, &iface, |k, _| {
            marks.set(place_v6(&k).mark);
            entries += 1;
        })?;
        self.set_flag(DataplaneConfig::TRACKED_MARKED, true)?;
        Ok(Some(Marked {
            entries,
            cleared,
            fill: marks.count() as f64 / f64::from(MARKS),
        }))
    }

    /// Withdraws the marks' authority: the program looks every flushed source up until
    /// [`Self::mark_tracked`] gives it back (before a program swap, and for the benchmark's
    /// comparison).
    pub fn withdraw_tracked_marks(&mut self) -> Result<(), DataplaneError> {
        self.set_flag(DataplaneConfig::TRACKED_MARKED, false)
    }

    /// Whether the program trusts the marks now.
    pub fn tracked_marked(&self) -> Result<bool, DataplaneError> {
        Ok(self.read_config()?.tracked_marked())
    }
}
