//! Many inserts into the book at once.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::{Book, COMPACT_FROM};
use crate::decision::Decision;

/// Many inserts at once (a bulk load, a feed's first fetch), with the book out of reach until
/// it ends. The new prefixes wait beside the tree, which takes them all at the end, built
/// bottom up from their sorted list in one step: inserted one at a time, a million took a third
/// of a second, and a shuffled million far longer, and left a tree to compact.
///
/// While they come in order (a sorted list), the last one is all a repeat can be, so a vector
/// holds them. Once the order breaks, a hash map finds a repeat's slot, and the list is sorted
/// at the end.
pub struct Batch<'a> {
    book: &'a mut Book,
    waiting: Waiting,
}

/// The new prefixes waiting for the tree, and their slots.
enum Waiting {
    /// A batch too small against the book to wait (taking the waiting prefixes walks the
    /// whole tree): each goes in at once.
    None,
    /// In order so far.
    Ordered(Vec<(IpNet, u32)>),
    /// In no order.
    Gathered(foldhash::HashMap<IpNet, u32>),
}

impl Book {
    /// A batch of `n` inserts into the book (see [`Batch`]).
    pub fn batch(&mut self, n: usize) -> Batch<'_> {
        let waiting = if n >= COMPACT_FROM && n * 4 >= self.len {
            Waiting::Ordered(Vec::new())
        } else {
            Waiting::None
        };
        Batch {
            book: self,
            waiting,
        }
    }
}

impl Batch<'_> {
    /// [`Book::insert_noting`].
    pub fn insert_noting(&mut self, d: Decision) -> (Option<Decision>, bool) {
        let waiting_at = match &self.waiting {
            Waiting::None => return self.book.insert_noting(d),
            Waiting::Ordered(v) => match v.last() {
                Some(&(last, at)) if last == d.prefix => Some(at),
                Some(&(last, _)) if last > d.prefix => {
                    let Waiting::Ordered(v) = std::mem::replace(&mut self.waiting, Waiting::None)
                    else {
                        unreachable!("matched above")
                    };
                    let mut gathered = foldhash::HashMap::default();
                    gathered.reserve(v.len());
                    gathered.extend(v);
                    let at = gathered.get(&d.prefix).copied();
                    self.waiting = Waiting::Gathered(gathered);
                    at
                }
                _ => None,
            },
            Waiting::Gathered(m) => m.get(&d.prefix).copied(),
        };
        if let Some(at) = waiting_at {
            // A second holder (or a renewal) of a prefix this batch brought.
            return (self.book.enter_held(at, d), false);
        }
        if self.book.by_prefix.contains_key(&d.prefix) {
            return self.book.insert_noting(d);
        }
        let prefix = d.prefix;
        let at = self.book.new_prefix(d);
        match &mut self.waiting {
            Waiting::Ordered(v) => v.push((prefix, at)),
            Waiting::Gathered(m) => {
                m.insert(prefix, at);
            }
            Waiting::None => unreachable!("a batch that does not wait returned above"),
        }
        (None, true)
    }

    /// Whether the tree was rebuilt whole (it is compact). Ends the batch.
    pub fn finish(mut self) -> bool {
        self.settle()
    }

    /// The tree takes the waiting prefixes; whether it did.
    fn settle(&mut self) -> bool {
        let list = match std::mem::replace(&mut self.waiting, Waiting::None) {
            Waiting::None => return false,
            Waiting::Ordered(v) => v,
            Waiting::Gathered(m) => {
                let mut v: Vec<(IpNet, u32)> = m.into_iter().collect();
                v.sort_unstable();
                v
            }
        };
        if list.is_empty() {
            return false;
        }
        // Collected from a sorted vector without repeats (the sort in `collect` finds one run),
        // the tree is built bottom up, full.
        let mut built: BTreeMap<IpNet, u32> = list.into_iter().collect();
        if self.book.by_prefix.is_empty() {
            self.book.by_prefix = built;
        } else {
            self.book.by_prefix.append(&mut built);
        }
        self.book.compact_at = self.book.len.max(COMPACT_FROM) / 2 * 3;
        true
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.settle();
    }
}
