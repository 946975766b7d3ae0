//! The `ipwarden` binary: parse the command line, set up logging, dispatch to one command.
//! anyhow lives here and in `commands/`, the binary's edge, only.

mod commands;

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use ipwarden::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            let unreachable = err
                .downcast_ref::<ipwarden::ipc::client::ClientError>()
                .is_some_and(|e| e.is_unreachable());
            // 3: the daemon could not be reached; 2 is clap's usage error.
            ExitCode::from(if unreachable { 3 } else { 1 })
        }
    }
}
