//! Configuration parsing and validation on arbitrary text: an error or a config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = ipwarden::config::Config::parse(text, "fuzz") {
            let _ = cfg.allow_prefixes();
            let _ = cfg.velocity_pps();
        }
    }
});
