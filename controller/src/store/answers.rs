//! Cached IPASIS answers.

use ipnet::IpNet;
use redb::ReadableDatabase as _;
use serde::{Deserialize, Serialize};

use super::base::{ANSWERS, Store, StoreError, db};
use crate::enrich::Record;

/// A cached IPASIS answer for one source unit (/32, /64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    /// `None`: the API rejected the address (400); that is permanent.
    pub record: Option<Record>,
    /// When IPASIS answered (a peer's answer keeps its own time: it expires as it would there).
    pub fetched_unix_ms: u64,
    /// The fleet host that asked IPASIS; `None`: this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl CachedAnswer {
    /// Whether it may still decide at `now_ms`: within `ttl` of its fetch, or a 400 this host
    /// got (which never expires).
    pub fn is_fresh(&self, now_ms: u64, ttl: std::time::Duration) -> bool {
        let rejected_here = self.record.is_none() && self.host.is_none();
        rejected_here || now_ms.saturating_sub(self.fetched_unix_ms) < ttl.as_millis() as u64
    }
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
        read_answer(&self.db, source)
    }

    /// A handle that reads cached answers from another thread, never waiting for a writer
    /// (redb's readers see the last committed state).
    pub fn answers(&self) -> Answers {
        Answers(self.db.clone())
    }
}

/// Reads cached answers (see [`Store::answers`]).
#[derive(Clone)]
pub struct Answers(std::sync::Arc<redb::Database>);

impl Answers {
    pub fn get(&self, source: IpNet) -> Result<Option<CachedAnswer>, StoreError> {
        read_answer(&self.0, source)
    }
}

fn read_answer(db: &redb::Database, source: IpNet) -> Result<Option<CachedAnswer>, StoreError> {
    let tx = db!("begin", db.begin_read())?;
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
