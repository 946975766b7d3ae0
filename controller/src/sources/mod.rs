//! One lifecycle for every decision source (the IPASIS stage, the fleet, CrowdSec, each
//! feed): each implements [`Start`]; the daemon starts them in one loop, each comes back as a
//! running [`Source`] whose status `status` shows, and all are stopped together. What a source
//! decides reaches the engine only as [`crate::engine::SourceEvent`]s on one channel; what the engine commits
//! reaches sources that publish (the fleet, the CrowdSec watcher) through [`crate::engine::Sink`]s.

mod ipasis;
mod lifecycle;
mod status;

pub use ipasis::Ipasis;
pub use lifecycle::{
    Context, SnapshotRequest, Source, SourceError, SourceStatus, Sources, Start, Starting, StatusFn,
};
pub use status::StatusCell;
