//! The embedded database (redb) holding decisions and the runtime allowlist: the one module that
//! touches disk. Every write is a committed, fsynced transaction before the caller proceeds, so
//! an acknowledged `block` survives a crash or a reboot.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _,
    TableDefinition, TableHandle as _,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    decision::{Decision, Ended, Holder},
    enrich::Record,
};

/// The database file in the state directory: its one home.
pub const FILE_NAME: &str = "ipwarden.redb";

/// The schema this build writes. 1 (the first release, no `meta` table): decisions keyed by
/// prefix alone. 2: decisions keyed by prefix and holder, a history table, a `meta` table.
pub const SCHEMA: u64 = 2;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Schema 1's decisions, keyed by prefix: read once by the migration, then deleted.
const DECISIONS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");
/// Decisions keyed by [`decision_key`].
const DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions_by_holder");
/// Ended decisions keyed by [`history_key`].
const HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("history");
const ALLOW: TableDefinition<&str, &[u8]> = TableDefinition::new("allow");
const ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("ipasis_answers");

/// redb's page cache. Its default (1 GiB) would keep a large decision set resident a second
/// time beside the engine's own copy; the store is read in full only at start and otherwise
/// written, so a small cache costs nothing that matters.
pub const CACHE_BYTES: usize = 32 << 20;

/// A cached IPASIS answer for one source unit (/32, /64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    /// `None`: the API rejected the address (400); that is permanent.
    pub record: Option<Record>,
    pub fetched_unix_ms: u64,
}

/// The key of a decision: its prefix and holder (`prefix|origin|source`). The prefix leads so
/// that one prefix's holders are neighbours.
pub fn decision_key(prefix: &IpNet, holder: &Holder) -> String {
    format!(
        "{prefix}|{}|{}",
        holder.origin.name(),
        holder.source.as_deref().unwrap_or("")
    )
}

/// The key of an ended decision: `prefix|ended ms (20 digits)|origin|source`, so a prefix's
/// history is one range, in time order.
fn history_key(e: &Ended) -> String {
    let d = &e.decision;
    format!(
        "{}|{:020}|{}|{}",
        d.prefix,
        e.ended_unix_ms,
        d.origin.name(),
        d.source.as_deref().unwrap_or("")
    )
}

/// The ended time inside a history key.
fn history_key_ms(key: &str) -> Option<u64> {
    key.split('|').nth(1)?.parse().ok()
}

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
    /// The database cannot be opened (corrupt, locked by another process, unreadable).
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
    /// A stored record does not decode.
    #[error("state database holds an unreadable {table} record for {key}")]
    Corrupt {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

fn db_err(op: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
    move |e| StoreError::Db {
        op,
        source: Box::new(e),
    }
}

/// Helper so each redb error type converts into `redb::Error` at the call site.
macro_rules! db {
    ($op:literal, $e:expr) => {
        $e.map_err(|e| db_err($op)(redb::Error::from(e)))
    };
}

fn decode<T: for<'de> Deserialize<'de>>(
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
    db: Database,
    path: PathBuf,
    /// Decisions moved from schema 1 by this opening, for the start log.
    migrated: Option<usize>,
    /// Write transactions committed or begun since opening: each is one fsync, and tests check
    /// that a poll's decisions cost one.
    writes: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Begins a write transaction, counted.
    fn begin_write(&self) -> Result<redb::WriteTransaction, redb::TransactionError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.db.begin_write()
    }

    /// Write transactions begun since the store was opened.
    pub fn write_transactions(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

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
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source: Box::new(source),
            })?;
        let mut store = Self {
            db,
            path,
            migrated: None,
            writes: std::sync::atomic::AtomicU64::new(0),
        };
        let tx = db!("begin", store.db.begin_write())?;
        {
            let mut meta = db!("open table", tx.open_table(META))?;
            let found = db!("read", meta.get("schema"))?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA => {
                    return Err(StoreError::NewerSchema {
                        path: store.path.clone(),
                        found,
                    });
                }
                Some(SCHEMA) => {}
                _ => {
                    let had_v1 = db!("list tables", tx.list_tables())?
                        .any(|t| t.name() == DECISIONS_V1.name());
                    if had_v1 {
                        store.migrated = Some(migrate_v1(&tx)?);
                    }
                    db!("write", meta.insert("schema", SCHEMA))?;
                }
            }
        }
        // Create the tables so read transactions never meet a missing one.
        db!("open table", tx.open_table(DECISIONS))?;
        db!("open table", tx.open_table(HISTORY))?;
        db!("open table", tx.open_table(ALLOW))?;
        db!("open table", tx.open_table(ANSWERS))?;
        db!("commit", tx.commit())?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many schema-1 decisions this opening migrated (`None`: no migration).
    pub fn migrated(&self) -> Option<usize> {
        self.migrated
    }

    /// Inserts or replaces decisions (one per prefix and holder), durably, in one transaction.
    pub fn put_decisions(&self, decisions: &[&Decision]) -> Result<(), StoreError> {
        self.write(decisions, &[])
    }

    /// Removes ended decisions and records them in the history, durably, in one transaction.
    pub fn end_decisions(&self, ended: &[Ended]) -> Result<(), StoreError> {
        self.write(&[], ended)
    }

    /// One durable transaction: `put` inserted or replaced, `ended` removed and recorded.
    pub fn write(&self, put: &[&Decision], ended: &[Ended]) -> Result<(), StoreError> {
        let tx = db!("begin", self.begin_write())?;
        {
            let mut t = db!("open table", tx.open_table(DECISIONS))?;
            let mut h = db!("open table", tx.open_table(HISTORY))?;
            for e in ended {
                let d = &e.decision;
                db!(
                    "remove",
                    t.remove(decision_key(&d.prefix, &d.holder()).as_str())
                )?;
                let bytes = serde_json::to_vec(e).expect("history entries serialize");
                db!(
                    "insert",
                    h.insert(history_key(e).as_str(), bytes.as_slice())
                )?;
            }
            for d in put {
                let bytes = serde_json::to_vec(d).expect("decisions serialize");
                db!(
                    "insert",
                    t.insert(
                        decision_key(&d.prefix, &d.holder()).as_str(),
                        bytes.as_slice()
                    )
                )?;
            }
        }
        db!("commit", tx.commit())
    }

    /// Every stored decision, grouped by prefix.
    pub fn decisions(&self) -> Result<Vec<Decision>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(DECISIONS))?;
        let mut out = Vec::with_capacity(db!("read", t.len())? as usize);
        for item in db!("read", t.iter())? {
            let (k, v) = db!("read", item)?;
            out.push(decode("decision", k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Ended decisions of `prefix` (all of them when `None`), oldest first, at most `limit`
    /// (the newest ones).
    pub fn history(&self, prefix: Option<IpNet>, limit: usize) -> Result<Vec<Ended>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(HISTORY))?;
        let mut out: Vec<Ended> = Vec::new();
        let mut push = |k: &str, v: &[u8]| -> Result<(), StoreError> {
            out.push(decode("history", k, v)?);
            Ok(())
        };
        match prefix {
            Some(p) => {
                // `|` sorts right before `}`: every key of this prefix lies in [p|, p}).
                let (lo, hi) = (format!("{p}|"), format!("{p}}}"));
                for item in db!("read", t.range(lo.as_str()..hi.as_str()))? {
                    let (k, v) = db!("read", item)?;
                    push(k.value(), v.value())?;
                }
            }
            None => {
                for item in db!("read", t.iter())? {
                    let (k, v) = db!("read", item)?;
                    push(k.value(), v.value())?;
                }
            }
        }
        out.sort_by_key(|e| e.ended_unix_ms);
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        Ok(out)
    }

    /// Removes history entries that ended before `cutoff_ms`; how many.
    pub fn prune_history(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let tx = db!("begin", self.begin_write())?;
        let mut pruned = 0;
        {
            let mut t = db!("open table", tx.open_table(HISTORY))?;
            db!(
                "prune",
                t.retain(|k, _| {
                    // An unreadable key is kept: pruning never guesses.
                    let keep = history_key_ms(k).is_none_or(|ms| ms >= cutoff_ms);
                    pruned += usize::from(!keep);
                    keep
                })
            )?;
        }
        db!("commit", tx.commit())?;
        Ok(pruned)
    }

    /// A small durable value (a decision source's checkpoint).
    pub fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(META))?;
        Ok(db!("read", t.get(key))?.map(|v| v.value()))
    }

    /// Sets a small durable value.
    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        let tx = db!("begin", self.begin_write())?;
        db!(
            "insert",
            db!("open table", tx.open_table(META))?.insert(key, value)
        )?;
        db!("commit", tx.commit())
    }

    /// Adds a runtime allowlist entry, durably.
    pub fn put_allow(&self, prefix: IpNet) -> Result<(), StoreError> {
        let tx = db!("begin", self.begin_write())?;
        {
            let mut t = db!("open table", tx.open_table(ALLOW))?;
            let added = crate::decision::now_unix_ms().to_string();
            db!(
                "insert",
                t.insert(prefix.to_string().as_str(), added.as_bytes())
            )?;
        }
        db!("commit", tx.commit())
    }

    /// Removes a runtime allowlist entry, durably; whether it was there.
    pub fn remove_allow(&self, prefix: IpNet) -> Result<bool, StoreError> {
        let tx = db!("begin", self.begin_write())?;
        let existed = {
            let mut t = db!("open table", tx.open_table(ALLOW))?;
            db!("remove", t.remove(prefix.to_string().as_str()))?.is_some()
        };
        db!("commit", tx.commit())?;
        Ok(existed)
    }

    /// Every runtime allowlist entry.
    pub fn allows(&self) -> Result<Vec<IpNet>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(ALLOW))?;
        let mut out = Vec::new();
        for item in db!("read", t.iter())? {
            let (k, _) = db!("read", item)?;
            let key = k.value();
            let net = key.parse().map_err(|_| StoreError::Corrupt {
                table: "allow",
                key: key.to_owned(),
                source: serde_json::Error::io(std::io::Error::other("not a prefix")),
            })?;
            out.push(net);
        }
        Ok(out)
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

impl Store {
    /// Caches an answer, durably (the cache survives restarts).
    pub fn put_answer(&self, source: IpNet, answer: &CachedAnswer) -> Result<(), StoreError> {
        let tx = db!("begin", self.begin_write())?;
        {
            let mut t = db!("open table", tx.open_table(ANSWERS))?;
            let bytes = serde_json::to_vec(answer).expect("answers serialize");
            db!(
                "insert",
                t.insert(source.to_string().as_str(), bytes.as_slice())
            )?;
        }
        db!("commit", tx.commit())
    }

    /// The cached answer for a source unit, whatever its age.
    pub fn answer(&self, source: IpNet) -> Result<Option<CachedAnswer>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(ANSWERS))?;
        let key = source.to_string();
        match db!("read", t.get(key.as_str()))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    table: "ipasis answer",
                    key,
                    source,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{End, Origin};

    #[test]
    fn answers_are_cached_per_source_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let src: IpNet = "2001:db8:2::/64".parse().unwrap();
        let a = CachedAnswer {
            record: Some(Record {
                tor: Some(true),
                ..Default::default()
            }),
            fetched_unix_ms: 42,
        };
        Store::open(dir.path())
            .unwrap()
            .put_answer(src, &a)
            .unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.answer(src).unwrap(), Some(a));
        assert_eq!(s.answer("203.0.113.7/32".parse().unwrap()).unwrap(), None);
    }

    fn decision(p: &str) -> Decision {
        Decision::block(
            p.parse().unwrap(),
            Holder::of(Origin::Velocity),
            "heavy hitter",
            1,
            Some(std::time::Duration::from_millis(1)),
        )
    }

    #[test]
    fn decisions_and_allows_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.migrated(), None);
            let (a, b) = (decision("203.0.113.7/32"), decision("2001:db8:2::/64"));
            s.put_decisions(&[&a, &b]).unwrap();
            s.end_decisions(&[Ended {
                decision: a.clone(),
                end: End::Lifted,
                ended_unix_ms: 5,
            }])
            .unwrap();
            s.put_allow("192.0.2.0/24".parse().unwrap()).unwrap();
            s.put_allow("198.51.100.0/24".parse().unwrap()).unwrap();
            assert!(s.remove_allow("198.51.100.0/24".parse().unwrap()).unwrap());
            assert!(!s.remove_allow("198.51.100.0/24".parse().unwrap()).unwrap());
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.decisions().unwrap(), vec![decision("2001:db8:2::/64")]);
        assert_eq!(
            s.allows().unwrap(),
            vec!["192.0.2.0/24".parse::<IpNet>().unwrap()]
        );
        let h = s.history(None, 10).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(
            (h[0].end, &h[0].decision),
            (End::Lifted, &decision("203.0.113.7/32"))
        );
    }

    #[test]
    fn several_holders_of_one_prefix_are_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let v = decision("203.0.113.7/32");
        let mut m = v.clone();
        (m.origin, m.reason) = (Origin::Manual, "by hand".into());
        let mut f = v.clone();
        (f.origin, f.source) = (Origin::Feed, Some("drop".into()));
        s.put_decisions(&[&v, &m, &f]).unwrap();
        assert_eq!(s.decisions().unwrap().len(), 3);
        s.end_decisions(&[Ended {
            decision: m.clone(),
            end: End::Lifted,
            ended_unix_ms: 9,
        }])
        .unwrap();
        let left = s.decisions().unwrap();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&v) && left.contains(&f));
    }

    #[test]
    fn history_is_per_prefix_in_time_order_bounded_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let ended = |p: &str, ms| Ended {
            decision: decision(p),
            end: End::Expired,
            ended_unix_ms: ms,
        };
        // 203.0.113.7/32 and 203.0.113.70/32 share a text prefix: the range must not mix them.
        s.end_decisions(&[
            ended("203.0.113.7/32", 300),
            ended("203.0.113.7/32", 100),
            ended("203.0.113.70/32", 200),
            ended("203.0.113.7/32", 1_000_000),
        ])
        .unwrap();
        let of = |p: &str, limit| {
            s.history(Some(p.parse().unwrap()), limit)
                .unwrap()
                .iter()
                .map(|e| e.ended_unix_ms)
                .collect::<Vec<_>>()
        };
        assert_eq!(of("203.0.113.7/32", 10), vec![100, 300, 1_000_000]);
        assert_eq!(of("203.0.113.7/32", 2), vec![300, 1_000_000], "the newest");
        assert_eq!(of("203.0.113.70/32", 10), vec![200]);
        assert_eq!(s.prune_history(250).unwrap(), 2);
        assert_eq!(of("203.0.113.7/32", 10), vec![300, 1_000_000]);
        assert!(of("203.0.113.70/32", 10).is_empty());
    }

    /// What the first release left: decisions keyed by prefix alone, no `meta` table.
    #[test]
    fn a_schema_1_database_is_migrated_once_with_every_decision() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (decision("203.0.113.7/32"), decision("2001:db8:2::/64"));
        {
            let db = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(DECISIONS_V1).unwrap();
                for d in [&a, &b] {
                    let bytes = serde_json::to_vec(d).unwrap();
                    t.insert(d.prefix.to_string().as_str(), bytes.as_slice())
                        .unwrap();
                }
                let mut allow = tx.open_table(ALLOW).unwrap();
                allow.insert("192.0.2.0/24", b"1".as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.migrated(), Some(2));
        let mut got = s.decisions().unwrap();
        got.sort_by_key(|d| d.prefix);
        assert_eq!(got, vec![a, b]);
        assert_eq!(s.allows().unwrap().len(), 1);
        drop(s);
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.migrated(), None, "migrated once");
        assert_eq!(again.decisions().unwrap().len(), 2);
    }

    #[test]
    fn a_newer_schema_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema", SCHEMA + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let err = Store::open(dir.path()).err().expect("must refuse");
        assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA + 1));
        assert!(err.to_string().contains("--rebuild-store"), "{err}");
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"definitely not a database").unwrap();
        let err = Store::open(dir.path()).err().expect("must fail");
        assert!(err.to_string().contains("ipwarden.redb"), "{err}");
    }
}
