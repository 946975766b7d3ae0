//! The XDP object embedded at build time by `build.rs`.

/// The compiled `ipwarden-ebpf` object; empty when built with `AYA_BUILD_SKIP=1`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipwarden"));

/// Whether this binary carries only the empty stub object (see `build.rs`).
pub fn object_is_stub() -> bool {
    OBJECT.is_empty()
}

/// Benchmark baselines built from `ebpf/src/bin/`: programs that only return a verdict.
pub mod baseline {
    /// Returns `XDP_PASS`.
    pub static PASS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-pass"));
    /// Returns `XDP_DROP`.
    pub static DROP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-drop"));
    /// Parses the frame with ipwarden's parser and returns `XDP_DROP`: the floor of a filter
    /// that reads the packet.
    pub static TOUCH: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-touch"));
    /// The ipwarden program with passed frames dropped (`ipwarden_sink`): its cost on floods
    /// of unblocked sources, without the kernel stack's.
    pub static SINK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-sink"));
    /// Returns `XDP_TX`: with live frames, a traffic generator.
    pub static TX: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-tx"));
}
