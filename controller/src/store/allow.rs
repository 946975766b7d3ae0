//! The runtime allowlist (`allow add`).

use ipnet::IpNet;
use redb::{ReadableDatabase as _, ReadableTable as _};

use super::base::{ALLOW, Store, StoreError, db};

impl Store {
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
