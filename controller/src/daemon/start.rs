//! What the daemon sets up before it serves: the store, every interface's attachment, the
//! IPASIS stage.

use std::sync::Arc;

use super::error::DaemonError;
use crate::{
    config::Config,
    dataplane::{self, Adoption, AttachOptions, Capacities, Dataplane, PinDir},
    engine::{AttachKind, Plane},
    enrich::{ApiKey, IpasisClient, Pipeline},
    store::{self, Store},
};

/// Every interface attached or adopted.
pub(super) struct Attachments {
    pub planes: Vec<Plane>,
    /// A second handle per interface, for the poll loop's counter reads.
    pub readers: Vec<Dataplane>,
    /// What `status` must warn about for the daemon's whole life.
    pub warnings: Vec<String>,
}

/// Attaches to (or adopts) every interface.
pub(super) fn attach_all(cfg: &Config) -> Result<Attachments, DaemonError> {
    let mut planes = Vec::new();
    let mut readers = Vec::new();
    let mut warnings = Vec::new();
    for iface in &cfg.daemon.ifaces {
        let err = |source| DaemonError::Dataplane {
            iface: iface.clone(),
            source,
        };
        let pins = PinDir::new(&cfg.daemon.bpffs, iface);
        let opts = AttachOptions {
            pins: pins.clone(),
            mode: cfg.dataplane.attach_mode.into(),
            capacities: cfg.dataplane.capacities(),
            build: dataplane::stamp::this_build(),
        };
        let attach = if dataplane::is_attached(&pins) {
            match dataplane::adopt(&opts).map_err(err)? {
                Adoption::Kept => {
                    tracing::info!(
                        iface,
                        "adopting the existing attachment: no gap in protection"
                    );
                    AttachKind::Adopted
                }
                Adoption::Replaced {
                    same_build: true, ..
                } => AttachKind::Resized,
                Adoption::Replaced { .. } => AttachKind::Upgraded,
            }
        } else {
            let attached = dataplane::attach(&opts).map_err(err)?;
            if attached.bpffs.ends_with_process() {
                warnings.push(format!(
                    "{iface}: this daemon mounted bpffs at {} itself, in a private mount namespace: the pins and the XDP program end with this process, enforcement will not survive it (run the daemon in the host's mount namespace, see the README's network namespace section)",
                    cfg.daemon.bpffs.display()
                ));
            }
            attached.kind
        };
        let mut dp = Dataplane::open(&pins).map_err(err)?;
        // Until this holds, the program looks every new source up in the per-source maps:
        // slower under a spray, never wrong, so a failure is a warning.
        match dp.mark_tracked() {
            Ok(Some(m)) => tracing::info!(
                iface,
                entries = m.entries,
                cleared = m.cleared,
                fill = format_args!("{:.3}", m.fill),
                "marked the tracked sources: untracked ones skip the per-source lookup"
            ),
            Ok(None) => {}
            Err(e) => warnings.push(format!(
                "{iface}: marking the tracked sources failed ({}): every new source is looked up in the per-source maps, slower under a spray",
                dataplane::error_chain(&e)
            )),
        }
        if matches!(
            attach,
            AttachKind::Adopted | AttachKind::Upgraded | AttachKind::Resized
        ) {
            warnings.extend(size_mismatches(iface, &opts.capacities, &dp.capacities()));
        }
        planes.push(Plane::new(iface.clone(), attach, Box::new(dp)));
        readers.push(Dataplane::open(&pins).map_err(err)?);
    }
    Ok(Attachments {
        planes,
        readers,
        warnings,
    })
}

/// What an adopted attachment's maps hold that the configuration sizes otherwise. `adopt`
/// resizes every differing map, so this is empty unless that went wrong: then the size in
/// force is said, never silently another than configured.
fn size_mismatches(iface: &str, wanted: &Capacities, pinned: &Capacities) -> Vec<String> {
    [
        ("dataplane.max_blocks", "BLOCK_V4", wanted.block_v4, pinned.block_v4),
        ("dataplane.max_blocks", "BLOCK_V6", wanted.block_v6, pinned.block_v6),
        ("dataplane.max_block_prefixes", "BLOCK_NET_V4", wanted.block_net_v4, pinned.block_net_v4),
        ("dataplane.max_block_prefixes", "BLOCK_NET_V6", wanted.block_net_v6, pinned.block_net_v6),
        ("dataplane.max_allow", "ALLOW_V4/ALLOW_V6", wanted.allow, pinned.allow),
        ("dataplane.max_sources", "SRC_V4", wanted.src_v4, pinned.src_v4),
        ("dataplane.max_sources", "SRC_V6", wanted.src_v6, pinned.src_v6),
    ]
    .into_iter()
    .filter(|(.., w, p)| w != p)
    .map(|(setting, map, w, p)| {
        format!(
            "{iface}: {setting} = {w}, but the pinned {map} holds {p} entries: the resize at start did not take (see the log); the map keeps enforcing at its size"
        )
    })
    .collect()
}

/// Opens the store; with `rebuild`, first moves an existing (unreadable) database aside.
pub(super) fn open_store(cfg: &Config, rebuild: bool) -> Result<Store, DaemonError> {
    let path = cfg.daemon.state_dir.join(store::FILE_NAME);
    if rebuild && path.exists() {
        // Never move a database another daemon is using out from under it.
        let holders = store::holders_of(&path);
        if !holders.is_empty() {
            return Err(DaemonError::StoreInUse(store::StoreError::Locked {
                path,
                holders,
            }));
        }
        let aside = path.with_extension(format!(
            "redb.unreadable-{}",
            crate::decision::now_unix_ms()
        ));
        std::fs::rename(&path, &aside).map_err(|source| DaemonError::Aside {
            path: path.clone(),
            source,
        })?;
        tracing::warn!(from = %path.display(), to = %aside.display(), "moved the state database aside; rebuilding it from the pinned maps");
    }
    let store = Store::open(&cfg.daemon.state_dir).map_err(|e| match e {
        e @ store::StoreError::Locked { .. } => DaemonError::StoreInUse(e),
        e => DaemonError::Store(e),
    })?;
    if let Some(n) = store.migrated() {
        tracing::warn!(
            decisions = n,
            schema = store::SCHEMA,
            path = %store.path().display(),
            "state database migrated from the previous release's schema"
        );
    }
    Ok(store)
}

/// The enrichment stage, if enabled and a key is available.
pub(super) fn enrichment(cfg: &Config) -> Result<Option<Arc<Pipeline>>, DaemonError> {
    if !cfg.ipasis.enabled {
        return Ok(None);
    }
    let Some(key) = ApiKey::load(cfg.ipasis.key_file.as_deref()).map_err(DaemonError::Key)? else {
        return Ok(None);
    };
    let client = IpasisClient::new(&cfg.ipasis, &key).map_err(DaemonError::Client)?;
    Ok(Some(Arc::new(Pipeline::new(cfg.ipasis.clone(), client))))
}

/// The synproxy as `[synproxy]` says, its table installed and the program told; without the
/// section, a program a previous configuration left answering is switched off and the table
/// removed.
pub(super) async fn synproxy(
    cfg: &Config,
    readers: &mut [Dataplane],
) -> Option<crate::synproxy::Guard> {
    let ifaces = cfg.daemon.ifaces.clone();
    let Some(section) = cfg.synproxy.clone() else {
        let mut was_on = false;
        for dp in readers.iter_mut() {
            if dp.synproxy_config().is_ok_and(|c| c.flags != 0) {
                was_on = true;
                if let Err(e) = dp.set_synproxy(Default::default(), &[]) {
                    tracing::error!("switching the synproxy off on {}: {e}", dp.pins().iface());
                }
            }
        }
        if was_on {
            let removed = tokio::task::spawn_blocking(crate::synproxy::nft::remove).await;
            tracing::info!(
                ?removed,
                "synproxy: off ([synproxy] is gone from the configuration)"
            );
        }
        return None;
    };
    let guard =
        tokio::task::spawn_blocking(move || crate::synproxy::Guard::start(section, &ifaces))
            .await
            .ok()?;
    let (program, ports) = guard.program();
    for dp in readers.iter_mut() {
        if !dp.has_synproxy() {
            tracing::error!("synproxy: the program on {} predates it", dp.pins().iface());
        }
        if let Err(e) = dp.set_synproxy(program, ports) {
            tracing::error!("setting the synproxy on {}: {e}", dp.pins().iface());
        }
    }
    Some(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_size_is_said_with_its_setting_and_map() {
        let pinned = Capacities::default();
        assert!(size_mismatches("eth0", &pinned, &pinned).is_empty());
        let wanted = Capacities {
            block_net_v4: 50_000,
            block_net_v6: 50_000,
            ..pinned
        };
        let said = size_mismatches("eth0", &wanted, &pinned);
        assert_eq!(said.len(), 2);
        assert!(
            said[0].contains("dataplane.max_block_prefixes = 50000"),
            "{}",
            said[0]
        );
        assert!(said[0].contains("BLOCK_NET_V4 holds 16384"), "{}", said[0]);
    }
}
