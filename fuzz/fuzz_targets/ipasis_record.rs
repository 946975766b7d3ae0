//! IPASIS answer parsing on arbitrary bodies: an error or a record, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ipwarden::enrich::Record::parse(data);
});
