//! The CLI's address/prefix parser: an error or a prefix with no host bits, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(net) = ipwarden::net::parse_prefix(text) {
            assert_eq!(net, net.trunc(), "host bits cleared");
        }
    }
});
