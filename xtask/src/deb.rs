//! `cargo xtask deb`: the Debian package, built with cargo-deb from the controller's
//! `[package.metadata.deb]`, then checked with lintian (errors fail the build).

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{build, cmd, setup};

#[derive(Args, Default)]
pub struct Options {
    /// Package the debug build (what the privileged tests install; faster to build).
    #[arg(long)]
    pub dev: bool,
    /// Skip lintian.
    #[arg(long)]
    pub no_lintian: bool,
}

/// Builds the package; returns its path.
pub fn run(opts: &Options) -> anyhow::Result<PathBuf> {
    setup::ensure()?;
    let release = !opts.dev;
    let mut c = cmd::cargo();
    c.args(["build", "--package", "ipwarden", "--bin", "ipwarden"]);
    if release {
        c.arg("--release");
    }
    cmd::run(&mut c)?;
    let root = cmd::workspace_root();
    let assets = root.join("target/deb-assets");
    let _ = std::fs::remove_dir_all(&assets);
    cmd::run(
        Command::new(build::binary("ipwarden", release))
            .arg("generate-assets")
            .arg("--out")
            .arg(&assets),
    )?;
    let out_dir = root.join("target/debian");
    std::fs::create_dir_all(&out_dir)?;
    let mut c = cmd::cargo();
    c.args(["deb", "--package", "ipwarden", "--no-build", "--output"])
        .arg(&out_dir);
    if !release {
        // A debug build's symbols are most of its size; the package strips them.
        c.args(["--profile", "dev"]);
    }
    let printed = cmd::output(&mut c)?;
    let deb = printed
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .context("cargo deb printed no package path")?;
    if !opts.no_lintian {
        // Errors fail; warnings are shown (a Rust binary built by cargo, not by debhelper,
        // draws a few).
        let status = Command::new("lintian")
            .args(["--fail-on", "error", "--suppress-tags", "no-manual-page"])
            .arg(&deb)
            .status()
            .context("running lintian")?;
        if !status.success() {
            bail!("lintian reports errors on {}", deb.display());
        }
    }
    println!("{}", deb.display());
    Ok(deb)
}
