//! The bounds a remote source's decision is held to (a feed, CrowdSec, a fleet peer, an
//! import): no wider than `decisions.remote_widest_v4`/`_v6`, and lasting at most
//! `decisions.max_ttl` from now (renewed as long as its source repeats it). One function, used
//! by the engine for every remote origin and by the import handler for every import, and
//! asserted by the fuzz targets on arbitrary input.

use super::EngineError;
use crate::{
    config::DecisionsConfig,
    decision::{Decision, deadline_ms},
    net::Family,
};

/// `d` within the remote bounds (its expiry cut to `max_ttl` from `now_ms`, a permanent one
/// made to end), or why it is refused (too wide: never narrowed).
pub fn remote(
    cfg: &DecisionsConfig,
    mut d: Decision,
    now_ms: u64,
) -> Result<Decision, EngineError> {
    let (widest, setting) = match Family::of(&d.prefix) {
        Family::V4 => (cfg.remote_widest_v4, "decisions.remote_widest_v4"),
        Family::V6 => (cfg.remote_widest_v6, "decisions.remote_widest_v6"),
    };
    if d.prefix.prefix_len() < widest {
        return Err(EngineError::TooWide {
            prefix: d.prefix,
            origin: d.origin,
            widest,
            setting,
        });
    }
    let latest = deadline_ms(now_ms, cfg.max_ttl);
    d.expires_unix_ms = Some(d.expires_unix_ms.map_or(latest, |e| e.min(latest)));
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decision::{Holder, Origin};

    fn feed(prefix: &str, ttl: Option<Duration>) -> Decision {
        Decision::block(
            prefix.parse().unwrap(),
            Holder::named(Origin::Feed, "f"),
            "listed",
            1_000,
            ttl,
        )
    }

    #[test]
    fn too_wide_is_refused_and_long_or_permanent_is_cut() {
        let cfg = DecisionsConfig::default();
        for wide in ["0.0.0.0/1", "10.0.0.0/7", "2000::/3", "2001::/19"] {
            assert!(matches!(
                remote(&cfg, feed(wide, None), 1_000),
                Err(EngineError::TooWide { .. })
            ));
        }
        let max = cfg.max_ttl.as_millis() as u64;
        let d = remote(&cfg, feed("10.0.0.0/8", None), 1_000).unwrap();
        assert_eq!(d.expires_unix_ms, Some(1_000 + max));
        let d = remote(
            &cfg,
            feed("2001:db8::/20", Some(Duration::from_secs(60))),
            1_000,
        )
        .unwrap();
        assert_eq!(d.expires_unix_ms, Some(1_000 + 60_000));
        let year = Duration::from_secs(365 * 86400);
        let d = remote(&cfg, feed("203.0.113.0/24", Some(year)), 1_000).unwrap();
        assert_eq!(d.expires_unix_ms, Some(1_000 + max));
    }
}
