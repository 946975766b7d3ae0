//! The batch commands: `BPF_MAP_LOOKUP_BATCH` over per-CPU maps (the counter hashes and the
//! front-table arrays) and `BPF_MAP_UPDATE_BATCH` into the exact block hashes.
//!
//! aya 0.14 reads a hash map one `get_next_key` + one lookup per entry: two syscalls per source,
//! two million for a million sources; it writes one syscall per entry. The batch commands move
//! thousands of entries per call, which is what makes polling the counter maps and bulk loads
//! of blocks cheap. aya exposes no batch API, so these are the hand-written syscall wrappers in
//! the controller. The lookup gets no key and value size check for free, so it makes its own
//! ([`check`]) before handing the kernel a buffer; the update takes aya's typed map, whose
//! sizes aya checked when it opened the map.

use std::{
    io,
    marker::PhantomData,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, MapData, MapType},
};

use super::{DataplaneError, MapLayout};

/// `BPF_MAP_LOOKUP_BATCH` from `enum bpf_cmd` (include/uapi/linux/bpf.h, Linux 5.6+).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `BPF_MAP_UPDATE_BATCH` from `enum bpf_cmd` (Linux 5.6+).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

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

/// What a per-CPU map read with [`for_each_percpu`] must be: its name, its type, and (as type
/// parameters) its key and value types. One constant per map ties the layout checked when the
/// map is opened to the types the reader uses, so the two cannot drift apart; only per-CPU
/// types can be named, as the reader lays out values per CPU.
pub(super) struct PercpuSpec<K, V> {
    pub(super) name: &'static str,
    map_type: MapType,
    _kv: PhantomData<fn() -> (K, V)>,
}

impl<K: Pod, V: Pod> PercpuSpec<K, V> {
    /// A `BPF_MAP_TYPE_LRU_PERCPU_HASH` keyed by `K`.
    pub(super) const fn lru_percpu_hash(name: &'static str) -> Self {
        Self {
            name,
            map_type: MapType::LruPerCpuHash,
            _kv: PhantomData,
        }
    }

    /// The layout the map must have.
    pub(super) fn layout(&self) -> MapLayout {
        MapLayout {
            map_type: Some(self.map_type),
            key_size: size_of::<K>() as u32,
            value_size: size_of::<V>() as u32,
        }
    }
}

impl<V: Pod> PercpuSpec<u32, V> {
    /// A `BPF_MAP_TYPE_PERCPU_ARRAY` (keyed by a `u32` index).
    pub(super) const fn percpu_array(name: &'static str) -> Self {
        Self {
            name,
            map_type: MapType::PerCpuArray,
            _kv: PhantomData,
        }
    }
}

/// Refuses `map` unless the kernel reports the layout `spec` expects. `iface` only goes into the
/// error, which tells the operator what to detach.
pub(super) fn check<K: Pod, V: Pod>(
    map: &MapData,
    spec: &PercpuSpec<K, V>,
    iface: &str,
) -> Result<(), DataplaneError> {
    let info = map
        .info()
        .map_err(|e| DataplaneError::map("reading map info", spec.name, e))?;
    let found = MapLayout {
        map_type: info.map_type().ok(),
        key_size: info.key_size(),
        value_size: info.value_size(),
    };
    compare(spec.name, iface, spec.layout(), found)
}

/// The comparison behind [`check`], apart from the kernel so that it is unit-tested.
fn compare(
    map: &'static str,
    iface: &str,
    expected: MapLayout,
    found: MapLayout,
) -> Result<(), DataplaneError> {
    if expected == found {
        return Ok(());
    }
    Err(DataplaneError::LayoutMismatch {
        map,
        iface: iface.to_owned(),
        expected,
        found,
    })
}

/// Calls `each(key, per_cpu_values)` for every entry of the per-CPU map `map`, described by
/// `spec`.
///
/// The map's layout is checked first, on every call (one `BPF_OBJ_GET_INFO_BY_FD`, nothing next
/// to the batches): the buffers below are sized from `K` and `V`, and the kernel fills them from
/// the map's own sizes, so a mismatch would let it write past them. `Dataplane::open` already
/// refuses such a map; checking here keeps this function sound whatever its caller did.
///
/// Entries may be added or evicted concurrently; the kernel guarantees each bucket is read
/// atomically, not the whole map. That is fine for counters.
pub(super) fn for_each_percpu<K: Pod, V: Pod>(
    map: &MapData,
    spec: &PercpuSpec<K, V>,
    iface: &str,
    mut each: impl FnMut(K, &[V]),
) -> Result<(), DataplaneError> {
    check(map, spec, iface)?;
    let name = spec.name;
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
        // SAFETY: `attr` points at buffers sized for `count` keys and `count * cpus` values of
        // the map's key and value sizes (checked above against `K` and `V`; the kernel pads
        // per-CPU values to 8 bytes, as `stride` does); the kernel writes at most that much and
        // updates `count`.
        let err = unsafe { batch_command(BPF_MAP_LOOKUP_BATCH, &mut attr) }.err();
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

/// One batch command on `attr`; the kernel's error, if any.
///
/// # Safety
/// `attr`'s buffers must be valid for what `cmd` reads and writes at `attr.count` entries of the
/// map's key and value sizes.
unsafe fn batch_command(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: the caller vouches for the buffers; `attr` is a `union bpf_attr` prefix of the
    // size given, which the kernel reads and updates (`count`, the batch token).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts `keys[i] -> values[i]` into the hash `map` with one `BPF_MAP_UPDATE_BATCH` (`BPF_ANY`:
/// add or replace, in order). The kernel stops at the first entry it cannot put and reports how
/// many went in before it: on error, that count comes with the error.
pub(super) fn update_hash<K: Pod, V: Pod>(
    map: &HashMap<MapData, K, V>,
    keys: &[K],
    values: &[V],
) -> Result<(), (usize, io::Error)> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    if keys.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(keys.len()).map_err(|_| (0, io::Error::other("batch too large")))?;
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: map.map().fd().as_fd().as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: `keys` and `values` hold `count` keys and values of `K` and `V`, whose sizes aya
    // checked against the map's when it opened it (`HashMap::try_from`); the kernel only reads
    // them and writes back `count`.
    if let Err(e) = unsafe { batch_command(BPF_MAP_UPDATE_BATCH, &mut attr) } {
        // An error in the loop rewrote `count` to the entries before it (always fewer than
        // asked); one before the loop (an old kernel, a bad map) left it as it was: none went in.
        let done = if attr.count < count { attr.count } else { 0 };
        return Err((done as usize, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ipwarden_common::{SrcStats, SrcStatsV6, SrcV4};

    use super::*;
    use crate::dataplane::front::{FRONT_V4, FRONT_V6, SRC_V4, SRC_V6};

    fn found(map_type: Option<MapType>, key_size: u32, value_size: u32) -> MapLayout {
        MapLayout {
            map_type,
            key_size,
            value_size,
        }
    }

    #[test]
    fn specs_expect_the_sizes_of_the_common_types() {
        let l = SRC_V4.layout();
        assert_eq!(l.map_type, Some(MapType::LruPerCpuHash));
        assert_eq!(l.key_size as usize, size_of::<SrcV4>());
        assert_eq!(l.value_size as usize, size_of::<SrcStats>());
        let l = SRC_V6.layout();
        assert_eq!(l.map_type, Some(MapType::LruPerCpuHash));
        assert_eq!(
            (l.key_size, l.value_size as usize),
            (8, size_of::<SrcStatsV6>())
        );
        // Arrays are keyed by a u32 index; the slot sizes are asserted in `common::front`.
        for (spec_layout, slot) in [(FRONT_V4.layout(), 56), (FRONT_V6.layout(), 80)] {
            assert_eq!(spec_layout.map_type, Some(MapType::PerCpuArray));
            assert_eq!((spec_layout.key_size, spec_layout.value_size), (4, slot));
        }
    }

    #[test]
    fn the_same_layout_is_accepted() {
        let l = SRC_V4.layout();
        assert!(compare("SRC_V4", "eth0", l, l).is_ok());
    }

    #[test]
    fn another_size_or_type_is_refused_with_what_to_do() {
        let expected = SRC_V4.layout();
        let wrong = [
            found(expected.map_type, 4, expected.value_size + 8),
            found(expected.map_type, 8, expected.value_size),
            found(Some(MapType::PerCpuHash), 4, expected.value_size),
            found(None, 4, expected.value_size),
        ];
        for found in wrong {
            let err = compare("SRC_V4", "eth0", expected, found).unwrap_err();
            let DataplaneError::LayoutMismatch {
                map,
                iface,
                expected: e,
                found: f,
            } = &err
            else {
                panic!("{err:?}");
            };
            assert_eq!(
                (*map, iface.as_str(), *e, *f),
                ("SRC_V4", "eth0", expected, found)
            );
            let text = err.to_string();
            assert!(text.contains("ipwarden detach --iface eth0"), "{text}");
            assert!(
                text.contains(&format!("{}-byte values", found.value_size)),
                "{text}"
            );
        }
    }
}
