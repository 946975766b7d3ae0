//! `ipwarden detach`.

use anyhow::Context as _;
use ipwarden::{cli::Target, dataplane, synproxy::nft};

pub fn run(target: &Target) -> anyhow::Result<()> {
    let pins = crate::commands::pins::pins(target);
    dataplane::detach(&pins).with_context(|| format!("detaching from {}", target.iface))?;
    println!("detached from {}", target.iface);
    // The synproxy's nftables table serves every interface: it goes with the last attachment.
    let attached = pins
        .dir()
        .parent()
        .and_then(|d| std::fs::read_dir(d).ok())
        .map_or(0, |dirs| {
            dirs.filter_map(Result::ok)
                .filter(|e| e.path().join("link").exists())
                .count()
        });
    if attached == 0 && nft::present() {
        match nft::remove() {
            Ok(()) => println!("removed the synproxy's nftables table {}", nft::TABLE),
            Err(e) => eprintln!(
                "warning: the synproxy's nftables table {} stays: {e}",
                nft::TABLE
            ),
        }
    }
    Ok(())
}
