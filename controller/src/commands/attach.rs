//! `ipwarden attach`.

use anyhow::Context as _;
use ipwarden::{
    cli::AttachArgs,
    dataplane::{self, AttachMode, AttachOptions, Capacities, Dataplane},
};

pub fn run(args: &AttachArgs) -> anyhow::Result<()> {
    let mode = match (args.skb, args.driver) {
        (true, _) => AttachMode::Skb,
        (_, true) => AttachMode::Driver,
        _ => AttachMode::Auto,
    };
    let mut capacities = Capacities::default();
    if let Some(n) = args.sources {
        capacities.src_v4 = n;
        capacities.src_v6 = n;
    }
    if let Some(n) = args.blocks {
        capacities.block_v4 = n;
        capacities.block_v6 = n;
    }
    let opts = AttachOptions {
        pins: crate::commands::pins::pins(&args.target),
        mode,
        capacities,
        build: dataplane::stamp::this_build(),
    };
    let attached =
        dataplane::attach(&opts).with_context(|| format!("attaching to {}", args.target.iface))?;
    let mut dp = Dataplane::open(&attached.pins)?;
    if args.monitor {
        dp.set_monitor(true)?;
    }
    // As a daemon's start does: until the marks are trusted, every new source is looked up in
    // the per-source maps (slower under a spray, never wrong), so a failure only warns.
    if let Err(e) = dp.mark_tracked() {
        eprintln!(
            "warning: marking the tracked sources failed ({}): every new source is looked up in the per-source maps, slower under a spray",
            dataplane::error_chain(&e)
        );
    }
    println!(
        "attached to {} in {} mode{}; pins at {}",
        args.target.iface,
        attached.kind,
        if args.monitor { " (monitor mode)" } else { "" },
        attached.pins.dir().display()
    );
    Ok(())
}
