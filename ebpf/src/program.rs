//! The program's body, shared by the `ipwarden` object (main.rs) and the benchmark's sink
//! variant (bin/sink.rs), which differ only in the action for passed frames.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use ipwarden_common::{DataplaneConfig, GlobalCounter, Parsed, parse::parse_syn};
use ipwarden_ebpf::frame::XdpFrame;

use crate::{
    fingerprint,
    maps::CONFIG,
    policy::Decision,
    source::{self, Packet, global},
    synproxy,
};

/// Judges and counts one frame; frames that pass get `passed` (`XDP_PASS` in the product).
#[inline(always)]
pub fn run(ctx: &XdpContext, passed: u32) -> u32 {
    // `Seen` is not counted here: it is the sum of the terminal counters (passed, dropped,
    // limited), which user space adds up. One per-CPU update per packet fewer.
    let frame = XdpFrame(ctx);
    // Read before any block-set lookup: the generation is what makes cached verdicts safe.
    let cfg = CONFIG.get(0).copied().unwrap_or_default();
    // One parse: the SYN signature reads the headers the parser found.
    let decision = match parse_syn(&frame) {
        Parsed::V4 { src, syn } => {
            let d = source::ipv4(&src, packet(&frame, syn.is_some()), &cfg);
            if let Some(at) = syn
                && d != Decision::Block
            {
                fingerprint::record(&frame, at);
            }
            d
        }
        Parsed::V6 { src, syn } => {
            let d = source::ipv6(&src, packet(&frame, syn.is_some()), &cfg);
            if let Some(at) = syn
                && d != Decision::Block
            {
                fingerprint::record(&frame, at);
            }
            d
        }
        Parsed::NotIp => {
            global(GlobalCounter::NotIp);
            Decision::Pass
        }
        Parsed::Malformed => {
            global(GlobalCounter::Malformed);
            Decision::Pass
        }
    };
    // Drops are counted by origin (and sampled by source) in `source`, which knows both.
    let action = verdict(decision, &cfg, passed);
    // What the source policy passes, the synproxy may still answer (a SYN) or refuse (an ACK
    // with no connection and no cookie), in its own program: its counters say which. Not in
    // monitor mode.
    if matches!(decision, Decision::Pass | Decision::Allow)
        && !cfg.monitor()
        && synproxy::wanted(ctx)
    {
        synproxy::hand_over(ctx);
    }
    action
}

#[inline(always)]
fn packet(frame: &XdpFrame, syn: bool) -> Packet {
    Packet {
        bytes: frame.bytes(),
        syn,
    }
}

/// The one place a decision becomes an XDP action, with monitor mode applied.
#[inline(always)]
fn verdict(decision: Decision, cfg: &DataplaneConfig, passed: u32) -> u32 {
    match decision {
        Decision::Pass => {
            global(GlobalCounter::Passed);
            passed
        }
        Decision::Allow => {
            // Allowed is a sub-count of Passed: entries the allowlist overrode.
            global(GlobalCounter::Allowed);
            global(GlobalCounter::Passed);
            passed
        }
        Decision::Block | Decision::Limit => {
            if cfg.monitor() {
                global(GlobalCounter::Monitored);
                global(GlobalCounter::Passed);
                passed
            } else {
                global(if decision == Decision::Block {
                    GlobalCounter::Dropped
                } else {
                    GlobalCounter::Limited
                });
                xdp_action::XDP_DROP
            }
        }
    }
}
