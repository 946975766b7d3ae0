//! The daemon's state behind its one lock, and how the async side reaches it: every piece of
//! work that may fsync or write maps runs on a blocking thread, never on one of the two async
//! workers, and a panic there comes back as an error that stops the daemon (systemd restarts
//! it from its store; the XDP program keeps enforcing meanwhile).

use std::sync::{Arc, Mutex};

use super::{error::DaemonError, state::State};

/// The state, shared by the main loop, the control socket and metrics.
pub type Shared = Arc<Mutex<State>>;

/// Runs `f` with the state locked, on a blocking thread; `what` names it if it panics.
pub async fn locked<T: Send + 'static>(
    shared: &Shared,
    what: &'static str,
    f: impl FnOnce(&mut State) -> T + Send + 'static,
) -> Result<T, DaemonError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&mut crate::sync::lock(&shared)))
        .await
        .map_err(|e| DaemonError::Panicked {
            what,
            message: panic_message(e),
        })
}

/// What a task's panic said.
pub fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(e) => e.to_string(),
    }
}
