//! The one-slot configuration array the XDP program reads on every packet.

/// Runtime switches of the data plane, written by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Bit set of the `DataplaneConfig::*` flag consts.
    pub flags: u32,
    /// The low 32 bits of `generation` while user space vouches for the block index's rule
    /// (see `crate::index`): every exact hash key has a way or its bucket is marked. 0, or any
    /// other value (a writer that changed the generation without knowing the rule), vouches
    /// for nothing. Zero in releases before it.
    pub authority: u32,
    /// Changes to a fresh random value below 2^59 after every change to the block set or the
    /// allowlist: verdicts the program cached per source under another generation are
    /// recomputed (see [`crate::VerdictCache`]). 59 random bits make it practically impossible
    /// for a new value to equal one some stale cache entry still carries, and random values
    /// need no read-modify-write that two writers could interleave.
    pub generation: u64,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DataplaneConfig {}

const _: () = assert!(core::mem::size_of::<DataplaneConfig>() == 16);

impl DataplaneConfig {
    /// Monitor (dry-run): would-be drops are counted as such and passed.
    pub const MONITOR: u32 = 1 << 0;

    /// Some IPv6 block or allow entry is longer than /64, so sources of one /64 can be judged
    /// differently: IPv6 verdicts are then not cached per /64. Kept by user space with the
    /// generation.
    pub const V6_FINE: u32 = 1 << 1;

    /// Every entry of the per-source maps has its mark (see `crate::tracked`): a source whose
    /// mark is clear needs no lookup there. Set by user space after it marked what it found,
    /// withdrawn before a program swap.
    pub const TRACKED_MARKED: u32 = 1 << 2;

    /// Whether monitor mode is on.
    #[inline(always)]
    pub const fn monitor(&self) -> bool {
        self.flags & Self::MONITOR != 0
    }

    /// Whether a key without a way in an unmarked index bucket is in no exact hash (see
    /// `crate::index`), so the hash need not be asked.
    #[inline(always)]
    pub const fn index_authoritative(&self) -> bool {
        self.authority != 0 && self.authority == self.generation as u32
    }

    /// Whether a clear mark says that a source has no per-source entry.
    #[inline(always)]
    pub const fn tracked_marked(&self) -> bool {
        self.flags & Self::TRACKED_MARKED != 0
    }

    /// Whether IPv6 verdicts may be cached per /64 (no entry longer than /64 exists).
    #[inline(always)]
    pub const fn v6_cacheable(&self) -> bool {
        self.flags & Self::V6_FINE == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_holds_only_for_the_generation_it_was_given_under() {
        let mut c = DataplaneConfig {
            generation: 0x1234_5678_9abc,
            ..Default::default()
        };
        assert!(!c.index_authoritative());
        c.authority = 0x5678_9abc;
        assert!(c.index_authoritative());
        // Another writer's new generation withdraws it.
        c.generation = 0x1234_5678_9abd;
        assert!(!c.index_authoritative());
        // Zero never vouches, even for a generation whose low half is zero.
        c.generation = 0x1_0000_0000;
        c.authority = 0;
        assert!(!c.index_authoritative());
    }
}
