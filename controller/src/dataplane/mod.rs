//! The only door to the kernel: loading and attaching the XDP program, and a typed API over its
//! pinned maps.
//!
//! Layout on bpffs (default root `/sys/fs/bpf`): `<root>/ipwarden/<iface>/` holds one pin per map
//! (named as in `ipwarden_common::names`) and `link`, the pinned XDP link; `<root>/ipwarden/<iface>:staged/`
//! exists only while a restart resizes the maps (see `resize`). The pinned link keeps
//! the program attached when the loading process exits; removing it (`detach`) detaches.

mod admit;
mod adopt;
mod batch;
mod capacities;
mod config;
mod counters;
mod error;
mod front;
mod hits;
mod index;
mod loader;
mod loud;
mod maps;
pub mod object;
mod pending;
mod pins;
mod resize;
mod rules;
pub mod stamp;
mod synproxy;
mod tracked;

pub use admit::AdmitCounts;
pub use adopt::{Adoption, adopt};
pub use capacities::Capacities;
pub use counters::{GlobalCounters, READ_SLACK_PACKETS, SourceV4, SourceV6};
pub use error::{DataplaneError, MapLayout};
pub use loader::{
    AttachKind, AttachMode, AttachOptions, Attached, attach, detach, error_chain, is_attached,
};
pub use loud::{Counted, HintCounts, Loud};
pub use maps::{Dataplane, Program};
pub use object::{OBJECT, object_is_stub};
pub use pins::{Bpffs, DEFAULT_BPFFS, PinDir, ensure_bpffs};
pub use resize::Resized;
pub use rules::BlockRule;
pub use synproxy::SynproxyCounts;
pub use tracked::Marked;
