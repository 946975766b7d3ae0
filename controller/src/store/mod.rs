//! The embedded database (redb) holding decisions, their history, the runtime allowlist,
//! cached IPASIS answers and sources' checkpoints: the one module that touches disk. Every write
//! is a committed, fsynced transaction before the caller proceeds, so an acknowledged `block`
//! survives a crash or a reboot.
//!
//! Modules: `base` (the file, tables, errors, transactions), `open` (opening and migrating
//! what older releases left), one module per kind of record.

mod allow;
mod answers;
mod base;
mod checkpoints;
mod decisions;
mod open;
#[cfg(test)]
mod tests;
mod value;

pub use answers::{Answers, CachedAnswer};
pub use base::{CACHE_BYTES, FILE_NAME, SCHEMA, Store, StoreError, holders_of};
pub use decisions::decision_key;
