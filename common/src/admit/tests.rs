extern crate std;

use std::{vec, vec::Vec};

use super::*;

/// A small deterministic generator (xorshift64*), enough to spray keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn sketch() -> Vec<SketchLine> {
    vec![SketchLine::default(); SKETCH_LINES as usize]
}

fn add(s: &mut [SketchLine], epoch: u32, key: u64, packets: u32) -> u32 {
    let p = place(key, true);
    s[p.line as usize].add(epoch, &p, packets)
}

fn estimate(s: &[SketchLine], epoch: u32, key: u64) -> u32 {
    let p = place(key, true);
    s[p.line as usize].estimate(epoch, &p)
}

#[test]
fn places_stay_in_bounds_and_spread() {
    let mut r = Rng(7);
    let mut lines = vec![0u32; SKETCH_LINES as usize];
    for _ in 0..200_000 {
        let p = place(r.next(), r.next() & 1 == 0);
        assert!(p.line < SKETCH_LINES);
        assert!((1..=8).contains(&p.a) && (8..=15).contains(&p.b));
        lines[p.line as usize] += 1;
    }
    // About 24 per line: none empty, none more than three times that.
    assert!(
        lines.iter().all(|&n| n > 0 && n < 75),
        "{:?}",
        lines.iter().max()
    );
    // The same key in the two families lands apart.
    assert_ne!(place(42, false), place(42, true));
    assert_eq!(place_v4(&[192, 0, 2, 1]), place(0xC000_0201, false));
    assert_eq!(
        place_v6(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 1]),
        place(0x2001_0db8_0000_0001, true)
    );
}

/// Half a million sprayed one-packet sources and 50 heavy ones on one CPU in one epoch: no
/// estimate is under the truth, and the over-count's tail is what the README states.
#[test]
fn estimates_never_undercount_and_the_tail_is_small() {
    let mut s = sketch();
    let mut r = Rng(99);
    let heavy: Vec<u64> = (0..50).map(|_| r.next()).collect();
    let mut sprayed = Vec::new();
    for i in 0..500_000u32 {
        let k = r.next();
        add(&mut s, 5, k, 1);
        if i % 64 == 0 {
            sprayed.push(k);
        }
        if i % 2_500 == 0 {
            for &h in &heavy {
                add(&mut s, 5, h, 1);
            }
        }
    }
    for &h in &heavy {
        assert!(
            estimate(&s, 5, h) >= 200,
            "a heavy source read below its 200 packets"
        );
    }
    let mut over: Vec<u32> = sprayed.iter().map(|&k| estimate(&s, 5, k) - 1).collect();
    assert!(
        over.iter().all(|&o| o < u32::MAX - 1),
        "a sprayed source read below its packet"
    );
    over.sort_unstable();
    let p50 = over[over.len() / 2];
    let p99 = over[over.len() * 99 / 100];
    // Mean load of a counter: 2 × 500 000 / (15 × 8 192) ≈ 8; the smaller of two ≈ 6.
    assert!((3..=10).contains(&p50), "median over-count {p50}");
    assert!(p99 <= 20, "99th percentile over-count {p99}");
}

#[test]
fn a_new_epoch_starts_the_line_from_zero() {
    let mut s = sketch();
    assert_eq!(add(&mut s, 1, 7, 40), 40);
    assert_eq!(add(&mut s, 1, 7, 2), 42);
    assert_eq!(estimate(&s, 1, 7), 42);
    assert_eq!(estimate(&s, 2, 7), 0, "another epoch reads nothing");
    assert_eq!(add(&mut s, 2, 7, 3), 3);
    assert_eq!(epoch(3 << EPOCH_SHIFT | 5), 3);
    assert_eq!(epoch_start(3 << EPOCH_SHIFT | 5), 3 << EPOCH_SHIFT);
}

#[test]
fn levels_split_the_threshold_over_cpus_and_zero_turns_off() {
    // 200 pps × 1/2 × 1.074 s ÷ 2 CPUs = 53.7.
    assert_eq!(AdmitLevel::per_cpu(200, 0.5, 2).packets, 53);
    assert_eq!(AdmitLevel::per_cpu(1, 0.5, 64).packets, 1, "never below 1");
    assert!(!AdmitLevel::per_cpu(200, 0.0, 2).on());
    assert!(!AdmitLevel::per_cpu(0, 0.5, 2).on());
    assert!(!AdmitLevel::default().on());
}

#[test]
fn a_seed_scales_the_chunk_to_the_estimate() {
    let p = Pending {
        packets: 4,
        bytes: 400,
        syn: 2,
    };
    let s = seed(&p, 40, 5_000, 1_000);
    assert_eq!(
        (s.packets, s.bytes, s.syn, s.first_seen_ns),
        (40, 4_000, 20, 1_000)
    );
    // An estimate no higher than the chunk: the chunk itself, its own first-seen time.
    let s = seed(&p, 3, 5_000, 1_000);
    assert_eq!(
        (s.packets, s.bytes, s.syn, s.first_seen_ns),
        (4, 400, 2, 5_000)
    );
    // A first-seen time before the epoch stays.
    assert_eq!(seed(&p, 40, 500, 1_000).first_seen_ns, 500);
}

#[test]
fn flags_are_bits_of_their_word() {
    assert!(flagged(1 << 5, 64 * 3 + 5));
    assert!(!flagged(1 << 5, 64 * 3 + 6));
}
