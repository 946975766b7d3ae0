//! The packet parser that decides which source a frame belongs to.
//!
//! It is generic over [`Frame`], a bounds-checked byte reader: the host implements it for `[u8]`
//! (unit tests, fuzzing), the XDP program for the packet between `data` and `data_end`. So the
//! code the kernel runs is the code the tests exercise.
//!
//! Failure semantics: whatever cannot be parsed is not judged. Non-IP frames (ARP, LLDP, other
//! ethertypes, more than two VLAN tags) are [`Parsed::NotIp`]; IP frames too short or malformed
//! to yield a source are [`Parsed::Malformed`]. The XDP program passes both and counts them, and
//! the kernel stack drops what is really broken.

/// A bounds-checked view of a frame.
pub trait Frame {
    /// The `N` bytes at `offset`, or `None` when the frame ends before `offset + N`.
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
}

impl Frame for [u8] {
    #[inline]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        self.get(offset..end)?.try_into().ok()
    }
}

/// What a frame is, as far as ipwarden is concerned. `S` says whether it opens a TCP
/// connection (SYN without ACK): `bool`, or where the SYN's headers are ([`Syn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<S = bool> {
    /// An IPv4 packet: its source and whether it opens a TCP connection.
    V4 { src: [u8; 4], syn: S },
    /// An IPv6 packet: its full source and whether it opens a TCP connection.
    V6 { src: [u8; 16], syn: S },
    /// Not IPv4 or IPv6.
    NotIp,
    /// Claims to be IP (or is shorter than an Ethernet header) but no source can be read.
    Malformed,
}

/// Where a TCP SYN's headers start in its frame: the one parse both the counters and the SYN
/// signature ([`crate::fingerprint::syn_head`]) read, so they cannot disagree on what a SYN is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syn {
    /// The IP header.
    pub ip: usize,
    /// The TCP header.
    pub tcp: usize,
}

/// Ethernet header length.
pub const ETH_HLEN: usize = 14;
/// 802.1Q / 802.1ad tag length.
pub const VLAN_HLEN: usize = 4;
/// IPv4 ethertype.
pub const ETH_P_IP: u16 = 0x0800;
/// IPv6 ethertype.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// 802.1Q (customer VLAN) ethertype.
pub const ETH_P_8021Q: u16 = 0x8100;
/// 802.1ad (service VLAN, QinQ outer tag) ethertype.
pub const ETH_P_8021AD: u16 = 0x88A8;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IPv6 extension headers walked to reach TCP: hop-by-hop options, routing, fragment,
/// destination options.
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_DSTOPTS: u8 = 60;
/// How many IPv6 extension headers are walked before TCP. RFC 8200's recommended order has at
/// most hop-by-hop, destination options, routing, fragment and destination options again before
/// the upper layer; a SYN behind a longer chain is counted as a packet, not a SYN.
pub const MAX_IPV6_EXT_HEADERS: usize = 5;

const TCP_FLAGS_OFFSET: usize = 13;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

#[inline(always)]
const fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Parses Ethernet, up to two VLAN tags, then IPv4 (any header length) or IPv6.
#[inline(always)]
pub fn parse_frame<F: Frame + ?Sized>(frame: &F) -> Parsed {
    match parse_syn(frame) {
        Parsed::V4 { src, syn } => Parsed::V4 {
            src,
            syn: syn.is_some(),
        },
        Parsed::V6 { src, syn } => Parsed::V6 {
            src,
            syn: syn.is_some(),
        },
        Parsed::NotIp => Parsed::NotIp,
        Parsed::Malformed => Parsed::Malformed,
    }
}

/// [`parse_frame`], with where a SYN's headers are.
#[inline(always)]
pub fn parse_syn<F: Frame + ?Sized>(frame: &F) -> Parsed<Option<Syn>> {
    let Some(ethertype) = frame.load::<2>(12) else {
        return Parsed::Malformed;
    };
    let mut ethertype = u16::from_be_bytes(ethertype);
    let mut offset = ETH_HLEN;
    // Written out rather than looped: the verifier then sees exactly two constant offsets and no
    // loop to bound.
    if is_vlan(ethertype) {
        let Some(inner) = frame.load::<2>(offset + 2) else {
            return Parsed::Malformed;
        };
        ethertype = u16::from_be_bytes(inner);
        offset += VLAN_HLEN;
        if is_vlan(ethertype) {
            let Some(inner) = frame.load::<2>(offset + 2) else {
                return Parsed::Malformed;
            };
            ethertype = u16::from_be_bytes(inner);
            offset += VLAN_HLEN;
            if is_vlan(ethertype) {
                return Parsed::NotIp;
            }
        }
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(frame, offset),
        ETH_P_IPV6 => parse_ipv6(frame, offset),
        _ => Parsed::NotIp,
    }
}

#[inline(always)]
fn parse_ipv4<F: Frame + ?Sized>(frame: &F, offset: usize) -> Parsed<Option<Syn>> {
    let Some(hdr) = frame.load::<IPV4_MIN_HLEN>(offset) else {
        return Parsed::Malformed;
    };
    let version = hdr[0] >> 4;
    // Masked to 4 bits: the verifier needs the variable offset bounded (0..=60 bytes).
    let ihl = ((hdr[0] & 0x0F) as usize) * 4;
    if version != 4 || ihl < IPV4_MIN_HLEN {
        return Parsed::Malformed;
    }
    let src = [hdr[12], hdr[13], hdr[14], hdr[15]];
    let fragment_offset = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1FFF;
    // Only a first fragment carries the TCP header.
    let syn = if hdr[9] == IPPROTO_TCP && fragment_offset == 0 {
        tcp_syn(frame, offset, offset + ihl)
    } else {
        None
    };
    Parsed::V4 { src, syn }
}

#[inline(always)]
fn parse_ipv6<F: Frame + ?Sized>(frame: &F, offset: usize) -> Parsed<Option<Syn>> {
    let Some(hdr) = frame.load::<IPV6_HLEN>(offset) else {
        return Parsed::Malformed;
    };
    if hdr[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&hdr[8..24]);
    let syn = match hdr[6] {
        IPPROTO_TCP => tcp_syn(frame, offset, offset + IPV6_HLEN),
        next => ipv6_ext_syn(frame, next, offset, offset + IPV6_HLEN),
    };
    Parsed::V6 { src, syn }
}

/// Walks up to [`MAX_IPV6_EXT_HEADERS`] extension headers from `next` at `offset` and tells
/// whether TCP behind them is a SYN. Without the walk, one hop-by-hop header hid a SYN flood
/// from `syn_pps_threshold`. A non-first fragment never carries the TCP header (its bytes are
/// payload), so it is never a SYN; anything else (ESP, AH, no next header, truncation) is not.
///
/// The loop has a constant bound and each step advances at most 2 KiB, so the verifier can
/// bound every offset; it only runs for IPv6 packets whose first next header is not TCP.
#[inline(always)]
fn ipv6_ext_syn<F: Frame + ?Sized>(
    frame: &F,
    mut next: u8,
    ip: usize,
    mut offset: usize,
) -> Option<Syn> {
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_TCP => return tcp_syn(frame, ip, offset),
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let [nh, len] = frame.load::<2>(offset)?;
                next = nh;
                offset += (len as usize + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let [nh, _, off_hi, off_lo] = frame.load::<4>(offset)?;
                if u16::from_be_bytes([off_hi, off_lo]) >> 3 != 0 {
                    return None;
                }
                next = nh;
                offset += 8;
            }
            _ => return None,
        }
    }
    if next == IPPROTO_TCP {
        tcp_syn(frame, ip, offset)
    } else {
        None
    }
}

/// Where the SYN's headers are if the TCP header at `tcp` (behind the IP header at `ip`) has
/// SYN set and ACK clear; `None` if not, or if it is truncated.
#[inline(always)]
fn tcp_syn<F: Frame + ?Sized>(frame: &F, ip: usize, tcp: usize) -> Option<Syn> {
    let [flags] = frame.load::<1>(tcp + TCP_FLAGS_OFFSET)?;
    (flags & (TCP_SYN | TCP_ACK) == TCP_SYN).then_some(Syn { ip, tcp })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    const SRC4: [u8; 4] = [203, 0, 113, 7];
    const DST4: [u8; 4] = [198, 51, 100, 1];
    const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];

    fn eth(tags: &[u16], ethertype: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]);
        for (i, tpid) in tags.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100u16 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn ipv4(ihl_words: u8, proto: u8, frag: u16) -> Vec<u8> {
        let mut h = std::vec![0u8; ihl_words as usize * 4];
        h[0] = 0x40 | ihl_words;
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&SRC4);
        h[16..20].copy_from_slice(&DST4);
        h
    }

    fn ipv6(next: u8) -> Vec<u8> {
        let mut h = std::vec![0u8; 40];
        h[0] = 0x60;
        h[6] = next;
        h[7] = 64;
        h[8..24].copy_from_slice(&SRC6);
        h[24..40].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h
    }

    fn tcp(flags: u8) -> Vec<u8> {
        let mut t = std::vec![0u8; 20];
        t[12] = 5 << 4;
        t[13] = flags;
        t
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn ipv4_udp_source() {
        let f = cat(&[&eth(&[], ETH_P_IP), &ipv4(5, 17, 0), &[0u8; 8]]);
        assert_eq!(
            parse_frame(&f[..]),
            Parsed::V4 {
                src: SRC4,
                syn: false
            }
        );
    }

    #[test]
    fn ipv4_syn_is_recognised_behind_options() {
        let f = cat(&[
            &eth(&[], ETH_P_IP),
            &ipv4(15, IPPROTO_TCP, 0),
            &tcp(TCP_SYN),
        ]);
        assert_eq!(
            parse_frame(&f[..]),
            Parsed::V4 {
                src: SRC4,
                syn: true
            }
        );
    }

    #[test]
    fn syn_ack_and_plain_ack_are_not_syns() {
        for flags in [TCP_SYN | TCP_ACK, TCP_ACK, 0] {
            let f = cat(&[&eth(&[], ETH_P_IP), &ipv4(5, IPPROTO_TCP, 0), &tcp(flags)]);
            assert_eq!(
                parse_frame(&f[..]),
                Parsed::V4 {
                    src: SRC4,
                    syn: false
                }
            );
        }
    }

    #[test]
    fn later_fragments_are_not_read_as_tcp() {
        // Fragment offset 1 (8 bytes): the bytes after the header are payload, not TCP.
        let f = cat(&[&eth(&[], ETH_P_IP), &ipv4(5, IPPROTO_TCP, 1), &tcp(TCP_SYN)]);
        assert_eq!(
            parse_frame(&f[..]),
            Parsed::V4 {
                src: SRC4,
                syn: false
            }
        );
    }

    #[test]
    fn truncated_tcp_header_still_yields_the_source() {
        let f = cat(&[&eth(&[], ETH_P_IP), &ipv4(5, IPPROTO_TCP, 0), &[0u8; 4]]);
        assert_eq!(
            parse_frame(&f[..]),
            Parsed::V4 {
                src: SRC4,
                syn: false
            }
        );
    }

    #[test]
    fn ipv6_source_and_syn() {
        let f = cat(&[&eth(&[], ETH_P_IPV6), &ipv6(IPPROTO_TCP), &tcp(TCP_SYN)]);
        assert_eq!(
            parse_frame(&f[..]),
            Parsed::V6 {
                src: SRC6,
                syn: true
            }
        );
        let f = cat(&[&eth(&[], ETH_P_IPV6), &ipv6(17), &[0u8; 8]]);
        assert_eq!(
            parse_frame(&f[..]),
            Parsed::V6 {
                src: SRC6,
                syn: false
            }
        );
    }

    /// An IPv6 extension header: `next`, then a length in 8-byte units beyond the first 8.
    fn ext(next: u8, units: u8) -> Vec<u8> {
        let mut h = std::vec![0u8; (units as usize + 1) * 8];
        h[0] = next;
        h[1] = units;
        h
    }

    fn frag(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
        let mut h = std::vec![0u8; 8];
        h[0] = next;
        let v = (offset_units << 3) | u16::from(more);
        h[2..4].copy_from_slice(&v.to_be_bytes());
        h
    }

    fn v6_syn(f: &[u8]) -> bool {
        match parse_frame(f) {
            Parsed::V6 { src, syn } => {
                assert_eq!(src, SRC6, "the source is read whatever follows");
                syn
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ipv6_syns_behind_each_extension_header_are_syns() {
        let e = eth(&[], ETH_P_IPV6);
        let syn = tcp(TCP_SYN);
        for first in [IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS] {
            for units in [0, 1, 3] {
                let f = cat(&[&e, &ipv6(first), &ext(IPPROTO_TCP, units), &syn]);
                assert!(
                    v6_syn(&f),
                    "behind header {first} of {} bytes",
                    (units + 1) * 8
                );
            }
        }
        // A first fragment carries the TCP header.
        let f = cat(&[
            &e,
            &ipv6(IPPROTO_FRAGMENT),
            &frag(IPPROTO_TCP, 0, true),
            &syn,
        ]);
        assert!(v6_syn(&f));
        // RFC 8200's full order: hop-by-hop, destination options, routing, fragment, TCP.
        let f = cat(&[
            &e,
            &ipv6(IPPROTO_HOPOPTS),
            &ext(IPPROTO_DSTOPTS, 0),
            &ext(IPPROTO_ROUTING, 2),
            &ext(IPPROTO_FRAGMENT, 0),
            &frag(IPPROTO_TCP, 0, false),
            &syn,
        ]);
        assert!(v6_syn(&f));
        // A SYN-ACK behind a header is still not a SYN.
        let f = cat(&[
            &e,
            &ipv6(IPPROTO_HOPOPTS),
            &ext(IPPROTO_TCP, 0),
            &tcp(TCP_SYN | TCP_ACK),
        ]);
        assert!(!v6_syn(&f));
    }

    #[test]
    fn ipv6_later_fragments_long_chains_and_truncation_are_not_syns() {
        let e = eth(&[], ETH_P_IPV6);
        let syn = tcp(TCP_SYN);
        // A later fragment's bytes are payload, even when they look like a SYN.
        let f = cat(&[
            &e,
            &ipv6(IPPROTO_FRAGMENT),
            &frag(IPPROTO_TCP, 185, false),
            &syn,
        ]);
        assert!(!v6_syn(&f));
        // Longer than the walk's bound.
        let mut f = cat(&[&e, &ipv6(IPPROTO_DSTOPTS)]);
        for _ in 0..MAX_IPV6_EXT_HEADERS {
            f.extend_from_slice(&ext(IPPROTO_DSTOPTS, 0));
        }
        f.extend_from_slice(&ext(IPPROTO_TCP, 0));
        f.extend_from_slice(&syn);
        assert!(!v6_syn(&f));
        // Exactly at the bound is walked.
        let mut f = cat(&[&e, &ipv6(IPPROTO_DSTOPTS)]);
        for _ in 0..MAX_IPV6_EXT_HEADERS - 1 {
            f.extend_from_slice(&ext(IPPROTO_DSTOPTS, 0));
        }
        f.extend_from_slice(&ext(IPPROTO_TCP, 0));
        f.extend_from_slice(&syn);
        assert!(v6_syn(&f));
        // Truncated inside an extension header, or its length pointing past the end.
        let f = cat(&[&e, &ipv6(IPPROTO_HOPOPTS), &[IPPROTO_TCP]]);
        assert!(!v6_syn(&f));
        let f = cat(&[
            &e,
            &ipv6(IPPROTO_HOPOPTS),
            &ext(IPPROTO_TCP, 0)[..8],
            &syn[..4],
        ]);
        assert!(!v6_syn(&f));
        let mut long = ext(IPPROTO_TCP, 0);
        long[1] = 255;
        let f = cat(&[&e, &ipv6(IPPROTO_HOPOPTS), &long, &syn]);
        assert!(!v6_syn(&f));
        // ESP and "no next header" end the walk.
        let f = cat(&[&e, &ipv6(50), &syn]);
        assert!(!v6_syn(&f));
        let f = cat(&[&e, &ipv6(IPPROTO_HOPOPTS), &ext(59, 0), &syn]);
        assert!(!v6_syn(&f));
    }

    #[test]
    fn one_and_two_vlan_tags() {
        let f = cat(&[&eth(&[ETH_P_8021Q], ETH_P_IP), &ipv4(5, 17, 0)]);
        assert_eq!(
            parse_frame(&f[..]),
            Parsed::V4 {
                src: SRC4,
                syn: false
            }
        );
        let f = cat(&[
            &eth(&[ETH_P_8021AD, ETH_P_8021Q], ETH_P_IPV6),
            &ipv6(IPPROTO_TCP),
            &tcp(TCP_SYN),
        ]);
        assert_eq!(
            parse_frame(&f[..]),
            Parsed::V6 {
                src: SRC6,
                syn: true
            }
        );
    }

    #[test]
    fn three_vlan_tags_are_not_parsed() {
        let f = cat(&[
            &eth(&[ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q], ETH_P_IP),
            &ipv4(5, 17, 0),
        ]);
        assert_eq!(parse_frame(&f[..]), Parsed::NotIp);
    }

    #[test]
    fn arp_and_unknown_ethertypes_are_not_ip() {
        let f = cat(&[&eth(&[], 0x0806), &[0u8; 28]]);
        assert_eq!(parse_frame(&f[..]), Parsed::NotIp);
        let f = cat(&[&eth(&[ETH_P_8021Q], 0x88CC), &[0u8; 28]]);
        assert_eq!(parse_frame(&f[..]), Parsed::NotIp);
    }

    #[test]
    fn truncated_frames_are_malformed() {
        let full = cat(&[&eth(&[ETH_P_8021Q], ETH_P_IP), &ipv4(5, 17, 0)]);
        // Every cut short of the IPv4 source address is malformed (a cut inside the Ethernet
        // header included); the full frame is not.
        for len in 0..full.len() {
            assert_eq!(parse_frame(&full[..len]), Parsed::Malformed, "length {len}");
        }
        let full = cat(&[&eth(&[], ETH_P_IPV6), &ipv6(17)]);
        for len in 0..full.len() {
            assert_eq!(parse_frame(&full[..len]), Parsed::Malformed, "length {len}");
        }
    }

    #[test]
    fn wrong_ip_version_or_short_ihl_is_malformed() {
        let mut h = ipv4(5, 17, 0);
        h[0] = 0x65; // version 6 under an IPv4 ethertype
        assert_eq!(
            parse_frame(&cat(&[&eth(&[], ETH_P_IP), &h])[..]),
            Parsed::Malformed
        );
        let mut h = ipv4(5, 17, 0);
        h[0] = 0x44; // IHL 4 words < 20 bytes
        assert_eq!(
            parse_frame(&cat(&[&eth(&[], ETH_P_IP), &h])[..]),
            Parsed::Malformed
        );
        let mut h = ipv6(17);
        h[0] = 0x40;
        assert_eq!(
            parse_frame(&cat(&[&eth(&[], ETH_P_IPV6), &h])[..]),
            Parsed::Malformed
        );
    }

    #[test]
    fn byte_reader_rejects_offsets_past_the_end() {
        let b = [1u8, 2, 3];
        assert_eq!(b[..].load::<2>(1), Some([2, 3]));
        assert_eq!(b[..].load::<2>(2), None);
        assert_eq!(b[..].load::<1>(usize::MAX), None);
    }
}
