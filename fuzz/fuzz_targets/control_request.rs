//! The control socket's request decoder on arbitrary lines: an error or a request, never a
//! panic; a decoded request survives a round trip.
#![no_main]

use ipwarden::wire::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_json::from_slice::<Envelope>(data) {
        let again = serde_json::to_vec(&env).expect("a decoded request re-encodes");
        let back: Envelope = serde_json::from_slice(&again).expect("and decodes again");
        assert_eq!(back, env);
    }
});
