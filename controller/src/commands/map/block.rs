//! `ipwarden map block` and `ipwarden map unblock`.

use ipnet::IpNet;
use ipwarden::{
    cli::{MapBlockArgs, Target},
    clock,
};
use ipwarden_common::BlockEntry;

pub fn block(args: &MapBlockArgs) -> anyhow::Result<()> {
    let mut dp = super::super::open(&args.target)?;
    let entry = BlockEntry::block(args.reason.code(), clock::deadline_ns(args.ttl));
    dp.block(args.prefix, entry)?;
    match args.ttl {
        Some(ttl) => println!(
            "blocked {} for {}",
            args.prefix,
            humantime::format_duration(ttl)
        ),
        None => println!("blocked {} permanently", args.prefix),
    }
    Ok(())
}

pub fn unblock(prefix: IpNet, target: &Target) -> anyhow::Result<()> {
    let mut dp = super::super::open(target)?;
    if !dp.unblock(prefix)? {
        anyhow::bail!(
            "{prefix} is not blocked on {} (see `ipwarden map list`)",
            target.iface
        );
    }
    println!("unblocked {prefix}");
    Ok(())
}
