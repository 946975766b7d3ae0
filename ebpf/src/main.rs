//! The ipwarden XDP program: parse the source, count it, look it up, return a verdict.
//!
//! Failure semantics, decided once: frames that are not IP or cannot be parsed pass (fail open:
//! the kernel stack drops what is really broken) and are counted as `NotIp` / `Malformed`. There
//! is no state in which the program returns `XDP_ABORTED`.
#![no_std]
#![no_main]

mod clock;
mod fingerprint;
mod maps;
mod policy;
mod source;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use ipwarden_common::{DataplaneConfig, GlobalCounter, Parsed, parse_frame};
use ipwarden_ebpf::frame::XdpFrame;

use crate::{
    maps::CONFIG,
    policy::Decision,
    source::{Packet, global},
};

#[xdp]
pub fn ipwarden_xdp(ctx: XdpContext) -> u32 {
    // `Seen` is not counted here: it is the sum of the terminal counters (passed, dropped,
    // limited), which user space adds up. One per-CPU update per packet fewer.
    let frame = XdpFrame(&ctx);
    // Read before any block-set lookup: the generation is what makes cached verdicts safe.
    let cfg = CONFIG.get(0).copied().unwrap_or_default();
    let decision = match parse_frame(&frame) {
        Parsed::V4 { src, syn } => {
            let d = source::ipv4(&src, packet(&frame, syn), &cfg);
            if syn && d != Decision::Block {
                fingerprint::record(&frame);
            }
            d
        }
        Parsed::V6 { src, syn } => {
            let d = source::ipv6(&src, packet(&frame, syn), &cfg);
            if syn && d != Decision::Block {
                fingerprint::record(&frame);
            }
            d
        }
        Parsed::NotIp => {
            global(GlobalCounter::NotIp);
            Decision::Pass
        }
        Parsed::Malformed => {
            global(GlobalCounter::Malformed);
            Decision::Pass
        }
    };
    verdict(decision, &cfg)
}

#[inline(always)]
fn packet(frame: &XdpFrame, syn: bool) -> Packet {
    Packet {
        bytes: frame.bytes(),
        syn,
    }
}

/// The one place a decision becomes an XDP action, with monitor mode applied.
#[inline(always)]
fn verdict(decision: Decision, cfg: &DataplaneConfig) -> u32 {
    match decision {
        Decision::Pass => {
            global(GlobalCounter::Passed);
            xdp_action::XDP_PASS
        }
        Decision::Allow => {
            // Allowed is a sub-count of Passed: entries the allowlist overrode.
            global(GlobalCounter::Allowed);
            global(GlobalCounter::Passed);
            xdp_action::XDP_PASS
        }
        Decision::Block | Decision::Limit => {
            if cfg.monitor() {
                global(GlobalCounter::Monitored);
                global(GlobalCounter::Passed);
                xdp_action::XDP_PASS
            } else {
                global(if decision == Decision::Block {
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
