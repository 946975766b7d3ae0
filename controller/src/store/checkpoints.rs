//! How far each decision source got (a fleet bucket's revision): stored once the events before
//! it are applied, so that a restart resumes after it.

use std::collections::BTreeMap;

use redb::{ReadableDatabase as _, ReadableTable as _};

use super::base::{CHECKPOINTS, Store, StoreError, db};

impl Store {
    /// One source's checkpoint.
    pub fn checkpoint(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(CHECKPOINTS))?;
        Ok(db!("read", t.get(key))?.map(|v| v.value()))
    }

    /// Every checkpoint, by key.
    pub fn checkpoints(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(CHECKPOINTS))?;
        let mut out = BTreeMap::new();
        for item in db!("read", t.iter())? {
            let (k, v) = db!("read", item)?;
            out.insert(k.value().to_owned(), v.value());
        }
        Ok(out)
    }

    /// Stores a checkpoint, durably.
    pub fn set_checkpoint(&self, key: &str, value: u64) -> Result<(), StoreError> {
        let tx = db!("begin", self.begin_write())?;
        {
            let mut t = db!("open table", tx.open_table(CHECKPOINTS))?;
            db!("write", t.insert(key, value))?;
        }
        db!("commit", tx.commit())
    }
}
