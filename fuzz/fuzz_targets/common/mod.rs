//! What every remote decision accepted from fuzzed input must satisfy (included by the fuzz
//! targets of remote sources).

use ipwarden::{config::DecisionsConfig, decision::Decision, engine::bounds, net::Family};

/// The fuzz targets' clock.
pub const NOW: u64 = 1_700_000_000_000;

/// Puts `d` through the remote bounds the engine applies and checks what comes out: no wider
/// than `decisions.remote_widest_*`, no longer than `decisions.max_ttl`.
pub fn check_bounds(d: Decision) {
    let cfg = DecisionsConfig::default();
    let latest = NOW + cfg.max_ttl.as_millis() as u64;
    if let Ok(d) = bounds::remote(&cfg, d, NOW) {
        let widest = match Family::of(&d.prefix) {
            Family::V4 => cfg.remote_widest_v4,
            Family::V6 => cfg.remote_widest_v6,
        };
        assert!(d.prefix.prefix_len() >= widest, "{d:?}");
        assert!(d.expires_unix_ms.is_some_and(|e| e <= latest), "{d:?}");
    }
}
