//! The embedded database (redb) holding decisions and the runtime allowlist: the one module that
//! touches disk. Every write is a committed, fsynced transaction before the caller proceeds, so
//! an acknowledged `block` survives a crash or a reboot.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use thiserror::Error;

use crate::{decision::Decision, enrich::Record};

const DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");
const ALLOW: TableDefinition<&str, &[u8]> = TableDefinition::new("allow");
const ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("ipasis_answers");

/// redb's page cache. Its default (1 GiB) would keep a large decision set resident a second
/// time beside the engine's own copy; the store is read in full only at start and otherwise
/// written, so a small cache costs nothing that matters.
pub const CACHE_BYTES: usize = 32 << 20;

/// A cached IPASIS answer for one source unit (/32, /64).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedAnswer {
    /// `None`: the API rejected the address (400); that is permanent.
    pub record: Option<Record>,
    pub fetched_unix_ms: u64,
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

/// Decisions and the runtime allowlist on disk.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `<state_dir>/ipwarden.redb` with a [`CACHE_BYTES`] page cache.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join("ipwarden.redb");
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source: Box::new(source),
            })?;
        let store = Self { db, path };
        // Create the tables so read transactions never meet a missing one.
        let tx = db!("begin", store.db.begin_write())?;
        db!("open table", tx.open_table(DECISIONS))?;
        db!("open table", tx.open_table(ALLOW))?;
        db!("open table", tx.open_table(ANSWERS))?;
        db!("commit", tx.commit())?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or replaces decisions, durably, in one transaction.
    pub fn put_decisions(&self, decisions: &[&Decision]) -> Result<(), StoreError> {
        let tx = db!("begin", self.db.begin_write())?;
        {
            let mut t = db!("open table", tx.open_table(DECISIONS))?;
            for d in decisions {
                let bytes = serde_json::to_vec(d).expect("decisions serialize");
                db!(
                    "insert",
                    t.insert(d.prefix.to_string().as_str(), bytes.as_slice())
                )?;
            }
        }
        db!("commit", tx.commit())
    }

    /// Removes decisions, durably, in one transaction.
    pub fn remove_decisions(&self, prefixes: &[IpNet]) -> Result<(), StoreError> {
        let tx = db!("begin", self.db.begin_write())?;
        {
            let mut t = db!("open table", tx.open_table(DECISIONS))?;
            for p in prefixes {
                db!("remove", t.remove(p.to_string().as_str()))?;
            }
        }
        db!("commit", tx.commit())
    }

    /// Every stored decision.
    pub fn decisions(&self) -> Result<Vec<Decision>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(DECISIONS))?;
        let mut out = Vec::new();
        for item in db!("read", t.iter())? {
            let (k, v) = db!("read", item)?;
            let d = serde_json::from_slice(v.value()).map_err(|source| StoreError::Corrupt {
                table: "decision",
                key: k.value().to_owned(),
                source,
            })?;
            out.push(d);
        }
        Ok(out)
    }

    /// Adds a runtime allowlist entry, durably.
    pub fn put_allow(&self, prefix: IpNet) -> Result<(), StoreError> {
        let tx = db!("begin", self.db.begin_write())?;
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
        let tx = db!("begin", self.db.begin_write())?;
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

impl Store {
    /// Caches an answer, durably (the cache survives restarts).
    pub fn put_answer(&self, source: IpNet, answer: &CachedAnswer) -> Result<(), StoreError> {
        let tx = db!("begin", self.db.begin_write())?;
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
    use crate::decision::{Action, Origin};

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
        Decision {
            prefix: p.parse().unwrap(),
            action: Action::Block,
            origin: Origin::Velocity,
            reason: "heavy hitter".into(),
            score: Some(90),
            factors: Vec::new(),
            rate: None,
            created_unix_ms: 1,
            expires_unix_ms: Some(2),
        }
    }

    #[test]
    fn decisions_and_allows_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let (a, b) = (decision("203.0.113.7/32"), decision("2001:db8:2::/64"));
            s.put_decisions(&[&a, &b]).unwrap();
            s.remove_decisions(&["203.0.113.7/32".parse().unwrap()])
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
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ipwarden.redb"),
            b"definitely not a database",
        )
        .unwrap();
        let err = Store::open(dir.path()).err().expect("must fail");
        assert!(err.to_string().contains("ipwarden.redb"), "{err}");
    }
}
