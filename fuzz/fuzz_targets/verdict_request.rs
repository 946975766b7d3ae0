//! The verdict endpoint's input on arbitrary bytes: request heads, the client address read
//! from forwarding headers, and challenge and pass tokens from queries and cookies. Errors,
//! never panics; the client is the peer unless a forwarding header names another; and no token
//! the fuzzer makes is ever accepted (it cannot know the key).
#![no_main]

use ipwarden::verdict::{Key, client::client, http, token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::from_bytes([0x5a; 32]);
    let unit = "203.0.113.7/32".parse().unwrap();
    if let Ok(req) = http::parse(data) {
        let peer = "127.0.0.1".parse().unwrap();
        let trusted = ["127.0.0.0/8".parse().unwrap()];
        let who = client(peer, &req, &trusted);
        let forwarded = req
            .headers
            .iter()
            .any(|(n, _)| n == "x-forwarded-for" || n == "x-real-ip");
        assert!(forwarded || who == peer, "{who} came from nowhere");
        for t in [req.param("challenge"), req.cookie("ipwarden_pass").map(str::to_owned)]
            .into_iter()
            .flatten()
        {
            assert!(key.check(&t, 'c', unit, 1).is_err(), "forged challenge accepted");
            assert!(key.check(&t, 'p', unit, 1).is_err(), "forged pass accepted");
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        assert!(key.check(s, 'p', unit, 1).is_err(), "forged pass accepted");
        let mid = (0..=s.len() / 2)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        let (a, b) = s.split_at(mid);
        let _ = token::solves(a, b, 28);
    }
});
