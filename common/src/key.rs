//! Map keys. Addresses are byte arrays in network order.

/// An IPv4 source address (a /32), as `Ipv4Addr::octets()`.
pub type SrcV4 = [u8; 4];

/// The /64 prefix of an IPv6 source: the first eight bytes of `Ipv6Addr::octets()`.
///
/// IPv6 hosts rotate addresses inside their /64 at will, so counting and judging per address
/// would let one host look like millions; the /64 is the unit a site is normally assigned.
pub type SrcV6Prefix = [u8; 8];

/// The /64 prefix of a full IPv6 address.
#[inline(always)]
pub fn v6_prefix(addr: &[u8; 16]) -> SrcV6Prefix {
    [
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_prefix_keeps_the_first_eight_bytes() {
        let addr = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 9, 9, 9, 9, 9, 9, 9, 9];
        assert_eq!(v6_prefix(&addr), [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]);
    }
}
