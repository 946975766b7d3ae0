//! Recording TCP SYN signatures (see `ipwarden_common::fingerprint`): for SYNs only, never on
//! the path of other packets, and written only when the source shows a signature not yet kept.

use ipwarden_common::{
    fingerprint::{
        SIG_BUDGET_JIFFY, SIG_BUDGET_PER_JIFFY, SIG_BUDGET_SKIPPED, SIG_BUDGET_USED,
        SIG_SEEN_SLOTS, SigKey, syn_head,
    },
    parse::Syn,
};
use ipwarden_ebpf::frame::XdpFrame;

use crate::{
    clock::jiffies,
    maps::{SIG_BUDGET, SIG_SEEN, SIGS},
};

/// Parses the SYN's signature and keeps it under its source (IPv4 address or IPv6 /64) unless
/// that source already showed it.
#[inline(always)]
pub fn record(frame: &XdpFrame, at: Syn) {
    let Some(head) = syn_head(frame, at) else {
        return;
    };
    let mut source = [0u8; 8];
    if head.version() == 4 {
        source[..4].copy_from_slice(&head.source()[..4]);
    } else {
        source.copy_from_slice(&head.source()[..8]);
    }
    let key = SigKey::new(source, head.version(), head.digest());
    // A per-CPU direct-mapped memo of (source, signature) pairs recently kept: a SYN flood from
    // one source pays an inlined array probe per SYN, not a hash lookup.
    let tag = (u64::from(key.digest) << 32)
        ^ u64::from_ne_bytes(key.source).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    let Some(seen) = SIG_SEEN.get_ptr_mut((tag >> 52) as u32 & (SIG_SEEN_SLOTS - 1)) else {
        return;
    };
    // SAFETY: a per-CPU array slot, written only by this CPU's program.
    let seen = unsafe { &mut *seen };
    if *seen == tag {
        return;
    }
    // Over the budget the pair is not remembered either: its next SYN is looked at again.
    if !budget() {
        return;
    }
    *seen = tag;
    // SAFETY: a lookup; the pointer is not dereferenced.
    if unsafe { SIGS.get(&key) }.is_some() {
        return;
    }
    let _ = SIGS.insert(&key, &head.capture(frame), 0);
}

/// Whether this CPU may look up and record one more new signature in this jiffy (see
/// `SIG_BUDGET_PER_JIFFY`); counts the ones it may not. Two inlined per-CPU array accesses and
/// an inlined clock load: no helper call.
#[inline(always)]
fn budget() -> bool {
    let (Some(at), Some(used)) = (
        SIG_BUDGET.get_ptr_mut(SIG_BUDGET_JIFFY),
        SIG_BUDGET.get_ptr_mut(SIG_BUDGET_USED),
    ) else {
        return true;
    };
    let now = jiffies();
    // SAFETY: per-CPU array slots, written only by this CPU's program; XDP does not nest.
    unsafe {
        if *at != now {
            *at = now;
            *used = 0;
        }
        if *used >= SIG_BUDGET_PER_JIFFY {
            if let Some(skipped) = SIG_BUDGET.get_ptr_mut(SIG_BUDGET_SKIPPED) {
                *skipped += 1;
            }
            return false;
        }
        *used += 1;
    }
    true
}
