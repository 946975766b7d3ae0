//! The ipwarden XDP program: parse the source, count it, look it up, return a verdict.
//!
//! Failure semantics, decided once: frames that are not IP or cannot be parsed pass (fail open:
//! the kernel stack drops what is really broken) and are counted as `NotIp` / `Malformed`. There
//! is no state in which the program returns `XDP_ABORTED`.
#![no_std]
#![no_main]

mod admit;
mod clock;
mod fingerprint;
mod maps;
mod policy;
mod program;
mod source;
mod synproxy;
mod tracked;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn ipwarden_xdp(ctx: XdpContext) -> u32 {
    program::run(&ctx, xdp_action::XDP_PASS)
}

/// The synproxy's program, tail-called by `ipwarden_xdp` (see `synproxy`).
#[xdp]
pub fn ipwarden_synack(ctx: XdpContext) -> u32 {
    synproxy::run(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
