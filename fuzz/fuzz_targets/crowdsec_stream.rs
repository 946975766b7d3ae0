//! CrowdSec LAPI stream answers, durations and values on arbitrary input: errors, never panics;
//! and every decision they would make is held to the remote bounds (no wider than
//! `decisions.remote_widest_*`, no longer than `decisions.max_ttl`).
#![no_main]

#[path = "common/mod.rs"]
mod common;

use ipwarden::decision::{Decision, Holder, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = ipwarden::crowdsec::lapi::StreamAnswer::parse(data) {
        for d in answer.new.iter().chain(answer.deleted.iter()).flatten() {
            let ttl = ipwarden::crowdsec::lapi::go_duration(&d.duration);
            if let (Ok(prefix), Ok(Some(ttl))) =
                (ipwarden::crowdsec::lapi::value_prefix(&d.value), ttl)
            {
                common::check_bounds(Decision::block(
                    prefix,
                    Holder::named(Origin::Crowdsec, "ban"),
                    "fuzz",
                    common::NOW,
                    Some(ttl),
                ));
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ipwarden::crowdsec::lapi::go_duration(s);
        let _ = ipwarden::crowdsec::lapi::value_prefix(s);
    }
});
