//! `cargo xtask build`.

use clap::Args;

use crate::{cmd, setup};

#[derive(Args, Default)]
pub struct Options {
    /// Optimised build.
    #[arg(long)]
    pub release: bool,
}

/// Builds every binary of the default workspace members (the XDP object is built by the
/// controller's build script).
pub fn run(opts: &Options) -> anyhow::Result<()> {
    setup::ensure()?;
    let mut c = cmd::cargo();
    c.args(["build", "--bins"]);
    if opts.release {
        c.arg("--release");
    }
    cmd::run(&mut c)
}

/// Path of a built binary.
pub fn binary(name: &str, release: bool) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cmd::workspace_root().join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join(name)
}
