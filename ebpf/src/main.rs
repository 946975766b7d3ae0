//! The ipwarden XDP program: parse the source, count it, look it up, return a verdict.
//!
//! Failure semantics, decided once: frames that are not IP or cannot be parsed pass (fail open:
//! the kernel stack drops what is really broken) and are counted as `NotIp` / `Malformed`. There
//! is no state in which the program returns `XDP_ABORTED`.
#![no_std]
#![no_main]

mod count;
mod frame;
mod maps;
mod policy;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_coarse_ns, macros::xdp, programs::XdpContext,
};
use ipwarden_common::{GlobalCounter, Parsed, parse_frame};

use crate::{frame::XdpFrame, maps::CONFIG, policy::Decision};

#[xdp]
pub fn ipwarden_xdp(ctx: XdpContext) -> u32 {
    // `Seen` is not counted here: it is the sum of the terminal counters (passed, dropped,
    // limited), which user space adds up. One per-CPU update per packet fewer.
    let frame = XdpFrame(&ctx);
    let decision = match parse_frame(&frame) {
        Parsed::V4 { src, syn } => {
            let now = now();
            count::source_v4(&src, frame.len(), syn, now);
            policy::ipv4(&src, now)
        }
        Parsed::V6 { src, syn } => {
            let now = now();
            count::source_v6(&src, frame.len(), syn, now);
            policy::ipv6(&src, now)
        }
        Parsed::NotIp => {
            count::global(GlobalCounter::NotIp);
            Decision::Pass
        }
        Parsed::Malformed => {
            count::global(GlobalCounter::Malformed);
            Decision::Pass
        }
    };
    verdict(decision)
}

/// The kernel clock: `CLOCK_MONOTONIC` at jiffy resolution (`bpf_ktime_get_coarse_ns`, Linux
/// 5.11+). Milliseconds are plenty for rates and expiry, and the coarse clock costs a fraction
/// of the precise one. User space pairs it with `CLOCK_MONOTONIC` (see controller/src/clock.rs).
#[inline(always)]
fn now() -> u64 {
    // SAFETY: a plain helper call without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The one place a decision becomes an XDP action, with monitor mode applied.
#[inline(always)]
fn verdict(decision: Decision) -> u32 {
    match decision {
        Decision::Pass => {
            count::global(GlobalCounter::Passed);
            xdp_action::XDP_PASS
        }
        Decision::Allow => {
            // Allowed is a sub-count of Passed: entries the allowlist overrode.
            count::global(GlobalCounter::Allowed);
            count::global(GlobalCounter::Passed);
            xdp_action::XDP_PASS
        }
        Decision::Block | Decision::Limit => {
            // The config is read only on the drop path: passing traffic never pays for it.
            let monitor = CONFIG.get(0).is_some_and(|c| c.monitor());
            if monitor {
                count::global(GlobalCounter::Monitored);
                count::global(GlobalCounter::Passed);
                xdp_action::XDP_PASS
            } else {
                count::global(if decision == Decision::Block {
                    GlobalCounter::Dropped
                } else {
                    GlobalCounter::Limited
                });
                xdp_action::XDP_DROP
            }
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
