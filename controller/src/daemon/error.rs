//! Why the daemon could not start or had to stop.

use std::path::PathBuf;

use thiserror::Error;

use crate::{
    config::ConfigError, dataplane::DataplaneError, engine::EngineError, ipc::server::ServerError,
    store::StoreError,
};

/// Why the daemon could not start or had to stop.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no interface to protect: give --iface IF or set daemon.ifaces")]
    NoInterface,
    #[error(transparent)]
    Metrics(crate::metrics::MetricsError),
    #[error(transparent)]
    Verdict(crate::verdict::VerdictError),
    #[error(transparent)]
    Fingerprints(crate::fingerprint::RuleError),
    #[error(
        "refusing to start without the decision store (an empty block list would silently replace it); restore the file, or start once with --rebuild-store to rebuild it from the pinned maps"
    )]
    Store(#[from] StoreError),
    /// Another daemon holds the store: it is fine, and must not be rebuilt under it.
    #[error(transparent)]
    StoreInUse(StoreError),
    #[error("moving {path} aside")]
    Aside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {iface}")]
    Dataplane {
        iface: String,
        #[source]
        source: DataplaneError,
    },
    #[error("restoring decisions into the maps")]
    Restore(#[source] EngineError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(
        "the data plane is gone (program detached or maps removed?); stopping, since nothing is protected"
    )]
    Lost(#[source] DataplaneError),
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the IPASIS API key")]
    Key(#[source] crate::enrich::key::KeyError),
    #[error("the IPASIS client")]
    Client(#[source] crate::enrich::client::ClientBuildError),
    #[error(transparent)]
    Source(crate::sources::SourceError),
    #[error(transparent)]
    Hook(crate::hooks::HookError),
    /// A bug: the daemon stops so that systemd starts it again from its store.
    #[error("{what} panicked: {message}; stopping (the XDP program keeps enforcing)")]
    Panicked { what: &'static str, message: String },
}
