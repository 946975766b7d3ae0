extern crate std;
use std::vec::Vec;

use super::*;

/// A Linux client's SYN options: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
const LINUX_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0x30, 0x39, 0, 0, 0, 0, 1, 3, 3, 7,
];

fn syn_tcp(options: &[u8], flags: u8) -> Vec<u8> {
    let mut t = std::vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
    t[12] = (((20 + options.len()) / 4) as u8) << 4;
    t[13] = flags;
    t.extend_from_slice(options);
    t
}

fn frame_v4(ip_first: u8, frag: u16, tcp: &[u8]) -> Vec<u8> {
    let mut f = std::vec![0u8; 12];
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = ip_first;
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    ip[8] = 64;
    ip[9] = IPPROTO_TCP;
    ip[12..16].copy_from_slice(&[203, 0, 113, 9]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 1]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(tcp);
    f
}

#[test]
fn a_linux_clients_options_are_read() {
    let t = syn_tcp(&LINUX_OPTIONS, SYN);
    let o = offered(t.as_slice(), 20, 20);
    assert_eq!(
        o,
        Offered {
            wscale: Some(7),
            sack: true,
            tsval: Some(0x3039),
        }
    );
    // Nothing offered; a scale above 14 is taken as 14 (RFC 7323); a garbled list keeps what
    // came before the garbage.
    assert_eq!(offered(t.as_slice(), 20, 0), Offered::default());
    let big = [3, 3, 20, 0];
    assert_eq!(offered(&big[..], 0, 4).wscale, Some(14));
    let garbled = [4, 2, 3, 9, 1, 1];
    assert_eq!(
        offered(&garbled[..], 0, 6),
        Offered {
            sack: true,
            ..Offered::default()
        }
    );
}

#[test]
fn the_timestamp_carries_the_clients_options_and_never_runs_ahead() {
    let o = Offered {
        wscale: Some(7),
        sack: true,
        tsval: Some(1),
    };
    for now in [0u32, 63, 64, 1_000_000, 1_000_063, u32::MAX] {
        let ts = ts_cookie(now, &o, true);
        assert_eq!(ts & 0x3F, 7 | 1 << 4 | 1 << 5, "now {now}");
        assert!(now.wrapping_sub(ts) < 64, "now {now}: ts {ts}");
    }
    let plain = ts_cookie(1000, &Offered::default(), false);
    assert_eq!(
        plain & 0x3F,
        0xF,
        "no window scale is 0xF, as SYNPROXY decodes it"
    );
}

/// Checks a checksum the way a receiver does: the sum over everything, checksum included,
/// folds to zero.
fn verifies(bytes: &[u8]) -> bool {
    let mut sum = 0u64;
    for c in bytes.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
    }
    fold(sum) == 0
}

fn reply(wscale: u8) -> Reply {
    Reply {
        cookie: 0xC0FFEE,
        mss: 1460,
        wscale,
        ttl: 64,
        now_ms: 5000,
    }
}

/// The SYN in `f` (at `seg`) answered through a [`Scratch`], as the program does it.
fn answered(f: &[u8], seg: Segment, r: &Reply) -> Scratch {
    let mut s = Scratch::default();
    let ip_len = if seg.v6 { 40 } else { 20 };
    s.ip[..ip_len].copy_from_slice(&f[seg.ip..seg.ip + ip_len]);
    s.tcp[..20].copy_from_slice(&f[seg.tcp..seg.tcp + 20]);
    let len = ((f[seg.tcp + 12] >> 4) as usize) * 4 - 20;
    let o = offered(f, seg.tcp + 20, len);
    answer(&mut s, seg.v6, &o, r);
    s
}

#[test]
fn a_synack_answers_its_syn() {
    let t = syn_tcp(&LINUX_OPTIONS, SYN | ECE | CWR);
    let f = frame_v4(0x45, 0x4000, &t);
    let seg = segment(f.as_slice()).expect("a plain IPv4 TCP segment");
    assert_eq!((seg.ip, seg.tcp, seg.v6), (14, 34, false));
    let s = answered(&f, seg, &reply(9));
    let (ip, tcp) = (&s.ip[..20], &s.tcp);

    assert_eq!(&ip[12..16], &[198, 51, 100, 1]);
    assert_eq!(&ip[16..20], &[203, 0, 113, 9]);
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 60);
    assert!(verifies(ip), "IPv4 header checksum");
    let mut pseudo = std::vec![0u8; 12];
    pseudo[..8].copy_from_slice(&ip[12..20]);
    pseudo[9] = IPPROTO_TCP;
    pseudo[10..12].copy_from_slice(&(SYNACK_TCP_LEN as u16).to_be_bytes());
    pseudo.extend_from_slice(tcp);
    assert!(verifies(&pseudo), "TCP checksum");

    assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 80);
    assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 40000);
    assert_eq!(u32::from_be_bytes(tcp[4..8].try_into().unwrap()), 0xC0FFEE);
    // The sequence number wraps.
    assert_eq!(u32::from_be_bytes(tcp[8..12].try_into().unwrap()), 0);
    assert_eq!(tcp[13], SYN | ACK | ECE);
    assert_eq!(&tcp[14..16], &[0, 0], "zero window until SYNPROXY opens it");
    // The reply's own options, read back with the same reader.
    let back = offered(&tcp[..], 20, 20);
    assert_eq!(back.wscale, Some(9), "the listener's scale");
    assert!(back.sack);
    let tsval = back.tsval.unwrap();
    assert_eq!(tsval & 0x3F, 7 | 1 << 4 | 1 << 5);
    assert_eq!(
        &tcp[32..36],
        &0x3039u32.to_be_bytes(),
        "the client's timestamp echoed"
    );
    assert_eq!(&tcp[20..24], &[2, 4, 0x05, 0xB4]);
}

#[test]
fn without_timestamps_a_client_gets_mss_alone() {
    let opts = [2, 4, 0x05, 0x14, 1, 3, 3, 7, 4, 2, 0, 0];
    let t = syn_tcp(&opts, SYN | ECE | CWR);
    let o = offered(t.as_slice(), 20, opts.len());
    assert_eq!((o.wscale, o.sack, o.tsval), (Some(7), true, None));
    let mut f = std::vec![0u8; 12];
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[6] = IPPROTO_TCP;
    h[8..24].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h[24..40].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&h);
    f.extend_from_slice(&t);
    let seg = segment(f.as_slice()).unwrap();
    let s = answered(
        &f,
        seg,
        &Reply {
            mss: 1300,
            ..reply(7)
        },
    );
    let (ip6, tcp) = (&s.ip, &s.tcp);
    assert_eq!(offered(&tcp[..], 20, 20), Offered::default());
    assert_eq!(tcp[13], SYN | ACK, "no ECN without timestamps to carry it");
    assert_eq!(&tcp[20..24], &[2, 4, 0x05, 0x14]);
    assert_eq!(
        ip6[8..24],
        [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    assert_eq!((ip6[6], ip6[7]), (IPPROTO_TCP, 64));
    let mut pseudo = std::vec![0u8; 40];
    pseudo[..32].copy_from_slice(&ip6[8..40]);
    pseudo[35] = SYNACK_TCP_LEN as u8;
    pseudo[39] = IPPROTO_TCP;
    pseudo.extend_from_slice(tcp);
    assert!(verifies(&pseudo), "TCP checksum over IPv6");
}

#[test]
fn only_plain_first_segments_are_acted_on() {
    let t = syn_tcp(&[], SYN);
    assert!(
        segment(frame_v4(0x46, 0, &t).as_slice()).is_none(),
        "IPv4 options"
    );
    assert!(
        segment(frame_v4(0x45, 0x2000, &t).as_slice()).is_none(),
        "more fragments"
    );
    assert!(
        segment(frame_v4(0x45, 0x0010, &t).as_slice()).is_none(),
        "a later fragment"
    );
    assert!(
        segment(frame_v4(0x45, 0x4000, &t).as_slice()).is_some(),
        "DF is fine"
    );
    let mut v6 = std::vec![0u8; 12];
    v6.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[6] = IPPROTO_TCP;
    v6.extend_from_slice(&h);
    v6.extend_from_slice(&t);
    assert_eq!(
        segment(v6.as_slice()),
        Some(Segment {
            ip: 14,
            tcp: 54,
            v6: true
        })
    );
    v6[14 + 6] = 0; // hop-by-hop first
    assert!(segment(v6.as_slice()).is_none());
}

#[test]
fn ports_are_bits() {
    let mut words = [0u64; PORT_WORDS as usize];
    for p in [80u16, 443, 65535] {
        words[p as usize / 64] |= 1 << (p % 64);
    }
    let on = |p: u16| protected(words[p as usize / 64], p);
    assert!(on(80) && on(443) && on(65535));
    assert!(!on(81) && !on(0) && !on(8080));
}

#[test]
fn a_listener_that_does_not_scale_offers_no_scale() {
    let t = syn_tcp(&LINUX_OPTIONS, SYN);
    let f = frame_v4(0x45, 0, &t);
    let s = answered(&f, segment(f.as_slice()).unwrap(), &reply(0xFF));
    let back = offered(&s.tcp[..], 20, 20);
    assert_eq!(back.wscale, None);
    assert_eq!(back.tsval.unwrap() & 0xF, 0xF, "the cookie says: no scale");
}
