//! Benchmark variant: the ipwarden program, whole, except that frames it passes are dropped.
//! Floods of unblocked sources then measure the program's own cost rather than the kernel
//! stack's, as xdp-filter's deny-by-default program does for its lookups. Same source files as
//! the product (`#[path]`), so it cannot drift from it.
#![no_std]
#![no_main]

#[path = "../admit.rs"]
mod admit;
#[path = "../clock.rs"]
mod clock;
#[path = "../fingerprint.rs"]
mod fingerprint;
#[path = "../maps.rs"]
mod maps;
#[path = "../policy.rs"]
mod policy;
#[path = "../program.rs"]
mod program;
#[path = "../source.rs"]
mod source;
#[path = "../tracked.rs"]
mod tracked;
// The sink hands frames to no synproxy program (its slot stays empty): its program goes unused.
#[path = "../synproxy.rs"]
#[allow(dead_code)]
mod synproxy;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn ipwarden_sink(ctx: XdpContext) -> u32 {
    program::run(&ctx, xdp_action::XDP_DROP)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
