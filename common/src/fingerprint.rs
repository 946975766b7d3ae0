//! Passive TCP SYN signatures: what a connection's first packet says about the stack that sent
//! it (IP version, TTL, DF, window, MSS, window scale, SACK, timestamps and the order of the TCP
//! options), recorded by the data plane for SYNs only.
//!
//! The parser is shared like [`crate::parse`]: generic over [`Frame`], bounded for the verifier
//! (at most [`MAX_OPTIONS`] options within the 40 bytes TCP allows), and it never fails: options
//! it cannot walk are flagged [`SynSignature::OPTIONS_UNPARSED`] and the rest is kept.

use crate::parse::{Frame, Parsed, Syn, parse_syn};

/// Slots of the data plane's per-CPU memo of signatures recently kept (a power of two).
pub const SIG_SEEN_SLOTS: u32 = 4096;

/// New signatures one CPU records per jiffy at most (16 384 a second at `HZ=250`, 65 536 at
/// `HZ=1000`): under a spoofed SYN flood every frame is a new source's first SYN, and inserting
/// each into the LRU map (which that flood would churn through in seconds anyway) cost a SYN
/// spray a quarter of its rate. Below the budget every new signature is recorded as before.
pub const SIG_BUDGET_PER_JIFFY: u64 = 64;
/// Slots of the per-CPU `SIG_BUDGET` array.
pub const SIG_BUDGET_SLOTS: u32 = 3;
/// `SIG_BUDGET` slot: the jiffy the budget is counted in.
pub const SIG_BUDGET_JIFFY: u32 = 0;
/// `SIG_BUDGET` slot: new signatures looked up in that jiffy.
pub const SIG_BUDGET_USED: u32 = 1;
/// `SIG_BUDGET` slot: new signatures not recorded because the budget was spent (ever).
pub const SIG_BUDGET_SKIPPED: u32 = 2;

/// Most options recorded in [`SynSignature::order`]; a SYN with more is flagged unparsed.
pub const MAX_OPTIONS: usize = 12;

/// TCP option kinds.
pub mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WS: u8 = 3;
    pub const SACK_OK: u8 = 4;
    pub const TS: u8 = 8;
}

/// One SYN's signature. `Copy` and plain bytes: it is a map value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SynSignature {
    /// 4 or 6.
    pub version: u8,
    /// TTL (IPv4) or hop limit (IPv6) as received.
    pub ttl: u8,
    /// `DF`, `IP_OPTIONS`, `OPTIONS_UNPARSED`, `SACK_OK`, `TIMESTAMPS`, `HAS_WSCALE`.
    pub flags: u8,
    /// Window scale (valid with `HAS_WSCALE`).
    pub wscale: u8,
    pub window: u16,
    /// 0 when absent.
    pub mss: u16,
    /// TCP header length in bytes (20..=60).
    pub header_len: u8,
    /// How many entries of `order` are used.
    pub option_count: u8,
    pub _pad: [u8; 2],
    /// The option kinds in the order sent.
    pub order: [u8; MAX_OPTIONS],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SynSignature {}

const _: () = assert!(core::mem::size_of::<SynSignature>() == 24);

impl SynSignature {
    pub const DF: u8 = 1;
    pub const IP_OPTIONS: u8 = 2;
    pub const OPTIONS_UNPARSED: u8 = 4;
    pub const SACK_OK: u8 = 8;
    pub const TIMESTAMPS: u8 = 16;
    pub const HAS_WSCALE: u8 = 32;
}

/// The key of a signature entry: the source (IPv4 address, or IPv6 /64 in the first 8 bytes)
/// and the signature's digest, so one /64 holding a phone and a proxy keeps both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SigKey {
    pub source: [u8; 8],
    pub version: u8,
    pub _pad: [u8; 3],
    pub digest: u32,
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SigKey {}

const _: () = assert!(core::mem::size_of::<SigKey>() == 16);

impl SigKey {
    /// The key of `source`'s signature `digest`, made from four words: a struct literal
    /// compiled its three padding bytes into a call of the BPF build's `memset` on every SYN.
    #[inline(always)]
    pub fn new(source: [u8; 8], version: u8, digest: u32) -> Self {
        let words = [
            u32::from_ne_bytes([source[0], source[1], source[2], source[3]]),
            u32::from_ne_bytes([source[4], source[5], source[6], source[7]]),
            u32::from_ne_bytes([version, 0, 0, 0]),
            digest,
        ];
        // SAFETY: `SigKey` is `repr(C)`, 16 bytes of plain integers with no padding (the
        // assertion above), laid out as these words in memory order.
        unsafe { core::mem::transmute::<[u32; 4], Self>(words) }
    }
}

/// What the data plane keeps of a SYN: the IP fields and the TCP header's fixed fields, the
/// option bytes as sent, and the full address that last sent it. The options are parsed in user
/// space ([`SigEntry::signature`]): a walk of up to 40 bytes of options is many verifier states
/// for a packet path, copying them is a few fixed-size loads.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigEntry {
    pub version: u8,
    pub ttl: u8,
    /// [`SynSignature::DF`], [`SynSignature::IP_OPTIONS`].
    pub flags: u8,
    /// TCP header length in bytes.
    pub header_len: u8,
    pub window: u16,
    /// Option bytes copied into `options` (the frame may end before the header says).
    pub captured: u8,
    pub _pad: u8,
    pub options: [u8; 40],
    pub last_addr: [u8; 16],
}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SigEntry {}

const _: () = assert!(core::mem::size_of::<SigEntry>() == 64);

impl Default for SigEntry {
    fn default() -> Self {
        Self {
            version: 0,
            ttl: 0,
            flags: 0,
            header_len: 0,
            window: 0,
            captured: 0,
            _pad: 0,
            options: [0; 40],
            last_addr: [0; 16],
        }
    }
}

impl SigEntry {
    /// A digest of what tells stacks apart and stays put from one SYN to the next (so not the
    /// timestamp option's values): version, TTL, flags, header length, window and the first
    /// option (the MSS, on every common stack). One entry per distinct digest and source.
    pub const fn digest(&self) -> u32 {
        digest_of(
            self.version,
            self.ttl,
            self.flags,
            self.header_len,
            self.window,
            [
                self.options[0],
                self.options[1],
                self.options[2],
                self.options[3],
            ],
        )
    }

    /// The signature, with the options parsed (those the frame did not carry, or that do not
    /// parse, flag [`SynSignature::OPTIONS_UNPARSED`]).
    pub fn signature(&self) -> SynSignature {
        let mut sig = SynSignature {
            version: self.version,
            ttl: self.ttl,
            flags: self.flags,
            window: self.window,
            header_len: self.header_len,
            ..SynSignature::default()
        };
        let announced = (self.header_len as usize).saturating_sub(TCP_HLEN).min(40);
        if (self.header_len as usize) < TCP_HLEN {
            sig.flags |= SynSignature::OPTIONS_UNPARSED;
            return sig;
        }
        let have = (self.captured as usize).min(announced);
        options(&self.options[..have], 0, announced, &mut sig);
        sig
    }
}

/// See [`SigEntry::digest`].
pub const fn digest_of(
    version: u8,
    ttl: u8,
    flags: u8,
    header_len: u8,
    window: u16,
    first: [u8; 4],
) -> u32 {
    let b = [
        version,
        ttl,
        flags,
        header_len,
        (window >> 8) as u8,
        window as u8,
        first[0],
        first[1],
        first[2],
        first[3],
    ];
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < b.len() {
        h = (h ^ b[i] as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

const TCP_HLEN: usize = 20;

/// The fixed fields of a SYN: enough to name its signature ([`SynHead::digest`]) before
/// copying its options, which only a signature not yet kept needs.
#[derive(Clone, Copy, Debug)]
pub struct SynHead {
    entry_head: SigEntry,
    first: [u8; 4],
    tcp: usize,
}

impl SynHead {
    pub const fn version(&self) -> u8 {
        self.entry_head.version
    }

    /// The full source address.
    pub const fn source(&self) -> &[u8; 16] {
        &self.entry_head.last_addr
    }

    /// Equals [`SigEntry::digest`] of [`SynHead::capture`]'s entry.
    pub const fn digest(&self) -> u32 {
        let e = &self.entry_head;
        digest_of(
            e.version,
            e.ttl,
            e.flags,
            e.header_len,
            e.window,
            self.first,
        )
    }

    /// The entry to keep, with the option bytes.
    #[inline(always)]
    pub fn capture<F: Frame + ?Sized>(&self, frame: &F) -> SigEntry {
        let mut e = self.entry_head;
        e.captured = copy_options(frame, self.tcp + TCP_HLEN, &mut e.options);
        e
    }
}

/// The frame's TCP SYN as the data plane keeps it (IP and fixed TCP fields, option bytes, the
/// full source address); `None` if the frame is not a TCP SYN the parser can reach.
pub fn syn_signature<F: Frame + ?Sized>(frame: &F) -> Option<SigEntry> {
    let (Parsed::V4 { syn: Some(at), .. } | Parsed::V6 { syn: Some(at), .. }) = parse_syn(frame)
    else {
        return None;
    };
    syn_head(frame, at).map(|h| h.capture(frame))
}

/// The fixed fields of the TCP SYN whose headers the parser found at `at`
/// ([`crate::parse::parse_syn`]): nothing is parsed twice. No loop over the options:
/// [`SynHead::capture`] copies them with the largest of a few fixed-size loads that fits in the
/// frame.
#[inline(always)]
pub fn syn_head<F: Frame + ?Sized>(frame: &F, at: Syn) -> Option<SynHead> {
    let mut e = SigEntry::default();
    let [first] = frame.load::<1>(at.ip)?;
    if first >> 4 == 4 {
        let h = frame.load::<20>(at.ip)?;
        e.version = 4;
        e.ttl = h[8];
        if h[6] & 0x40 != 0 {
            e.flags |= SynSignature::DF;
        }
        if h[0] & 0x0F > 5 {
            e.flags |= SynSignature::IP_OPTIONS;
        }
        e.last_addr[..4].copy_from_slice(&h[12..16]);
    } else {
        let h = frame.load::<40>(at.ip)?;
        e.version = 6;
        e.ttl = h[7];
        e.last_addr.copy_from_slice(&h[8..24]);
    }
    let t = frame.load::<TCP_HLEN>(at.tcp)?;
    e.window = u16::from_be_bytes([t[14], t[15]]);
    e.header_len = (t[12] >> 4) * 4;
    Some(SynHead {
        entry_head: e,
        first: frame.load::<4>(at.tcp + TCP_HLEN).unwrap_or([0; 4]),
        tcp: at.tcp,
    })
}

#[inline(always)]
fn copy_n<F: Frame + ?Sized, const N: usize>(frame: &F, at: usize, out: &mut [u8; 40]) -> bool {
    match frame.load::<N>(at) {
        Some(b) => {
            out[..N].copy_from_slice(&b);
            true
        }
        None => false,
    }
}

/// Copies up to 40 option bytes at `at`; returns how many.
#[inline(always)]
fn copy_options<F: Frame + ?Sized>(frame: &F, at: usize, out: &mut [u8; 40]) -> u8 {
    if copy_n::<F, 40>(frame, at, out) {
        40
    } else if copy_n::<F, 32>(frame, at, out) {
        32
    } else if copy_n::<F, 24>(frame, at, out) {
        24
    } else if copy_n::<F, 20>(frame, at, out) {
        20
    } else if copy_n::<F, 12>(frame, at, out) {
        12
    } else if copy_n::<F, 8>(frame, at, out) {
        8
    } else if copy_n::<F, 4>(frame, at, out) {
        4
    } else {
        0
    }
}

/// Walks `len` (at most 40) bytes of options at `at`, one option per step.
#[inline(always)]
fn options<F: Frame + ?Sized>(frame: &F, at: usize, len: usize, sig: &mut SynSignature) {
    let len = if len > 40 { 40 } else { len };
    let mut o = 0usize;
    let mut n = 0usize;
    // One option per step; EOL ends the walk. Bounded both ways for the verifier.
    for _ in 0..MAX_OPTIONS + 1 {
        if o >= len {
            break;
        }
        let Some([k]) = frame.load::<1>(at + o) else {
            sig.flags |= SynSignature::OPTIONS_UNPARSED;
            break;
        };
        if n >= MAX_OPTIONS {
            sig.flags |= SynSignature::OPTIONS_UNPARSED;
            break;
        }
        sig.order[n] = k;
        n += 1;
        if k == kind::EOL {
            break;
        }
        if k == kind::NOP {
            o += 1;
            continue;
        }
        let Some([_, l]) = frame.load::<2>(at + o) else {
            sig.flags |= SynSignature::OPTIONS_UNPARSED;
            break;
        };
        let l = l as usize;
        if l < 2 || o + l > len {
            sig.flags |= SynSignature::OPTIONS_UNPARSED;
            break;
        }
        match (k, l) {
            (kind::MSS, 4) => {
                if let Some([_, _, a, b]) = frame.load::<4>(at + o) {
                    sig.mss = u16::from_be_bytes([a, b]);
                }
            }
            (kind::WS, 3) => {
                if let Some([_, _, s]) = frame.load::<3>(at + o) {
                    sig.wscale = s;
                    sig.flags |= SynSignature::HAS_WSCALE;
                }
            }
            (kind::SACK_OK, 2) => sig.flags |= SynSignature::SACK_OK,
            (kind::TS, 10) => sig.flags |= SynSignature::TIMESTAMPS,
            _ => {}
        }
        o += l;
    }
    sig.option_count = n as u8;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_made_from_words_is_the_key_of_its_fields() {
        let k = super::SigKey::new([1, 2, 3, 4, 5, 6, 7, 8], 6, 0xdead_beef);
        assert_eq!(
            k,
            super::SigKey {
                source: [1, 2, 3, 4, 5, 6, 7, 8],
                version: 6,
                _pad: [0; 3],
                digest: 0xdead_beef,
            }
        );
    }

    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::parse::{ETH_P_IP, ETH_P_IPV6, IPPROTO_HOPOPTS, IPPROTO_TCP};

    fn frame_v4(ttl: u8, df: bool, window: u16, opts: &[u8]) -> Vec<u8> {
        let mut f = std::vec![0u8; 12];
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[6] = if df { 0x40 } else { 0 };
        ip[8] = ttl;
        ip[9] = IPPROTO_TCP;
        ip[12..16].copy_from_slice(&[203, 0, 113, 9]);
        f.extend_from_slice(&ip);
        let hl = 20 + opts.len();
        let mut t = [0u8; 20];
        t[12] = ((hl / 4) as u8) << 4;
        t[13] = 0x02;
        t[14..16].copy_from_slice(&window.to_be_bytes());
        f.extend_from_slice(&t);
        f.extend_from_slice(opts);
        f
    }

    /// Linux: MSS, SACK permitted, timestamps, NOP, window scale 7.
    const LINUX: &[u8] = &[
        2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    /// Windows 10: MSS, NOP, WS 8, NOP, NOP, SACK permitted.
    const WINDOWS: &[u8] = &[2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2];
    /// macOS: MSS, NOP, WS 6, NOP, NOP, TS, SACK permitted, EOL, EOL.
    const MACOS: &[u8] = &[
        2, 4, 5, 180, 1, 3, 3, 6, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 4, 2, 0, 0,
    ];

    fn sig(f: &[u8]) -> SynSignature {
        syn_signature(f).expect("a SYN").signature()
    }

    #[test]
    fn option_layouts_of_common_stacks() {
        let s = sig(&frame_v4(64, true, 64240, LINUX));
        assert_eq!(&s.order[..s.option_count as usize], &[2, 4, 8, 1, 3]);
        assert_eq!((s.mss, s.wscale, s.window, s.ttl), (1460, 7, 64240, 64));
        assert_eq!(
            s.flags,
            SynSignature::DF
                | SynSignature::SACK_OK
                | SynSignature::TIMESTAMPS
                | SynSignature::HAS_WSCALE
        );
        assert_eq!(s.header_len, 40);
        let w = sig(&frame_v4(128, true, 64240, WINDOWS));
        assert_eq!(&w.order[..w.option_count as usize], &[2, 1, 3, 1, 1, 4]);
        assert_eq!(w.wscale, 8);
        assert_eq!(w.flags & SynSignature::TIMESTAMPS, 0);
        let m = sig(&frame_v4(64, true, 65535, MACOS));
        assert_eq!(
            &m.order[..m.option_count as usize],
            &[2, 1, 3, 1, 1, 8, 4, 0]
        );
        let d = |f: Vec<u8>| syn_signature(&f[..]).unwrap().digest();
        let linux = d(frame_v4(64, true, 64240, LINUX));
        assert_ne!(linux, d(frame_v4(128, true, 64240, WINDOWS)));
        assert_ne!(linux, d(frame_v4(64, true, 65535, MACOS)));
        // The data plane names a signature before capturing it: the same digest.
        for f in [
            frame_v4(64, true, 64240, LINUX),
            frame_v4(128, true, 64240, WINDOWS),
            frame_v4(255, false, 512, &[]),
        ] {
            let at = match parse_syn(&f[..]) {
                Parsed::V4 { syn: Some(at), .. } | Parsed::V6 { syn: Some(at), .. } => at,
                other => panic!("not a SYN: {other:?}"),
            };
            assert_eq!(syn_head(&f[..], at).unwrap().digest(), d(f.clone()));
        }
        // The timestamp values change with every SYN; the digest does not.
        let mut other_ts = LINUX.to_vec();
        other_ts[9] = 99;
        assert_eq!(linux, d(frame_v4(64, true, 64240, &other_ts)));
    }

    #[test]
    fn bad_options_are_flagged_not_fatal() {
        // An option whose length runs past the header.
        let s = sig(&frame_v4(64, false, 1024, &[2, 4, 5, 180, 3, 9, 0, 0]));
        assert_eq!(s.mss, 1460);
        assert_ne!(s.flags & SynSignature::OPTIONS_UNPARSED, 0);
        // A zero length.
        let s = sig(&frame_v4(64, false, 1024, &[8, 0, 0, 0]));
        assert_ne!(s.flags & SynSignature::OPTIONS_UNPARSED, 0);
        // Forty bytes of NOPs: more options than recorded.
        let s = sig(&frame_v4(64, false, 1024, &[1u8; 40]));
        assert_ne!(s.flags & SynSignature::OPTIONS_UNPARSED, 0);
        assert_eq!(s.option_count as usize, MAX_OPTIONS);
        // The frame ends inside the options the header announces.
        let mut f = frame_v4(64, false, 1024, LINUX);
        f.truncate(f.len() - 6);
        let s = sig(&f);
        assert_ne!(s.flags & SynSignature::OPTIONS_UNPARSED, 0);
        assert_eq!(s.mss, 1460);
        // No options at all.
        let s = sig(&frame_v4(255, false, 512, &[]));
        assert_eq!((s.option_count, s.flags, s.ttl), (0, 0, 255));
    }

    #[test]
    fn ipv6_behind_an_extension_header() {
        let mut f = std::vec![0u8; 12];
        f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[6] = IPPROTO_HOPOPTS;
        ip[7] = 57;
        ip[8..10].copy_from_slice(&[0x20, 0x01]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[IPPROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
        let mut t = [0u8; 20];
        t[12] = (((20 + LINUX.len()) / 4) as u8) << 4;
        t[13] = 0x02;
        t[14..16].copy_from_slice(&64800u16.to_be_bytes());
        f.extend_from_slice(&t);
        f.extend_from_slice(LINUX);
        let e = syn_signature(&f[..]).unwrap();
        let s = e.signature();
        assert_eq!((s.version, s.ttl, s.window, s.mss), (6, 57, 64800, 1460));
        assert_eq!(&e.last_addr[..2], &[0x20, 0x01]);
        assert_eq!(&s.order[..s.option_count as usize], &[2, 4, 8, 1, 3]);
    }

    /// The signature reads the headers the parser found: a later IPv6 fragment (its bytes are
    /// payload, not TCP) is no SYN for either, and a first fragment is one for both.
    #[test]
    fn the_signature_and_the_counters_agree_on_what_a_syn_is() {
        let frame = |fragment_offset: u16| {
            let mut f = std::vec![0u8; 12];
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[6] = crate::parse::IPPROTO_FRAGMENT;
            ip[7] = 57;
            f.extend_from_slice(&ip);
            let off = (fragment_offset << 3).to_be_bytes();
            f.extend_from_slice(&[IPPROTO_TCP, 0, off[0], off[1], 0, 0, 0, 1]);
            let mut t = [0u8; 20];
            t[12] = 5 << 4;
            t[13] = 0x02;
            f.extend_from_slice(&t);
            f
        };
        let later = frame(1);
        assert!(syn_signature(&later[..]).is_none());
        assert_eq!(
            crate::parse_frame(&later[..]),
            Parsed::V6 {
                src: [0; 16],
                syn: false
            }
        );
        let first = frame(0);
        assert!(syn_signature(&first[..]).is_some());
        assert!(matches!(
            crate::parse_frame(&first[..]),
            Parsed::V6 { syn: true, .. }
        ));
    }
}
