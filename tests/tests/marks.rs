//! The marks of tracked sources (see `ipwarden_common::tracked`): while the program trusts them,
//! a flushed source whose mark is clear skips the per-source lookup. An entry without its mark
//! (as a build before marks leaves them) would then stop being counted; marking what the maps
//! hold, as every start and attach does, makes it counted again.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::net::IpAddr;

use aya::maps::{Array, MapData};
use ipwarden_common::{
    admit::AdmitLevel,
    names,
    tracked::{MARK_LINES, MarkLine},
};
use ipwarden_tests::{Fixture, cpu::on_cpu, traffic::udp_send};

/// Packets the program keeps per source before it flushes them (`front::FLUSH_AT`).
const FLUSH_AT: u64 = ipwarden_common::front::FLUSH_AT;

/// What the maps and front tables count for `src`.
fn counted(fx: &Fixture, src: IpAddr) -> u64 {
    fx.dp()
        .sources_v4()
        .unwrap()
        .iter()
        .find(|s| IpAddr::V4(s.addr) == src)
        .map_or(0, |s| s.stats.packets)
}

/// Sends `n` datagrams from `src`, all from CPU 0, so that they meet one CPU's front slot and
/// flush every `FLUSH_AT` packets.
fn send(fx: &Fixture, src: IpAddr, n: usize) {
    let sent = on_cpu(0, || {
        udp_send(&fx.topo.client, src, Fixture::sink_addr(src), n, 64)
    })
    .unwrap();
    assert_eq!(sent, n);
    std::thread::sleep(std::time::Duration::from_millis(200));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_entry_without_its_mark_is_marked_again_and_counted_exactly() {
    let fx = Fixture::attached(&[]);
    let src: IpAddr = "203.0.113.9".parse().unwrap();
    fx.topo.add_source(src);
    let mut dp = fx.dp();
    assert!(dp.tracked_marked().unwrap(), "attach trusts the marks");

    // Admission off: the first flush creates the entry (and sets its mark).
    dp.set_admission(AdmitLevel::default(), &[]).unwrap();
    send(&fx, src, 100);
    assert_eq!(counted(&fx, src), 100);

    // A build before marks: the entry is there, its mark is not, and the flag still says the
    // marks are complete. With a level no source reaches, a flush that skips the lookup is
    // held in the sketch instead of counted.
    let mut marks: Array<MapData, MarkLine> = Array::try_from(aya::maps::Map::Array(
        MapData::from_pin(dp.pins().map(names::TRACKED)).unwrap(),
    ))
    .unwrap();
    for line in 0..MARK_LINES {
        marks.set(line, MarkLine::default(), 0).unwrap();
    }
    dp.set_admission(
        AdmitLevel {
            packets: u32::MAX,
            _pad: 0,
        },
        &[],
    )
    .unwrap();
    send(&fx, src, 100);
    let stale = counted(&fx, src);
    assert!(
        stale < 200 && stale + FLUSH_AT <= 200,
        "a flush of an unmarked entry must skip it (this test could not tell otherwise): {stale}"
    );

    // Marked again, as a start marks what the maps hold: counted exactly from here on.
    let m = dp.mark_tracked().unwrap().expect("the pins have marks");
    assert_eq!(m.entries, 1, "{m:?}");
    assert!(dp.tracked_marked().unwrap());
    send(&fx, src, 100);
    assert_eq!(counted(&fx, src), stale + 100);
}
