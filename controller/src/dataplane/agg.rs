//! The aggregate cells' map (see `ipwarden_common::aggregate`): `AGG_BY_CPU`, a plain mmapable
//! array of `AGG_TOTAL` cells per possible CPU, summed through a mapping; and the retirement of
//! the per-CPU array of releases before it (`names::AGG`). Its counts are not carried over: the
//! detector reads cells by difference, and an upgrade starts a new daemon whose first read is
//! its baseline, so new cells that start at zero hide nothing.
//!
//! Why a plain array: a per-CPU array's lookup loads the cell's address from a pointer table
//! (1 MiB for 131 072 cells) before the cell itself, one more dependent cache miss on every flush
//! of an evicted front-table occupant, which a spoofed flood pays on every frame.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::{MapData, MapType};
use ipwarden_common::{AggCell, aggregate::AGG_TOTAL, names};

use super::{DataplaneError, PinDir};

/// `BPF_F_MMAPABLE`.
const MMAPABLE: u32 = 1 << 10;

/// The size every loader must give `AGG_BY_CPU` (see `dataplane::machine_sizes`): one block per
/// possible CPU (the program indexes its block by `bpf_get_smp_processor_id`, which is below the
/// possible count).
pub(super) fn entries() -> Result<u32, DataplaneError> {
    let cpus = possible_cpus()?;
    u32::try_from(cpus)
        .ok()
        .and_then(|c| c.checked_mul(AGG_TOTAL))
        .ok_or_else(|| sizing_err(io::Error::other(format!("{cpus} possible CPUs"))))
}

fn possible_cpus() -> Result<usize, DataplaneError> {
    aya::util::nr_cpus().map_err(|(_, e)| sizing_err(e))
}

fn sizing_err(source: io::Error) -> DataplaneError {
    DataplaneError::Syscall {
        op: "sizing by the possible CPUs",
        map: names::AGG_BY_CPU,
        source,
    }
}

/// The pinned `AGG_BY_CPU`, checked to have the shape this build reads.
pub(super) struct AggCells {
    data: MapData,
    /// CPU blocks of `AGG_TOTAL` cells.
    blocks: usize,
}

impl AggCells {
    /// Refuses a map of another type, value size or size than the program writes: the mapping
    /// below is sized from them. A map with fewer blocks than the machine has possible CPUs was
    /// loaded without `machine_sizes`: the program's lookups beyond it fail and its cells would
    /// silently miss what those CPUs count.
    pub(super) fn open(data: MapData) -> Result<Self, DataplaneError> {
        let info = data
            .info()
            .map_err(|e| DataplaneError::map("reading map info", names::AGG_BY_CPU, e))?;
        let max = info.max_entries();
        if info.map_type().ok() != Some(MapType::Array)
            || info.value_size() as usize != size_of::<AggCell>()
            || info.map_flags() & MMAPABLE == 0
            || max % AGG_TOTAL != 0
            || ((max / AGG_TOTAL) as usize) < possible_cpus()?
        {
            return Err(DataplaneError::Syscall {
                op: "checking the aggregate cells",
                map: names::AGG_BY_CPU,
                source: io::Error::other(format!(
                    "the pinned map has {max} values of {} bytes (flags {:#x}); this build expects an mmapable array of {AGG_TOTAL} values of {} bytes per possible CPU",
                    info.value_size(),
                    info.map_flags(),
                    size_of::<AggCell>()
                )),
            });
        }
        Ok(Self {
            data,
            blocks: (max / AGG_TOTAL) as usize,
        })
    }

    /// Adds every CPU's block into `into` (one entry per cell, `AGG_TOTAL` of them).
    pub(super) fn add_to(&self, into: &mut [AggCell]) -> Result<(), DataplaneError> {
        let map = Mapping::new(&self.data, self.blocks * AGG_TOTAL as usize)?;
        for block in 0..self.blocks {
            for (i, sum) in into.iter_mut().enumerate().take(AGG_TOTAL as usize) {
                let c = map.get(block * AGG_TOTAL as usize + i);
                sum.packets += c.packets;
                sum.syn += c.syn;
            }
        }
        Ok(())
    }
}

/// A read-only shared mapping of the map's first `len` cells (mmapable array values start page-aligned).
struct Mapping {
    ptr: NonNull<AggCell>,
    len: usize,
}

impl Mapping {
    fn new(data: &MapData, len: usize) -> Result<Self, DataplaneError> {
        // SAFETY: a fresh shared mapping inside the map's value area, whose size `AggCells::open`
        // checked (the kernel checks the range too).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len * size_of::<AggCell>(),
                libc::PROT_READ,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DataplaneError::Syscall {
                op: "mmap",
                map: names::AGG_BY_CPU,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast()).expect("mmap returned a non-null address");
        Ok(Self { ptr, len })
    }

    fn get(&self, i: usize) -> AggCell {
        assert!(i < self.len);
        // SAFETY: inside the mapping and aligned; read volatile, as the program writes it.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(i)) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of this length, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len * size_of::<AggCell>()) };
    }
}

/// Removes the pins of retired maps that the program on `pins`'s link does not read (after the
/// swap to a build without them); how many. Nothing when the program's maps cannot be told.
pub(super) fn retire(pins: &PinDir) -> Result<usize, DataplaneError> {
    let in_use = pins.program_map_ids();
    let mut removed = 0;
    if in_use.is_empty() {
        return Ok(0);
    }
    for name in names::RETIRED {
        let path = pins.map(name);
        let Ok(info) = aya::maps::MapInfo::from_pin(&path) else {
            continue;
        };
        if in_use.contains(&info.id()) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DataplaneError::Fs {
                    op: "removing the pin of a retired map",
                    path,
                    source,
                });
            }
        }
    }
    Ok(removed)
}
