//! `cargo xtask lint`.

use crate::{arch, cmd, setup};

pub fn run() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))?;
    setup::ensure()?;
    cmd::run(cmd::cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The controller's import graph against ARCHITECTURE.md.
    arch::run()
}
