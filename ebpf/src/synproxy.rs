//! The synproxy's packet side (see `ipwarden_common::synproxy`): a SYN to a protected port that
//! a listener would take is answered here with a cookie SYN-ACK (`XDP_TX`); an ACK to a
//! protected port that no connection holds must carry a valid cookie, or it is dropped before
//! the stack sees it. Everything else, and everything when the synproxy is off, goes on.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock_tuple, iphdr, ipv6hdr, tcphdr, xdp_action, xdp_md},
    helpers::{
        bpf_sk_release, bpf_skc_lookup_tcp, bpf_tcp_raw_check_syncookie_ipv4,
        bpf_tcp_raw_check_syncookie_ipv6, bpf_tcp_raw_gen_syncookie_ipv4,
        bpf_tcp_raw_gen_syncookie_ipv6, bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
        bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use ipwarden_common::{
    Frame,
    synproxy::{
        ACCEPTED, ACK, ANSWERED, EXISTING, FIN, NO_LISTENER, Offered, REFUSED, RST, Reply, SYN,
        SYNACK_TCP_LEN, SYNS, Scratch, Segment, SynproxyConfig, UNFIT, WALK_STEPS, Walk,
        answer as answer_in_place, protected, segment, step,
    },
};
use ipwarden_ebpf::frame::XdpFrame;

use crate::{
    clock::now,
    maps::{SYNPROXY_BUF, SYNPROXY_CONFIG, SYNPROXY_PORTS, SYNPROXY_PROG, SYNPROXY_STATS},
};

/// `TCP_LISTEN` in the kernel's socket states.
const TCP_LISTEN: u32 = 10;

/// Whether a frame the source policy passed is the synproxy's: a SYN, or an ACK without SYN,
/// RST or FIN, to a protected port, while SYNs are answered. SYNs to protected ports are
/// counted here, answered or not (the rate `under_attack` mode is entered on). Inlined into the
/// main program (a few loads); what follows runs in the synproxy's own program ([`run`]).
#[inline(always)]
pub fn wanted(ctx: &XdpContext) -> bool {
    let Some(cfg) = SYNPROXY_CONFIG.get(0) else {
        return false;
    };
    if cfg.flags == 0 {
        return false;
    }
    let frame = XdpFrame(ctx);
    let Some(seg) = segment(&frame) else {
        return false;
    };
    let Some(tcp) = frame.load::<20>(seg.tcp) else {
        return false;
    };
    let port = u16::from_be_bytes([tcp[2], tcp[3]]);
    if !SYNPROXY_PORTS
        .get(port as u32 / 64)
        .is_some_and(|w| protected(*w, port))
    {
        return false;
    }
    let flags = tcp[13];
    let syn = flags & (SYN | ACK | RST | FIN) == SYN;
    if syn {
        bump(SYNS);
    }
    cfg.answering() && (syn || flags & (SYN | RST | FIN | ACK) == ACK)
}

/// Hands a frame [`wanted`] says is the synproxy's to its program. Returns only if the tail call
/// failed (no synproxy program loaded): the frame then goes on as before.
#[inline(always)]
pub fn hand_over(ctx: &XdpContext) {
    // SAFETY: a tail call; on success control never comes back.
    unsafe { SYNPROXY_PROG.tail_call(ctx, 0) };
}

/// The synproxy's program: the action for a frame [`wanted`] handed over. A program of its own
/// (a tail call), so the verifier checks it once, not once for every path of the source policy
/// that reaches it.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    judge(ctx).unwrap_or(xdp_action::XDP_PASS)
}

/// What the synproxy does with a frame: `None` to pass it on, or the XDP action it took the
/// frame with.
#[inline(always)]
fn judge(ctx: &XdpContext) -> Option<u32> {
    let cfg = SYNPROXY_CONFIG.get(0)?;
    if !cfg.answering() {
        return None;
    }
    let frame = XdpFrame(ctx);
    let seg = segment(&frame)?;
    let tcp = frame.load::<20>(seg.tcp)?;
    let port = u16::from_be_bytes([tcp[2], tcp[3]]);
    if !SYNPROXY_PORTS
        .get(port as u32 / 64)
        .is_some_and(|w| protected(*w, port))
    {
        return None;
    }
    let flags = tcp[13];
    if flags & (SYN | ACK | RST | FIN) == SYN {
        return match socket(ctx, &frame, &seg, &tcp) {
            Holder::Listener => answer(ctx, &seg, &tcp, cfg),
            Holder::Connection => {
                bump(EXISTING);
                None
            }
            Holder::Nobody => {
                bump(NO_LISTENER);
                None
            }
        };
    }
    if flags & (SYN | RST | FIN) != 0 || flags & ACK == 0 {
        return None;
    }
    // An ACK: a connection's, or the last of a handshake whose SYN-ACK we sent.
    if socket(ctx, &frame, &seg, &tcp) != Holder::Listener {
        return None;
    }
    if cookie_valid(ctx, &seg) {
        bump(ACCEPTED);
        None
    } else {
        bump(REFUSED);
        Some(xdp_action::XDP_DROP)
    }
}

/// Who holds a segment's 4-tuple on this host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// Only a listening socket: a handshake is the synproxy's to answer or check.
    Listener,
    /// A connection (established, being set up by the listener, or in TIME_WAIT).
    Connection,
    /// No socket at all: the stack answers with a reset, as without ipwarden.
    Nobody,
}

/// Looks the segment's 4-tuple up in this network namespace (`bpf_skc_lookup_tcp`: established
/// and request sockets first, then listeners). Its own BPF function, as [`judge`] is.
#[inline(never)]
fn socket(ctx: &XdpContext, frame: &XdpFrame, seg: &Segment, tcp: &[u8; 20]) -> Holder {
    // Not zeroed first: every byte the helper reads (`size`) is written below, and zeroing the
    // union compiled to a call of the BPF build's `memset` (five instructions a byte) per SYN.
    let mut tuple = core::mem::MaybeUninit::<bpf_sock_tuple>::uninit();
    // SAFETY: a pointer to the union, whose members are plain integers; each branch writes one
    // member's every field before the helper reads that member's size.
    let tuple = unsafe { &mut *tuple.as_mut_ptr() };
    let size = if seg.v6 {
        let Some(ip) = frame.load::<40>(seg.ip) else {
            return Holder::Nobody;
        };
        // SAFETY: writing the union's IPv6 member, which is the one read for this size.
        let t = unsafe { &mut tuple.__bindgen_anon_1.ipv6 };
        t.saddr = words(&ip, 8);
        t.daddr = words(&ip, 24);
        t.sport = u16::from_ne_bytes([tcp[0], tcp[1]]);
        t.dport = u16::from_ne_bytes([tcp[2], tcp[3]]);
        core::mem::size_of_val(t)
    } else {
        let Some(ip) = frame.load::<20>(seg.ip) else {
            return Holder::Nobody;
        };
        // SAFETY: as above, the IPv4 member.
        let t = unsafe { &mut tuple.__bindgen_anon_1.ipv4 };
        t.saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
        t.daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
        t.sport = u16::from_ne_bytes([tcp[0], tcp[1]]);
        t.dport = u16::from_ne_bytes([tcp[2], tcp[3]]);
        core::mem::size_of_val(t)
    };
    // SAFETY: the tuple lives on the stack for the call; a found socket is released below.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.ctx as *mut _,
            tuple,
            size as u32,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return Holder::Nobody;
    }
    // SAFETY: a socket the helper returned, read before it is released.
    let state = unsafe { (*sk).state };
    // SAFETY: releases the reference the lookup took.
    unsafe { bpf_sk_release(sk as *mut _) };
    if state == TCP_LISTEN {
        Holder::Listener
    } else {
        Holder::Connection
    }
}

/// Four native-order words from 16 bytes of `b` at `at` (an IPv6 address as the tuple holds it).
#[inline(always)]
fn words<const N: usize>(b: &[u8; N], at: usize) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([b[at + i], b[at + i + 1], b[at + i + 2], b[at + i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// Whether the ACK's acknowledgement number is one of our cookies (the kernel's check, the same
/// SYNPROXY makes again above us).
#[inline(always)]
fn cookie_valid(ctx: &XdpContext, seg: &Segment) -> bool {
    let (start, end) = (ctx.data(), ctx.data_end());
    let ip_len = if seg.v6 { 40 } else { 20 };
    if start + seg.ip + ip_len > end || start + seg.tcp + 20 > end {
        return false;
    }
    let th = (start + seg.tcp) as *mut tcphdr;
    // SAFETY: both headers lie inside the packet, checked above.
    let r = unsafe {
        if seg.v6 {
            bpf_tcp_raw_check_syncookie_ipv6((start + seg.ip) as *mut ipv6hdr, th)
        } else {
            bpf_tcp_raw_check_syncookie_ipv4((start + seg.ip) as *mut iphdr, th)
        }
    };
    r == 0
}

/// Answers a SYN with a cookie SYN-ACK built in place: `Some(XDP_TX)`, or `None` (counted as
/// unfit) when it cannot be.
#[inline(always)]
fn answer(ctx: &XdpContext, seg: &Segment, tcp: &[u8; 20], cfg: &SynproxyConfig) -> Option<u32> {
    let header_len = ((tcp[12] >> 4) as usize) * 4;
    let built = build(ctx, seg, header_len, cfg);
    if built.is_none() {
        bump(UNFIT);
    } else {
        bump(ANSWERED);
    }
    built
}

/// Its own BPF function, as [`judge`] is; the headers are built in `SYNPROXY_BUF`, off the
/// stack, and copied in and out with `bpf_xdp_load_bytes` / `bpf_xdp_store_bytes` (one helper
/// call per header instead of a bounds-checked access per byte, which the verifier would have to
/// follow path by path).
#[inline(never)]
fn build(ctx: &XdpContext, seg: &Segment, header_len: usize, cfg: &SynproxyConfig) -> Option<u32> {
    let s = SYNPROXY_BUF.get_ptr_mut(0)?;
    // SAFETY: a per-CPU array slot is only used by this CPU, and XDP does not nest.
    let s = unsafe { &mut *s };
    let md = ctx.ctx;
    let ip_len: u32 = if seg.v6 { 40 } else { 20 };
    if !(20..=60).contains(&header_len) {
        return None;
    }
    let options = (header_len - 20) as u32;
    // SAFETY: each helper copies at most the destination's size (checked by the verifier
    // against the map value) from inside the packet (checked by the helper).
    unsafe {
        if bpf_xdp_load_bytes(md, seg.ip as u32, s.ip.as_mut_ptr().cast(), ip_len) != 0
            || bpf_xdp_load_bytes(md, seg.tcp as u32, s.tcp.as_mut_ptr().cast(), 20) != 0
        {
            return None;
        }
        // `1 + (n - 1) % 64` is `n` for 1..=40 and, written this way on a value the compiler
        // cannot see through, in 1..=64 for the verifier whichever register it is checked in.
        let n = core::hint::black_box(options);
        if n > 0
            && bpf_xdp_load_bytes(
                md,
                seg.tcp as u32 + 20,
                s.opts.as_mut_ptr().cast(),
                ((n - 1) & 63) + 1,
            ) != 0
        {
            return None;
        }
    }
    let o = parse(s, options as usize);
    let reply = Reply {
        cookie: cookie(ctx, seg, header_len)?,
        mss: if seg.v6 { cfg.mss_v6 } else { cfg.mss_v4 },
        wscale: cfg.wscale,
        ttl: cfg.ttl,
        now_ms: (now() / 1_000_000) as u32,
    };
    synack(s, seg.v6, &o, &reply);
    // The link header (addresses, VLAN tags, ethertype) is kept here too, with the addresses
    // swapped, because a SYN shorter than its SYN-ACK may have to grow at the front.
    let l2 = ((core::hint::black_box(seg.ip as u32) - 1) & 31) + 1;
    // SAFETY: as above.
    if unsafe { bpf_xdp_load_bytes(md, 0, s.l2.as_mut_ptr().cast(), l2) } != 0 {
        return None;
    }
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&s.l2[6..12]);
    macs[6..].copy_from_slice(&s.l2[..6]);
    s.l2[..12].copy_from_slice(&macs);
    resize(ctx, seg.tcp + SYNACK_TCP_LEN)?;
    // SAFETY: as above; the frame now ends right after the TCP header.
    unsafe {
        if bpf_xdp_store_bytes(md, 0, s.l2.as_mut_ptr().cast(), l2) != 0
            || bpf_xdp_store_bytes(md, seg.ip as u32, s.ip.as_mut_ptr().cast(), ip_len) != 0
            || bpf_xdp_store_bytes(
                md,
                seg.tcp as u32,
                s.tcp.as_mut_ptr().cast(),
                SYNACK_TCP_LEN as u32,
            ) != 0
        {
            return None;
        }
    }
    Some(xdp_action::XDP_TX)
}

/// The SYN's options, from `SYNPROXY_BUF`. Its own BPF function, as [`judge`] is. The walk's
/// state goes through the map value at every step (volatile, so the compiler keeps it there):
/// the verifier then sees one state per step, not one per path through the earlier steps.
#[inline(never)]
fn parse(s: &mut Scratch, len: usize) -> Offered {
    let len = len & 63;
    let walk: *mut Walk = &mut s.walk;
    // SAFETY: `walk` points into this CPU's map value, which nothing else uses meanwhile.
    unsafe { core::ptr::write_volatile(walk, Walk::start()) };
    for _ in 0..WALK_STEPS {
        // SAFETY: as above.
        let mut w = unsafe { core::ptr::read_volatile(walk) };
        if w.done(len) {
            return w.offered();
        }
        step(&s.opts, len, &mut w);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(walk, w) };
    }
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(walk) }.offered()
}

/// The SYN-ACK made from the SYN in `SYNPROXY_BUF`. Its own BPF function, as [`judge`] is.
#[inline(never)]
fn synack(s: &mut Scratch, v6: bool, o: &Offered, r: &Reply) {
    answer_in_place(s, v6, o, r);
}

/// The kernel's cookie for the SYN (its low 32 bits; the helper picks the MSS class from the
/// SYN's MSS option). The helper wants the TCP header's exact length as a constant the verifier
/// can bound, hence one call per legal length.
#[inline(always)]
fn cookie(ctx: &XdpContext, seg: &Segment, header_len: usize) -> Option<u32> {
    let (start, end) = (ctx.data(), ctx.data_end());
    let ip_len = if seg.v6 { 40 } else { 20 };
    if start + seg.ip + ip_len > end {
        return None;
    }
    let (ip, th) = (start + seg.ip, (start + seg.tcp) as *mut tcphdr);
    macro_rules! by_length {
        ($($n:literal),*) => {
            match header_len {
                $($n => {
                    if start + seg.tcp + $n > end {
                        return None;
                    }
                    // SAFETY: both headers lie inside the packet, checked above.
                    unsafe {
                        if seg.v6 {
                            bpf_tcp_raw_gen_syncookie_ipv6(ip as *mut ipv6hdr, th, $n)
                        } else {
                            bpf_tcp_raw_gen_syncookie_ipv4(ip as *mut iphdr, th, $n)
                        }
                    }
                })*
                _ => return None,
            }
        };
    }
    let r = by_length!(20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60);
    (r >= 0).then_some(r as u32)
}

/// Makes the frame exactly `len` bytes long: at its tail, or, when a frame that must grow has
/// no room there (a veth hands XDP buffers cut to the frame's size), at its head, where XDP
/// always keeps 256 bytes (the caller rewrites every header).
#[inline(always)]
fn resize(ctx: &XdpContext, len: usize) -> Option<()> {
    let have = ctx.data_end() - ctx.data();
    let delta = len as i64 - have as i64;
    if delta == 0 {
        return Some(());
    }
    let md = ctx.ctx as *mut xdp_md;
    // SAFETY: the helpers check the new length against the frame's buffer.
    let r = unsafe { bpf_xdp_adjust_tail(md, delta as i32) };
    if r == 0 {
        return Some(());
    }
    // SAFETY: as above.
    (delta > 0 && unsafe { bpf_xdp_adjust_head(md, -delta as i32) } == 0).then_some(())
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(c) = SYNPROXY_STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU array slot is only written by this CPU, and XDP does not nest.
        unsafe { *c += 1 };
    }
}
