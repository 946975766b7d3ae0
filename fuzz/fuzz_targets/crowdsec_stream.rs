//! CrowdSec LAPI stream answers, durations and values on arbitrary input: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = ipwarden::crowdsec::lapi::StreamAnswer::parse(data) {
        for d in answer.new.iter().chain(answer.deleted.iter()).flatten() {
            let _ = ipwarden::crowdsec::lapi::go_duration(&d.duration);
            let _ = ipwarden::crowdsec::lapi::value_prefix(&d.value);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ipwarden::crowdsec::lapi::go_duration(s);
        let _ = ipwarden::crowdsec::lapi::value_prefix(s);
    }
});
