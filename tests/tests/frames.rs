//! Hand-built frames into the XDP program: VLAN tags, non-IP and truncated frames, and a flood of
//! spoofed random sources.
//!
//! VLAN tags are built by hand rather than with VLAN interfaces: the test machines' kernel has no
//! CONFIG_VLAN_8021Q, and hand-built tags also guarantee the tag is in the frame the program
//! sees rather than in skb metadata (VLAN TX offload).
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ipwarden_common::GlobalCounter;
use ipwarden_tests::{
    Fixture,
    frames::{RawSocket, raw, udp4, udp6},
    topology::{CLIENT_IF, CLIENT_MAC, CLIENT_V4, EDGE_MAC, EDGE_V4, EDGE_V6},
    traffic::udp_send,
};

/// Inserts VLAN tags (TPID, VID) after the MAC addresses of an untagged frame.
fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// Waits until the program has seen `n` more frames than `before` (bounded), so counter reads
/// do not race frames still in the veth queue.
fn wait_seen(fx: &Fixture, before: u64, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fx.dp().globals().unwrap().get(GlobalCounter::Seen) < before + n
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn vlan_tagged_frames_are_parsed_and_judged() {
    let fx = Fixture::attached(&[]);
    let sock = RawSocket::open(&fx.topo.client, CLIENT_IF);
    let single = Ipv4Addr::new(203, 0, 113, 21);
    let double = Ipv4Addr::new(203, 0, 113, 22);
    let double6: Ipv6Addr = "2001:db8:2:22::1".parse().unwrap();
    let base4 = |src| udp4(EDGE_MAC, CLIENT_MAC, src, EDGE_V4, 32);
    let q = [(0x8100, 100)];
    let qinq = [(0x88A8, 10), (0x8100, 20)];

    let before = fx.dp().globals().unwrap();
    assert_eq!(sock.send_many(10, |_| tagged(&base4(single), &q)), 10);
    assert_eq!(sock.send_many(10, |_| tagged(&base4(double), &qinq)), 10);
    let f6 = tagged(&udp6(EDGE_MAC, CLIENT_MAC, double6, EDGE_V6, 32), &qinq);
    assert_eq!(sock.send_many(10, |_| f6.clone()), 10);
    wait_seen(&fx, before.get(GlobalCounter::Seen), 30);

    let dp = fx.dp();
    let s4 = dp.sources_v4().unwrap();
    for (src, tag_len) in [(single, 4), (double, 8)] {
        let s = s4
            .iter()
            .find(|s| s.addr == src)
            .unwrap_or_else(|| panic!("{src} not counted"));
        assert_eq!(s.stats.packets, 10, "{src}");
        assert_eq!(s.stats.bytes, 10 * (14 + tag_len + 20 + 8 + 32), "{src}");
    }
    let s6 = dp.sources_v6().unwrap();
    assert!(
        s6.iter()
            .any(|s| s.net.to_string() == "2001:db8:2:22::/64" && s.stats.packets == 10)
    );
    let after = dp.globals().unwrap();
    assert_eq!(
        after.get(GlobalCounter::NotIp),
        before.get(GlobalCounter::NotIp)
    );

    // And they are judged: a blocked source behind two tags is dropped.
    fx.map(&["block", &double.to_string()]);
    let before = fx.dp().globals().unwrap();
    assert_eq!(sock.send_many(10, |_| tagged(&base4(double), &qinq)), 10);
    wait_seen(&fx, before.get(GlobalCounter::Seen), 10);
    let after = fx.dp().globals().unwrap();
    assert_eq!(
        after.get(GlobalCounter::Dropped) - before.get(GlobalCounter::Dropped),
        10
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn non_ip_and_truncated_frames_pass_and_are_counted() {
    let fx = Fixture::attached(&[]);
    let sock = RawSocket::open(&fx.topo.client, CLIENT_IF);
    let before = fx.dp().globals().unwrap();

    let arp = raw(EDGE_MAC, CLIENT_MAC, 0x0806, &[0u8; 28]);
    assert_eq!(sock.send_many(5, |_| arp.clone()), 5);
    let three_tags = tagged(
        &udp4(EDGE_MAC, CLIENT_MAC, CLIENT_V4, EDGE_V4, 8),
        &[(0x88A8, 1), (0x8100, 2), (0x8100, 3)],
    );
    assert_eq!(sock.send_many(2, |_| three_tags.clone()), 2);
    // IPv4 ethertype, 10 bytes of header: no source address to read.
    let short4 = raw(EDGE_MAC, CLIENT_MAC, 0x0800, &[0x45; 10]);
    // IPv6 ethertype with an IPv4 version nibble.
    let mut bad6 = udp6(
        EDGE_MAC,
        CLIENT_MAC,
        "2001:db8:2::1".parse().unwrap(),
        EDGE_V6,
        8,
    );
    bad6[14] = 0x45;
    assert_eq!(sock.send_many(3, |_| short4.clone()), 3);
    assert_eq!(sock.send_many(4, |_| bad6.clone()), 4);
    wait_seen(&fx, before.get(GlobalCounter::Seen), 14);

    let after = fx.dp().globals().unwrap();
    let d = |c| after.get(c) - before.get(c);
    assert_eq!(d(GlobalCounter::Malformed), 7);
    assert!(
        d(GlobalCounter::NotIp) >= 7,
        "not_ip grew by {}",
        d(GlobalCounter::NotIp)
    );
    assert_eq!(d(GlobalCounter::Dropped), 0);
    assert!(d(GlobalCounter::Passed) >= 14, "they all passed");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn random_source_flood_keeps_counter_maps_at_capacity() {
    const CAPACITY: usize = 512;
    const FLOOD: usize = 50_000;
    let fx = Fixture::attached(&["--sources", &CAPACITY.to_string()]);
    let (cap4, cap6) = fx.dp().source_capacity();
    assert_eq!((cap4, cap6), (CAPACITY as u32, CAPACITY as u32));
    let sock = RawSocket::open(&fx.topo.client, CLIENT_IF);

    // Every frame from a different /64 of 2001:db8::/32, and 768 IPv4 sources from the three
    // documentation /24s.
    let v4_nets = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    let sent = sock.send_many(FLOOD, |i| {
        if i % 10 == 0 {
            let j = (i / 10) % 768;
            let n = v4_nets[j / 256];
            udp4(
                EDGE_MAC,
                CLIENT_MAC,
                Ipv4Addr::new(n[0], n[1], n[2], (j % 256) as u8),
                EDGE_V4,
                8,
            )
        } else {
            let src = Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1);
            udp6(EDGE_MAC, CLIENT_MAC, src, EDGE_V6, 8)
        }
    });
    assert_eq!(sent, FLOOD);
    std::thread::sleep(Duration::from_millis(200));

    let dp = fx.dp();
    let (t4, t6) = (
        dp.sources_v4().unwrap().len(),
        dp.sources_v6().unwrap().len(),
    );
    // Reported sources: the LRU map's entries (at most its capacity) plus those whose counts are
    // still only in the per-CPU front tables.
    let front = ipwarden_common::front::FRONT_SLOTS as usize * aya::util::nr_cpus().unwrap();
    assert!(
        (CAPACITY / 2..=CAPACITY + front).contains(&t6),
        "IPv6 sources {t6}, LRU capacity {CAPACITY}, front slots {front}"
    );
    assert!(
        (CAPACITY / 2..=CAPACITY + front).contains(&t4),
        "IPv4 sources {t4}, LRU capacity {CAPACITY}, front slots {front}"
    );
    // The LRU maps themselves stay at capacity: the flood's 45 000 IPv6 /64s went through the
    // front table into the map, which evicted instead of failing.
    let map =
        aya::maps::MapData::from_pin(fx.ipw.pins().map(ipwarden_common::names::SRC_V6)).unwrap();
    let lru6: aya::maps::PerCpuHashMap<_, [u8; 8], ipwarden_common::SrcStatsV6> =
        aya::maps::Map::from_map_data(map)
            .unwrap()
            .try_into()
            .unwrap();
    let entries = lru6.keys().filter(Result::is_ok).count();
    assert!(
        (CAPACITY / 2..=CAPACITY).contains(&entries),
        "the IPv6 LRU map holds {entries} of {CAPACITY}"
    );
    let seen = dp.globals().unwrap().get(GlobalCounter::Seen);
    assert!(
        seen >= FLOOD as u64 * 9 / 10,
        "the program saw {seen} of {FLOOD} frames"
    );

    // The legitimate client still gets through, and is tracked again (LRU: newest wins).
    let sink = fx.sink_for(CLIENT_V4.into());
    assert_eq!(
        udp_send(
            &fx.topo.client,
            CLIENT_V4.into(),
            Fixture::sink_addr(CLIENT_V4.into()),
            20,
            16
        ),
        20
    );
    assert_eq!(
        sink.drain(Duration::from_millis(300))
            .get(&IpAddr::V4(CLIENT_V4)),
        Some(&20)
    );
    assert!(
        fx.dp()
            .sources_v4()
            .unwrap()
            .iter()
            .any(|s| s.addr == CLIENT_V4)
    );
}
