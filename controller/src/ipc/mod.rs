//! The control socket between the CLI and the daemon: the protocol (shared), the blocking
//! client the CLI uses, and the daemon's server.

pub mod client;
pub mod server;
