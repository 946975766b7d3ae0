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
    /// Explicit padding before the 4-byte fields; always zero.
    pub _pad: [u8; 3],
    /// [`Action::CHALLENGE`]: nanoseconds between packets at the allowed rate (1e9 / pps),
    /// computed in user space so the kernel never divides.
    pub interval_ns: u32,
    /// [`Action::CHALLENGE`]: packets allowed back to back before the rate applies.
    pub burst: u32,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for BlockEntry {}

const _: () = assert!(core::mem::size_of::<BlockEntry>() == 24);

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
            interval_ns: 0,
            burst: 0,
        }
    }

    /// A pass entry: full speed, overriding a wider challenge.
    pub const fn pass(reason: u32, expires_at_ns: u64) -> Self {
        Self {
            expires_at_ns,
            reason,
            action: Action::PASS,
            _pad: [0; 3],
            interval_ns: 0,
            burst: 0,
        }
    }

    /// A rate-limit entry: each source it covers may send `pps` packets per second (at least
    /// 1), with bursts of `burst` (at least 1); the rest is dropped.
    pub const fn challenge(reason: u32, expires_at_ns: u64, pps: u32, burst: u32) -> Self {
        let pps = if pps == 0 { 1 } else { pps };
        Self {
            expires_at_ns,
            reason,
            action: Action::CHALLENGE,
            _pad: [0; 3],
            interval_ns: 1_000_000_000 / pps,
            burst: if burst == 0 { 1 } else { burst },
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
    /// Step-up, not ban: rate-limit each covered source with a token bucket (GCRA) and drop
    /// what exceeds it. Applications serve these sources a CAPTCHA or MFA.
    pub const CHALLENGE: u8 = 2;
    /// Let through at full speed: a source that solved a challenge, for its pass's lifetime.
    /// User space writes it only where no wider block applies (a pass never outranks a block);
    /// the program passes every action it does not know, so a program older than this value
    /// enforces it already.
    pub const PASS: u8 = 3;
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
    /// A CrowdSec decision (LAPI).
    pub const CROWDSEC: u32 = 5;
    /// Another host of the fleet.
    pub const FLEET: u32 = 6;
    /// A solved challenge (the verdict endpoint's pass).
    pub const CHALLENGE_PASS: u32 = 7;
}

/// Generic cell rate algorithm: the token bucket as one number per source, the theoretical
/// arrival time `tat` of the next packet. A packet at `now` conforms if, after it, `tat` is at
/// most `burst` intervals ahead of `now`. Returns the new `tat`, or `None` to drop. Shared so
/// the kernel and the unit tests run the same arithmetic.
#[inline(always)]
pub const fn gcra(tat: u64, now: u64, interval_ns: u32, burst: u32) -> Option<u64> {
    let interval = interval_ns as u64;
    let base = if tat > now { tat } else { now };
    let next = base + interval;
    if next - now > interval * burst as u64 {
        None
    } else {
        Some(next)
    }
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
    fn challenge_entries_carry_the_interval() {
        let e = BlockEntry::challenge(Reason::IPASIS, 0, 50, 10);
        assert_eq!(
            (e.action, e.interval_ns, e.burst),
            (Action::CHALLENGE, 20_000_000, 10)
        );
        let e = BlockEntry::challenge(Reason::IPASIS, 0, 0, 0);
        assert_eq!((e.interval_ns, e.burst), (1_000_000_000, 1));
    }

    #[test]
    fn gcra_admits_the_burst_then_the_rate() {
        // 10 pps (100 ms interval), burst 3, 100 packets arriving at 1000 pps.
        let (interval, burst) = (100_000_000, 3);
        let mut tat = 0;
        let mut passed = 0;
        for i in 0..100u64 {
            let now = 1_000_000_000 + i * 1_000_000;
            if let Some(next) = gcra(tat, now, interval, burst) {
                tat = next;
                passed += 1;
            }
        }
        // 3 at once, then one per 100 ms over the 99 ms that follow: none.
        assert_eq!(passed, 3);
        // One second later the bucket has refilled.
        assert!(gcra(tat, 2_200_000_000, interval, burst).is_some());
        // Over 10 s at 1000 pps: the burst plus about 10 per second.
        let (mut tat, mut passed) = (0, 0);
        for i in 0..10_000u64 {
            if let Some(next) = gcra(tat, 5_000_000_000 + i * 1_000_000, interval, burst) {
                tat = next;
                passed += 1;
            }
        }
        assert!((100..=103).contains(&passed), "{passed}");
    }

    #[test]
    fn entries_expire_at_their_deadline() {
        let e = BlockEntry::block(Reason::VELOCITY, 1_000);
        assert!(e.is_live(999));
        assert!(!e.is_live(1_000));
        assert!(!e.is_live(5_000));
    }
}
