//! `cargo xtask lint`.

use crate::{cmd, setup};

pub fn run() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))?;
    setup::ensure()?;
    cmd::run(cmd::cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))
}
