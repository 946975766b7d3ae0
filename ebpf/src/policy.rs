//! Allowlist and block set lookups, producing a [`Decision`].
//!
//! Order: the allowlist first (an allow entry beats any block entry), then the exact-match hash
//! (/32, /64: the common case, O(1) whatever the set size), then the LPM trie of wider (or, for
//! IPv6, longer than /64) prefixes. An entry whose `expires_at_ns` has passed is ignored: the
//! kernel enforces expiry itself, the controller only deletes expired entries to free space.

use aya_ebpf::maps::lpm_trie::Key;
use ipwarden_common::{Action, BlockEntry, key::v6_prefix};

use crate::maps::{ALLOW_V4, ALLOW_V6, BLOCK_NET_V4, BLOCK_NET_V6, BLOCK_V4, BLOCK_V6};

/// The program's judgement of a source, before monitor mode is applied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Neither allowlisted nor blocked.
    Pass,
    /// Matched the allowlist.
    Allow,
    /// Matched a live block entry.
    Block,
}

#[inline(always)]
fn judge(entry: Option<&BlockEntry>, now: u64) -> Option<Decision> {
    match entry {
        Some(e) if e.action == Action::BLOCK && e.is_live(now) => Some(Decision::Block),
        _ => None,
    }
}

/// Judges an IPv4 source.
#[inline(always)]
pub fn ipv4(src: &[u8; 4], now: u64) -> Decision {
    let key = Key::new(32, *src);
    if ALLOW_V4.get(&key).is_some() {
        return Decision::Allow;
    }
    // SAFETY: the value is copied out at once; a concurrent update may tear it, which at worst
    // mis-times one packet's verdict.
    if let Some(d) = judge(unsafe { BLOCK_V4.get(src) }, now) {
        return d;
    }
    judge(BLOCK_NET_V4.get(&key), now).unwrap_or(Decision::Pass)
}

/// Judges an IPv6 source; the exact set is keyed by its /64.
#[inline(always)]
pub fn ipv6(src: &[u8; 16], now: u64) -> Decision {
    let key = Key::new(128, *src);
    if ALLOW_V6.get(&key).is_some() {
        return Decision::Allow;
    }
    // SAFETY: as in `ipv4`.
    if let Some(d) = judge(unsafe { BLOCK_V6.get(v6_prefix(src)) }, now) {
        return d;
    }
    judge(BLOCK_NET_V6.get(&key), now).unwrap_or(Decision::Pass)
}
