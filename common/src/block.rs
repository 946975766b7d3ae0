//! The value of every block map entry.

/// What the data plane does with a matching source, and until when.
///
/// `action` is a field of the value rather than a separate map so that new actions (a
/// rate-limited "challenge") need no change to the key layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`) after which the entry no longer
    /// applies; [`BlockEntry::NEVER`] for a permanent entry. The kernel checks it itself, so a
    /// stopped controller never turns a temporary block into a permanent one.
    pub expires_at_ns: u64,
    /// One of the [`Reason`] consts; informational for the kernel.
    pub reason: u32,
    /// One of the [`Action`] consts.
    pub action: u8,
    /// Explicit padding to the 8-byte alignment of `expires_at_ns`; always zero.
    pub _pad: [u8; 3],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for BlockEntry {}

const _: () = assert!(core::mem::size_of::<BlockEntry>() == 16);

impl BlockEntry {
    /// `expires_at_ns` of an entry that never expires.
    pub const NEVER: u64 = 0;

    /// A drop entry.
    pub const fn block(reason: u32, expires_at_ns: u64) -> Self {
        Self {
            expires_at_ns,
            reason,
            action: Action::BLOCK,
            _pad: [0; 3],
        }
    }

    /// Whether the entry still applies at `now_ns` (same clock as `expires_at_ns`).
    #[inline(always)]
    pub const fn is_live(&self, now_ns: u64) -> bool {
        self.expires_at_ns == Self::NEVER || now_ns < self.expires_at_ns
    }
}

/// Namespace for the `BlockEntry::action` values (a Pod type cannot hold a Rust enum).
pub struct Action;

impl Action {
    /// Drop every packet from the source.
    pub const BLOCK: u8 = 1;
}

/// Namespace for the `BlockEntry::reason` codes.
pub struct Reason;

impl Reason {
    /// Unknown or not recorded.
    pub const UNSPECIFIED: u32 = 0;
    /// An operator's `block` command.
    pub const MANUAL: u32 = 1;
    /// The controller's velocity rule.
    pub const VELOCITY: u32 = 2;
    /// An IP-intelligence verdict.
    pub const IPASIS: u32 = 3;
    /// An external feed.
    pub const FEED: u32 = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_entries_never_expire() {
        let e = BlockEntry::block(Reason::MANUAL, BlockEntry::NEVER);
        assert!(e.is_live(0));
        assert!(e.is_live(u64::MAX));
    }

    #[test]
    fn entries_expire_at_their_deadline() {
        let e = BlockEntry::block(Reason::VELOCITY, 1_000);
        assert!(e.is_live(999));
        assert!(!e.is_live(1_000));
        assert!(!e.is_live(5_000));
    }
}
