//! Allowlist and block set lookups, producing a [`Decision`].
//!
//! Order: the exact-match hash (/32, /64: the common case, O(1) whatever the set size), then the
//! LPM trie of wider (or, for IPv6, longer than /64) prefixes. Only when an entry matches is the
//! allowlist consulted (an allow entry beats any block entry): traffic that matches nothing, the
//! bulk of it, never pays for the allowlist's LPM walk. An entry whose `expires_at_ns` has passed is ignored: the
//! kernel enforces expiry itself, the controller only deletes expired entries to free space.
//! A challenge entry rate-limits each source it covers (IPv4 address, IPv6 /64) with its own
//! GCRA bucket, whatever the entry's prefix length.

use aya_ebpf::maps::{LruHashMap, lpm_trie::Key};
use ipwarden_common::{Action, BlockEntry, gcra, key::v6_prefix};

use crate::maps::{
    ALLOW_V4, ALLOW_V6, BLOCK_NET_V4, BLOCK_NET_V6, BLOCK_V4, BLOCK_V6, BUCKET_V4, BUCKET_V6,
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

/// What a live entry says: `Block`, or for a challenge `Pass`/`Limit` from the source's bucket.
#[inline(always)]
fn judge<K>(
    entry: Option<&BlockEntry>,
    now: u64,
    buckets: &LruHashMap<K, u64>,
    key: &K,
) -> Option<Decision> {
    let e = entry?;
    if !e.is_live(now) {
        return None;
    }
    match e.action {
        Action::BLOCK => Some(Decision::Block),
        Action::CHALLENGE => Some(admit(buckets, key, now, e.interval_ns, e.burst)),
        _ => None,
    }
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

/// Judges an IPv4 source.
#[inline(always)]
pub fn ipv4(src: &[u8; 4], now: u64) -> Decision {
    let key = Key::new(32, *src);
    // SAFETY: the value is read at once; a concurrent update may tear it, which at worst
    // mis-times one packet's verdict.
    // An expired exact entry must not hide a live prefix entry.
    let entry = match unsafe { BLOCK_V4.get(src) }.filter(|e| e.is_live(now)) {
        Some(e) => Some(e),
        None => BLOCK_NET_V4.get(&key),
    };
    match entry {
        Some(e) if e.is_live(now) && ALLOW_V4.get(&key).is_some() => Decision::Allow,
        e => judge(e, now, &BUCKET_V4, src).unwrap_or(Decision::Pass),
    }
}

/// Judges an IPv6 source; the exact set is keyed by its /64.
#[inline(always)]
pub fn ipv6(src: &[u8; 16], now: u64) -> Decision {
    let key = Key::new(128, *src);
    let prefix = v6_prefix(src);
    // SAFETY: as in `ipv4`.
    let entry = match unsafe { BLOCK_V6.get(prefix) }.filter(|e| e.is_live(now)) {
        Some(e) => Some(e),
        None => BLOCK_NET_V6.get(&key),
    };
    match entry {
        Some(e) if e.is_live(now) && ALLOW_V6.get(&key).is_some() => Decision::Allow,
        e => judge(e, now, &BUCKET_V6, &prefix).unwrap_or(Decision::Pass),
    }
}
