//! Decisions and their history.

use ipnet::IpNet;
use redb::{ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _};

use super::base::{DECISIONS, HISTORY, Store, StoreError, db, decode};
use crate::decision::{Decision, Ended, Holder, Text};

/// The key of a decision: its prefix and holder (`prefix|origin|source`). The prefix leads so
/// that one prefix's holders are neighbours.
pub fn decision_key(prefix: &IpNet, holder: &Holder) -> String {
    format!(
        "{prefix}|{}|{}",
        holder.origin.name(),
        holder.source.as_deref().unwrap_or("")
    )
}

/// Distinct texts [`Interner`] keeps at most.
const INTERNED: usize = 4096;

/// Shares the text of the decisions read at a start: a feed's million decisions then hold its
/// name and reason once, as they did when they were made (see [`Text`]). Bounded: reasons that
/// differ per decision (a measured rate) stop being kept once [`INTERNED`] are, and stay as
/// read.
#[derive(Default)]
struct Interner(std::collections::HashSet<Text>);

impl Interner {
    fn intern(&mut self, t: &mut Text) {
        match self.0.get(&**t) {
            Some(shared) => *t = shared.clone(),
            None if self.0.len() < INTERNED => {
                self.0.insert(t.clone());
            }
            None => {}
        }
    }
}

/// The key of an ended decision: `prefix|ended ms (20 digits)|origin|source`, so a prefix's
/// history is one range, in time order.
pub(super) fn history_key(e: &Ended) -> String {
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
pub(super) fn history_key_ms(key: &str) -> Option<u64> {
    key.split('|').nth(1)?.parse().ok()
}

impl Store {
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
            // In key order: a large write then walks the tree's pages once, in order, where
            // random order would evict dirty pages from the small page cache (`CACHE_BYTES`) and
            // read them back (a million decisions as JSON: 1.7 s instead of 2.8 s for this loop).
            let mut keyed: Vec<(String, &Decision)> = put
                .iter()
                .map(|d| (decision_key(&d.prefix, &d.holder()), *d))
                .collect();
            keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut bytes = Vec::with_capacity(256);
            for (key, d) in &keyed {
                bytes.clear();
                super::value::encode(d, &mut bytes);
                db!("insert", t.insert(key.as_str(), bytes.as_slice()))?;
            }
        }
        db!("commit", tx.commit())
    }

    /// Every stored decision, grouped by prefix.
    pub fn decisions(&self) -> Result<Vec<Decision>, StoreError> {
        let tx = db!("begin", self.db.begin_read())?;
        let t = db!("open table", tx.open_table(DECISIONS))?;
        let mut out = Vec::with_capacity(db!("read", t.len())? as usize);
        let mut shared = Interner::default();
        for item in db!("read", t.iter())? {
            let (k, v) = db!("read", item)?;
            let mut d = super::value::decode(k.value(), v.value())?;
            shared.intern(&mut d.reason);
            if let Some(s) = &mut d.source {
                shared.intern(s);
            }
            out.push(d);
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
}
