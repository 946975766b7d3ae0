//! ipwarden's user space: the loader and typed map API of the XDP data plane, and the CLI that
//! drives it.
//!
//! The kernel program (crate `ipwarden-ebpf`) is embedded in this crate at build time; see
//! `build.rs`. Everything that touches the kernel goes through [`dataplane`].

pub(crate) mod allowlist;
pub(crate) mod attach;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crowdsec;
pub mod daemon;
pub mod dataplane;
pub mod decision;
pub mod detect;
pub mod engine;
pub mod enrich;
pub mod feeds;
pub mod fingerprint;
pub mod fleet;
pub mod heap;
pub mod hooks;
pub(crate) mod http;
pub mod import;
pub(crate) mod instruments;
pub mod ipc;
pub mod metrics;
pub(crate) mod names;
pub mod net;
pub mod output;
pub(crate) mod policy;
pub mod record;
pub(crate) mod score;
pub mod secret;
pub mod sources;
pub mod store;
pub(crate) mod sync;
pub mod synproxy;
#[cfg(test)]
pub(crate) mod testing;
pub mod verdict;
pub mod wire;
