//! Detection: per-source velocity (the detector) and networks judged as a whole (aggregates).
//!
//! Input: counter readings (cumulative per-source counters read from the kernel, keyed by
//! IPv4 /32 or IPv6 /64, and the kernel's aggregate cells) stamped with the kernel's monotonic
//! clock. Output: events, each emitted once per episode. Pure logic: no kernel, no I/O, so it
//! is unit-tested exhaustively.

pub mod admission;
pub mod aggregate;
mod detector;
pub mod rates;
mod reading;
mod tracks;

pub use detector::{Detector, Event, SourceView};
pub use rates::Rates;
pub use reading::{Reading, Snapshot};
pub use tracks::Key;
