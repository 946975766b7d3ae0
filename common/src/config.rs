//! The one-slot configuration array the XDP program reads on every packet.

/// Runtime switches of the data plane, written by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Bit set of the `DataplaneConfig::*` flag consts.
    pub flags: u32,
    /// Reserved; always zero.
    pub _reserved: u32,
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

    /// Whether monitor mode is on.
    #[inline(always)]
    pub const fn monitor(&self) -> bool {
        self.flags & Self::MONITOR != 0
    }

    /// Whether IPv6 verdicts may be cached per /64 (no entry longer than /64 exists).
    #[inline(always)]
    pub const fn v6_cacheable(&self) -> bool {
        self.flags & Self::V6_FINE == 0
    }
}
