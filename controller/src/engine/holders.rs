//! One prefix's holders in the book: usually one decision, held in its book slot itself.
//!
//! A vector per prefix cost a heap allocation per decision (144 bytes with its header, a
//! million of them interleaved with a bulk load's short-lived allocations, so the heap could
//! not give the freed room back) and a pointer to follow on every lookup. Inline, a million
//! single-holder prefixes cost their book slots only.

use crate::decision::Decision;

#[derive(Debug)]
pub enum Holders {
    One(Decision),
    /// Two or more (after a removal, possibly one again: it stays a vector).
    Many(Vec<Decision>),
}

impl Holders {
    pub fn as_slice(&self) -> &[Decision] {
        match self {
            Holders::One(d) => std::slice::from_ref(d),
            Holders::Many(v) => v,
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [Decision] {
        match self {
            Holders::One(d) => std::slice::from_mut(d),
            Holders::Many(v) => v,
        }
    }

    /// Adds another holder's decision.
    pub fn push(&mut self, d: Decision) {
        match self {
            Holders::Many(v) => v.push(d),
            Holders::One(_) => {
                let Holders::One(first) = std::mem::replace(self, Holders::Many(Vec::new())) else {
                    unreachable!("matched One above");
                };
                *self = Holders::Many(vec![first, d]);
            }
        }
    }

    /// Removes the decision at `at`; `None` when the prefix has no holder left.
    pub fn remove(self, at: usize) -> (Decision, Option<Holders>) {
        match self {
            Holders::One(d) => (d, None),
            Holders::Many(mut v) => {
                let d = v.swap_remove(at);
                (d, (!v.is_empty()).then_some(Holders::Many(v)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Holder, Origin};

    fn block(feed: &str) -> Decision {
        Decision::block(
            "203.0.113.7/32".parse().unwrap(),
            Holder::named(Origin::Feed, feed),
            "r",
            0,
            None,
        )
    }

    #[test]
    fn one_holder_needs_no_allocation_and_more_keep_their_order() {
        assert!(
            std::mem::size_of::<Holders>() <= std::mem::size_of::<Decision>() + 8,
            "{}",
            std::mem::size_of::<Holders>()
        );
        // The book's free slots are `None`: that costs no room either.
        assert_eq!(
            std::mem::size_of::<Option<Holders>>(),
            std::mem::size_of::<Holders>()
        );
        let mut h = Holders::One(block("a"));
        h.push(block("b"));
        h.push(block("c"));
        let names: Vec<_> = h.as_slice().iter().map(|d| d.source.clone()).collect();
        assert_eq!(names.len(), 3);
        assert_eq!(h.as_slice()[0].source.as_deref(), Some("a"));
        let (d, rest) = h.remove(0);
        assert_eq!(d.source.as_deref(), Some("a"));
        let rest = rest.expect("two left");
        assert_eq!(rest.as_slice().len(), 2);
        let (_, none) = Holders::One(block("x")).remove(0);
        assert!(none.is_none());
    }
}
