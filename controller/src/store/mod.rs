//! The embedded database (redb) holding decisions, their history, the runtime allowlist,
//! cached IPASIS answers and sources' checkpoints: the one module that touches disk. Every write
//! is a committed, fsynced transaction before the caller proceeds, so an acknowledged `block`
//! survives a crash or a reboot.
//!
//! Modules: `base` (the file, tables, errors, transactions), `open` (opening and migrating
//! what older releases left), `keys` (the tables' keys), `value` (a decision's stored form),
//! `prepared` (a write encoded before the database is touched), one module per kind of record.

mod allow;
mod answers;
mod base;
mod checkpoints;
mod decisions;
mod keys;
mod open;
mod prepared;
#[cfg(test)]
mod tests;
mod value;

pub use answers::{Answers, CachedAnswer};
pub use base::{CACHE_BYTES, FILE_NAME, SCHEMA, Store, StoreError, holders_of};
pub use keys::decision_key;
pub use prepared::Prepared;
