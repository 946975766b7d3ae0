//! What `ipwarden import` reads: plain prefix lines (with `#` comments), CSV (the first column
//! that is an address or prefix), `cscli decisions list -o json` (alerts with their decisions, or
//! bare decisions) and `ipwarden export --json` / `list --json`. Bad lines are reported with their
//! number and skipped; nothing else is lost.

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::{decision::Action, net::parse_prefix, wire::ImportEntry as Entry};

/// An entry with nothing but its prefix.
fn entry_of(prefix: IpNet) -> Entry {
    Entry {
        prefix,
        action: None,
        ttl_secs: None,
        reason: None,
    }
}

/// A line (or JSON element) that was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line (text) or element (JSON) number.
    pub at: usize,
    pub why: String,
}

/// What was read.
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    /// Each entry's 1-based line (text) or element (JSON) number.
    pub lines: Vec<usize>,
    pub skipped: Vec<Skipped>,
}

impl Parsed {
    fn push(&mut self, at: usize, e: Entry) {
        self.entries.push(e);
        self.lines.push(at);
    }

    /// The lines of the entries for `prefix`.
    pub fn lines_of(&self, prefix: &IpNet) -> impl Iterator<Item = usize> + '_ {
        let prefix = *prefix;
        self.entries
            .iter()
            .zip(&self.lines)
            .filter(move |(e, _)| e.prefix == prefix)
            .map(|(_, l)| *l)
    }
}

/// Header names of a CSV column read as the entry's reason.
const REASON_COLUMNS: [&str; 4] = ["reason", "scenario", "comment", "description"];

fn csv_fields(line: &str) -> impl Iterator<Item = &str> {
    line.split([',', ';', '\t'])
        .map(|f| f.trim().trim_matches('"'))
}

/// Reads any of the supported shapes.
pub fn parse(text: &str) -> Parsed {
    match text.trim_start().as_bytes().first() {
        Some(b'[') | Some(b'{') => match serde_json::from_str::<Value>(text) {
            Ok(v) => json(v),
            // Not one JSON document: JSON lines.
            Err(_) => json_lines(text),
        },
        _ => lines(text),
    }
}

fn lines(text: &str) -> Parsed {
    let mut out = Parsed::default();
    // A CSV header's reason column, if it names one.
    let mut reason_at: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let found = line
            .split([',', ';', '\t', ' '])
            .map(|f| f.trim().trim_matches('"'))
            .find_map(|f| parse_prefix(f).ok());
        match found {
            Some(p) => {
                let mut e = entry_of(p);
                e.reason = reason_at
                    .and_then(|c| csv_fields(line).nth(c))
                    .filter(|r| !r.is_empty())
                    .map(|r| r.chars().take(256).collect());
                out.push(i + 1, e);
            }
            // A CSV header names no address: skipped quietly, its reason column noted.
            None if i == 0 && line.contains(',') => {
                reason_at = csv_fields(line)
                    .position(|f| REASON_COLUMNS.contains(&f.to_ascii_lowercase().as_str()));
            }
            None => out.skipped.push(Skipped {
                at: i + 1,
                why: format!("no address or prefix in `{}`", short(line)),
            }),
        }
    }
    out
}

fn json_lines(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => element(&v, i + 1, &mut out),
            Err(e) => out.skipped.push(Skipped {
                at: i + 1,
                why: format!("not JSON: {e}"),
            }),
        }
    }
    out
}

fn json(v: Value) -> Parsed {
    let mut out = Parsed::default();
    let items = match v {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("decisions") {
            Some(Value::Array(items)) => items,
            _ => vec![Value::Object(o)],
        },
        _ => Vec::new(),
    };
    for (i, item) in items.iter().enumerate() {
        element(item, i + 1, &mut out);
    }
    out
}

/// One JSON element: ours (`prefix`), a CrowdSec decision (`value`), or a CrowdSec alert with
/// its `decisions`.
fn element(v: &Value, at: usize, out: &mut Parsed) {
    if let Some(Value::Array(ds)) = v.get("decisions") {
        for d in ds {
            element(d, at, out);
        }
        return;
    }
    let skip = |why: String| Skipped { at, why };
    if v.get("prefix").is_some() {
        match serde_json::from_value::<ExportedDecision>(v.clone()) {
            Ok(d) => out.push(
                at,
                Entry {
                    prefix: crate::net::unmap(d.prefix).trunc(),
                    action: Some(d.action),
                    ttl_secs: d
                        .expires_unix_ms
                        .map(|e| e.saturating_sub(crate::decision::now_unix_ms()) / 1000),
                    reason: Some(d.reason),
                },
            ),
            Err(e) => out.skipped.push(skip(format!("not a decision: {e}"))),
        }
        return;
    }
    let Some(value) = v.get("value").and_then(Value::as_str) else {
        out.skipped.push(skip("no `prefix` or `value`".into()));
        return;
    };
    let prefix = match crate::crowdsec::lapi::value_prefix(value) {
        Ok(p) => p,
        Err(e) => {
            out.skipped.push(skip(e.to_string()));
            return;
        }
    };
    let ttl = v
        .get("duration")
        .and_then(Value::as_str)
        .and_then(|d| crate::crowdsec::lapi::go_duration(d).ok().flatten());
    let action = match v.get("type").and_then(Value::as_str) {
        Some("captcha") => Some(Action::Challenge),
        _ => Some(Action::Block),
    };
    out.push(
        at,
        Entry {
            prefix,
            action,
            ttl_secs: ttl.map(|t| t.as_secs().max(1)),
            reason: v
                .get("scenario")
                .and_then(Value::as_str)
                .map(|s| s.chars().take(256).collect()),
        },
    );
}

/// The fields of an exported decision that import keeps.
#[derive(Deserialize)]
struct ExportedDecision {
    prefix: IpNet,
    action: Action,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    expires_unix_ms: Option<u64>,
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::decision::{Decision, Holder};

    fn prefixes(p: &Parsed) -> Vec<String> {
        p.entries.iter().map(|e| e.prefix.to_string()).collect()
    }

    #[test]
    fn plain_lines_with_comments_and_bad_lines_numbered() {
        let p = parse(
            "# a list\n203.0.113.7\n198.51.100.0/24 ; DROP ref\n\nnot-an-ip\n2001:db8:2::9\n::ffff:192.0.2.9\n",
        );
        assert_eq!(
            prefixes(&p),
            [
                "203.0.113.7/32",
                "198.51.100.0/24",
                "2001:db8:2::/64",
                "192.0.2.9/32"
            ]
        );
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].at, 5);
        assert!(p.skipped[0].why.contains("not-an-ip"));
    }

    #[test]
    fn csv_takes_the_first_address_column_and_skips_the_header() {
        let p = parse(
            "id,source,ip,reason\n1,crowdsec,203.0.113.7,ssh-bf\n2,cscli,\"198.51.100.9\",x\n3,cscli,,y\n",
        );
        assert_eq!(prefixes(&p), ["203.0.113.7/32", "198.51.100.9/32"]);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].at, 4);
        // The header's reason column is the entries' reason; lines are remembered.
        assert_eq!(p.entries[0].reason.as_deref(), Some("ssh-bf"));
        assert_eq!(p.entries[1].reason.as_deref(), Some("x"));
        assert_eq!(p.lines, [2, 3]);
        assert_eq!(
            p.lines_of(&"198.51.100.9/32".parse().unwrap())
                .collect::<Vec<_>>(),
            [3]
        );
        // Without a reason column, none.
        let p = parse("ip,count\n203.0.113.7,5\n");
        assert_eq!(p.entries[0].reason, None);
    }

    #[test]
    fn cscli_json_alerts_and_decisions() {
        let alerts = r#"[{"id":1,"scenario":"ssh-bf","decisions":[{"value":"203.0.113.7","scope":"Ip","type":"ban","duration":"3h59m","scenario":"crowdsecurity/ssh-bf"},{"value":"203.0.113.8/30","scope":"Range","type":"captcha","duration":"1h"}]}]"#;
        let p = parse(alerts);
        assert_eq!(prefixes(&p), ["203.0.113.7/32", "203.0.113.8/30"]);
        assert_eq!(p.entries[0].ttl_secs, Some(3 * 3600 + 59 * 60));
        assert_eq!(p.entries[1].action, Some(Action::Challenge));
        assert_eq!(p.entries[0].reason.as_deref(), Some("crowdsecurity/ssh-bf"));
        let p = parse(r#"[{"value":"nonsense"},{"nothing":1}]"#);
        assert!(p.entries.is_empty());
        assert_eq!(p.skipped.iter().map(|s| s.at).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn our_export_round_trips() {
        let d = Decision::block(
            "198.51.100.0/24".parse().unwrap(),
            Holder::of(crate::decision::Origin::Manual),
            "seen in logs",
            crate::decision::now_unix_ms(),
            Some(Duration::from_secs(3600)),
        );
        let export = serde_json::json!({ "type": "decisions", "decisions": [d] }).to_string();
        let p = parse(&export);
        assert_eq!(prefixes(&p), ["198.51.100.0/24"]);
        let e = &p.entries[0];
        assert_eq!(e.reason.as_deref(), Some("seen in logs"));
        assert!(
            e.ttl_secs.is_some_and(|t| (3590..=3600).contains(&t)),
            "{e:?}"
        );
        // JSON lines too.
        let p = parse(&format!(
            "{}\n{{\"prefix\":\"bad\"}}\n",
            serde_json::to_string(&d).unwrap()
        ));
        assert_eq!(prefixes(&p), ["198.51.100.0/24"]);
        assert_eq!(p.skipped[0].at, 2);
    }
}
