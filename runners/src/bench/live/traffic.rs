//! What the generators send: the traffic kinds, and how each is made (the in-kernel program, its
//! frame and how the source changes from frame to frame).

use anyhow::ensure;

use super::{Bed, SPRAY_PROGRAM, SYN_SPRAY_PROGRAM, TX_PROGRAM};

/// What the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// One blocked IPv4 source ([`frames::DROP_V4`]), 64-byte frames.
    OneSource,
    /// IPv6 frames (80 bytes) from this many distinct /64s in turn, each one a filler entry
    /// of the benchmark's block set (see [`super::kernel::filler_v6`]).
    Spray(u32),
    /// As `Spray`, from /64s no entry covers (2001:db8:2000::/44): a random-source flood of
    /// unblocked sources, which the counter maps must track.
    SprayUnblocked(u32),
    /// As `SprayUnblocked`, as TCP SYNs (78-byte frames): a spoofed SYN flood, where every
    /// frame is also a new SYN signature.
    SpraySynUnblocked(u32),
    /// A spoofed SYN flood the receiver's stack accepts: IPv6 SYNs to port 443 of the
    /// receiver's address with a valid checksum and an MSS option, from this many /64s in
    /// turn (2001:db8:2000::/44).
    SynFlood(u32),
}

/// How a generator changes the source from frame to frame: source `i + 1` of `sources` is
/// 2001:db8:(base | i >> 16):(i & 0xffff)::/64 (see `ebpf/src/bin/tx.rs`).
#[derive(Clone, Copy, Debug)]
pub struct Spray {
    pub sources: u32,
    pub base: u32,
    /// The source's last group is set so that the TCP checksum stays valid (`bench_synspray`);
    /// otherwise only groups 3 and 4 change (`bench_spray`), as receivers that drop every frame
    /// never read the checksum.
    pub keep_checksum: bool,
}

impl Bed {
    /// What makes `traffic`: the generator program, its frame and, for many sources, how the
    /// source changes from frame to frame.
    pub(super) fn pattern(
        &self,
        traffic: Traffic,
    ) -> anyhow::Result<(&'static str, &[u8], Option<Spray>)> {
        Ok(match traffic {
            Traffic::OneSource => (TX_PROGRAM, &self.frame, None),
            Traffic::SynFlood(sources) => {
                ensure!(sources > 0, "a flood needs at least one source");
                let spray = Spray {
                    sources,
                    base: 0x2000,
                    keep_checksum: true,
                };
                (SYN_SPRAY_PROGRAM, &self.frame_synflood, Some(spray))
            }
            Traffic::Spray(sources)
            | Traffic::SprayUnblocked(sources)
            | Traffic::SpraySynUnblocked(sources) => {
                ensure!(sources > 0, "a spray needs at least one source");
                let base = if matches!(traffic, Traffic::Spray(_)) {
                    0x8000
                } else {
                    // Clear of the filler entries (0x8000…) and the /48 fillers (0x4000…).
                    0x2000
                };
                let frame = if matches!(traffic, Traffic::SpraySynUnblocked(_)) {
                    &self.frame_syn6
                } else {
                    &self.frame_v6
                };
                let spray = Spray {
                    sources,
                    base,
                    keep_checksum: false,
                };
                (SPRAY_PROGRAM, frame, Some(spray))
            }
        })
    }
}
