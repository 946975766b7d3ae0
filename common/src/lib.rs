//! The ABI between the ipwarden XDP program and user space.
//!
//! Everything both sides read is declared here once: map names ([`names`]), default map sizes
//! ([`capacity`]), key encodings ([`key`]), map values ([`block`], [`stats`], [`verdict`], [`config`]) and the
//! packet parser that decides which source a frame is counted and judged under ([`parse`]).
//!
//! Rules for changing it: every map value is `#[repr(C)]`, `Copy`, has no `bool`/`enum`/`Option`,
//! carries explicit padding and has its size pinned by a `const` assertion, so a layout change
//! fails to compile on both sides. Keys are byte arrays in network order, so the kernel never
//! converts endianness and user space uses `Ipv4Addr::octets()` / `Ipv6Addr::octets()`.
#![no_std]

pub mod admit;
pub mod aggregate;
pub mod block;
pub mod capacity;
pub mod config;
pub mod fingerprint;
pub mod front;
pub mod index;
pub mod key;
pub mod loud;
pub mod names;
pub mod parse;
pub mod stamp;
pub mod stats;
pub mod synproxy;
pub mod tracked;
pub mod verdict;

pub use aggregate::AggCell;
pub use block::{Action, BlockEntry, Reason, gcra};
pub use config::DataplaneConfig;
pub use front::{FrontV4, FrontV6, Pending};
pub use key::{SrcV4, SrcV6Prefix};
pub use parse::{Frame, Parsed, parse_frame};
pub use stamp::{LAYOUT_VERSION, Stamp};
pub use stats::{GlobalCounter, SrcStats, SrcStatsV6};
pub use verdict::VerdictCache;
