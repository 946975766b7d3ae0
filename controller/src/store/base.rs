//! The store itself: its file, tables, errors and transactions.

use std::path::{Path, PathBuf};

use redb::{Database, TableDefinition};
use serde::Deserialize;
use thiserror::Error;

/// The database file in the state directory: its one home.
pub const FILE_NAME: &str = "ipwarden.redb";

/// The schema this build writes. 1 (the first release, no `meta` table): decisions keyed by
/// prefix alone. 2: decisions keyed by prefix and holder, a history table, a `meta` table.
/// 3: sources' checkpoints in their own table (they shared `meta` with the schema version).
/// 4: plain decisions in a binary form (`value`), which schema 3 releases cannot read; the
/// JSON values earlier schemas wrote are read as they are.
pub const SCHEMA: u64 = 4;

pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Schema 1's decisions, keyed by prefix: read once by the migration, then deleted.
pub(super) const DECISIONS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");
/// Decisions keyed by [`decision_key`].
pub(super) const DECISIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("decisions_by_holder");
/// Ended decisions keyed by [`history_key`].
pub(super) const HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("history");
pub(super) const ALLOW: TableDefinition<&str, &[u8]> = TableDefinition::new("allow");
pub(super) const ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("ipasis_answers");
/// How far each decision source got (a fleet bucket's revision), by source key.
pub(super) const CHECKPOINTS: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");

/// redb's page cache. Its default (1 GiB) would keep a large decision set resident a second
/// time beside the engine's own copy; the store is read in full only at start and otherwise
/// written, so a small cache costs nothing that matters.
pub const CACHE_BYTES: usize = 32 << 20;

/// A store operation that failed. The database file is named so the operator can act.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The state directory cannot be created.
    #[error("cannot create state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the database: one daemon per state directory. The store itself
    /// is fine: nothing here may suggest rebuilding it.
    #[error(
        "the state database {path} is in use{}: one ipwarden daemon per state directory; stop the other one, or give this one another daemon.state_dir",
        holders_text(holders)
    )]
    Locked { path: PathBuf, holders: Vec<u32> },
    /// The database cannot be opened (corrupt, unreadable).
    #[error("cannot open the state database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    /// A newer release wrote it: reading it blindly could lose what it holds.
    #[error(
        "the state database {path} has schema {found}, newer than this build's {SCHEMA}: run the newer ipwarden, or move the file aside and start with --rebuild-store"
    )]
    NewerSchema { path: PathBuf, found: u64 },
    /// A transaction failed.
    #[error("state database {op} failed")]
    Db {
        op: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored record in ipwarden's own binary form does not decode.
    #[error("state database holds an unreadable {table} record for {key}: {why}")]
    Malformed {
        table: &'static str,
        key: String,
        why: &'static str,
    },
    /// A stored record does not decode.
    #[error("state database holds an unreadable {table} record for {key}")]
    Corrupt {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

pub(super) fn db_err(op: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
    move |e| StoreError::Db {
        op,
        source: Box::new(e),
    }
}

/// Helper so each redb error type converts into `redb::Error` at the call site.
macro_rules! db {
    ($op:literal, $e:expr) => {
        $e.map_err(|e| $crate::store::base::db_err($op)(redb::Error::from(e)))
    };
}
pub(super) use db;

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table,
        key: key.to_owned(),
        source,
    })
}

/// Decisions, their history, the runtime allowlist and cached answers on disk.
pub struct Store {
    pub(super) db: std::sync::Arc<Database>,
    pub(super) path: PathBuf,
    /// Decisions moved from an older schema by this opening, for the start log.
    pub(super) migrated: Option<usize>,
    /// Write transactions committed or begun since opening: each is one fsync, and tests check
    /// that a poll's decisions cost one.
    pub(super) writes: std::sync::atomic::AtomicU64,
    /// Tests: set, every write fails from its start, as on a full disk.
    #[cfg(test)]
    pub(crate) fail_writes: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Begins a write transaction, counted.
    pub(super) fn begin_write(&self) -> Result<redb::WriteTransaction, redb::TransactionError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(test)]
        if self.fail_writes.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(redb::TransactionError::Storage(redb::StorageError::Io(
                std::io::Error::other("injected by a test: no space left"),
            )));
        }
        self.db.begin_write()
    }

    /// Write transactions begun since the store was opened.
    pub fn write_transactions(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many schema-1 decisions this opening migrated (`None`: no migration).
    pub fn migrated(&self) -> Option<usize> {
        self.migrated
    }
}

fn holders_text(holders: &[u32]) -> String {
    match holders {
        [] => String::new(),
        [one] => format!(" by process {one}"),
        many => format!(
            " by processes {}",
            many.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The processes that have `path` open (read from /proc: as root, every process's; otherwise
/// this user's).
pub fn holders_of(path: &std::path::Path) -> Vec<u32> {
    let Ok(want) = std::fs::canonicalize(path) else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == want))
            })
        })
        .collect();
    out.sort_unstable();
    out
}
