//! Reading and writing the `STAMP` map (see `ipwarden_common::stamp`).

use aya::maps::{Array, Map, MapData};
use ipwarden_common::{Stamp, names};

use super::{DataplaneError, PinDir};

/// This binary's data plane build id: a hash of its embedded object, computed by `build.rs`.
pub const BUILD: &str = env!("IPWARDEN_DATAPLANE_BUILD");

/// [`BUILD`] as a number.
pub fn this_build() -> u64 {
    u64::from_str_radix(BUILD, 16).expect("build.rs writes 16 hex digits")
}

/// The stamp of the attachment pinned under `pins`; `None` when the pins carry no `STAMP` map
/// (written by a release before stamps).
pub fn read(pins: &PinDir) -> Result<Option<Stamp>, DataplaneError> {
    let path = pins.map(names::STAMP);
    if !path.exists() {
        return Ok(None);
    }
    let map = open(pins)?;
    map.get(&0, 0)
        .map(Some)
        .map_err(|e| DataplaneError::map("reading", names::STAMP, e))
}

/// Stamps the attachment pinned under `pins`.
pub fn write(pins: &PinDir, stamp: &Stamp) -> Result<(), DataplaneError> {
    let mut map = open(pins)?;
    map.set(0, stamp, 0)
        .map_err(|e| DataplaneError::map("writing", names::STAMP, e))
}

fn open(pins: &PinDir) -> Result<Array<MapData, Stamp>, DataplaneError> {
    let data = MapData::from_pin(pins.map(names::STAMP))
        .map_err(|e| DataplaneError::map("opening pinned map", names::STAMP, e))?;
    let map = Map::from_map_data(data)
        .map_err(|e| DataplaneError::map("reading map type", names::STAMP, e))?;
    Array::try_from(map).map_err(|e| DataplaneError::map("checking map layout", names::STAMP, e))
}
