//! Recording TCP SYN signatures (see `ipwarden_common::fingerprint`): for SYNs only, never on
//! the path of other packets, and written only when the source shows a signature not yet kept.

use ipwarden_common::fingerprint::{SigKey, syn_signature};
use ipwarden_ebpf::frame::XdpFrame;

use crate::maps::SIGS;

/// Parses the SYN's signature and keeps it under its source (IPv4 address or IPv6 /64) unless
/// that source already showed it.
#[inline(always)]
pub fn record(frame: &XdpFrame) {
    let Some(entry) = syn_signature(frame) else {
        return;
    };
    let mut source = [0u8; 8];
    if entry.version == 4 {
        source[..4].copy_from_slice(&entry.last_addr[..4]);
    } else {
        source.copy_from_slice(&entry.last_addr[..8]);
    }
    let key = SigKey {
        source,
        version: entry.version,
        _pad: [0; 3],
        digest: entry.digest(),
    };
    // SAFETY: a lookup; the pointer is not dereferenced.
    if unsafe { SIGS.get(&key) }.is_some() {
        return;
    }
    let _ = SIGS.insert(&key, &entry, 0);
}
