//! Errors of the data-plane layer.

use std::{fmt, io, path::PathBuf};

use thiserror::Error;

/// What went wrong talking to the kernel. Each variant names the object it was working on.
#[derive(Debug, Error)]
pub enum DataplaneError {
    /// The controller was built with `AYA_BUILD_SKIP=1` and carries no program.
    #[error(
        "this ipwarden binary was built without its XDP program (AYA_BUILD_SKIP); rebuild with `cargo xtask build`"
    )]
    ObjectMissing,
    /// bpffs is not mounted where pins should go, and mounting it failed.
    #[error("cannot mount bpffs at {path}")]
    MountBpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A filesystem operation on the pin directory failed.
    #[error("{op} {path}")]
    Fs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The kernel refused the object (verifier, map creation, BTF).
    #[error("loading the XDP program")]
    Load {
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// Program lookup, load, attach or link handling failed.
    #[error("{op} on {iface}")]
    Program {
        op: &'static str,
        iface: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Attaching in any allowed mode failed.
    #[error("attaching XDP to {iface} ({mode})")]
    Attach {
        iface: String,
        mode: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// The interface already carries an ipwarden attachment.
    #[error(
        "ipwarden is already attached to {iface} (pinned at {path}); run `ipwarden detach --iface {iface}` first"
    )]
    AlreadyAttached { iface: String, path: PathBuf },
    /// The pins were written by a newer release whose maps this build cannot read.
    #[error(
        "the attachment on {iface} (pins at {path}) has data plane layout {found} (written by ipwarden {version}); this binary reads layout {supported} and will not read those maps blindly: run the newer ipwarden, or `ipwarden detach --iface {iface}` and start again (a gap in protection; the store restores the decisions)"
    )]
    NewerLayout {
        iface: String,
        path: PathBuf,
        found: u32,
        supported: u32,
        version: String,
    },
    /// No pinned attachment for the interface.
    #[error(
        "ipwarden is not attached to {iface} (no pins under {path}); run `ipwarden attach --iface {iface}` first"
    )]
    NotAttached { iface: String, path: PathBuf },
    /// The kernel has no interface of that name: nothing is loaded or pinned.
    #[error("there is no network interface {iface} (see `ip link`)")]
    NoInterface { iface: String },
    /// Pinning or unpinning a link failed.
    #[error("{op} {path}")]
    Link {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A map operation failed.
    #[error("{op} on map {map}")]
    Map {
        op: &'static str,
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A raw bpf(2) call failed.
    #[error("bpf({op}) on map {map}")]
    Syscall {
        op: &'static str,
        map: &'static str,
        #[source]
        source: io::Error,
    },
    /// A map is full.
    #[error("map {map} is full ({capacity} entries); raise its capacity at attach time")]
    MapFull { map: &'static str, capacity: u32 },
    /// A pinned map that is read raw (in batches, not through an aya typed map) has another
    /// type, key size or value size than this build reads. Reading it would misread every
    /// entry, or overrun the read buffers, so it is refused instead.
    #[error(
        "pinned map {map} of {iface} has layout {found}, but this ipwarden reads {expected}: it was probably left by another ipwarden version; detach it (`ipwarden detach --iface {iface}`) and attach again"
    )]
    LayoutMismatch {
        map: &'static str,
        iface: String,
        expected: MapLayout,
        found: MapLayout,
    },
}

/// A map's type and key and value sizes in bytes: what the kernel reports for a pinned map, or
/// what our types need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapLayout {
    /// `None`: a type aya does not know.
    pub map_type: Option<aya::maps::MapType>,
    pub key_size: u32,
    pub value_size: u32,
}

impl fmt::Display for MapLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.map_type {
            Some(t) => write!(f, "{t:?}")?,
            None => f.write_str("unknown map type")?,
        }
        write!(
            f,
            " with {}-byte keys and {}-byte values",
            self.key_size, self.value_size
        )
    }
}

impl DataplaneError {
    pub(crate) fn map(op: &'static str, map: &'static str, source: aya::maps::MapError) -> Self {
        Self::Map {
            op,
            map,
            source: Box::new(source),
        }
    }
}
