//! `cargo xtask bench [--quick]`: builds optimised binaries and runs the benchmark runner
//! (runners/src/bin/bench.rs) as root; results go to `bench/RESULTS.md` and
//! `bench/kernel-cost.svg`.

use std::process::Command;

use anyhow::bail;
use clap::Args;

use crate::{build, cmd, setup};

#[derive(Args)]
pub struct Options {
    /// Fewer rounds and repetitions: under 10 minutes on a fresh clone.
    #[arg(long)]
    pub quick: bool,
}

/// Baselines the benchmark compares against, from Debian.
const BENCH_PACKAGES: [(&str, &str); 4] = [
    ("xdp-filter", "xdp-tools"),
    ("nft", "nftables"),
    ("ethtool", "ethtool"),
    // The verdict endpoint's keep-alive load generator.
    ("wrk", "wrk"),
];

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!("the benchmark loads XDP programs and creates network namespaces: run it as root");
    }
    setup::ensure()?;
    setup::apt(&BENCH_PACKAGES)?;
    build::run(&build::Options { release: true })?;
    let out = cmd::workspace_root().join("bench");
    let mut c = Command::new(build::binary("ipwarden-bench", true));
    c.arg("--out")
        .arg(&out)
        .env("IPWARDEN_BIN", build::binary("ipwarden", true));
    if opts.quick {
        c.arg("--quick");
    }
    cmd::run(&mut c)
}
