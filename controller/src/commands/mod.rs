//! One module per verb. Each takes its parsed arguments and prints its result to stdout.
//! Daemon commands go through [`call`]; `attach`, `detach` and `map` act on the pins directly.

mod allow;
mod ask;
mod assets;
mod attach;
mod block;
mod config;
mod detach;
mod explain;
mod list;
mod lookup;
mod map;
mod pins;
mod print;
mod run;
mod show;

pub use ask::Refused;
use ipwarden::{cli::Command, wire::Request};

/// Runs one command.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::run(&args),
        Command::Status { conn, format } => show::status(&conn, format),
        Command::Block(args) => block::block(&args),
        Command::Unblock(args) => block::unblock(&args),
        Command::List {
            conn,
            format,
            action,
            origin,
            limit,
        } => list::run(&conn, format, action, origin, limit),
        Command::Import(args) => list::import(&args),
        Command::Export { conn, origin, .. } => list::export(&conn, origin),
        Command::History {
            prefix,
            limit,
            conn,
            format,
        } => list::history(prefix, limit, &conn, format),
        Command::Lookup {
            addr,
            fresh,
            conn,
            format,
        } => lookup::run(addr, fresh, &conn, format),
        Command::Allow { action } => allow::run(action),
        Command::Top {
            conn,
            format,
            n,
            watch: None,
            ..
        } => show::top(&conn, format, n),
        Command::Top {
            conn,
            format,
            n,
            watch: Some(every),
            iterations,
        } => show::top_watch(&conn, format, n, every, iterations),
        Command::Stats { conn, format } => show::stats(&conn, format),
        Command::Explain { addr, conn, format } => explain::run(addr, &conn, format),
        Command::Reload { conn } => {
            ask::done(&conn, Request::Reload)?;
            Ok(())
        }
        Command::Config { action } => config::run(action),
        Command::Attach(args) => attach::run(&args),
        Command::Detach { target } => detach::run(&target),
        Command::Map { action } => map::run(action),
        Command::GenerateAssets { out } => assets::run(&out),
    }
}
