//! Counter values: per source, and global.

use crate::Pending;

/// Per-CPU counters of one source, in an LRU per-CPU hash. User space sums the CPUs (and takes
/// the minimum non-zero `first_seen_ns`).
///
/// There is no per-packet timestamp: reading the clock is a helper call, as costly as the rest of
/// a cached packet's path, and rates come from the controller's polls anyway. Counts reach this map from the per-CPU front table
/// (see [`crate::front`]) in flushes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SrcStats {
    /// IP packets seen from the source, whatever the verdict.
    pub packets: u64,
    /// Frame bytes (from the Ethernet header) of those packets.
    pub bytes: u64,
    /// TCP segments with SYN set and ACK clear: connection attempts.
    pub syn: u64,
    /// `bpf_ktime_get_coarse_ns` when this CPU created the entry.
    pub first_seen_ns: u64,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SrcStats {}

const _: () = assert!(core::mem::size_of::<SrcStats>() == 32);

impl SrcStats {
    /// Adds counts flushed from (or still pending in) the front table.
    pub fn add(&mut self, p: &Pending) {
        self.packets += p.packets;
        self.bytes += p.bytes;
        self.syn += p.syn;
    }

    /// Folds another CPU's counters into `self`.
    pub fn merge(&mut self, other: &Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.syn += other.syn;
        if other.first_seen_ns != 0
            && (self.first_seen_ns == 0 || other.first_seen_ns < self.first_seen_ns)
        {
            self.first_seen_ns = other.first_seen_ns;
        }
    }
}

/// Per-CPU counters of one IPv6 /64, plus the last full address seen in it, so the controller can
/// ask about a real address of the prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SrcStatsV6 {
    /// The counters.
    pub stats: SrcStats,
    /// The full source address of the latest packet this CPU counted.
    pub last_addr: [u8; 16],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SrcStatsV6 {}

const _: () = assert!(core::mem::size_of::<SrcStatsV6>() == 48);

impl SrcStatsV6 {
    /// Folds another CPU's counters into `self`, keeping the address of the CPU that counted
    /// the most packets (CPUs' latest addresses cannot be ordered in time).
    pub fn merge(&mut self, other: &Self) {
        if other.stats.packets > self.stats.packets {
            self.last_addr = other.last_addr;
        }
        self.stats.merge(&other.stats);
    }
}

/// Indexes of the global per-CPU counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalCounter {
    /// Every frame the program ran on. Not written by the program: user space computes it as
    /// `Passed + Dropped + Limited`, which saves one per-CPU update per packet.
    Seen = 0,
    /// Frames passed (including allowlisted and monitor-mode ones).
    Passed = 1,
    /// Frames dropped because their source is blocked.
    Dropped = 2,
    /// Frames a block or challenge entry covered but the allowlist let through (a sub-count of
    /// `Passed`). The allowlist is only consulted when an entry matches.
    Allowed = 3,
    /// Frames that are not IPv4/IPv6 (ARP, LLDP, other ethertypes, too many VLAN tags).
    NotIp = 4,
    /// IP frames too short or malformed to read a source address from.
    Malformed = 5,
    /// Frames that would have been dropped but passed because monitor mode is on.
    Monitored = 6,
    /// Frames dropped because their source exceeded a challenge rate.
    Limited = 7,
}

impl GlobalCounter {
    /// Number of slots of the array.
    pub const COUNT: u32 = 8;

    /// Every counter in index order.
    pub const ALL: [GlobalCounter; Self::COUNT as usize] = [
        Self::Seen,
        Self::Passed,
        Self::Dropped,
        Self::Allowed,
        Self::NotIp,
        Self::Malformed,
        Self::Monitored,
        Self::Limited,
    ];

    /// Stable snake_case name, used in CLI and JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::Passed => "passed",
            Self::Dropped => "dropped",
            Self::Allowed => "allowed",
            Self::NotIp => "not_ip",
            Self::Malformed => "malformed",
            Self::Monitored => "monitored",
            Self::Limited => "limited",
        }
    }
}

/// Slots of the `DROPS` map: one per `Reason` code (0 = unspecified, and the origins).
pub const DROP_ORIGINS: u32 = 8;

/// Packets and bytes dropped (blocked, or over a challenge's rate) by entries of one origin.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCount {
    pub packets: u64,
    pub bytes: u64,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropCount {}

/// log2 of the drops per sample of the hit tables (`HITS_V4`, `HITS_V6`).
pub const HIT_SAMPLE_BITS: u32 = 6;
/// One dropped frame in this many is recorded against its source: each sample in a hit table
/// stands for this many dropped packets.
pub const HIT_SAMPLE: u64 = 1 << HIT_SAMPLE_BITS;

/// Whether the drop that brought its origin's per-CPU count to `drops` is sampled into the hit
/// tables, so that hits per decision cost one map update per [`HIT_SAMPLE`] drops instead of
/// one per drop (a random-number helper per drop would cost more than the rest of the drop).
///
/// The count is one per-CPU array read away (inlined, no helper call) and moves with every drop;
/// a Fibonacci hash of it picks one count in [`HIT_SAMPLE`], in gaps that vary (the three-gap
/// theorem: here 34, 55 or 89 counts apart), so sources whose drops interleave in a fixed
/// rhythm share the samples instead of one of them taking all (a plain `drops % 64` would give
/// every sample of two alternating sources to one of them). Only a rhythm of exactly a
/// Fibonacci number of sources (34, 55, 89, ...) would still skew it.
/// Each sample is then an unbiased estimate of `HIT_SAMPLE` drops: a source with `n` drops has
/// about `n / HIT_SAMPLE` samples, give or take `sqrt(n / HIT_SAMPLE)`.
#[inline(always)]
pub const fn hit_sampled(drops: u64) -> bool {
    drops.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - HIT_SAMPLE_BITS) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_drop_in_hit_sample_is_sampled_and_interleaved_sources_share_the_samples() {
        for start in [0u64, 1, 4_294_937_296, u64::MAX - 64_005] {
            let n = 64_000u64;
            let sampled = (1..=n).filter(|&d| hit_sampled(start + d)).count() as u64;
            let expect = n / HIT_SAMPLE;
            assert!(sampled.abs_diff(expect) <= expect / 50, "{sampled} of {n}");
            // Two, three and five sources taking turns: each gets its share within 10 %.
            for sources in [2u64, 3, 5] {
                let mut per = [0u64; 5];
                for d in 1..=n {
                    if hit_sampled(start + d) {
                        per[(d % sources) as usize] += 1;
                    }
                }
                let share = expect / sources;
                for (i, &got) in per.iter().take(sources as usize).enumerate() {
                    assert!(
                        got.abs_diff(share) <= share / 10,
                        "source {i} of {sources}: {got} samples, expected about {share}"
                    );
                }
            }
        }
    }

    #[test]
    fn merge_sums_counts_and_widens_the_time_span() {
        let mut a = SrcStats {
            packets: 2,
            bytes: 100,
            syn: 1,
            first_seen_ns: 50,
        };
        let b = SrcStats {
            packets: 3,
            bytes: 10,
            syn: 0,
            first_seen_ns: 40,
        };
        a.merge(&b);
        assert_eq!(
            a,
            SrcStats {
                packets: 5,
                bytes: 110,
                syn: 1,
                first_seen_ns: 40,
            }
        );
        // A CPU that never saw the source has all-zero counters and must not reset first_seen.
        a.merge(&SrcStats::default());
        assert_eq!(a.first_seen_ns, 40);
    }

    #[test]
    fn v6_merge_keeps_the_busiest_cpus_address() {
        let mut a = SrcStatsV6 {
            stats: SrcStats {
                packets: 10,
                ..Default::default()
            },
            last_addr: [1; 16],
        };
        let b = SrcStatsV6 {
            stats: SrcStats {
                packets: 20,
                ..Default::default()
            },
            last_addr: [2; 16],
        };
        a.merge(&b);
        assert_eq!(a.last_addr, [2; 16]);
    }

    #[test]
    fn counter_indexes_are_dense() {
        for (i, c) in GlobalCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
