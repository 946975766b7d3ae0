//! Benchmark traffic generators, run with BPF_PROG_TEST_RUN in live-frames mode: each returns
//! `XDP_TX`, which transmits the frame out of the interface given in the context.
//!
//! - `bench_tx` sends its input frame unchanged: one source.
//! - `bench_spray` rewrites the IPv6 source's /64 on every frame, cycling through
//!   `SPRAY[COUNT]` distinct /64s: many sources, to measure the data plane when sources do not
//!   stay in its per-CPU front table, blocked ones or (with `SPRAY[BASE]`) unblocked ones.
//! - `bench_synspray` does the same for TCP SYNs a receiving stack accepts (valid checksums),
//!   rebuilding each frame from `SYN_TEMPLATE`: a spoofed SYN flood for the SYN cookie bench.
//! - `bench_drop_v6`, on the sending veth, drops what answers that flood (see there).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};

/// `[NEXT]`: the index of the next source; `[COUNT]`: how many sources to cycle through
/// (0 sends the frame unchanged); `[BASE]`: the top bits of the source's third group (0 means
/// 0x8000, the benchmark's blocked filler entries; 0x2000 sprays sources no entry covers).
#[map(name = "SPRAY")]
static SPRAY: Array<u32> = Array::with_max_entries(3, 0);
const NEXT: u32 = 0;
const COUNT: u32 = 1;
const BASE: u32 = 2;

/// Ethernet (14) + the IPv6 header's bytes before the source (8) + the source's first four
/// bytes (2001:0db8): the offset of the source's third and fourth 16-bit groups.
const SOURCE_GROUPS_3_4: usize = 14 + 8 + 4;

#[xdp]
pub fn bench_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// The next source of a spray: its third and fourth 16-bit groups, `None` when the spray is
/// off. Source i + 1 is 2001:db8:(base | i >> 16):(i & 0xffff)::/64, the encoding of the
/// benchmark's filler block entries (`runners/src/bench/kernel.rs`, `filler_v6`).
#[inline(always)]
fn next_source() -> Option<(u32, u32)> {
    let count = SPRAY.get(COUNT).copied().unwrap_or(0);
    let base = match SPRAY.get(BASE).copied().unwrap_or(0) {
        0 => 0x8000,
        b => b,
    };
    let next = SPRAY.get_ptr_mut(NEXT)?;
    if count == 0 {
        return None;
    }
    // SAFETY: an array slot, valid for the program's run; one generator CPU writes it.
    let i = unsafe { *next } % count;
    unsafe { *next = i + 1 };
    let n = i + 1;
    Some((base | (n >> 16), n & 0xffff))
}

#[xdp]
pub fn bench_spray(ctx: XdpContext) -> u32 {
    let Some((g3, g4)) = next_source() else {
        return xdp_action::XDP_TX;
    };
    let groups = g3 << 16 | g4;
    let start = ctx.data();
    if start + SOURCE_GROUPS_3_4 + 4 > ctx.data_end() {
        return xdp_action::XDP_TX;
    }
    // SAFETY: the four bytes lie inside the frame, checked above.
    unsafe {
        core::ptr::write_unaligned(
            (start + SOURCE_GROUPS_3_4) as *mut [u8; 4],
            groups.to_be_bytes(),
        )
    };
    xdp_action::XDP_TX
}

/// Offset of the IPv6 source's last 16-bit group.
const SOURCE_GROUP_8: usize = 14 + 8 + 14;

/// Length of `bench_synspray`'s frames: Ethernet, IPv6, TCP with an MSS option.
pub const SYN_FRAME_LEN: usize = 14 + 40 + 24;

/// The SYN `bench_synspray` sends, written by user space. Every run rebuilds the frame from
/// it: a receiver that answers in place (`XDP_TX`) and fails to transmit returns the page,
/// SYN-ACK and all, to the generator's pool, and the next run would send that instead.
#[map(name = "SYN_TEMPLATE")]
static SYN_TEMPLATE: Array<[u8; SYN_FRAME_LEN]> = Array::with_max_entries(1, 0);

/// As `bench_spray`, for TCP SYNs the receiving stack must accept: the source's last group is
/// set so that the address's ones'-complement sum does not change, so the template's TCP
/// checksum (computed with groups 3, 4 and 8 zero) stays valid for every source sprayed.
#[xdp]
pub fn bench_synspray(ctx: XdpContext) -> u32 {
    let Some((g3, g4)) = next_source() else {
        return xdp_action::XDP_TX;
    };
    let sum = g3 + g4;
    let sum = (sum & 0xffff) + (sum >> 16);
    let g8 = !sum & 0xffff;
    let Some(template) = SYN_TEMPLATE.get(0) else {
        return xdp_action::XDP_TX;
    };
    let start = ctx.data();
    if start + SYN_FRAME_LEN > ctx.data_end() {
        return xdp_action::XDP_TX;
    }
    // SAFETY: the bytes lie inside the frame, checked above.
    unsafe {
        core::ptr::write_unaligned(start as *mut [u8; SYN_FRAME_LEN], *template);
        core::ptr::write_unaligned(
            (start + SOURCE_GROUPS_3_4) as *mut [u8; 4],
            (g3 << 16 | g4).to_be_bytes(),
        );
        core::ptr::write_unaligned(
            (start + SOURCE_GROUP_8) as *mut [u8; 2],
            (g8 as u16).to_be_bytes(),
        );
    }
    xdp_action::XDP_TX
}

/// Drops IPv6 frames and passes the rest: on the sending veth, the SYN-ACKs answering a spoofed
/// IPv6 flood end here, on the generator's CPU, instead of in the sender's stack, where IPv4
/// clients share that CPU. Attached, it also gives the veth the NAPI `XDP_TX` answers need.
#[xdp]
pub fn bench_drop_v6(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 14 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the Ethernet header lies inside the frame, checked above.
    let ethertype = unsafe { core::ptr::read_unaligned((start + 12) as *const [u8; 2]) };
    if ethertype == [0x86, 0xdd] {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
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
