//! The stamp an attachment's pins carry: which data plane layout and which build of the program
//! wrote them.
//!
//! A daemon that finds an attachment left by another build must know, before reading a single
//! map, whether it can: the layout version says whether the maps' keys and values are the ones
//! this build's types describe; the build id says whether the attached program is this build's
//! (if not, the daemon swaps it on the existing link). The stamp lives in its own one-slot map,
//! which the program never touches, so that stamping costs the packet path nothing. Pins left by
//! a release before stamps have no `STAMP` map: they are layout 1.

/// The layout of every map this build reads and writes. Raise it with any change to a map's
/// type, key, value or capacity semantics, and teach the loader to migrate from the previous one.
pub const LAYOUT_VERSION: u32 = 1;

/// The value of the `STAMP` map's only slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// [`LAYOUT_VERSION`] of the build that created or last upgraded the pins.
    pub layout: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// The program's build id: a hash of the eBPF object it was loaded from.
    pub build: u64,
    /// The controller's version (`CARGO_PKG_VERSION`), NUL-padded.
    pub version: [u8; 24],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Stamp {}

const _: () = assert!(core::mem::size_of::<Stamp>() == 40);

impl Stamp {
    /// A stamp for `build` at this layout, with `version` truncated to 24 bytes.
    pub fn new(build: u64, version: &str) -> Self {
        let mut v = [0u8; 24];
        let n = version.len().min(v.len());
        v[..n].copy_from_slice(&version.as_bytes()[..n]);
        Self {
            layout: LAYOUT_VERSION,
            _pad: 0,
            build,
            version: v,
        }
    }

    /// The version as text (empty if it is not UTF-8).
    pub fn version_str(&self) -> &str {
        let end = self
            .version
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.version.len());
        core::str::from_utf8(&self.version[..end]).unwrap_or("")
    }
}

/// FNV-1a, 64 bits: the build id of an object. Not for adversarial input, only to tell builds
/// apart; `const` so build scripts and tests compute the same value.
pub const fn build_id(object: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < object.len() {
        h ^= object[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trips_and_truncates() {
        assert_eq!(Stamp::new(1, "0.1.0").version_str(), "0.1.0");
        let long = "0.1.0-a-very-long-prerelease-tag";
        assert_eq!(Stamp::new(1, long).version_str(), &long[..24]);
        assert_eq!(Stamp::new(1, "0.1.0").layout, LAYOUT_VERSION);
    }

    #[test]
    fn build_ids_tell_objects_apart() {
        assert_ne!(build_id(b"one object"), build_id(b"another object"));
        // The published FNV-1a 64 test vector.
        assert_eq!(build_id(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
