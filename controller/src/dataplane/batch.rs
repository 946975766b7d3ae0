//! `BPF_MAP_LOOKUP_BATCH` over per-CPU hash maps.
//!
//! aya 0.14 reads a hash map one `get_next_key` + one lookup per entry: two syscalls per source,
//! two million for a million sources. The batch command returns thousands of entries per call,
//! which is what makes polling the counter maps cheap. aya exposes no batch API, so this is the
//! one hand-written syscall wrapper in the controller.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{Pod, maps::MapData};

use super::DataplaneError;

/// `BPF_MAP_LOOKUP_BATCH` from `enum bpf_cmd` (include/uapi/linux/bpf.h, Linux 5.6+).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries requested per call. Hash maps return whole buckets, so this must exceed the longest
/// bucket; on `ENOSPC` it doubles.
const CHUNK: u32 = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls `each(key, per_cpu_values)` for every entry of a per-CPU hash map.
///
/// Entries may be added or evicted concurrently; the kernel guarantees each bucket is read
/// atomically, not the whole map. That is fine for counters.
pub(super) fn for_each_percpu<K: Pod, V: Pod>(
    map: &MapData,
    name: &'static str,
    mut each: impl FnMut(K, &[V]),
) -> Result<(), DataplaneError> {
    let syscall_err = |source| DataplaneError::Syscall {
        op: "BPF_MAP_LOOKUP_BATCH",
        map: name,
        source,
    };
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| syscall_err(e))?;
    // The kernel lays out per-CPU values at 8-byte strides.
    let stride = size_of::<V>().next_multiple_of(8);
    let mut chunk = CHUNK;
    let mut keys: Vec<u8> = Vec::new();
    let mut values: Vec<u8> = Vec::new();
    // Hash maps use a u32 bucket index as the batch token.
    let mut token_in = [0u8; 8];
    let mut token_out = [0u8; 8];
    let mut first = true;
    let mut per_cpu: Vec<V> = Vec::with_capacity(cpus);
    loop {
        keys.resize(chunk as usize * size_of::<K>(), 0);
        values.resize(chunk as usize * cpus * stride, 0);
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: `attr` points at buffers sized for `count` keys and `count * cpus` values;
        // the kernel writes at most that much and updates `count`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        if let Some(e) = &err
            && e.raw_os_error() == Some(libc::ENOSPC)
            && attr.count == 0
        {
            chunk = chunk
                .checked_mul(2)
                .ok_or_else(|| syscall_err(io::Error::other("bucket too large")))?;
            continue;
        }
        for i in 0..attr.count as usize {
            // SAFETY: the kernel filled `count` keys and values; Pod types accept any bytes.
            let key: K =
                unsafe { std::ptr::read_unaligned(keys.as_ptr().add(i * size_of::<K>()).cast()) };
            per_cpu.clear();
            for cpu in 0..cpus {
                let offset = (i * cpus + cpu) * stride;
                // SAFETY: as above.
                per_cpu
                    .push(unsafe { std::ptr::read_unaligned(values.as_ptr().add(offset).cast()) });
            }
            each(key, &per_cpu);
        }
        match err {
            None => {}
            // ENOENT: no more entries after this batch.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Some(e) => return Err(syscall_err(e)),
        }
        token_in = token_out;
        first = false;
    }
}
