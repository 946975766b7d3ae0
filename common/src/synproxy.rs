//! SYN cookies at XDP (the `[synproxy]` section): the program answers a SYN to a protected port
//! itself with a SYN-ACK whose sequence number is a kernel SYN cookie, so a spoofed SYN flood
//! never reaches the listener's SYN queue; the client's ACK then goes up to the kernel's
//! netfilter SYNPROXY (an nftables `synproxy` rule the daemon installs), which checks the cookie
//! again, opens the connection to the listener on the client's behalf and translates sequence
//! numbers for the connection's life. This is the kernel's own XDP synproxy design (the
//! `bpf_tcp_raw_gen_syncookie_*` helpers exist for it); the socket lookup that tells an
//! established connection's packets from a handshake's is `bpf_skc_lookup_tcp`, a helper, where
//! the kernel's example uses a conntrack kfunc aya cannot call.
//!
//! What lives here is the arithmetic both sides can test: the client's options, the SYN-ACK's
//! headers and checksums. The timestamp the SYN-ACK carries encodes the client's window scale,
//! SACK and ECN in its low six bits, as netfilter's `synproxy_check_timestamp_cookie` decodes
//! them from the echo.

use crate::{
    fingerprint::kind,
    parse::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, Frame, IPPROTO_TCP, VLAN_HLEN,
    },
};

/// Words of the `SYNPROXY_PORTS` bitmap: one bit per TCP port.
pub const PORT_WORDS: u32 = 65_536 / 64;

/// Slots of the `SYNPROXY_STATS` per-CPU array.
pub const STATS_SLOTS: u32 = 8;
/// SYNs to a protected port (answered or not): the rate `under_attack` is judged on.
pub const SYNS: u32 = 0;
/// SYNs answered with a cookie SYN-ACK.
pub const ANSWERED: u32 = 1;
/// SYNs passed on because a socket other than the listener holds their 4-tuple.
pub const EXISTING: u32 = 2;
/// SYNs passed on because nothing listens on their address and port.
pub const NO_LISTENER: u32 = 3;
/// ACKs with no connection that carried a valid cookie (passed on to SYNPROXY).
pub const ACCEPTED: u32 = 4;
/// ACKs with no connection and no valid cookie: dropped.
pub const REFUSED: u32 = 5;
/// SYNs passed on unanswered because they could not be (IPv4 options, IPv6 extension headers,
/// a helper's refusal).
pub const UNFIT: u32 = 6;

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// The TCP header length of every SYN-ACK the program sends: 20 bytes and a fixed 20-byte
/// options block (MSS, SACK-permitted, timestamps, window scale, NOP-padded where the client
/// offered no such option), so the frame's length depends on nothing the verifier must bound.
pub const SYNACK_TCP_LEN: usize = 40;

/// What the program answers with: one-slot `SYNPROXY_CONFIG` array, written by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynproxyConfig {
    /// Bit set of the `SynproxyConfig::*` flag consts; 0 (a map nobody wrote) is off.
    pub flags: u32,
    /// The MSS the SYN-ACK advertises over IPv4 and over IPv6: what the listener would.
    pub mss_v4: u16,
    pub mss_v6: u16,
    /// The listener's receive window scale (0..=14), advertised when the client offers one:
    /// the scale the listener's socket will use, since SYNPROXY does not translate windows.
    /// Above 14: the listener does not scale, so neither side is offered a scale.
    pub wscale: u8,
    /// TTL / hop limit of SYN-ACKs.
    pub ttl: u8,
    pub _pad: [u8; 6],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SynproxyConfig {}

const _: () = assert!(core::mem::size_of::<SynproxyConfig>() == 16);

impl SynproxyConfig {
    /// SYNs to protected ports are answered, and ACKs without a connection are checked.
    pub const ANSWER: u32 = 1 << 0;
    /// SYNs to protected ports are counted (`SYNS`), answered or not: the rate `under_attack`
    /// is judged on. Set whenever `[synproxy]` is configured.
    pub const COUNT: u32 = 1 << 1;

    /// Whether SYNs are answered now.
    #[inline(always)]
    pub const fn answering(&self) -> bool {
        self.flags & Self::ANSWER != 0
    }
}

/// Whether port `port` is protected, given its bitmap word (the word `port / 64`).
#[inline(always)]
pub const fn protected(word: u64, port: u16) -> bool {
    word & (1u64 << (port % 64)) != 0
}

/// Where a TCP segment's headers are in its frame, for a first (or only) fragment whose TCP
/// header directly follows a 20-byte IPv4 header or the fixed IPv6 header: the only segments the
/// program answers or checks (anything else is left to the stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub ip: usize,
    pub tcp: usize,
    pub v6: bool,
}

/// Finds a TCP segment the synproxy can act on (see [`Segment`]).
#[inline(always)]
pub fn segment<F: Frame + ?Sized>(frame: &F) -> Option<Segment> {
    let mut ethertype = u16::from_be_bytes(frame.load::<2>(12)?);
    let mut ip = ETH_HLEN;
    let vlan = |t: u16| t == ETH_P_8021Q || t == ETH_P_8021AD;
    if vlan(ethertype) {
        ethertype = u16::from_be_bytes(frame.load::<2>(ip + 2)?);
        ip += VLAN_HLEN;
        if vlan(ethertype) {
            ethertype = u16::from_be_bytes(frame.load::<2>(ip + 2)?);
            ip += VLAN_HLEN;
        }
    }
    match ethertype {
        ETH_P_IP => {
            let h = frame.load::<20>(ip)?;
            let first = u16::from_be_bytes([h[6], h[7]]) & 0x3FFF == 0;
            (h[0] == 0x45 && h[9] == IPPROTO_TCP && first).then_some(Segment {
                ip,
                tcp: ip + 20,
                v6: false,
            })
        }
        ETH_P_IPV6 => {
            let h = frame.load::<8>(ip)?;
            (h[0] >> 4 == 6 && h[6] == IPPROTO_TCP).then_some(Segment {
                ip,
                tcp: ip + 40,
                v6: true,
            })
        }
        _ => None,
    }
}

/// The options a client's SYN offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offered {
    /// Window scale, `None` when not offered.
    pub wscale: Option<u8>,
    pub sack: bool,
    /// The client's timestamp value, `None` when it sent no timestamps.
    pub tsval: Option<u32>,
}

/// Reads the options of a SYN whose `len` (at most 40) option bytes start at `at` (the host's
/// way in; the program copies the bytes into [`Scratch::opts`] itself and calls
/// [`options_in`]).
pub fn offered<F: Frame + ?Sized>(frame: &F, at: usize, len: usize) -> Offered {
    let len = if len > 40 { 40 } else { len };
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < len {
        match frame.load::<1>(at + n) {
            Some([b]) => buf[n] = b,
            None => break,
        }
        n += 1;
    }
    options_in(&buf, n)
}

/// The options among the first `len` bytes of `buf`: [`step`] until the walk ends.
#[inline(always)]
pub fn options_in(buf: &[u8; 64], len: usize) -> Offered {
    let mut w = Walk::start();
    for _ in 0..WALK_STEPS {
        if w.done(len) {
            break;
        }
        step(buf, len, &mut w);
    }
    w.offered()
}

/// Steps that cover any option list of 40 bytes (one option per byte pair, plus NOPs).
pub const WALK_STEPS: usize = 21;

/// A walk through a SYN's options, as plain fields: the program keeps it in its map value
/// between steps, where the verifier does not track it, so every step starts from the same
/// verifier state instead of one per path taken so far.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The offset of the next option; 64 once the walk has ended.
    pub at: u32,
    /// The window scale offered, 0xFF for none.
    pub wscale: u8,
    pub sack: u8,
    /// Whether a timestamp option was seen (`tsval` holds its value).
    pub ts: u8,
    pub _pad: u8,
    pub tsval: u32,
}

impl Walk {
    /// A walk at the first option, nothing found.
    pub const fn start() -> Self {
        Self {
            at: 0,
            wscale: 0xFF,
            sack: 0,
            ts: 0,
            _pad: 0,
            tsval: 0,
        }
    }

    /// Whether the walk is over for an option list of `len` bytes.
    #[inline(always)]
    pub const fn done(&self, len: usize) -> bool {
        self.at as usize >= len
    }

    /// What was found.
    #[inline(always)]
    pub const fn offered(&self) -> Offered {
        Offered {
            wscale: if self.wscale == 0xFF {
                None
            } else {
                Some(self.wscale)
            },
            sack: self.sack != 0,
            tsval: if self.ts != 0 { Some(self.tsval) } else { None },
        }
    }
}

/// One step of a walk through the first `len` bytes of `buf`: the option at `w.at` is recorded
/// and the walk moves past it, or ends (`at` = 64) at EOL or a malformed option (what was read
/// so far stands: a client that garbles its options gets a plainer connection, never a wrong
/// one). Every index is masked into the buffer, so the verifier can bound the reads.
#[inline(always)]
pub fn step(buf: &[u8; 64], len: usize, w: &mut Walk) {
    let o = (w.at & 63) as usize;
    let k = buf[o];
    if k == kind::NOP {
        w.at = o as u32 + 1;
        return;
    }
    let l = buf[(o + 1) & 63] as usize;
    if k == kind::EOL || l < 2 || o + l > len {
        w.at = 64;
        return;
    }
    let at = |d: usize| buf[(o + d) & 63];
    match (k, l) {
        (kind::WS, 3) => {
            let s = at(2);
            w.wscale = if s > 14 { 14 } else { s };
        }
        (kind::SACK_OK, 2) => w.sack = 1,
        (kind::TS, 10) => {
            w.ts = 1;
            w.tsval = u32::from_be_bytes([at(2), at(3), at(4), at(5)]);
        }
        _ => {}
    }
    w.at = (o + l) as u32;
}

/// The timestamp value of a SYN-ACK sent at `now_ms` (the kernel's millisecond TCP clock): the
/// clock with its low six bits replaced by the client's window scale (`0xF` for none), SACK
/// (bit 4) and ECN (bit 5), and never ahead of the clock, so the listener's later timestamps
/// (which SYNPROXY offsets from it) do not run backwards for the client.
#[inline(always)]
pub const fn ts_cookie(now_ms: u32, o: &Offered, ecn: bool) -> u32 {
    let mut bits = match o.wscale {
        Some(s) => s as u32,
        None => 0xF,
    };
    if o.sack {
        bits |= 1 << 4;
    }
    if ecn {
        bits |= 1 << 5;
    }
    let ts = (now_ms & !0x3F) | bits;
    if ts > now_ms { ts.wrapping_sub(64) } else { ts }
}

/// What a SYN-ACK carries besides what the SYN gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub cookie: u32,
    /// The MSS advertised.
    pub mss: u16,
    /// The listener's window scale (above 14: none).
    pub wscale: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// The kernel's millisecond TCP clock.
    pub now_ms: u32,
}

/// Where a SYN becomes its SYN-ACK: a per-CPU map value in the program (`SYNPROXY_BUF`), so that
/// neither header sits on the BPF stack, which the source path already uses most of.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scratch {
    /// The SYN's IP header on the way in (IPv4: its first 20 bytes), the SYN-ACK's after.
    pub ip: [u8; 40],
    /// The SYN's fixed TCP header on the way in (its first 20 bytes), the SYN-ACK's after.
    pub tcp: [u8; SYNACK_TCP_LEN],
    /// The SYN's option bytes (see [`options_in`]).
    pub opts: [u8; 64],
    /// The walk through them (see [`Walk`]).
    pub walk: Walk,
    /// The link header (up to two VLAN tags: 22 bytes), its addresses swapped for the reply.
    pub l2: [u8; 32],
    pub _pad: [u8; 4],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Scratch {}

const _: () = assert!(core::mem::size_of::<Scratch>() == 192);

impl Default for Scratch {
    fn default() -> Self {
        Self {
            ip: [0; 40],
            tcp: [0; SYNACK_TCP_LEN],
            opts: [0; 64],
            walk: Walk::start(),
            l2: [0; 32],
            _pad: [0; 4],
        }
    }
}

/// Turns the SYN held in `s` into its SYN-ACK, in place: addresses and ports swapped, the cookie
/// as sequence number, the SYN's sequence number + 1 acknowledged, a zero window (as netfilter's
/// SYNPROXY answers: the client sends no data before the listener's connection exists and
/// SYNPROXY opens the window), the options block, and both checksums.
///
/// Options the client did not offer are not sent; window scale, SACK and ECN need timestamps
/// (their only carrier through the cookie), so a client without timestamps gets none of them.
#[inline(always)]
pub fn answer(s: &mut Scratch, v6: bool, o: &Offered, r: &Reply) {
    // A listener that does not scale (net.ipv4.tcp_window_scaling = 0): no scale either way.
    let o = &Offered {
        wscale: if r.wscale > 14 { None } else { o.wscale },
        ..*o
    };
    let h = &mut s.tcp;
    let (sport, dport) = ([h[0], h[1]], [h[2], h[3]]);
    let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let ecn = o.tsval.is_some() && h[13] & (ECE | CWR) == ECE | CWR;
    // Every byte is written below but the window (0), the checksum (0 while it is summed) and
    // the urgent pointer (0): those are cleared one by one, see [`fill`].
    fill(h, 14, 20, 0);
    h[0..2].copy_from_slice(&dport);
    h[2..4].copy_from_slice(&sport);
    h[4..8].copy_from_slice(&r.cookie.to_be_bytes());
    h[8..12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    h[12] = ((SYNACK_TCP_LEN / 4) as u8) << 4;
    h[13] = SYN | ACK | if ecn { ECE } else { 0 };
    // window 0 (bytes 14..16), checksum (16..18) below, urgent 0 (18..20)
    let m = r.mss.to_be_bytes();
    h[20..24].copy_from_slice(&[kind::MSS, 4, m[0], m[1]]);
    let nop = kind::NOP;
    match o.tsval {
        Some(ecr) => {
            h[24..26].copy_from_slice(&if o.sack {
                [kind::SACK_OK, 2]
            } else {
                [nop, nop]
            });
            h[26..28].copy_from_slice(&[kind::TS, 10]);
            h[28..32].copy_from_slice(&ts_cookie(r.now_ms, o, ecn).to_be_bytes());
            h[32..36].copy_from_slice(&ecr.to_be_bytes());
            h[36..40].copy_from_slice(&match o.wscale {
                Some(_) => [nop, kind::WS, 3, r.wscale],
                None => [nop; 4],
            });
        }
        None => fill(h, 24, 40, nop),
    }
    let ip = &mut s.ip;
    let mut sum = IPPROTO_TCP as u64 + SYNACK_TCP_LEN as u64;
    if v6 {
        for i in 8..24 {
            ip.swap(i, i + 16);
        }
        ip[0] = 0x60;
        ip[1] = 0;
        ip[2] = 0;
        ip[3] = 0;
        ip[4..6].copy_from_slice(&(SYNACK_TCP_LEN as u16).to_be_bytes());
        ip[6] = IPPROTO_TCP;
        ip[7] = r.ttl;
        sum = sum_words(sum, ip, 8, 40);
    } else {
        for i in 12..16 {
            ip.swap(i, i + 4);
        }
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&((20 + SYNACK_TCP_LEN) as u16).to_be_bytes());
        ip[4..10].copy_from_slice(&[0, 0, 0x40, 0, r.ttl, IPPROTO_TCP]);
        ip[10] = 0;
        ip[11] = 0;
        let c = fold(sum_words(0, ip, 0, 20));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        sum = sum_words(sum, ip, 12, 20);
    }
    let c = fold(sum_words(sum, &s.tcp, 0, SYNACK_TCP_LEN));
    s.tcp[16..18].copy_from_slice(&c.to_be_bytes());
}

/// Sets `b[from..to]` to `v` with one volatile byte store each. An array literal or a slice fill
/// here compiled to a call of the BPF build's `memset`, a loop of five instructions per byte, on
/// every SYN-ACK; volatile stores cannot be merged back into one.
#[inline(always)]
fn fill<const N: usize>(b: &mut [u8; N], from: usize, to: usize, v: u8) {
    let mut i = from;
    while i < to && i < N {
        // SAFETY: `i < N`.
        unsafe { core::ptr::write_volatile(b.as_mut_ptr().add(i), v) };
        i += 1;
    }
}

/// Ones'-complement sum of `bytes[from..to]` (an even length) as big-endian 16-bit words,
/// added to `sum`.
#[inline(always)]
pub fn sum_words<const N: usize>(mut sum: u64, bytes: &[u8; N], from: usize, to: usize) -> u64 {
    let mut i = from;
    while i + 1 < to && i + 1 < N {
        sum += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u64;
        i += 2;
    }
    sum
}

/// Folds a ones'-complement sum into the 16-bit checksum field's value.
#[inline(always)]
pub const fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    !(sum as u16)
}

#[cfg(test)]
mod tests;
