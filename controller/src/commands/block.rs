//! `ipwarden block` and `ipwarden unblock`.

use ipnet::IpNet;
use ipwarden::{
    cli::{BlockArgs, Target},
    clock,
};
use ipwarden_common::BlockEntry;

pub fn block(args: &BlockArgs) -> anyhow::Result<()> {
    let mut dp = super::open(&args.target)?;
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
    let mut dp = super::open(target)?;
    if !dp.unblock(prefix)? {
        anyhow::bail!(
            "{prefix} is not blocked on {} (see `ipwarden list`)",
            target.iface
        );
    }
    println!("unblocked {prefix}");
    Ok(())
}
