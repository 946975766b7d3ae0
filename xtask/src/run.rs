//! `cargo xtask run -- <ipwarden args>`.

use clap::Args;

use crate::{build, cmd};

#[derive(Args)]
pub struct Options {
    /// Arguments passed to `ipwarden`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    build::run(&build::Options::default())?;
    cmd::run(std::process::Command::new(build::binary("ipwarden", false)).args(&opts.args))
}
