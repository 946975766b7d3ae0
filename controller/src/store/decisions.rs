//! Decisions and their history.

use ipnet::IpNet;
use redb::{ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _};

use super::{
    base::{DECISIONS, HISTORY, Store, StoreError, db, decode},
    keys::history_key_ms,
    prepared::Prepared,
};
use crate::decision::{Decision, Ended, Text};

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

/// From how many puts a write goes through a cursor ([`merge`]) rather than one insert each.
pub(super) const MERGE_FROM: usize = 4096;

/// Whether `puts` sorted puts into a table of `stored` entries go through [`merge`]: many,
/// and beside few stored entries (at most one for every eight puts), since each stored entry
/// the cursor passes while inserts are pending costs a splice of the pending run.
pub(super) fn merges(puts: usize, stored: u64) -> bool {
    puts >= MERGE_FROM && stored.saturating_mul(8) <= puts as u64
}

/// Writes `p`'s puts (sorted, one per key) into `t` through one cursor walking the table in
/// key order: redb buffers a run of ascending inserts and splices it into full leaves at once,
/// where an insert each walks down the tree and splits leaves one by one (a million new
/// decisions: about 1.1 µs an insert). A stored key equal to a put's is replaced.
fn merge(
    t: &mut redb::Table<'_, &'static str, &'static [u8]>,
    p: &Prepared,
) -> Result<(), StoreError> {
    use std::cmp::Ordering;
    let mut cursor = db!(
        "seek",
        t.lower_bound_mut(std::ops::Bound::<&str>::Unbounded)
    )?;
    // The stored key after the cursor's gap: inserts before it leave it in place, so it is
    // read again only when the cursor moves.
    let mut next = stored_next(&mut cursor)?;
    for (key, value) in p.puts() {
        while let Some(stored) = next.as_deref() {
            match stored.cmp(key) {
                Ordering::Less => {
                    db!("seek", cursor.next())?;
                }
                Ordering::Equal => {
                    db!("remove", cursor.remove_next())?;
                }
                Ordering::Greater => break,
            }
            next = stored_next(&mut cursor)?;
        }
        db!("insert", cursor.insert_before(key, value))?;
    }
    db!("insert", cursor.close())
}

/// The key after a cursor's gap, if any.
fn stored_next(
    cursor: &mut redb::CursorMut<'_, &'static str, &'static [u8]>,
) -> Result<Option<String>, StoreError> {
    Ok(db!("read", cursor.peek_next())?.map(|(k, _)| k.value().to_owned()))
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
        self.write_prepared(&mut Prepared::new(put, ended))
    }

    /// [`Store::write`] of what was prepared (sorted here, off the caller's thread when the
    /// writer is another one).
    pub fn write_prepared(&self, p: &mut Prepared) -> Result<(), StoreError> {
        p.sort();
        let tx = db!("begin", self.begin_write())?;
        {
            let mut t = db!("open table", tx.open_table(DECISIONS))?;
            let mut h = db!("open table", tx.open_table(HISTORY))?;
            for (key, history_key, record) in &p.ended {
                db!("remove", t.remove(key.as_str()))?;
                db!("insert", h.insert(history_key.as_str(), record.as_slice()))?;
            }
            let stored = db!("count", t.len())?;
            if merges(p.put_len(), stored) {
                merge(&mut t, p)?;
            } else {
                for (key, value) in p.puts() {
                    db!("insert", t.insert(key, value))?;
                }
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
