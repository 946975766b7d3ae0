//! The pinned maps a command acts on directly (`attach`, `detach`, `map`).

use anyhow::Context as _;
use ipwarden::{
    cli::Target,
    dataplane::{Dataplane, PinDir},
};

/// The pin directory a command targets.
pub fn pins(target: &Target) -> PinDir {
    PinDir::new(&target.bpffs, &target.iface)
}

/// Opens the pinned maps of the targeted attachment.
pub fn open(target: &Target) -> anyhow::Result<Dataplane> {
    Dataplane::open(&pins(target)).with_context(|| format!("opening the maps of {}", target.iface))
}
