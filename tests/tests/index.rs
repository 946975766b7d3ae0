//! The block index (`ipwarden_common::index`): which exact entries get a way, which never do,
//! and that the program's verdicts through it are those of the full path.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use ipwarden::{clock::monotonic_ns, net::host_prefix};
use ipwarden_common::{BlockEntry, GlobalCounter, Reason};
use ipwarden_tests::{Fixture, frames::RawSocket, topology::CLIENT_IF};

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, last)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Sends `n` frames from `src` and returns how [dropped, allowed, seen] moved.
fn send(fx: &Fixture, sock: &RawSocket, src: IpAddr, n: u64) -> [u64; 3] {
    use GlobalCounter::{Allowed, Dropped, Seen};
    fx.send_counting(sock, src, n, [Dropped, Allowed, Seen])
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn plain_blocks_are_indexed_and_allowlisted_challenged_or_removed_ones_never() {
    let fx = Fixture::attached(&[]);
    let sock = RawSocket::open(&fx.topo.client, CLIENT_IF);
    let mut dp = fx.dp();
    let never = BlockEntry::block(Reason::MANUAL, BlockEntry::NEVER);
    let blocked6: Ipv6Addr = "2001:db8:3:31::7".parse().unwrap();
    let (blocked, allowed, in_allowed_net, challenged, expired) =
        (v4(31), v4(32), v4(70), v4(33), v4(34));
    let host = |a: Ipv4Addr| host_prefix(a.into());

    for a in [blocked, allowed, in_allowed_net] {
        dp.block(host(a), never).unwrap();
    }
    dp.block(net("2001:db8:3:31::/64"), never).unwrap();
    dp.block(
        host(challenged),
        BlockEntry::challenge(Reason::MANUAL, BlockEntry::NEVER, 1, 1),
    )
    .unwrap();
    // Lapsed a second ago: indexed with its expiry, which the program checks itself.
    let lapsed = BlockEntry::block(Reason::MANUAL, monotonic_ns() - 1_000_000_000);
    dp.block(host(expired), lapsed).unwrap();
    for a in [blocked, allowed, in_allowed_net, expired] {
        assert!(
            dp.indexed(host(a)).unwrap().is_some(),
            "{a} indexed before any allow"
        );
    }
    // Allow entries added after the blocks take them out of the index: one exact, one wider
    // (a scan of the index).
    dp.allow(host(allowed)).unwrap();
    dp.allow(net("203.0.113.64/26")).unwrap();

    assert_eq!(
        dp.indexed(host(blocked)).unwrap(),
        Some(u64::MAX),
        "a permanent block"
    );
    assert_eq!(
        dp.indexed(net("2001:db8:3:31::/64")).unwrap(),
        Some(u64::MAX)
    );
    assert_eq!(dp.indexed(host(allowed)).unwrap(), None, "allowlisted /32");
    assert_eq!(
        dp.indexed(host(in_allowed_net)).unwrap(),
        None,
        "inside an allowlisted /26"
    );
    assert_eq!(
        dp.indexed(host(challenged)).unwrap(),
        None,
        "a challenge needs its bucket"
    );
    // A block added while an allow entry overlaps it is never indexed.
    dp.block(host(v4(71)), never).unwrap();
    assert_eq!(
        dp.indexed(host(v4(71))).unwrap(),
        None,
        "blocked inside an allowlisted /26"
    );

    // Verdicts: [dropped, allowed, seen].
    assert_eq!(send(&fx, &sock, blocked.into(), 10), [10, 0, 10]);
    assert_eq!(send(&fx, &sock, blocked6.into(), 10), [10, 0, 10]);
    assert_eq!(send(&fx, &sock, allowed.into(), 10), [0, 10, 10]);
    assert_eq!(send(&fx, &sock, in_allowed_net.into(), 10), [0, 10, 10]);
    assert_eq!(
        send(&fx, &sock, expired.into(), 10),
        [0, 0, 10],
        "a lapsed way"
    );

    // Unblocking empties the way first: the source passes at once.
    assert!(dp.unblock(host(blocked)).unwrap());
    assert_eq!(dp.indexed(host(blocked)).unwrap(), None);
    assert_eq!(send(&fx, &sock, blocked.into(), 10), [0, 0, 10]);
    // Replacing a block by a challenge empties the way too.
    dp.block(
        net("2001:db8:3:31::/64"),
        BlockEntry::challenge(Reason::MANUAL, 0, 1000, 100),
    )
    .unwrap();
    assert_eq!(dp.indexed(net("2001:db8:3:31::/64")).unwrap(), None);
    assert_eq!(
        send(&fx, &sock, blocked6.into(), 10),
        [0, 0, 10],
        "under its rate"
    );
}

/// A /64 in 2001:db8:`group`::/48 whose IPv6 front-table slot is `slot`.
fn colliding(group: u16, slot: u32) -> Ipv6Addr {
    use ipwarden_common::{front::slot_v6, key::v6_prefix};
    (0..1u32 << 16)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, group, i as u16, 0, 0, 0, 1))
        .find(|a| slot_v6(&v6_prefix(&a.octets())) == slot)
        .expect("a colliding /64 among 65 536")
}

/// The slots on every CPU of the IPv6 front table's slot `slot`.
fn front_v6(fx: &Fixture, slot: u32) -> Vec<ipwarden_common::FrontV6> {
    let pins = fx.ipw.pins();
    let map = aya::maps::Map::from_map_data(
        aya::maps::MapData::from_pin(pins.map(ipwarden_common::names::FRONT_V6)).unwrap(),
    )
    .unwrap();
    let front: aya::maps::PerCpuArray<_, ipwarden_common::FrontV6> = map.try_into().unwrap();
    front.get(&slot, 0).unwrap().iter().copied().collect()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_indexed_blocked_source_leaves_another_sources_front_slot_alone() {
    use ipwarden_common::{front::slot_v6, key::v6_prefix};
    let fx = Fixture::attached(&[]);
    let sock = RawSocket::open(&fx.topo.client, CLIENT_IF);
    let mut dp = fx.dp();
    let client: Ipv6Addr = "2001:db8:5:1::9".parse().unwrap();
    let slot = slot_v6(&v6_prefix(&client.octets()));
    // A /64 of another /48 whose front-table slot is the client's.
    let blocked = colliding(6, slot);
    let blocked_net = IpNet::new(blocked.into(), 64).unwrap().trunc();
    dp.block(
        blocked_net,
        BlockEntry::block(Reason::FEED, BlockEntry::NEVER),
    )
    .unwrap();
    assert_eq!(
        dp.indexed_by(blocked_net).unwrap(),
        Some((u64::MAX, Reason::FEED)),
        "a permanent way carrying its origin"
    );

    assert_eq!(send(&fx, &sock, client.into(), 5), [0, 0, 5]);
    let holds = |a: Ipv6Addr| {
        front_v6(&fx, slot)
            .iter()
            .any(|f| f.used != 0 && f.key == v6_prefix(&a.octets()))
    };
    assert!(holds(client), "the client holds its slot");
    assert_eq!(send(&fx, &sock, blocked.into(), 20), [20, 0, 20]);
    // Dropped through the index: still counted under the decision's origin.
    let drops = fx.dp().drops_by_origin().unwrap();
    assert_eq!(
        drops
            .iter()
            .map(|(code, d)| (*code, d.packets))
            .collect::<Vec<_>>(),
        [(Reason::FEED, 20)]
    );
    assert!(holds(client), "the blocked flood took the client's slot");
    assert!(!holds(blocked));
    // The client's five packets are still pending in its slot, counted once.
    let counted: u64 = front_v6(&fx, slot)
        .iter()
        .filter(|f| f.key == v6_prefix(&client.octets()))
        .map(|f| f.pending.packets)
        .sum();
    assert_eq!(counted, 5);

    // A blocked source that stays takes the slot from another blocked one, after a few frames
    // (one in eight, by a coin): it is judged from the front table's cache after.
    let second = colliding(7, slot);
    let second_net = IpNet::new(second.into(), 64).unwrap().trunc();
    dp.block(
        second_net,
        BlockEntry::block(Reason::MANUAL, BlockEntry::NEVER),
    )
    .unwrap();
    assert_eq!(send(&fx, &sock, second.into(), 1), [1, 0, 1]);
    assert!(
        holds(client),
        "a blocked source never displaces a passing one"
    );
    // Make the first blocked source hold the slot: unblock it a moment, let it claim, block it.
    dp.unblock(blocked_net).unwrap();
    assert_eq!(send(&fx, &sock, blocked.into(), 1), [0, 0, 1]);
    dp.block(
        blocked_net,
        BlockEntry::block(Reason::MANUAL, BlockEntry::NEVER),
    )
    .unwrap();
    assert_eq!(send(&fx, &sock, blocked.into(), 1), [1, 0, 1]);
    assert!(holds(blocked), "the first blocked source holds the slot");
    assert_eq!(send(&fx, &sock, second.into(), 200), [200, 0, 200]);
    assert!(holds(second), "the staying blocked source took the slot");
}
