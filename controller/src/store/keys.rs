//! The tables' keys: a decision's (`prefix|origin|source`) and an ended one's in the history.

use ipnet::IpNet;

use crate::decision::{Ended, Holder, Origin, Text};

/// The key of a decision: its prefix and holder (`prefix|origin|source`). The prefix leads so
/// that one prefix's holders are neighbours.
pub fn decision_key(prefix: &IpNet, holder: &Holder) -> String {
    let mut key = String::new();
    push_decision_key(&mut key, prefix, holder.origin, holder.source.as_deref());
    key
}

/// Appends [`decision_key`] to `out`.
pub(super) fn push_decision_key(
    out: &mut String,
    prefix: &IpNet,
    origin: Origin,
    source: Option<&str>,
) {
    use std::fmt::Write as _;
    let _ = write!(out, "{prefix}|{}|{}", origin.name(), source.unwrap_or(""));
}

/// The key of an ended decision: `prefix|ended ms (20 digits)|origin|source`, so a prefix's
/// history is one range, in time order.
pub(super) fn history_key(e: &Ended) -> String {
    let d = &e.decision;
    format!(
        "{}|{:020}|{}|{}",
        d.prefix,
        e.ended_unix_ms,
        d.origin.name(),
        d.source.as_deref().unwrap_or("")
    )
}

/// The ended time inside a history key.
pub(super) fn history_key_ms(key: &str) -> Option<u64> {
    key.split('|').nth(1)?.parse().ok()
}

/// The prefix and holder a [`decision_key`] names.
pub(super) fn key_parts(key: &str) -> Result<(IpNet, Holder), &'static str> {
    let mut parts = key.splitn(3, '|');
    let prefix = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("its key names no prefix")?;
    let origin = parts
        .next()
        .and_then(|o| Origin::ALL.into_iter().find(|x| x.name() == o))
        .ok_or("its key names no known origin")?;
    let source = parts.next().ok_or("its key names no source")?;
    let holder = Holder {
        origin,
        source: (!source.is_empty()).then(|| Text::from(source)),
    };
    Ok((prefix, holder))
}
