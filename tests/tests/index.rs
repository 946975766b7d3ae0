//! The block index (`ipwarden_common::index`): which exact entries get a way, which never do,
//! and that the program's verdicts through it are those of the full path.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ipnet::IpNet;
use ipwarden::{clock::monotonic_ns, net::host_prefix};
use ipwarden_common::{BlockEntry, GlobalCounter, Reason};
use ipwarden_tests::{
    Fixture,
    frames::{RawSocket, udp4, udp6},
    topology::{CLIENT_IF, CLIENT_MAC, EDGE_MAC, EDGE_V4, EDGE_V6},
};

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, last)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Sends `n` frames from `src` and returns how the global counters moved.
fn send(fx: &Fixture, sock: &RawSocket, src: IpAddr, n: u64) -> [u64; 3] {
    let frame = match src {
        IpAddr::V4(a) => udp4(EDGE_MAC, CLIENT_MAC, a, EDGE_V4, 32),
        IpAddr::V6(a) => udp6(EDGE_MAC, CLIENT_MAC, a, EDGE_V6, 32),
    };
    let read = || {
        let g = fx.dp().globals().unwrap();
        [
            g.get(GlobalCounter::Dropped),
            g.get(GlobalCounter::Allowed),
            g.get(GlobalCounter::Seen),
        ]
    };
    let before = read();
    assert_eq!(sock.send_many(n as usize, |_| frame.clone()), n as usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while read()[2] < before[2] + n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = read();
    [0, 1, 2].map(|i| after[i] - before[i])
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
