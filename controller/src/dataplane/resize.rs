//! Resizing the maps of a running attachment. A kernel map's size is fixed at creation, so a new
//! size means a new map: it is created in a staging directory beside the pins, filled with what
//! the old one enforces, and handed to a new program that replaces the old one on the same link
//! (see `adopt`). Only then does its pin take the old one's place. Until the swap the old program
//! reads the old maps, after it the new program reads the new ones: enforcement never stops.
//!
//! The staging directory, `<bpffs>/ipwarden/<iface>:staged`, holds the new maps and a hard link
//! to every map that keeps its size (bpffs pins are inodes like any other), so the loader finds
//! the program's whole set of maps in one directory. `:` cannot occur in an interface name, so it
//! never collides with another interface's pins.

use std::{io, path::Path};

use aya::{
    Pod,
    maps::{HashMap, LpmTrie, MapData},
};
use ipwarden_common::{BlockEntry, SrcV4, SrcV6Prefix, names};

use super::{
    Capacities, DataplaneError, PinDir,
    maps::{max_entries, open},
};

/// One map given another size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resized {
    pub map: &'static str,
    pub from: u32,
    pub to: u32,
    /// Entries carried over from the old map (block and allow maps; counters start empty).
    pub carried: usize,
    /// Entries the new map had no room for (a smaller size than the old one held). The daemon's
    /// restore puts the strongest decisions back first, so what is left out is the weakest.
    pub left_out: usize,
}

/// Where the maps of a resize of `pins` are staged.
fn staging(pins: &PinDir) -> PinDir {
    PinDir::new(pins.bpffs(), format!("{}:staged", pins.iface()))
}

/// The pinned maps whose size differs from `wanted`, as (name, pinned size, wanted size). Maps
/// not pinned yet (a build before them) are created at the wanted size by the loader anyway.
pub(super) fn differing(
    pins: &PinDir,
    wanted: &Capacities,
) -> Result<Vec<(&'static str, u32, u32)>, DataplaneError> {
    let mut out = Vec::new();
    for (name, size) in wanted.by_name() {
        let path = pins.map(name);
        if !path.exists() {
            continue;
        }
        let map = MapData::from_pin(&path)
            .map_err(|e| DataplaneError::map("opening pinned map", name, e))?;
        let pinned = max_entries(&map);
        if pinned != size {
            out.push((name, pinned, size));
        }
    }
    Ok(out)
}

/// Prepares the staging directory: a link to every pinned map that keeps its size; the loader
/// creates the others there.
pub(super) fn stage(
    pins: &PinDir,
    differing: &[(&'static str, u32, u32)],
) -> Result<PinDir, DataplaneError> {
    discard(pins)?;
    let staged = staging(pins);
    let dir = staged.dir();
    std::fs::create_dir_all(&dir)
        .map_err(|source| fs_err("creating the staging directory", &dir, source))?;
    for name in names::MAPS {
        let from = pins.map(name);
        if differing.iter().any(|(n, ..)| *n == name) || !from.exists() {
            continue;
        }
        let to = staged.map(name);
        std::fs::hard_link(&from, &to)
            .map_err(|source| fs_err("linking a pin that keeps its size to", &to, source))?;
    }
    Ok(staged)
}

/// Copies what the old maps enforce into the staged new ones: block and allow entries. Source
/// counters and token buckets start empty (a source's window restarts; a challenged source's
/// bucket starts full).
pub(super) fn fill(
    pins: &PinDir,
    staged: &PinDir,
    differing: &[(&'static str, u32, u32)],
) -> Result<Vec<Resized>, DataplaneError> {
    let mut out = Vec::new();
    for &(map, from, to) in differing {
        let (carried, left_out) = match map {
            names::BLOCK_V4 => copy_hash::<SrcV4, BlockEntry>(pins, staged, map)?,
            names::BLOCK_V6 => copy_hash::<SrcV6Prefix, BlockEntry>(pins, staged, map)?,
            names::BLOCK_NET_V4 => copy_trie::<[u8; 4], BlockEntry>(pins, staged, map)?,
            names::BLOCK_NET_V6 => copy_trie::<[u8; 16], BlockEntry>(pins, staged, map)?,
            names::ALLOW_V4 => copy_trie::<[u8; 4], u32>(pins, staged, map)?,
            names::ALLOW_V6 => copy_trie::<[u8; 16], u32>(pins, staged, map)?,
            _ => (0, 0),
        };
        out.push(Resized {
            map,
            from,
            to,
            carried,
            left_out,
        });
    }
    Ok(out)
}

fn copy_hash<K: Pod, V: Pod>(
    pins: &PinDir,
    staged: &PinDir,
    name: &'static str,
) -> Result<(usize, usize), DataplaneError> {
    let old: HashMap<MapData, K, V> = open(pins, name)?;
    let mut new: HashMap<MapData, K, V> = open(staged, name)?;
    let (mut carried, mut left_out) = (0, 0);
    // An entry that fails to read (deleted while walking) is not enforced any more either.
    for (k, v) in old.iter().flatten() {
        match new.insert(k, v, 0) {
            Ok(()) => carried += 1,
            Err(_) => left_out += 1,
        }
    }
    Ok((carried, left_out))
}

fn copy_trie<K: Pod, V: Pod>(
    pins: &PinDir,
    staged: &PinDir,
    name: &'static str,
) -> Result<(usize, usize), DataplaneError> {
    let old: LpmTrie<MapData, K, V> = open(pins, name)?;
    let mut new: LpmTrie<MapData, K, V> = open(staged, name)?;
    let (mut carried, mut left_out) = (0, 0);
    for (k, v) in old.iter().flatten() {
        match new.insert(&k, v, 0) {
            Ok(()) => carried += 1,
            Err(_) => left_out += 1,
        }
    }
    Ok((carried, left_out))
}

/// After the swap: every staged pin takes its place under `pins` (a rename over the old pin,
/// which drops the old map once nothing else holds it), and the staging directory goes.
pub(super) fn finish(pins: &PinDir) -> Result<(), DataplaneError> {
    let staged = staging(pins);
    for name in staged_names(&staged)? {
        let from = staged.map(&name);
        let to = pins.map(&name);
        std::fs::rename(&from, &to)
            .map_err(|source| fs_err("moving into place the staged pin", &from, source))?;
        // Renaming a link onto another link of the same map does nothing: the staged one is
        // removed here.
        remove(&from)?;
    }
    remove_dir(&staged.dir())
}

/// Removes a staging directory and its pins (nothing uses them: the swap did not happen).
pub(super) fn discard(pins: &PinDir) -> Result<(), DataplaneError> {
    let staged = staging(pins);
    for name in staged_names(&staged)? {
        remove(&staged.map(&name))?;
    }
    remove_dir(&staged.dir())
}

/// Completes or undoes a resize a previous process left half done: when the attached program
/// reads any map pinned only in the staging directory, the swap happened and the pins are moved
/// into place; otherwise the staged maps are unused and removed.
pub(super) fn recover(pins: &PinDir) -> Result<(), DataplaneError> {
    let staged = staging(pins);
    if !staged.dir().exists() {
        return Ok(());
    }
    let in_use = program_map_ids(pins);
    let swapped = staged_names(&staged)?.iter().any(|name| {
        let id = |path: &Path| aya::maps::MapInfo::from_pin(path).ok().map(|i| i.id());
        let staged_id = id(&staged.map(name));
        staged_id.is_some()
            && staged_id != id(&pins.map(name))
            && staged_id.is_some_and(|s| in_use.contains(&s))
    });
    if swapped {
        tracing::warn!(
            iface = pins.iface(),
            "finishing a map resize an earlier start left after its program swap"
        );
        finish(pins)
    } else {
        tracing::warn!(
            iface = pins.iface(),
            "removing the staged maps of a resize an earlier start left before its program swap"
        );
        discard(pins)
    }
}

/// The ids of the maps the program on `pins`'s link reads (empty when it cannot be told).
fn program_map_ids(pins: &PinDir) -> Vec<u32> {
    use aya::programs::links::{FdLink, PinnedLink};
    let Some(program_id) = PinnedLink::from_pin(pins.link())
        .ok()
        .map(FdLink::from)
        .and_then(|l| l.info().ok())
        .map(|i| i.program_id())
    else {
        return Vec::new();
    };
    aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == program_id)
        .and_then(|p| p.map_ids().ok().flatten())
        .unwrap_or_default()
}

fn staged_names(staged: &PinDir) -> Result<Vec<String>, DataplaneError> {
    let dir = staged.dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(fs_err("reading the staging directory", &dir, source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|source| fs_err("reading the staging directory", &dir, source))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

fn remove(path: &Path) -> Result<(), DataplaneError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(fs_err("removing the staged", path, e))
        }
        _ => Ok(()),
    }
}

fn remove_dir(path: &Path) -> Result<(), DataplaneError> {
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(fs_err("removing the staged", path, e))
        }
        _ => Ok(()),
    }
}

fn fs_err(op: &'static str, path: &Path, source: io::Error) -> DataplaneError {
    DataplaneError::Fs {
        op,
        path: path.to_owned(),
        source,
    }
}
