//! Opening the store, and migrating what an older release left.

use std::path::Path;

use redb::{ReadableTable as _, TableHandle as _};

use super::{
    base::{
        ALLOW, ANSWERS, CACHE_BYTES, CHECKPOINTS, DECISIONS, DECISIONS_V1, FILE_NAME, HISTORY,
        META, SCHEMA, Store, StoreError, db, decode,
    },
    keys::decision_key,
};
use crate::decision::Decision;

impl Store {
    /// Opens (or creates) `<state_dir>/ipwarden.redb` with a [`CACHE_BYTES`] page cache, and
    /// migrates an older schema in one transaction (a crash mid-way leaves the old one whole;
    /// the pinned maps keep enforcing meanwhile, since the daemon only reads the store here).
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join(FILE_NAME);
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|source| match source {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    holders: super::base::holders_of(&path),
                    path: path.clone(),
                },
                source => StoreError::Open {
                    path: path.clone(),
                    source: Box::new(source),
                },
            })?;
        let mut store = Self {
            db: std::sync::Arc::new(db),
            path,
            migrated: None,
            writes: std::sync::atomic::AtomicU64::new(0),
            #[cfg(test)]
            fail_writes: Default::default(),
        };
        let tx = db!("begin", store.db.begin_write())?;
        let found = {
            let meta = db!("open table", tx.open_table(META))?;
            db!("read", meta.get("schema"))?.map(|v| v.value())
        };
        match found {
            Some(found) if found > SCHEMA => {
                return Err(StoreError::NewerSchema {
                    path: store.path.clone(),
                    found,
                });
            }
            Some(SCHEMA) => {}
            _ => {
                let had_v1 =
                    db!("list tables", tx.list_tables())?.any(|t| t.name() == DECISIONS_V1.name());
                if had_v1 {
                    store.migrated = Some(migrate_v1(&tx)?);
                }
                let moved = migrate_checkpoints(&tx)?;
                if moved > 0 {
                    tracing::info!(
                        checkpoints = moved,
                        "state database: checkpoints moved to their own table"
                    );
                }
                let mut meta = db!("open table", tx.open_table(META))?;
                db!("write", meta.insert("schema", SCHEMA))?;
            }
        }
        // Create the tables so read transactions never meet a missing one.
        db!("open table", tx.open_table(DECISIONS))?;
        db!("open table", tx.open_table(HISTORY))?;
        db!("open table", tx.open_table(ALLOW))?;
        db!("open table", tx.open_table(ANSWERS))?;
        db!("open table", tx.open_table(CHECKPOINTS))?;
        db!("commit", tx.commit())?;
        Ok(store)
    }
}

/// Moves schema 1's decisions (keyed by prefix; each value a decision that names its origin)
/// into the holder-keyed table, inside the caller's transaction; how many.
fn migrate_v1(tx: &redb::WriteTransaction) -> Result<usize, StoreError> {
    let mut moved = 0;
    {
        let old = db!("open table", tx.open_table(DECISIONS_V1))?;
        let mut new = db!("open table", tx.open_table(DECISIONS))?;
        for item in db!("read", old.iter())? {
            let (k, v) = db!("read", item)?;
            let d: Decision = decode("schema-1 decision", k.value(), v.value())?;
            db!(
                "insert",
                new.insert(decision_key(&d.prefix, &d.holder()).as_str(), v.value())
            )?;
            moved += 1;
        }
    }
    db!("delete table", tx.delete_table(DECISIONS_V1))?;
    Ok(moved)
}

/// Schema 3: sources' checkpoints move out of `meta` (which keeps only the schema version)
/// into their own table. Returns how many moved.
fn migrate_checkpoints(tx: &redb::WriteTransaction) -> Result<usize, StoreError> {
    let mut meta = db!("open table", tx.open_table(META))?;
    let mut moved = Vec::new();
    for item in db!("read", meta.iter())? {
        let (k, v) = db!("read", item)?;
        if k.value() != "schema" {
            moved.push((k.value().to_owned(), v.value()));
        }
    }
    let mut checkpoints = db!("open table", tx.open_table(CHECKPOINTS))?;
    for (k, v) in &moved {
        db!("write", checkpoints.insert(k.as_str(), *v))?;
        db!("delete", meta.remove(k.as_str()))?;
    }
    Ok(moved.len())
}
