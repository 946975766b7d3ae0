//! The verdict cache each front-table slot carries, so a packet from a source the program has
//! already judged costs one inlined array lookup instead of three map lookups (counter, exact
//! block hash, LPM trie).
//!
//! Validity is decided by the data plane's generation ([`crate::DataplaneConfig::generation`]):
//! user space gives it a fresh value after every change to the block set or the allowlist, and
//! the program reads it *before* it consults those maps. A verdict computed from maps older than
//! a change therefore carries an older generation and is recomputed on the next packet. Time is
//! the other input: a cached block lapses no later than its entry, so the kernel's own expiry
//! still holds.
//!
//! The lapse time is kept in jiffies, because `bpf_jiffies64` is inlined by the verifier while
//! every nanosecond clock is a helper call. When the verdict is computed the program knows both
//! clocks, and converts the entry's remaining nanoseconds to jiffies as if a jiffy were as long
//! as on any kernel ([`JIFFY_MAX_NS`], HZ = 100): on a faster tick the cached verdict lapses
//! early and is simply recomputed, never late.
//!
//! Challenge verdicts are never cached: every packet of a challenged source meets its rate
//! bucket.

/// The longest jiffy of any kernel configuration (CONFIG_HZ = 100).
pub const JIFFY_MAX_NS: u64 = 10_000_000;

/// A cached verdict, per CPU, in a front-table slot ([`crate::front`]). Kernel-private.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictCache {
    /// The generation the verdict was computed under, shifted left by five, the origin of the
    /// entry that decided it (a `Reason` code, 3 bits: drops are counted by origin) shifted
    /// left by two, and the verdict (one of the `VerdictCache::*` consts) in the low two bits.
    /// [`VerdictCache::NONE`] there means nothing is cached. One word, so the 59-bit generation
    /// and the origin cost no extra space.
    pub tag: u64,
    /// `bpf_jiffies64` at which the verdict lapses; 0 = never.
    pub until_jiffies: u64,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for VerdictCache {}

const _: () = assert!(core::mem::size_of::<VerdictCache>() == 16);

impl VerdictCache {
    /// Nothing cached.
    pub const NONE: u64 = 0;
    /// Matched nothing: pass.
    pub const PASS: u64 = 1;
    /// A live entry matched but the allowlist covers the source: pass, counted as allowed.
    pub const ALLOW: u64 = 2;
    /// A live block entry matched: drop.
    pub const BLOCK: u64 = 3;
    const VERDICT: u64 = 3;
    const ORIGIN: u64 = 7;
    const GENERATION_SHIFT: u32 = 5;

    /// A verdict valid under `generation` (below 2^59, see
    /// [`crate::DataplaneConfig::generation`]) until `until_jiffies` (0 = for as long as the
    /// generation).
    #[inline(always)]
    pub const fn new(generation: u64, verdict: u64, until_jiffies: u64) -> Self {
        Self::decided_by(generation, verdict, 0, until_jiffies)
    }

    /// As [`VerdictCache::new`], remembering the `Reason` code of the entry that decided it.
    #[inline(always)]
    pub const fn decided_by(
        generation: u64,
        verdict: u64,
        origin: u32,
        until_jiffies: u64,
    ) -> Self {
        Self {
            tag: (generation << Self::GENERATION_SHIFT)
                | ((origin as u64 & Self::ORIGIN) << 2)
                | (verdict & Self::VERDICT),
            until_jiffies,
        }
    }

    /// The `Reason` code of the entry that decided the cached verdict (0 if none did).
    #[inline(always)]
    pub const fn origin(&self) -> u32 {
        ((self.tag >> 2) & Self::ORIGIN) as u32
    }

    /// The jiffy by which a verdict decided by an entry lapsing at `expires_at_ns` (0 = never)
    /// must lapse, given both clocks now. Rounds towards earlier; 0 stays "never"; an entry
    /// that lapses within a jiffy yields the current jiffy, that is, no caching.
    #[inline(always)]
    pub const fn lapse(expires_at_ns: u64, now_ns: u64, now_jiffies: u64) -> u64 {
        if expires_at_ns == 0 {
            return 0;
        }
        if expires_at_ns <= now_ns {
            return now_jiffies;
        }
        now_jiffies + (expires_at_ns - now_ns) / JIFFY_MAX_NS
    }

    /// The cached verdict if it was computed under `generation` and has not lapsed by
    /// `now_jiffies`.
    #[inline(always)]
    pub const fn get(&self, generation: u64, now_jiffies: u64) -> Option<u64> {
        let verdict = self.tag & Self::VERDICT;
        if verdict == Self::NONE
            || self.tag >> Self::GENERATION_SHIFT != generation
            || (self.until_jiffies != 0 && now_jiffies >= self.until_jiffies)
        {
            None
        } else {
            Some(verdict)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cache_holds_nothing() {
        assert_eq!(VerdictCache::default().get(0, 0), None);
    }

    #[test]
    fn every_verdict_and_origin_round_trips_under_a_59_bit_generation() {
        let g = (1u64 << 59) - 1;
        for o in 0..8 {
            let c = VerdictCache::decided_by(g, VerdictCache::BLOCK, o, 0);
            assert_eq!((c.get(g, 0), c.origin()), (Some(VerdictCache::BLOCK), o));
        }
        for v in [VerdictCache::PASS, VerdictCache::ALLOW, VerdictCache::BLOCK] {
            assert_eq!(VerdictCache::new(g, v, 0).get(g, 0), Some(v));
            assert_eq!(VerdictCache::new(g, v, 0).get(g - 1, 0), None);
        }
        assert_eq!(VerdictCache::new(g, VerdictCache::NONE, 0).get(g, 0), None);
    }

    #[test]
    fn a_new_generation_invalidates() {
        let c = VerdictCache::new(7, VerdictCache::PASS, 0);
        assert_eq!(c.get(7, u64::MAX), Some(VerdictCache::PASS));
        assert_eq!(c.get(8, 0), None);
    }

    #[test]
    fn lapse_is_never_later_than_the_entry() {
        assert_eq!(VerdictCache::lapse(0, 5, 7), 0, "permanent stays permanent");
        assert_eq!(VerdictCache::lapse(100, 100, 7), 7, "lapsed: no caching");
        // 25 ms left: two whole 10 ms jiffies; at HZ=1000 that is 2 ms of caching, at HZ=100 20.
        assert_eq!(VerdictCache::lapse(1_025_000_000, 1_000_000_000, 50), 52);
        for hz in [100u64, 250, 300, 1000] {
            let jiffy = 1_000_000_000 / hz;
            for left in [1u64, 9_999_999, 10_000_000, 123_456_789, 600_000_000_000] {
                let until = VerdictCache::lapse(1_000 + left, 1_000, 0);
                assert!(
                    until * jiffy <= left,
                    "HZ={hz}, {left} ns left: {until} jiffies"
                );
            }
        }
    }

    #[test]
    fn a_cached_block_lapses_with_its_entry() {
        let c = VerdictCache::new(1, VerdictCache::BLOCK, 1_000);
        assert_eq!(c.get(1, 999), Some(VerdictCache::BLOCK));
        assert_eq!(c.get(1, 1_000), None);
    }
}
