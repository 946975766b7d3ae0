//! Heavy hitters waiting for a lookup.
//!
//! Bounded and ordered highest-rate-first: under a flood of new sources the quota and the
//! request rate go to the sources doing the most damage, and memory stays bounded. When full, a
//! newcomer faster than the slowest waiting candidate replaces it; otherwise it is dropped (and
//! counted). Dropped sources are still subject to the velocity rules.

use std::net::IpAddr;

use ipnet::IpNet;

/// A source waiting for enrichment.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The source unit (/32 or /64) decisions are made for.
    pub source: IpNet,
    /// The address to ask about (for IPv6, a real address seen in the /64).
    pub addr: IpAddr,
    pub pps: f64,
}

/// The bounded queue.
#[derive(Debug)]
pub struct Queue {
    cap: usize,
    items: Vec<Candidate>,
    /// Candidates dropped because the queue was full.
    pub dropped: u64,
}

impl Queue {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            items: Vec::new(),
            dropped: 0,
        }
    }

    /// Adds a candidate; a source already waiting is updated, not duplicated. Returns whether
    /// the candidate is now queued.
    pub fn push(&mut self, c: Candidate) -> bool {
        if let Some(existing) = self.items.iter_mut().find(|x| x.source == c.source) {
            *existing = c;
            return true;
        }
        if self.items.len() < self.cap {
            self.items.push(c);
            return true;
        }
        let (slowest, min) = self
            .items
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.pps.total_cmp(&b.1.pps))
            .map(|(i, x)| (i, x.pps))
            .expect("a full queue is not empty");
        self.dropped += 1;
        if c.pps > min {
            self.items[slowest] = c;
            true
        } else {
            false
        }
    }

    /// The fastest waiting candidate.
    pub fn pop(&mut self) -> Option<Candidate> {
        let i = self
            .items
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.pps.total_cmp(&b.1.pps))
            .map(|(i, _)| i)?;
        Some(self.items.swap_remove(i))
    }

    /// Whether `source` is waiting.
    pub fn contains(&self, source: &IpNet) -> bool {
        self.items.iter().any(|x| x.source == *source)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(last: u8, pps: f64) -> Candidate {
        let addr = IpAddr::from([203, 0, 113, last]);
        Candidate {
            source: crate::net::host_prefix(addr),
            addr,
            pps,
        }
    }

    #[test]
    fn highest_rate_first_bounded_and_deduplicated() {
        let mut q = Queue::new(2);
        assert!(q.push(c(1, 100.0)));
        assert!(q.push(c(2, 300.0)));
        assert!(q.push(c(1, 200.0)), "update, not a new entry");
        assert_eq!(q.len(), 2);
        assert!(!q.push(c(3, 50.0)), "slower than everyone: dropped");
        assert!(q.push(c(4, 1000.0)), "faster: replaces the slowest");
        assert_eq!(q.dropped, 2);
        assert_eq!(q.pop().unwrap().pps, 1000.0);
        assert_eq!(q.pop().unwrap().pps, 300.0);
        assert!(q.pop().is_none());
    }
}
