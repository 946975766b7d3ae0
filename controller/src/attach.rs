//! How an interface came to be enforced: data the data plane reports and `status` shows.

use serde::{Deserialize, Serialize};

/// How an interface came to be enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachKind {
    /// Native XDP in the driver.
    Driver,
    /// Generic XDP (the driver lacks native support).
    Skb,
    /// An attachment a previous daemon of this build left pinned, reused without a gap.
    Adopted,
    /// An attachment another build left pinned: its link now runs this build's program,
    /// swapped atomically (no moment without a filter), its maps kept.
    Upgraded,
    /// An attachment of this build left pinned with maps of other sizes than configured: its
    /// link now runs the program on maps of the configured sizes, filled from the old ones and
    /// swapped in atomically.
    Resized,
    /// Not a kernel attachment (the engine's in-memory enforcer, in tests and benchmarks).
    Memory,
}

impl AttachKind {
    /// Stable lower-case name, as `status` shows it.
    pub fn name(self) -> &'static str {
        crate::names::of(&self)
    }
}

impl std::fmt::Display for AttachKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
