//! `ipwarden run`: the long-running daemon.
//!
//! Start: load the configuration, open the store (refusing to start on an unreadable one),
//! attach to or adopt every interface, restore decisions into the maps, listen on the control
//! socket, tell systemd READY. Then poll the counters every `poll_interval` and feed the engine.
//! SIGHUP reloads the configuration; SIGTERM/SIGINT stop, leaving the program attached (and
//! enforcing) unless `daemon.detach_on_stop` is set.

mod error;
mod feeds;
pub mod handlers;
mod lookup;
pub mod loud;
mod main_loop;
mod notify;
pub mod poll;
mod protect;
mod scrape;
mod serve;
mod shared;
mod start;
pub mod state;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use error::DaemonError;

use crate::config::{Config, DEFAULT_PATH};

pub use notify::{notify, reloading};

/// What `ipwarden run` was given on the command line; it overrides the file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    pub ifaces: Vec<String>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub bpffs: Option<PathBuf>,
    /// Move an unreadable state database aside and rebuild it from the pinned maps.
    pub rebuild_store: bool,
}

/// Loads the configuration and applies the command-line overrides.
pub fn load_config(opts: &RunOptions) -> Result<(Config, Option<PathBuf>), DaemonError> {
    let (path, explicit) = match &opts.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let mut cfg = Config::load(&path, explicit)?;
    let loaded_from = (explicit || path.exists()).then_some(path);
    if !opts.ifaces.is_empty() {
        cfg.daemon.ifaces = opts.ifaces.clone();
    }
    if let Some(s) = &opts.socket {
        cfg.daemon.socket = s.clone();
    }
    if let Some(s) = &opts.state_dir {
        cfg.daemon.state_dir = s.clone();
    }
    if let Some(b) = &opts.bpffs {
        cfg.daemon.bpffs = b.clone();
    }
    cfg.validate("command line")?;
    if cfg.daemon.ifaces.is_empty() {
        return Err(DaemonError::NoInterface);
    }
    Ok((cfg, loaded_from))
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(opts: &RunOptions) -> Result<(), DaemonError> {
    crate::heap::settle();
    let (cfg, path) = load_config(opts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(serve::serve(cfg, path, opts.rebuild_store))
}
