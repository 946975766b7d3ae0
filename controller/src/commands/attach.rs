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
    if args.monitor {
        Dataplane::open(&attached.pins)?.set_monitor(true)?;
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
