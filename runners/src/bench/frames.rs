//! The frames the in-kernel benchmark feeds to each program: 64-byte IPv4 and 78-byte IPv6 TCP
//! SYNs (plus an 802.1Q-tagged one) and ACKs, from sources that are or are not in the block set.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A source that is never blocked.
pub const PASS_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// A source blocked by an exact /32 entry.
pub const DROP_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// A source blocked only by a /24 prefix entry (the LPM path).
pub const DROP_V4_PREFIX: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
pub const DST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const PASS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// Blocked by its exact /64 entry.
pub const DROP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 7);
pub const DST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

fn tcp_syn() -> [u8; 20] {
    tcp(0x02)
}

fn tcp(flags: u8) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&443u16.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

/// The SYN `frame` made an ACK (flags at `tcp_flags_at`): the path of established traffic,
/// which never reaches the SYN fingerprint code.
fn as_ack(mut frame: Vec<u8>, tcp_flags_at: usize) -> Vec<u8> {
    frame[tcp_flags_at] = 0x10;
    frame
}

fn eth(ethertype: u16, vlan: Option<u16>) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0x5e, 0, 0, 1, 0x02, 0, 0x5e, 0, 0, 2];
    if let Some(vid) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// A TCP SYN over IPv4, padded to the 64-byte minimum Ethernet frame.
pub fn syn_v4(src: Ipv4Addr, vlan: Option<u16>) -> Vec<u8> {
    let mut f = eth(0x0800, vlan);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&DST_V4.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp_syn());
    f.resize(f.len().max(64), 0);
    f
}

/// A TCP SYN over IPv6 (78 bytes).
pub fn syn_v6(src: Ipv6Addr) -> Vec<u8> {
    let mut f = eth(0x86DD, None);
    let mut ip = [0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&20u16.to_be_bytes());
    ip[6] = 6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&DST_V6.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp_syn());
    f.resize(f.len().max(78), 0);
    f
}

/// A benchmark case: a named frame and whether the filters should drop it.
pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub drop: bool,
    /// Whether xdp-filter has an equivalent rule (it has no prefixes).
    pub xdp_filter: bool,
}

/// Every case, in report order.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "IPv4 pass",
            frame: syn_v4(PASS_V4, None),
            drop: false,
            xdp_filter: true,
        },
        Case {
            name: "IPv4 drop (/32)",
            frame: syn_v4(DROP_V4, None),
            drop: true,
            xdp_filter: true,
        },
        Case {
            name: "IPv4 drop (/24 prefix)",
            frame: syn_v4(DROP_V4_PREFIX, None),
            drop: true,
            xdp_filter: false,
        },
        Case {
            name: "IPv6 pass",
            frame: syn_v6(PASS_V6),
            drop: false,
            xdp_filter: true,
        },
        Case {
            name: "IPv6 drop (/64)",
            frame: syn_v6(DROP_V6),
            drop: true,
            xdp_filter: true,
        },
        Case {
            name: "IPv4 VLAN drop",
            frame: syn_v4(DROP_V4, Some(100)),
            drop: true,
            xdp_filter: true,
        },
        // The rows above are SYNs: a passed SYN also takes the fingerprint path (one LRU lookup,
        // a write only for a new signature). These are the same sources' ACKs.
        Case {
            name: "IPv4 pass, ACK (no SYN path)",
            frame: as_ack(syn_v4(PASS_V4, None), 14 + 20 + 13),
            drop: false,
            xdp_filter: true,
        },
        Case {
            name: "IPv6 pass, ACK (no SYN path)",
            frame: as_ack(syn_v6(PASS_V6), 14 + 40 + 13),
            drop: false,
            xdp_filter: true,
        },
    ]
}
