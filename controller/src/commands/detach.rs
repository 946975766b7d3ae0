//! `ipwarden detach`.

use anyhow::Context as _;
use ipwarden::{cli::Target, dataplane};

pub fn run(target: &Target) -> anyhow::Result<()> {
    dataplane::detach(&crate::commands::pins::pins(target))
        .with_context(|| format!("detaching from {}", target.iface))?;
    println!("detached from {}", target.iface);
    Ok(())
}
