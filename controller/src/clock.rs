//! The clock pairing between kernel and user space.
//!
//! The XDP program stamps counters and checks block expiry with `bpf_ktime_get_coarse_ns`, which
//! is `CLOCK_MONOTONIC` at jiffy resolution (it lags the precise clock by at most a few ms, and
//! costs less per packet). User space therefore computes deadlines on `CLOCK_MONOTONIC`, here
//! and nowhere else; a deadline is honoured to within a jiffy. The clock stops across suspend and restarts at boot, which is why persisted
//! decisions (the daemon's store) keep wall-clock times and are re-armed on start.

use std::time::Duration;

/// `CLOCK_MONOTONIC` now, in nanoseconds: the same clock as `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail on Linux");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel deadline `ttl` from now; `None` (never) stays `0`, the kernel's "never".
pub fn deadline_ns(ttl: Option<Duration>) -> u64 {
    deadline_from(monotonic_ns(), ttl)
}

/// [`deadline_ns`] from `now_ns`, a [`monotonic_ns`] read once for many deadlines.
pub fn deadline_from(now_ns: u64, ttl: Option<Duration>) -> u64 {
    match ttl {
        None => ipwarden_common::BlockEntry::NEVER,
        // Saturating: an absurd TTL becomes "practically never", not a wrap into the past.
        Some(ttl) => now_ns
            .saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
            .max(1),
    }
}

/// Time left until a kernel deadline, `None` for a permanent entry, zero once passed.
pub fn remaining(expires_at_ns: u64) -> Option<Duration> {
    if expires_at_ns == ipwarden_common::BlockEntry::NEVER {
        return None;
    }
    Some(Duration::from_nanos(
        expires_at_ns.saturating_sub(monotonic_ns()),
    ))
}

/// Nanoseconds of `CLOCK_MONOTONIC` elapsed since a kernel timestamp.
pub fn age(kernel_ns: u64) -> Duration {
    Duration::from_nanos(monotonic_ns().saturating_sub(kernel_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_lie_ttl_ahead_on_the_kernel_clock() {
        let before = monotonic_ns();
        let d = deadline_ns(Some(Duration::from_secs(60)));
        assert!(d >= before + 60_000_000_000);
        let left = remaining(d).expect("finite");
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(59));
    }

    #[test]
    fn permanent_and_huge_ttls() {
        assert_eq!(deadline_ns(None), 0);
        assert_eq!(remaining(0), None);
        assert_eq!(deadline_ns(Some(Duration::MAX)), u64::MAX);
    }
}
