//! The fleet link's state, as `status` shows it: written by the fleet's tasks, read by the
//! daemon.

use crate::{sources::StatusCell, wire::FleetView};

/// The shared view.
pub type Link = StatusCell<FleetView>;

/// Records a failure, logging it when it differs from the last one (a link that stays down
/// does not flood the log).
pub fn failed(link: &Link, what: &str, error: &dyn std::error::Error) {
    let message = format!("{what}: {}", crate::engine::error_chain(error));
    link.update(|v| {
        if v.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(error = %message, "fleet");
        }
        v.last_error = Some(message);
    });
}
