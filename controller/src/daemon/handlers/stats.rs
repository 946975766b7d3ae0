//! `stats`: every interface's global counters.

use ipwarden_common::GlobalCounter;

use crate::daemon::state::State;
use crate::wire::{InterfaceStats, OriginDrops, UNRECORDED_SIGNATURES};

/// The counters of every interface, or which interface could not be read. The synproxy's are
/// among them when `[synproxy]` is configured.
pub fn stats(state: &State) -> Result<Vec<InterfaceStats>, String> {
    let synproxy: std::collections::BTreeMap<String, _> = if state.synproxy.is_some() {
        state
            .engine
            .planes()
            .iter()
            .filter_map(|p| Some((p.iface.clone(), p.enforcer.synproxy_counts()?)))
            .collect()
    } else {
        Default::default()
    };
    let by_iface = state.engine.planes().globals().map_err(|f| {
        format!(
            "reading {}: {}",
            f.iface,
            crate::engine::error_chain(&f.error)
        )
    })?;
    Ok(by_iface
        .into_iter()
        .map(|(iface, g)| InterfaceStats {
            counters: GlobalCounter::ALL
                .iter()
                .map(|c| (c.name().to_owned(), g.get(*c)))
                .chain([(UNRECORDED_SIGNATURES.to_owned(), g.2)])
                .chain(
                    synproxy
                        .get(&iface)
                        .map(|c| c.named())
                        .into_iter()
                        .flatten()
                        .map(|(name, n)| (name.to_owned(), n)),
                )
                .collect(),
            iface,
            dropped_by_origin: g
                .1
                .iter()
                .enumerate()
                .filter(|(_, d)| d.packets > 0)
                .map(|(code, d)| OriginDrops {
                    origin: crate::output::reason_name(code as u32).to_owned(),
                    packets: d.packets,
                    bytes: d.bytes,
                })
                .collect(),
        })
        .collect())
}
