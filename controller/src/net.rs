//! Address and prefix handling: parsing what operators type, normalising it, and mapping it to
//! the kernel's keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use thiserror::Error;

/// The prefix length IPv6 sources are judged at.
pub const V6_SOURCE_PREFIX: u8 = 64;

/// An address or prefix that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PrefixError {
    /// Neither `ADDR` nor `ADDR/LEN`.
    #[error(
        "`{input}` is not an IP address or CIDR prefix (examples: 203.0.113.7, 198.51.100.0/24, 2001:db8::/48)"
    )]
    Syntax { input: String },
}

/// Parses `ADDR` or `ADDR/LEN`. A bare IPv4 address is its /32; a bare IPv6 address is widened to
/// its /64, the unit IPv6 sources are counted and judged by. Host bits are cleared, so
/// `198.51.100.7/24` means `198.51.100.0/24`.
pub fn parse_prefix(input: &str) -> Result<IpNet, PrefixError> {
    let trimmed = input.trim();
    let syntax = || PrefixError::Syntax {
        input: input.to_owned(),
    };
    if trimmed.contains('/') {
        let net: IpNet = trimmed.parse().map_err(|_| syntax())?;
        return Ok(net.trunc());
    }
    let addr: IpAddr = trimmed.parse().map_err(|_| syntax())?;
    Ok(host_prefix(addr))
}

/// The prefix a source address is judged under: its /32 or its /64.
pub fn host_prefix(addr: IpAddr) -> IpNet {
    match addr {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new_assert(a, 32)),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new_assert(a, V6_SOURCE_PREFIX).trunc()),
    }
}

/// The /64 prefix of a counter key.
pub fn v6_prefix_net(key: [u8; 8]) -> Ipv6Net {
    let mut octets = [0u8; 16];
    octets[..8].copy_from_slice(&key);
    Ipv6Net::new_assert(Ipv6Addr::from(octets), V6_SOURCE_PREFIX)
}

/// The counter / exact-block key of an IPv6 /64.
pub fn v6_prefix_key(net: &Ipv6Net) -> [u8; 8] {
    ipwarden_common::key::v6_prefix(&net.network().octets())
}

/// An IPv4 prefix from an LPM key.
pub fn v4_net(prefix_len: u32, data: [u8; 4]) -> Option<Ipv4Net> {
    Ipv4Net::new(Ipv4Addr::from(data), u8::try_from(prefix_len).ok()?).ok()
}

/// An IPv6 prefix from an LPM key.
pub fn v6_net(prefix_len: u32, data: [u8; 16]) -> Option<Ipv6Net> {
    Ipv6Net::new(Ipv6Addr::from(data), u8::try_from(prefix_len).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        parse_prefix(s).unwrap().to_string()
    }

    #[test]
    fn bare_addresses_become_host_prefixes() {
        assert_eq!(p("203.0.113.7"), "203.0.113.7/32");
        assert_eq!(p("2001:db8:2::5"), "2001:db8:2::/64");
        assert_eq!(p(" 192.0.2.1 "), "192.0.2.1/32");
    }

    #[test]
    fn prefixes_lose_their_host_bits() {
        assert_eq!(p("198.51.100.7/24"), "198.51.100.0/24");
        assert_eq!(p("2001:db8:2::5/128"), "2001:db8:2::5/128");
        assert_eq!(p("2001:db8:2:3:4::/48"), "2001:db8:2::/48");
        assert_eq!(p("0.0.0.0/0"), "0.0.0.0/0");
    }

    #[test]
    fn garbage_is_rejected_with_the_input_named() {
        for bad in [
            "",
            "foo",
            "203.0.113.256",
            "203.0.113.0/33",
            "2001:db8::/129",
            "1.2.3.4/",
            "/24",
            "1.2.3.4/x",
        ] {
            let err = parse_prefix(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn v6_keys_round_trip() {
        let net: Ipv6Net = "2001:db8:2:7::/64".parse().unwrap();
        assert_eq!(v6_prefix_net(v6_prefix_key(&net)), net);
    }
}
