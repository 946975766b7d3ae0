//! Who the client is. A proxy says it in `X-Forwarded-For` (each hop appends the address it
//! got the request from) or `X-Real-IP`, but anyone can send those headers: they are believed
//! only from `trusted_proxies`, and then read from the right, skipping trusted hops, so that
//! addresses a client wrote itself at the left are never taken.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::http::Request;

/// The client of `req`, which arrived from `peer`.
pub fn client(peer: IpAddr, req: &Request, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = req
        .headers("x-forwarded-for")
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    if hops.is_empty() {
        return req.header("x-real-ip").and_then(address).unwrap_or(peer);
    }
    let mut last = peer;
    for hop in hops.iter().rev() {
        // A hop that is no address: the trusted hop to its right is the last one known.
        let Some(a) = address(hop) else {
            return last;
        };
        if !is_trusted(&a) {
            return a;
        }
        last = a;
    }
    last
}

/// An address as proxies write it: bare, with a port, or bracketed IPv6.
fn address(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
        .map(|a| a.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::http::parse;

    fn trusted() -> Vec<IpNet> {
        vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    }

    fn who(peer: &str, headers: &str) -> String {
        let head = format!("GET /verdict HTTP/1.1\r\nHost: x{headers}");
        let req = parse(head.as_bytes()).unwrap();
        client(peer.parse().unwrap(), &req, &trusted()).to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        assert_eq!(
            who(
                "198.51.100.9",
                "\r\nX-Forwarded-For: 203.0.113.1\r\nX-Real-IP: 203.0.113.2"
            ),
            "198.51.100.9"
        );
        assert_eq!(who("::ffff:198.51.100.9", ""), "198.51.100.9");
    }

    #[test]
    fn a_trusted_proxys_header_is_read_from_the_right() {
        // The client forged the left entry; nginx appended what it saw.
        assert_eq!(
            who("127.0.0.1", "\r\nX-Forwarded-For: 192.0.2.66, 198.51.100.9"),
            "198.51.100.9"
        );
        // Two trusted hops.
        assert_eq!(
            who(
                "127.0.0.1",
                "\r\nX-Forwarded-For: 192.0.2.66, 198.51.100.9, 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2"
            ),
            "198.51.100.9"
        );
        assert_eq!(
            who("127.0.0.1", "\r\nX-Forwarded-For: [2001:db8::7]:443"),
            "2001:db8::7"
        );
        assert_eq!(
            who("127.0.0.1", "\r\nX-Real-IP: 203.0.113.5"),
            "203.0.113.5"
        );
        assert_eq!(who("127.0.0.1", "\r\nX-Real-IP: nonsense"), "127.0.0.1");
        assert_eq!(
            who("127.0.0.1", "\r\nX-Forwarded-For: junk, 10.0.0.5"),
            "10.0.0.5"
        );
    }
}
