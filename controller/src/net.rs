//! Address and prefix handling: parsing what operators type, normalising it, and mapping it to
//! the kernel's keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use thiserror::Error;

/// The prefix length IPv6 sources are judged at.
pub const V6_SOURCE_PREFIX: u8 = 64;

/// An address family: where user space keeps something per family (a map, an index, a prefix
/// length), it is indexed by this rather than a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => Self::V4,
            IpNet::V6(_) => Self::V6,
        }
    }

    /// The length sources are counted and judged at: /32, /64.
    pub fn source_len(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => V6_SOURCE_PREFIX,
        }
    }
}

/// One value per family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerFamily<T> {
    pub v4: T,
    pub v6: T,
}

impl<T> PerFamily<T> {
    pub fn get(&self, f: Family) -> &T {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    pub fn get_mut(&mut self, f: Family) -> &mut T {
        match f {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }

    /// Both, IPv4 first.
    pub fn each_mut(&mut self) -> [&mut T; 2] {
        [&mut self.v4, &mut self.v6]
    }
}

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
        return Ok(unmap(net).trunc());
    }
    let addr: IpAddr = trimmed.parse().map_err(|_| syntax())?;
    Ok(host_prefix(addr))
}

/// An IPv4-mapped IPv6 prefix (`::ffff:a.b.c.d`, `::ffff:0:0/96` and longer) as the IPv4 prefix
/// it stands for: the kernel sees such sources as IPv4, and widening one to its /64 (`::/64`)
/// would cover the IPv6 loopback. Anything else is returned as it is.
pub fn unmap(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new_assert(v4, n.prefix_len() - 96)),
            None => net,
        },
        _ => net,
    }
}

/// The prefix a source address is judged under: its /32 or its /64.
pub fn host_prefix(addr: IpAddr) -> IpNet {
    match addr.to_canonical() {
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

/// This machine's host name (`gethostname(2)`), if it has a non-empty UTF-8 one.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match (r, std::str::from_utf8(&buf[..end])) {
        (0, Ok(h)) if !h.is_empty() => Some(h.to_owned()),
        _ => None,
    }
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
    fn ipv4_mapped_ipv6_is_ipv4() {
        // Not ::/64, which would overlap ::1 and be refused.
        assert_eq!(p("::ffff:198.51.100.14"), "198.51.100.14/32");
        assert_eq!(p("::ffff:c633:640e"), "198.51.100.14/32");
        assert_eq!(p("::ffff:198.51.100.0/120"), "198.51.100.0/24");
        assert_eq!(p("::ffff:0:0/96"), "0.0.0.0/0");
        // Shorter than /96 it is not one IPv4 prefix: left as IPv6.
        assert_eq!(p("::ffff:0:0/80"), "::/80");
        assert_eq!(
            host_prefix("::ffff:203.0.113.7".parse().unwrap()).to_string(),
            "203.0.113.7/32"
        );
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
