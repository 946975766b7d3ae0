//! Benchmark baseline: an XDP program that does nothing but return `XDP_TX`.
//! Run with BPF_PROG_TEST_RUN in live-frames mode it transmits its input frame out of the
//! interface given in the context: the traffic generator of `cargo xtask bench`.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn bench_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
