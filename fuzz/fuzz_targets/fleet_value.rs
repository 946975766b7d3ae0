//! Values a peer (or anyone with access to the bucket) writes in the fleet's decisions bucket,
//! and their keys: errors or decisions, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = ipwarden::fleet::wire::Shared::parse(data) {
        let _ = s.into_decision();
    }
    if let Ok(key) = std::str::from_utf8(data) {
        let _ = ipwarden::fleet::keys::parse_decision_key(key);
    }
});
