//! Feed bodies in every format, and import files: prefixes and numbered bad lines, never panics;
//! at most a few bad lines kept whatever the body; and every prefix a feed would block is held
//! to the remote bounds (no wider than `decisions.remote_widest_*`, no longer than
//! `decisions.max_ttl`, even when permanent).
#![no_main]

#[path = "common/mod.rs"]
mod common;

use ipwarden::{
    decision::{Decision, Holder, Origin},
    feeds::Format,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    for format in [
        Format::CidrList,
        Format::SpamhausDrop,
        Format::TorExitList,
        Format::AwsIpRanges,
        Format::GcpCloud,
    ] {
        let parsed = ipwarden::feeds::formats::parse(format, body);
        assert!(parsed.bad.len() <= ipwarden::feeds::formats::KEPT);
        assert!(parsed.bad_count >= parsed.bad.len());
        for p in parsed.prefixes.into_iter().take(64) {
            let ttl = (p.prefix_len() % 2 == 0).then(|| std::time::Duration::from_secs(7200));
            let holder = Holder::named(Origin::Feed, "fuzz");
            common::check_bounds(Decision::block(p, holder, "fuzz", common::NOW, ttl));
        }
    }
    let _ = ipwarden::import::parse(body);
});
