//! Many inserts into the book at once.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::{Book, COMPACT_FROM};
use crate::decision::Decision;

/// Many inserts at once (a bulk load, a feed's first fetch), with the book out of reach until
/// it ends. While the new prefixes come in order (a sorted list), they wait beside the tree,
/// which takes them all at the end, built from the sorted list in one step: inserted one at a
/// time, a million took a third of a second and left a tree to compact. Out of order, the
/// waiting ones go in at once and the rest one at a time, as [`Book::insert_noting`] does.
pub struct Batch<'a> {
    book: &'a mut Book,
    /// New prefixes and their slots, in order, not yet in the tree.
    fresh: Vec<(IpNet, u32)>,
    in_order: bool,
}

impl Book {
    /// A batch of `n` inserts into the book (see [`Batch`]). Only a batch large against the
    /// book waits to build the tree: taking the waiting prefixes walks the whole tree.
    pub fn batch(&mut self, n: usize) -> Batch<'_> {
        let in_order = n >= COMPACT_FROM && n * 4 >= self.len;
        Batch {
            book: self,
            fresh: Vec::new(),
            in_order,
        }
    }
}

impl Batch<'_> {
    /// [`Book::insert_noting`].
    pub fn insert_noting(&mut self, d: Decision) -> (Option<Decision>, bool) {
        if self.in_order {
            let last = self.fresh.last().copied();
            match last {
                // A second holder of the last new prefix.
                Some((last, at)) if last == d.prefix => {
                    return (self.book.enter_held(at, d), false);
                }
                _ if self.book.by_prefix.contains_key(&d.prefix) => {}
                Some((last, _)) if last > d.prefix => {
                    self.in_order = false;
                    self.settle();
                }
                _ => {
                    let prefix = d.prefix;
                    let at = self.book.new_prefix(d);
                    self.fresh.push((prefix, at));
                    return (None, true);
                }
            }
        }
        self.book.insert_noting(d)
    }

    /// Whether the tree was built from the new prefixes at once (it is compact). Ends the
    /// batch.
    pub fn finish(mut self) -> bool {
        self.settle();
        self.in_order
    }

    /// The tree takes the waiting prefixes.
    fn settle(&mut self) {
        let fresh = std::mem::take(&mut self.fresh);
        if fresh.is_empty() {
            return;
        }
        // From a sorted vector: the sort finds one run, and the tree is built bottom up, full.
        let mut built: BTreeMap<IpNet, u32> = fresh.into_iter().collect();
        if self.book.by_prefix.is_empty() {
            self.book.by_prefix = built;
        } else {
            self.book.by_prefix.append(&mut built);
        }
        self.book.compact_at = self.book.len.max(COMPACT_FROM) / 2 * 3;
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.settle();
    }
}
