//! `ipwarden map …`: direct access to one attachment's maps, bypassing the daemon.

mod allow;
mod block;
mod list;
mod monitor;
mod stats;

use ipwarden::cli::MapAction;

pub fn run(action: MapAction) -> anyhow::Result<()> {
    match action {
        MapAction::Block(args) => block::block(&args),
        MapAction::Unblock { prefix, target } => block::unblock(prefix, &target),
        MapAction::List { target, format } => list::run(&target, format),
        MapAction::Allow { action } => allow::run(action),
        MapAction::Monitor { state, target } => monitor::run(state, &target),
        MapAction::Stats(args) => stats::run(&args),
    }
}
