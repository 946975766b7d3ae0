//! The fleet link's state, as `status` shows it, shared between the fleet task (which writes it)
//! and the engine (which reads it for `status`).

use std::sync::Mutex;

use crate::wire::FleetView;

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
        let message = format!("{what}: {}", crate::engine::error_chain(error));
        self.update(|v| {
            if v.last_error.as_deref() != Some(message.as_str()) {
                tracing::warn!(error = %message, "fleet");
            }
            v.last_error = Some(message);
        });
    }
}
