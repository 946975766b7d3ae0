//! One module per verb. Each takes its parsed arguments and prints its result to stdout.
//! Daemon commands go through [`call`]; `attach`, `detach` and `map` act on the pins directly.

mod allow;
mod assets;
mod attach;
mod block;
mod config;
mod detach;
mod explain;
mod list;
mod lookup;
mod map;
mod run;
mod show;

use anyhow::Context as _;
use ipwarden::{
    cli::{Command, Conn, Target},
    dataplane::{Dataplane, PinDir},
    ipc::client,
    wire::{Request, Response},
};

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
            done(&conn, Request::Reload)?;
            Ok(())
        }
        Command::Config { action } => config::run(action),
        Command::Attach(args) => attach::run(&args),
        Command::Detach { target } => detach::run(&target),
        Command::Map { action } => map::run(action),
        Command::GenerateAssets { out } => assets::run(&out),
    }
}

/// Sends a request to the daemon; an error answer becomes an error.
fn call(conn: &Conn, request: Request) -> anyhow::Result<Response> {
    match client::call(&conn.socket, request)? {
        Response::Error { message } => Err(anyhow::anyhow!(message)),
        other => Ok(other),
    }
}

/// Sends a request whose answer is a plain acknowledgement, and prints it.
fn done(conn: &Conn, request: Request) -> anyhow::Result<()> {
    match call(conn, request)? {
        Response::Done { message } => {
            println!("{message}");
            Ok(())
        }
        other => unexpected(&other),
    }
}

fn unexpected(r: &Response) -> anyhow::Result<()> {
    anyhow::bail!("unexpected answer from the daemon: {r:?}")
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

/// `3m 20s`-style durations for tables.
fn human(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}
