//! `cargo xtask fuzz [--time SECS] [TARGET]`: runs each cargo-fuzz target in `fuzz/` for the
//! given time (nightly, AddressSanitizer). A crash fails the command; its input is in
//! `fuzz/artifacts/<target>/` and becomes a regression unit test.

use std::process::Command;

use anyhow::bail;
use clap::Args;

use crate::{cmd, setup};

/// Every target, in `fuzz/fuzz_targets/`.
const TARGETS: [&str; 9] = [
    "packet_parser",
    "ipasis_record",
    "config",
    "control_request",
    "cli_prefix",
    "crowdsec_stream",
    "fleet_value",
    "feed_body",
    "verdict_request",
];

const CARGO_FUZZ_VERSION: &str = "0.13.2";

#[derive(Args)]
pub struct Options {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub time: u64,
    /// Only this target.
    pub target: Option<String>,
}

fn cargo_fuzz_installed() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "cargo", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)
        })
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    setup::ensure()?;
    if cargo_fuzz_installed() {
        eprintln!("setup: cargo-fuzz {CARGO_FUZZ_VERSION}: present");
    } else {
        cmd::run(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ]))?;
    }
    let targets: Vec<&str> = match &opts.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("no fuzz target {t}; targets: {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let mut failed = Vec::new();
    for target in targets {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "cargo", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={}", opts.time))
            .arg("-max_len=4096")
            // The controller's build script would build the XDP object: not needed to fuzz parsers.
            .env("AYA_BUILD_SKIP", "1")
            .current_dir(cmd::workspace_root());
        if let Err(e) = cmd::run(&mut c) {
            eprintln!("fuzz target {target}: {e:#}");
            failed.push(target);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (inputs in fuzz/artifacts/)",
            failed.join(", ")
        );
    }
    eprintln!("fuzz: every target ran {} s without a crash", opts.time);
    Ok(())
}
