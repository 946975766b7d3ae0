//! Allowlist and block set lookups, producing a [`Decision`].
//!
//! Order: the block index (one cache line: a live plain block of this exact source that no
//! allowlisted prefix overlaps, see `ipwarden_common::index`), then the exact-match hash (/32,
//! /64; skipped when the index is authoritative and the source's bucket unmarked: the common
//! case of an unblocked source then costs one cache line instead of a hash miss), then the
//! LPM trie of wider (or, for IPv6, longer than /64) prefixes. Only when an entry matches is the
//! allowlist consulted (an allow entry beats any block entry): traffic that matches nothing, the
//! bulk of it, never pays for the allowlist's LPM walk. An entry whose `expires_at_ns` has passed is ignored: the
//! kernel enforces expiry itself, the controller only deletes expired entries to free space.
//! A challenge entry rate-limits each source it covers (IPv4 address, IPv6 /64) with its own
//! GCRA bucket, whatever the entry's prefix length.

use aya_ebpf::maps::{Array, LruHashMap, lpm_trie::Key};
use ipwarden_common::{
    Action, BlockEntry, DataplaneConfig, SrcV6Prefix, VerdictCache, gcra,
    index::{IndexBucket, bucket, key_v4, key_v6, way_origin, way_permanent},
};

use crate::{
    clock::{jiffies, now},
    maps::{
        ALLOW_V4, ALLOW_V6, BLOCK_NET_V4, BLOCK_NET_V6, BLOCK_V4, BLOCK_V6, BUCKET_V4, BUCKET_V6,
        INDEX_V4, INDEX_V6,
    },
};

/// The program's judgement of a source, before monitor mode is applied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Neither allowlisted nor blocked.
    Pass,
    /// Matched the allowlist.
    Allow,
    /// Matched a live block entry.
    Block,
    /// Matched a live challenge entry and exceeded its rate.
    Limit,
}

/// A decision, and what of it may be cached beside the source's counters.
#[derive(Clone, Copy)]
pub struct Judged {
    pub decision: Decision,
    /// A `VerdictCache` verdict, or `NONE` when the decision must be made again per packet.
    verdict: u64,
    /// The jiffy at which the cached verdict lapses (0 = never).
    until_jiffies: u64,
    /// The kernel time of the judgement: a new source's first-seen time, so claiming a
    /// front-table slot needs no clock call of its own.
    pub at_ns: u64,
    /// The `Reason` code of the entry that decided a drop (0 otherwise): drops are counted by
    /// origin.
    pub origin: u32,
}

impl Judged {
    /// The cache entry to keep under `generation`.
    #[inline(always)]
    pub const fn cache(&self, generation: u64) -> VerdictCache {
        VerdictCache::decided_by(generation, self.verdict, self.origin, self.until_jiffies)
    }

    /// The same judgement, decided by an entry of `origin`.
    #[inline(always)]
    const fn by(mut self, origin: u32) -> Self {
        self.origin = origin;
        self
    }
}

/// Both clocks, read once per judgement.
#[derive(Clone, Copy)]
struct Now {
    ns: u64,
    jiffies: u64,
}

impl Now {
    /// The clocks, with the kernel time the caller read already (`0`: read it here).
    #[inline(always)]
    fn read(ns: u64) -> Self {
        Self {
            ns: if ns != 0 { ns } else { now() },
            jiffies: jiffies(),
        }
    }

    #[inline(always)]
    fn cached(self, decision: Decision, verdict: u64, expires_at_ns: u64) -> Judged {
        Judged {
            decision,
            verdict,
            until_jiffies: VerdictCache::lapse(expires_at_ns, self.ns, self.jiffies),
            at_ns: self.ns,
            origin: 0,
        }
    }
}

/// What the matching entry (if any) says about a source that is not allowlisted: `Block`
/// (cached until the entry lapses), `Pass`/`Limit` from the source's bucket for a challenge
/// (never cached), or `Pass` when nothing live matched (cached for the generation).
#[inline(always)]
fn judge<K>(entry: Option<&BlockEntry>, now: Now, buckets: &LruHashMap<K, u64>, key: &K) -> Judged {
    let pass = now.cached(Decision::Pass, VerdictCache::PASS, 0);
    let Some(e) = entry else {
        return pass;
    };
    if !e.is_live(now.ns) {
        return pass;
    }
    match e.action {
        Action::BLOCK => now
            .cached(Decision::Block, VerdictCache::BLOCK, e.expires_at_ns)
            .by(e.reason),
        Action::CHALLENGE => now
            .cached(
                admit(buckets, key, now.ns, e.interval_ns, e.burst),
                VerdictCache::NONE,
                0,
            )
            .by(e.reason),
        // A solved challenge: full speed until the pass lapses, then the wider entry again.
        Action::PASS => now.cached(Decision::Pass, VerdictCache::PASS, e.expires_at_ns),
        _ => pass,
    }
}

/// A live entry overridden by the allowlist: cached until the entry lapses.
#[inline(always)]
fn allowed(e: &BlockEntry, now: Now) -> Judged {
    now.cached(Decision::Allow, VerdictCache::ALLOW, e.expires_at_ns)
}

/// One packet against the source's GCRA bucket.
#[inline(always)]
fn admit<K>(
    buckets: &LruHashMap<K, u64>,
    key: &K,
    now: u64,
    interval_ns: u32,
    burst: u32,
) -> Decision {
    match buckets.get_ptr_mut(key) {
        Some(tat) => {
            // SAFETY: a valid map value pointer; a concurrent writer can only make us admit or
            // drop one packet differently.
            let current = unsafe { *tat };
            match gcra(current, now, interval_ns, burst) {
                Some(next) => {
                    // SAFETY: as above.
                    unsafe { *tat = next };
                    Decision::Pass
                }
                None => Decision::Limit,
            }
        }
        None => {
            if let Some(next) = gcra(0, now, interval_ns, burst) {
                let _ = buckets.insert(key, next, 0);
            }
            Decision::Pass
        }
    }
}

/// A live block of exactly this source from its index bucket: the hash and the allowlist need
/// not be asked (user space indexes no entry an allowlisted prefix overlaps).
#[inline(always)]
fn indexed(bucket: Option<&IndexBucket>, key: u64, now: Now) -> Option<Judged> {
    let until = bucket?.find(key)?;
    let lapse = if way_permanent(until) { 0 } else { until };
    (now.ns < until).then(|| {
        now.cached(Decision::Block, VerdictCache::BLOCK, lapse)
            .by(way_origin(until))
    })
}

/// Whether the exact hash may hold the key, whose bucket found it no way: unless the index is
/// authoritative and the bucket unmarked (see `ipwarden_common::index`).
#[inline(always)]
fn hash_may_hold(bucket: Option<&IndexBucket>, cfg: &DataplaneConfig) -> bool {
    !cfg.index_authoritative() || bucket.is_none_or(IndexBucket::marked)
}

/// The origin of the index's live block of exactly this IPv4 source, if it holds one: the
/// whole judgement of a sprayed blocked source that finds its front-table slot held by another
/// (see `source`).
#[inline(always)]
pub fn index_blocks_v4(src: &[u8; 4]) -> Option<u32> {
    index_blocks(&INDEX_V4, key_v4(src))
}

/// As [`index_blocks_v4`], for an IPv6 /64.
#[inline(always)]
pub fn index_blocks_v6(prefix: &SrcV6Prefix) -> Option<u32> {
    index_blocks(&INDEX_V6, key_v6(prefix))
}

#[inline(always)]
fn index_blocks(index: &Array<IndexBucket>, key: u64) -> Option<u32> {
    let until = index.get(bucket(key))?.find(key)?;
    // A permanent block needs no clock (a helper call).
    (way_permanent(until) || now() < until).then_some(way_origin(until))
}

/// Judges an IPv4 source at kernel time `now_ns` (0: read the clock).
#[inline(always)]
pub fn ipv4(src: &[u8; 4], cfg: &DataplaneConfig, now_ns: u64) -> Judged {
    let now = Now::read(now_ns);
    let ix = key_v4(src);
    let b = INDEX_V4.get(bucket(ix));
    if let Some(j) = indexed(b, ix, now) {
        return j;
    }
    let key = Key::new(32, *src);
    // SAFETY: the value is read at once; a concurrent update may tear it, which at worst
    // mis-times one packet's verdict.
    let exact = if hash_may_hold(b, cfg) {
        unsafe { BLOCK_V4.get(src) }
    } else {
        None
    };
    // An expired exact entry must not hide a live prefix entry.
    let entry = match exact.filter(|e| e.is_live(now.ns)) {
        Some(e) => Some(e),
        None => BLOCK_NET_V4.get(&key),
    };
    match entry {
        Some(e) if e.is_live(now.ns) && ALLOW_V4.get(&key).is_some() => allowed(e, now),
        e => judge(e, now, &BUCKET_V4, src),
    }
}

/// Judges an IPv6 source; the exact set is keyed by its /64 (`prefix`). As [`ipv4`] for
/// `now_ns`.
#[inline(always)]
pub fn ipv6(src: &[u8; 16], prefix: &SrcV6Prefix, cfg: &DataplaneConfig, now_ns: u64) -> Judged {
    let now = Now::read(now_ns);
    let ix = key_v6(prefix);
    let b = INDEX_V6.get(bucket(ix));
    if let Some(j) = indexed(b, ix, now) {
        return j;
    }
    let key = Key::new(128, *src);
    // SAFETY: as in `ipv4`.
    let exact = if hash_may_hold(b, cfg) {
        unsafe { BLOCK_V6.get(prefix) }
    } else {
        None
    };
    let entry = match exact.filter(|e| e.is_live(now.ns)) {
        Some(e) => Some(e),
        None => BLOCK_NET_V6.get(&key),
    };
    match entry {
        Some(e) if e.is_live(now.ns) && ALLOW_V6.get(&key).is_some() => allowed(e, now),
        e => judge(e, now, &BUCKET_V6, prefix),
    }
}
