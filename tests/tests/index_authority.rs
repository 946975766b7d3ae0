//! The block index's authority (`ipwarden_common::index`): while user space vouches for it, a
//! source whose index bucket has no way for it and no marker is not looked up in the exact
//! hashes. The rule that makes this safe, every exact hash key has a way or a marked bucket, is
//! checked after every step of a random sequence of changes (failures included), and the
//! program's verdicts are checked where a missing marker would let blocked traffic through.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use ipwarden::{dataplane::Dataplane, net::host_prefix};
use ipwarden_common::{
    BlockEntry, GlobalCounter, Reason,
    index::{INDEX_WAYS, bucket, key_v4},
};
use ipwarden_tests::{Fixture, frames::RawSocket, topology::CLIENT_IF};

fn host(a: Ipv4Addr) -> IpNet {
    host_prefix(a.into())
}

/// `n` addresses of 10.0.0.0/8 whose index bucket is `of`'s. They only ever go into maps: no
/// frame is sent from or to them.
fn same_bucket(of: Ipv4Addr, n: usize) -> Vec<Ipv4Addr> {
    let want = bucket(key_v4(&of.octets()));
    (0..1u32 << 24)
        .map(|i| Ipv4Addr::from(0x0A00_0000 | i))
        .filter(|a| bucket(key_v4(&a.octets())) == want)
        .take(n)
        .collect()
}

/// Sends `n` frames from `src` and returns how [dropped, limited, seen] moved.
fn send(fx: &Fixture, sock: &RawSocket, src: Ipv4Addr, n: u64) -> [u64; 3] {
    use GlobalCounter::{Dropped, Limited, Seen};
    fx.send_counting(sock, src.into(), n, [Dropped, Limited, Seen])
}

/// The rule, checked from user space: every exact entry has its way or a marked bucket, and
/// every way is a plain block's. Returns the entries checked.
fn rule_holds(dp: &mut Dataplane) -> usize {
    let rules = dp.blocks().unwrap();
    let allows = dp.allows().unwrap();
    let mut ways = 0;
    let mut exact = 0;
    for r in &rules {
        if !matches!(r.net, IpNet::V4(n) if n.prefix_len() == 32)
            && !matches!(r.net, IpNet::V6(n) if n.prefix_len() == 64)
        {
            continue;
        }
        exact += 1;
        match dp.indexed(r.net).unwrap() {
            Some(_) => {
                ways += 1;
                assert_eq!(
                    r.entry.action,
                    ipwarden_common::Action::BLOCK,
                    "{} has a way but is not a plain block",
                    r.net
                );
                assert!(
                    !allows
                        .iter()
                        .any(|a| a.contains(&r.net) || r.net.contains(a)),
                    "{} has a way but an allow entry overlaps it",
                    r.net
                );
            }
            None => assert!(
                dp.index_marked(r.net).unwrap(),
                "{} is in the hash without a way, and its bucket is not marked",
                r.net
            ),
        }
    }
    let (v4, v6) = dp.index_len().unwrap().expect("the pins have an index");
    assert_eq!(v4 + v6, ways, "ways for keys the hashes do not hold");
    exact
}

/// A small deterministic generator (xorshift64*): the sequence is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_index_and_the_hashes_agree_after_any_sequence_of_changes() {
    // Small exact maps, so that some inserts fail as full.
    let fx = Fixture::attached(&["--blocks", "24"]);
    let mut dp = fx.dp();
    dp.vouch_for_index().unwrap();
    assert!(dp.index_vouched().unwrap());
    // The pool: keys sharing a bucket (full buckets), others, and IPv6 /64s.
    let crowded = Ipv4Addr::new(203, 0, 113, 50);
    let mut pool: Vec<IpNet> = same_bucket(crowded, INDEX_WAYS + 3)
        .into_iter()
        .map(host)
        .collect();
    pool.push(host(crowded));
    pool.extend((1..=30).map(|i| host(Ipv4Addr::new(198, 51, 100, i))));
    pool.extend(
        (1..=12).map(|i| {
            IpNet::new(Ipv6Addr::new(0x2001, 0xdb8, 9, i, 0, 0, 0, 0).into(), 64).unwrap()
        }),
    );
    let allow_pool: Vec<IpNet> = ["198.51.100.0/29", "198.51.100.9/32", "2001:db8:9:3::/64"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let plain = |rng: &mut Rng| {
        if rng.below(3) == 0 {
            BlockEntry::block(Reason::FEED, BlockEntry::NEVER)
        } else {
            let now = ipwarden::clock::monotonic_ns();
            BlockEntry::block(Reason::MANUAL, now + 3_600_000_000_000)
        }
    };
    let mut rng = Rng(0x1f2e_3d4c_5b6a_7988);
    let (mut failures, mut vouched_steps, mut resyncs) = (0, 0, 0);
    for step in 0..300 {
        let p = pool[rng.below(pool.len())];
        let vouched_before = dp.index_vouched().unwrap();
        let out = match rng.below(9) {
            0..=2 => dp.block(p, plain(&mut rng)),
            3 => dp.block(
                p,
                BlockEntry::challenge(Reason::CROWDSEC, BlockEntry::NEVER, 10, 5),
            ),
            4 => {
                let batch: Vec<(IpNet, BlockEntry)> = (0..6)
                    .map(|_| (pool[rng.below(pool.len())], plain(&mut rng)))
                    .collect();
                dp.block_all(batch)
            }
            5 => dp.unblock(p).map(drop),
            6 => dp.allow(allow_pool[rng.below(allow_pool.len())]),
            7 => dp
                .disallow(allow_pool[rng.below(allow_pool.len())])
                .map(drop),
            _ => {
                // A resync: the index emptied, every entry put back, the authority given back.
                resyncs += 1;
                let rules: Vec<(IpNet, BlockEntry)> = dp
                    .blocks()
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.net, r.entry))
                    .collect();
                dp.clear_index().unwrap();
                assert!(!dp.index_vouched().unwrap(), "a cleared index vouched for");
                let put = dp.block_all(rules);
                if put.is_ok() {
                    dp.vouch_for_index().unwrap();
                }
                put
            }
        };
        if out.is_err() {
            failures += 1;
        }
        if dp.index_vouched().unwrap() {
            vouched_steps += 1;
            rule_holds(&mut dp);
        } else {
            assert!(
                !vouched_before || out.is_err(),
                "step {step}: a change that went through withdrew the authority"
            );
        }
    }
    // The sequence reached every case: failures (full maps), steps under authority, resyncs.
    assert!(
        failures > 0 && vouched_steps > 100 && resyncs > 10,
        "failures {failures}, vouched steps {vouched_steps}, resyncs {resyncs}"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn under_authority_sources_without_a_way_are_still_judged_by_the_hash() {
    let fx = Fixture::attached(&[]);
    let sock = RawSocket::open(&fx.topo.client, CLIENT_IF);
    let mut dp = fx.dp();
    dp.vouch_for_index().unwrap();
    let never = BlockEntry::block(Reason::MANUAL, BlockEntry::NEVER);
    // A blocked source whose bucket four other blocks filled: it has no way.
    let crowded = Ipv4Addr::new(203, 0, 113, 50);
    let fillers: BTreeMap<IpNet, BlockEntry> = same_bucket(crowded, INDEX_WAYS)
        .into_iter()
        .map(|a| (host(a), never))
        .collect();
    dp.block_all(fillers).unwrap();
    dp.block(host(crowded), never).unwrap();
    // A challenged source: never a way.
    let challenged = Ipv4Addr::new(203, 0, 113, 51);
    dp.block(
        host(challenged),
        BlockEntry::challenge(Reason::CROWDSEC, BlockEntry::NEVER, 1, 1),
    )
    .unwrap();
    // A blocked source inside an allow entry added later: its way goes, its block stays.
    let allowed = Ipv4Addr::new(203, 0, 113, 52);
    dp.block(host(allowed), never).unwrap();
    dp.allow(host(allowed)).unwrap();
    // A plain block: a way.
    let plain = Ipv4Addr::new(203, 0, 113, 53);
    dp.block(host(plain), never).unwrap();
    assert!(
        dp.index_vouched().unwrap(),
        "the changes kept the authority"
    );
    assert_eq!(rule_holds(&mut dp), INDEX_WAYS + 4);
    assert!(dp.indexed(host(plain)).unwrap().is_some());
    for a in [crowded, challenged] {
        assert_eq!(dp.indexed(host(a)).unwrap(), None, "{a} has no way");
    }

    assert_eq!(
        send(&fx, &sock, crowded, 20),
        [20, 0, 20],
        "a full bucket's block"
    );
    let [dropped, limited, seen] = send(&fx, &sock, challenged, 50);
    assert_eq!((dropped, seen), (0, 50));
    assert!(
        limited >= 45,
        "a challenge at 1 pps let {} of 50 through",
        50 - limited
    );
    let g = |fx: &Fixture| fx.dp().globals().unwrap().get(GlobalCounter::Allowed);
    let before = g(&fx);
    assert_eq!(send(&fx, &sock, allowed, 10), [0, 0, 10]);
    assert_eq!(g(&fx) - before, 10, "judged as allowlisted, not as unknown");
    assert_eq!(send(&fx, &sock, plain, 10), [10, 0, 10]);
    // An unblocked source in an unmarked bucket passes without a hash lookup.
    let free = Ipv4Addr::new(203, 0, 113, 54);
    assert!(!dp.index_marked(host(free)).unwrap());
    assert_eq!(send(&fx, &sock, free, 10), [0, 0, 10]);
    // Unblocked again, the crowded source passes: the marker only costs speed.
    dp.unblock(host(crowded)).unwrap();
    assert_eq!(send(&fx, &sock, crowded, 10), [0, 0, 10]);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_large_batch_keeps_the_rule_the_later_of_a_repeated_key_and_stops_at_a_full_map() {
    // Exact entries go in with `BPF_MAP_UPDATE_BATCH` (pending.rs), which stops at the first
    // entry that does not fit; the rest then go one by one.
    const V4: u32 = 5_000;
    const V6: u16 = 1_000;
    let fx = Fixture::attached(&["--blocks", "6000"]);
    let mut dp = fx.dp();
    dp.vouch_for_index().unwrap();
    let now = ipwarden::clock::monotonic_ns();
    let manual = BlockEntry::block(Reason::MANUAL, now + 3_600_000_000_000);
    let feed = BlockEntry::block(Reason::FEED, BlockEntry::NEVER);
    // Map keys only (10.0.0.0/8 and 2001:db8:7::/48): no frame is sent from them.
    let v4 = |i: u32| host(Ipv4Addr::from(0x0A00_0000 | i));
    let v6 =
        |i: u16| IpNet::new(Ipv6Addr::new(0x2001, 0xdb8, 7, i, 0, 0, 0, 0).into(), 64).unwrap();
    let mut batch: Vec<(IpNet, BlockEntry)> = (0..V4).map(|i| (v4(i), manual)).collect();
    batch.extend((0..V6).map(|i| (v6(i), manual)));
    // Every seventh key named again, later in the same batch, with another origin.
    let again: Vec<IpNet> = (0..V4)
        .step_by(7)
        .map(v4)
        .chain((0..V6).step_by(7).map(v6))
        .collect();
    batch.extend(again.iter().map(|n| (*n, feed)));
    dp.block_all(batch).unwrap();
    assert!(
        dp.index_vouched().unwrap(),
        "a batch that went in kept the authority"
    );
    assert_eq!(rule_holds(&mut dp), V4 as usize + usize::from(V6));
    let held: BTreeMap<IpNet, BlockEntry> = dp
        .blocks()
        .unwrap()
        .into_iter()
        .map(|r| (r.net, r.entry))
        .collect();
    for n in &again {
        assert_eq!(held[n].reason, Reason::FEED, "{n}: the later entry holds");
    }
    assert_eq!(held[&v4(1)].reason, Reason::MANUAL);

    // 1 000 IPv4 entries more fit; 3 000 are asked for: the map fills, the change fails, and
    // what went in (by the batch, then one by one) still has its ways or marked buckets.
    let more: Vec<(IpNet, BlockEntry)> = (V4..V4 + 3_000).map(|i| (v4(i), manual)).collect();
    let err = dp.block_all(more).unwrap_err();
    assert!(
        matches!(err, ipwarden::dataplane::DataplaneError::MapFull { .. }),
        "{err}"
    );
    let held = rule_holds(&mut dp);
    assert_eq!(
        held,
        6_000 + usize::from(V6),
        "the IPv4 map is full, the rest in"
    );
}
