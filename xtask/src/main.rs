//! `cargo xtask`: set up a machine, build, test, demo and run ipwarden. `main` only dispatches.

mod arch;
mod bench;
mod build;
mod cmd;
mod deb;
mod demo;
mod fuzz;
mod lint;
mod run;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, test and demo ipwarden")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make this machine ready, idempotently: nightly rust-src, bpf-linker, iproute2, ping.
    Setup,
    /// Build the controller (and, through it, the XDP object) and the test bed.
    Build(build::Options),
    /// Run the tests: unit tier (no privileges) then privileged tier (root, namespaces).
    Test(test::Options),
    /// A one-command demonstration on a namespace topology (needs root); `--fleet` shows three
    /// hosts sharing decisions over NATS.
    Demo(demo::Options),
    /// Benchmarks (needs root): writes bench/RESULTS.md and bench/kernel-cost.svg.
    Bench(bench::Options),
    /// Fuzz every parser of outside input (nightly, cargo-fuzz) for --time seconds each.
    Fuzz(fuzz::Options),
    /// Build the Debian package (cargo-deb) and check it with lintian.
    Deb(deb::Options),
    /// Run the `ipwarden` binary: `cargo xtask run -- attach --iface eth0`.
    Run(run::Options),
    /// rustfmt and clippy, warnings denied, and the architecture check (`arch`).
    Lint,
    /// The controller's import graph against ARCHITECTURE.md (`--show` prints every arrow).
    Arch {
        #[arg(long)]
        show: bool,
    },
    /// What CI runs: setup, lint, all tests.
    Ci,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Build(opts) => build::run(&opts),
        Command::Test(opts) => test::run(&opts),
        Command::Demo(opts) => demo::run(&opts),
        Command::Bench(opts) => bench::run(&opts),
        Command::Fuzz(opts) => fuzz::run(&opts),
        Command::Deb(opts) => deb::run(&opts).map(|_| ()),
        Command::Run(opts) => run::run(&opts),
        Command::Lint => lint::run(),
        Command::Arch { show: true } => arch::show(),
        Command::Arch { show: false } => arch::run(),
        Command::Ci => {
            setup::run()?;
            lint::run()?;
            test::run(&test::Options::default())
        }
    }
}
