//! Places decisions go besides the data plane.

use crate::decision::{Decision, Ended};

/// A place decisions go besides the data plane (the fleet, metrics): told every committed
/// change once it is durable. It must not block: the engine holds its lock.
pub trait Sink: Send {
    fn changed(&mut self, put: &[&Decision], ended: &[Ended]);

    /// The whole allowlist (configured, built-in, protected and runtime entries), after it
    /// changed. Most sinks publish decisions only.
    fn allowlist(&mut self, _entries: &[ipnet::IpNet]) {}
}
