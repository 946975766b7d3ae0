//! The prefix lengths the book holds, per family.

use ipnet::IpNet;

/// Prefixes held by family and length: counts, and a bit for each length held, so that the
/// lengths held are found a word at a time (the shadowing check asks for every decision a
/// change touches: a million in a bulk load, where testing 32 counts each cost 0.06 s).
#[derive(Debug)]
pub(super) struct Lengths {
    /// IPv4's 0–32, then IPv6's 0–128.
    pub(super) counts: [u32; 33 + 129],
    held: [u64; 3],
}

impl Default for Lengths {
    fn default() -> Self {
        Self {
            counts: [0; 33 + 129],
            held: [0; 3],
        }
    }
}

impl Lengths {
    pub(super) fn at(prefix: &IpNet) -> usize {
        let len = usize::from(prefix.prefix_len());
        match prefix {
            IpNet::V4(_) => len,
            IpNet::V6(_) => 33 + len,
        }
    }

    pub(super) fn add(&mut self, prefix: &IpNet) {
        let i = Self::at(prefix);
        self.counts[i] += 1;
        self.held[i / 64] |= 1 << (i % 64);
    }

    pub(super) fn remove(&mut self, prefix: &IpNet) {
        let i = Self::at(prefix);
        self.counts[i] -= 1;
        if self.counts[i] == 0 {
            self.held[i / 64] &= !(1 << (i % 64));
        }
    }

    /// The lengths held below `below` in IPv4 (`v6` false) or IPv6, longest first.
    pub(super) fn held_below(&self, v6: bool, below: u8) -> impl Iterator<Item = u8> + '_ {
        let base = if v6 { 33 } else { 0 };
        // Indices below `end` are left to look at.
        let mut end = base + usize::from(below);
        std::iter::from_fn(move || {
            while end > base {
                let i = end - 1;
                let word = self.held[i / 64] & (u64::MAX >> (63 - i % 64));
                if word == 0 {
                    end = i - i % 64;
                    continue;
                }
                let top = i - i % 64 + 63 - word.leading_zeros() as usize;
                end = top;
                return (top >= base).then(|| (top - base) as u8);
            }
            None
        })
    }
}
