//! Benchmark baseline: parse the frame with ipwarden's own parser (reading the source address)
//! and return `XDP_DROP`. The floor for any filter that must look at the packet: in the live
//! benchmark the frame was written on another CPU, and reading its headers is a cache miss the
//! empty program never pays.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use ipwarden_common::{Frame, Parsed, parse_frame};

struct Packet<'a>(&'a XdpContext);

impl Frame for Packet<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let (start, end) = (self.0.data(), self.0.data_end());
        if start + offset + N > end {
            return None;
        }
        // SAFETY: bounds checked above; packet data has no alignment guarantee.
        Some(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
    }
}

#[xdp]
pub fn bench_touch(ctx: XdpContext) -> u32 {
    match parse_frame(&Packet(&ctx)) {
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
