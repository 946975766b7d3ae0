//! Benchmark baseline: parse the frame with ipwarden's own parser (reading the source address)
//! and return `XDP_DROP`. The floor for any filter that must look at the packet: in the live
//! benchmark the frame was written on another CPU, and reading its headers is a cache miss the
//! empty program never pays.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use ipwarden_common::{Parsed, parse_frame};
use ipwarden_ebpf::frame::XdpFrame;

#[xdp]
pub fn bench_touch(ctx: XdpContext) -> u32 {
    match parse_frame(&XdpFrame(&ctx)) {
        // The verdict depends on the source, so the read cannot be optimised away.
        Parsed::V4 { src, .. } if src[0] != 0 => xdp_action::XDP_DROP,
        Parsed::V6 { src, .. } if src[0] != 0 => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
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
