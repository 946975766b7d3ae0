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

/// Records that the server answered now.
pub fn heard(link: &Link) {
    let now = crate::decision::now_unix_ms();
    link.update(|v| v.last_heard_unix_ms = Some(now));
}

/// How often the link asks the server for an answer, and how long it waits for one.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);

/// Asks the server for a round trip every [`HEARTBEAT`], recording each answer; ends with an
/// error when one does not come within the heartbeat (a server that stopped answering with
/// its connection still open is treated as a lost link).
pub async fn heartbeat(client: &async_nats::Client, link: &Link) -> Result<(), async_nats::Error> {
    loop {
        match tokio::time::timeout(HEARTBEAT, client.flush()).await {
            Ok(Ok(())) => heard(link),
            Ok(Err(e)) => return Err(format!("the server did not answer a heartbeat: {e}").into()),
            Err(_) => {
                return Err(format!(
                    "the server did not answer a heartbeat within {}s",
                    HEARTBEAT.as_secs()
                )
                .into());
            }
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}
