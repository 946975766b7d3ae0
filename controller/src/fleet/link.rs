//! The fleet link's state, as `status` shows it, shared between the fleet task (which writes it)
//! and the engine (which reads it for `status`).

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What `status` says about the fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    pub host_id: String,
    /// The servers, as configured (credentials never appear in a URL here: they come from
    /// files).
    pub servers: Vec<String>,
    pub bucket: String,
    pub connected: bool,
    /// The last revision of the decisions bucket applied here (stored, resumed after a
    /// restart).
    pub applied_revision: u64,
    /// The bucket's last revision when last asked; `lag` = it - `applied_revision`.
    pub bucket_revision: Option<u64>,
    pub lag: Option<u64>,
    /// Local changes waiting to be published (NATS unreachable, or a burst in flight).
    pub pending_publish: usize,
    pub published: u64,
    /// Peers' decisions and withdrawals applied here.
    pub applied: u64,
    /// Peers' values that could not be read (counted, logged once per kind).
    pub unreadable: u64,
    /// Peers' IPASIS answers used instead of a request.
    pub shared_answers: u64,
    /// Lookups this host made for the fleet (it held the claim).
    pub claims_won: u64,
    pub last_error: Option<String>,
}

/// The shared state.
#[derive(Debug, Default)]
pub struct Link(Mutex<FleetView>);

impl Link {
    pub fn new(view: FleetView) -> Self {
        Self(Mutex::new(view))
    }

    pub fn view(&self) -> FleetView {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut FleetView)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Records a failure, logging it when it differs from the last one (a link that stays down
    /// does not flood the log).
    pub fn failed(&self, what: &str, error: &dyn std::error::Error) {
        let message = format!("{what}: {}", crate::engine::enforce::error_chain(error));
        self.update(|v| {
            if v.last_error.as_deref() != Some(message.as_str()) {
                tracing::warn!(error = %message, "fleet");
            }
            v.last_error = Some(message);
        });
    }
}
