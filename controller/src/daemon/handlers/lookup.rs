//! `lookup` from the cache (fresh lookups are the daemon's: they must not hold the lock).

use std::net::IpAddr;

use crate::daemon::state::State;
use crate::{decision::now_unix_ms, net::host_prefix, wire::LookupView};

/// The cached answer for an address's source unit, as `lookup` and `explain` show it.
pub fn lookup_view(state: &State, addr: IpAddr) -> Option<LookupView> {
    let a = state.cached_answer(addr)?;
    Some(LookupView {
        addr,
        source: host_prefix(addr),
        cached: true,
        age_secs: now_unix_ms().saturating_sub(a.fetched_unix_ms) / 1000,
        record: a.record,
    })
}
