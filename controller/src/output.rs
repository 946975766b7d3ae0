//! What the CLI prints: serde views (the `--json` schema, documented in docs/json.md) and aligned
//! tables for people.

use std::fmt::Write as _;

use ipwarden_common::{Action, GlobalCounter, SrcStats};
use serde::Serialize;

use crate::{
    clock,
    dataplane::{BlockRule, GlobalCounters, SourceV4, SourceV6},
};

/// One block entry in `list --json`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BlockView {
    pub prefix: String,
    pub action: &'static str,
    pub reason: &'static str,
    /// Seconds until expiry; `null` when permanent.
    pub expires_in_secs: Option<u64>,
    /// Past its deadline: the kernel already ignores it.
    pub expired: bool,
}

impl From<&BlockRule> for BlockView {
    fn from(rule: &BlockRule) -> Self {
        let remaining = clock::remaining(rule.entry.expires_at_ns);
        Self {
            prefix: rule.net.to_string(),
            action: action_name(rule.entry.action),
            reason: reason_name(rule.entry.reason),
            expires_in_secs: remaining.map(|d| d.as_secs()),
            expired: remaining.is_some_and(|d| d.is_zero()),
        }
    }
}

/// Stable name of an action code.
pub fn action_name(action: u8) -> &'static str {
    match action {
        Action::BLOCK => "block",
        Action::CHALLENGE => "challenge",
        Action::PASS => "pass",
        _ => "unknown",
    }
}

/// Stable name of a reason code: the origin it stands for.
pub fn reason_name(reason: u32) -> &'static str {
    crate::decision::Origin::from_reason_code(reason).map_or("unspecified", |o| o.name())
}

/// One source in `stats --json`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SourceView {
    /// `a.b.c.d` for IPv4, the /64 for IPv6.
    pub source: String,
    /// IPv6 only: the latest full address seen in the /64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_addr: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    pub syn: u64,
    pub first_seen_secs_ago: u64,
}

impl SourceView {
    fn new(source: String, last_addr: Option<String>, s: &SrcStats) -> Self {
        Self {
            source,
            last_addr,
            packets: s.packets,
            bytes: s.bytes,
            syn: s.syn,
            first_seen_secs_ago: clock::age(s.first_seen_ns).as_secs(),
        }
    }
}

impl From<&SourceV4> for SourceView {
    fn from(s: &SourceV4) -> Self {
        Self::new(s.addr.to_string(), None, &s.stats)
    }
}

impl From<&SourceV6> for SourceView {
    fn from(s: &SourceV6) -> Self {
        Self::new(s.net.to_string(), Some(s.last_addr.to_string()), &s.stats)
    }
}

/// `stats --json`.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub iface: String,
    pub monitor: bool,
    /// Global counters by name (`seen`, `passed`, `dropped`, `allowed`, `not_ip`, `malformed`,
    /// `monitored`).
    pub counters: std::collections::BTreeMap<&'static str, u64>,
    /// Sources tracked now, per family.
    pub tracked_v4: usize,
    pub tracked_v6: usize,
    /// The busiest sources by packets, both families merged.
    pub top: Vec<SourceView>,
}

/// Global counters as a name → value map.
pub fn counters_by_name(g: &GlobalCounters) -> std::collections::BTreeMap<&'static str, u64> {
    GlobalCounter::ALL
        .iter()
        .map(|c| (c.name(), g.get(*c)))
        .collect()
}

/// Renders rows as a left-aligned table with a header, two spaces between columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{cell:<w$}");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["PREFIX", "REASON"],
            &[
                vec!["203.0.113.7/32".into(), "manual".into()],
                vec!["2001:db8:2::/64".into(), "velocity".into()],
            ],
        );
        assert_eq!(
            t,
            "PREFIX           REASON\n203.0.113.7/32   manual\n2001:db8:2::/64  velocity\n"
        );
    }

    #[test]
    fn unknown_codes_have_names() {
        assert_eq!(reason_name(999), "unspecified");
        assert_eq!(action_name(0), "unknown");
    }
}
