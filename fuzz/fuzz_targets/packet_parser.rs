//! The frame parser the XDP program runs, on arbitrary bytes: never panics, and whatever it
//! returns is consistent with the frame. The SYN signature parser (kernel capture, then the
//! user-space option walk) gets the same bytes.
#![no_main]

use ipwarden_common::{Parsed, fingerprint::syn_signature, parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_frame(data) {
        // An IP verdict needs at least an Ethernet header and the source address.
        Parsed::V4 { .. } => assert!(data.len() >= 14 + 20),
        Parsed::V6 { .. } => assert!(data.len() >= 14 + 40),
        Parsed::NotIp | Parsed::Malformed => {}
    }
    if let Some(e) = syn_signature(data) {
        let s = e.signature();
        assert!(usize::from(s.option_count) <= ipwarden_common::fingerprint::MAX_OPTIONS);
        assert!(usize::from(e.captured) <= 40);
    }
});
