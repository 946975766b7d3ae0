//! Runtime allowlist changes: store, then planes, then memory, as every change.

use ipnet::IpNet;

use super::{Engine, EngineError, planes::error_chain};

impl Engine {
    /// Adds a runtime allowlist entry.
    pub fn allow_add(&mut self, prefix: IpNet) -> Result<(), EngineError> {
        let prefix = prefix.trunc();
        if prefix.prefix_len() == 0 {
            return Err(EngineError::Everything {
                op: "allowlist",
                prefix,
            });
        }
        self.store.put_allow(prefix)?;
        self.plane_change("allowlisting", |e| e.allow(prefix));
        self.allow.add_runtime(prefix);
        self.allow_changed();
        tracing::info!(%prefix, "allowlisted");
        Ok(())
    }

    /// Removes a runtime allowlist entry (configured ones are changed in the file).
    pub fn allow_rm(&mut self, prefix: IpNet) -> Result<(), EngineError> {
        let prefix = prefix.trunc();
        if let Some(origin) = self.allow.configured(&prefix) {
            return Err(EngineError::ConfiguredAllow { prefix, origin });
        }
        if !self.store.remove_allow(prefix)? {
            return Err(EngineError::NotAllowed { prefix });
        }
        // A protected entry on the same prefix stays in the maps.
        let still_listed = self
            .allow
            .entries()
            .get(&prefix)
            .is_some_and(|o| *o != crate::allowlist::AllowOrigin::Runtime);
        if !still_listed {
            self.plane_change("removing an allow entry", |e| e.disallow(prefix));
        }
        self.allow.remove_runtime(&prefix);
        self.allow_changed();
        tracing::info!(%prefix, "removed from the allowlist");
        Ok(())
    }

    /// Applies one change to every plane; failures mark planes out of sync and are warned.
    pub(super) fn plane_change(
        &mut self,
        what: &str,
        change: impl FnMut(&mut dyn super::Enforcer) -> Result<(), crate::dataplane::DataplaneError>,
    ) {
        for f in self.planes.apply(what, change) {
            self.warn(format!(
                "{} is out of sync: {}",
                f.iface,
                error_chain(&f.error)
            ));
        }
    }
}
