//! Feed bodies in every format, and import files: prefixes and numbered bad lines, never panics.
#![no_main]

use ipwarden::feeds::Format;
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
        let _ = ipwarden::feeds::formats::parse(format, body);
    }
    let _ = ipwarden::import::parse(body);
});
