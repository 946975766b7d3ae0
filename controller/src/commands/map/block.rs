//! `ipwarden map block` and `ipwarden map unblock`.

use ipnet::IpNet;
use ipwarden::{
    cli::{MapBlockArgs, Target},
    clock,
};
use ipwarden_common::BlockEntry;

pub fn block(args: &MapBlockArgs) -> anyhow::Result<()> {
    let mut dp = crate::commands::pins::open(&args.target)?;
    let deadline = clock::deadline_ns(args.ttl);
    let entry = match args.challenge {
        Some(pps) => BlockEntry::challenge(args.reason.reason_code(), deadline, pps, args.burst),
        None => BlockEntry::block(args.reason.reason_code(), deadline),
    };
    dp.block(args.prefix, entry)?;
    let verb = if args.challenge.is_some() {
        "challenged"
    } else {
        "blocked"
    };
    match args.ttl {
        Some(ttl) => println!(
            "{verb} {} for {}",
            args.prefix,
            humantime::format_duration(ttl)
        ),
        None => println!("{verb} {} permanently", args.prefix),
    }
    Ok(())
}

pub fn unblock(prefix: IpNet, target: &Target) -> anyhow::Result<()> {
    let mut dp = crate::commands::pins::open(target)?;
    if !dp.unblock(prefix)? {
        anyhow::bail!(
            "{prefix} is not blocked on {} (see `ipwarden map list`)",
            target.iface
        );
    }
    println!("unblocked {prefix}");
    Ok(())
}
