//! The `ipwarden` binary: parse the command line, set up logging, dispatch to one command.
//! anyhow lives here and in `commands/`, the binary's edge, only.

mod commands;

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use ipwarden::cli::{Cli, LogFormat};
use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Sets up logging. Under systemd, records go to journald natively: real priorities (so
/// `journalctl -p warning` works) and every field as a journal field (`PREFIX=`, `ORIGIN=`,
/// `ACTION=`), rather than text lines on stderr that journald would file at one priority.
fn init_logging(cli: &Cli) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_new(&cli.log)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let mut format = cli.log_format;
    if format == LogFormat::Auto {
        format = if std::env::var_os("JOURNAL_STREAM").is_some() {
            LogFormat::Journald
        } else {
            LogFormat::Plain
        };
    }
    if format == LogFormat::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(filter())
                    .with(
                        layer
                            .with_field_prefix(None)
                            .with_syslog_identifier("ipwarden".into()),
                    )
                    .init();
                return;
            }
            Err(e) => eprintln!("journald is not reachable ({e}); logging to stderr"),
        }
    }
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_target(false);
    if format == LogFormat::Json {
        fmt.json().flatten_event(true).init();
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// A command's output piped into `head` ends when the reader goes: die of SIGPIPE quietly, as
/// Unix tools do, instead of panicking on a broken pipe (Rust ignores SIGPIPE by default). The
/// daemon keeps ignoring it: a client that hangs up must not kill it.
fn quiet_broken_pipes(command: &ipwarden::cli::Command) {
    if !matches!(command, ipwarden::cli::Command::Run(_)) {
        // SAFETY: restoring a signal's default disposition, before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    quiet_broken_pipes(&cli.command);
    init_logging(&cli);
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            let unreachable = err
                .downcast_ref::<ipwarden::ipc::client::ClientError>()
                .is_some_and(|e| e.is_unreachable());
            // 3: the daemon could not be reached; 2 is clap's usage error (and a request the
            // daemon could not read); 1 every other failure.
            let code = match err.downcast_ref::<commands::Refused>() {
                Some(r) => r.kind.exit_code(),
                None if unreachable => 3,
                None => 1,
            };
            ExitCode::from(code)
        }
    }
}
