//! `cargo xtask demo`: build, then run the namespace demonstration (runners/src/bin/demo.rs).

use anyhow::bail;

use crate::{build, cmd};

pub fn run() -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!("the demo creates network namespaces and loads XDP programs: run it as root");
    }
    build::run(&build::Options::default())?;
    cmd::run(
        std::process::Command::new(build::binary("ipwarden-demo", false))
            .env("IPWARDEN_BIN", build::binary("ipwarden", false)),
    )
}
