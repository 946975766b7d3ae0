//! One module per verb. Each takes its parsed arguments and prints its result to stdout.

mod allow;
mod attach;
mod block;
mod detach;
mod list;
mod monitor;
mod stats;

use anyhow::Context as _;
use ipwarden::{
    cli::{Command, Target},
    dataplane::{Dataplane, PinDir},
};

/// Runs one command.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Attach(args) => attach::run(&args),
        Command::Detach { target } => detach::run(&target),
        Command::Block(args) => block::block(&args),
        Command::Unblock { prefix, target } => block::unblock(prefix, &target),
        Command::List { target, format } => list::run(&target, format),
        Command::Allow { action } => allow::run(action),
        Command::Monitor { state, target } => monitor::run(state, &target),
        Command::Stats(args) => stats::run(&args),
    }
}

/// The pin directory a command targets.
fn pins(target: &Target) -> PinDir {
    PinDir::new(&target.bpffs, &target.iface)
}

/// Opens the pinned maps of the targeted attachment.
fn open(target: &Target) -> anyhow::Result<Dataplane> {
    Dataplane::open(&pins(target)).with_context(|| format!("opening the maps of {}", target.iface))
}

/// Prints a serializable value as pretty JSON.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
