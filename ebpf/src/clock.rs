//! The kernel clock, read only where a decision needs it.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

/// `CLOCK_MONOTONIC` at jiffy resolution (`bpf_ktime_get_coarse_ns`, Linux 5.11+). Milliseconds
/// are plenty for expiry and rate buckets, and user space pairs it with `CLOCK_MONOTONIC` (see
/// controller/src/clock.rs).
///
/// It is still a helper call, and on this class of machine (AMD, return-thunk mitigations) a
/// call costs as much as the rest of a cached packet's path: so it is read when a source is
/// judged against the block set or a cached verdict can lapse, never per packet.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a plain helper call without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Jiffies since boot. `bpf_jiffies64` is inlined by the verifier (a load, no call): the clock
/// for checking cached verdicts on every packet (see `ipwarden_common::verdict`).
#[inline(always)]
pub fn jiffies() -> u64 {
    // SAFETY: a plain helper call without arguments (rewritten into a load by the verifier).
    unsafe { bpf_jiffies64() }
}
