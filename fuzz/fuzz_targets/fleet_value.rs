//! Values a peer (or anyone with access to the bucket) writes in the fleet's decisions bucket,
//! and their keys: errors or decisions, never panics; and every decision accepted is within
//! this host's bounds (no longer than `decisions.max_ttl`, at most 16 score factors, and
//! through the remote bounds no wider than `decisions.remote_widest_*`).
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = ipwarden::config::DecisionsConfig::default();
    if let Ok(s) = ipwarden::fleet::wire::Shared::parse(data) {
        let d = s.into_decision(cfg.max_ttl, common::NOW);
        let latest = common::NOW + cfg.max_ttl.as_millis() as u64;
        assert!(d.expires_unix_ms.is_some_and(|e| e <= latest), "{d:?}");
        assert!(d.factors.len() <= 16);
        common::check_bounds(d);
    }
    if let Ok(key) = std::str::from_utf8(data) {
        let _ = ipwarden::fleet::keys::parse_decision_key(key);
    }
});
