//! `cargo xtask demo`: build, then run the namespace demonstration (runners/src/bin/demo.rs).

use anyhow::bail;
use clap::Args;

use crate::{build, cmd, setup};

#[derive(Args)]
pub struct Options {
    /// Three edge hosts and a NATS hub: what one host learns protects the others.
    #[arg(long)]
    pub fleet: bool,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!("the demo creates network namespaces and loads XDP programs: run it as root");
    }
    setup::ensure()?;
    build::run(&build::Options::default())?;
    let mut c = std::process::Command::new(build::binary("ipwarden-demo", false));
    c.env("IPWARDEN_BIN", build::binary("ipwarden", false));
    if opts.fleet {
        c.arg("--fleet");
    }
    cmd::run(&mut c)
}
