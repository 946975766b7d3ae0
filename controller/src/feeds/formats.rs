//! The feed formats: a feed's body in, its prefixes out, with every line (or element) that
//! cannot be read counted and skipped (the first [`KEPT`] kept with their numbers: a 64 MiB
//! body of junk is two million bad lines, which would take gigabytes to keep). Bodies are
//! bounded by the fetcher.

use ipnet::IpNet;
use serde_json::Value;

use crate::{
    config::Format,
    net::{parse_prefix, unmap},
};

/// A line or element that was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bad {
    pub line: usize,
    pub why: String,
}

/// Skipped lines kept with their reason; the others are only counted.
pub const KEPT: usize = 10;

/// What a body held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub prefixes: Vec<IpNet>,
    /// The first [`KEPT`] skipped lines.
    pub bad: Vec<Bad>,
    /// Every skipped line.
    pub bad_count: usize,
}

impl Parsed {
    fn skip(&mut self, line: usize, why: impl FnOnce() -> String) {
        self.bad_count += 1;
        if self.bad.len() < KEPT {
            self.bad.push(Bad { line, why: why() });
        }
    }

    fn push(&mut self, line: usize, text: &str) {
        match parse_prefix(text.trim()) {
            Ok(p) => self.prefixes.push(unmap(p)),
            Err(_) => self.skip(line, || {
                format!("`{}` is not an address or prefix", short(text))
            }),
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Reads `body` as `format`.
pub fn parse(format: Format, body: &str) -> Parsed {
    let mut p = match format {
        Format::CidrList => lines(body, |l| l.split_whitespace().next().map(str::to_owned)),
        Format::SpamhausDrop => spamhaus(body),
        Format::TorExitList => lines(body, |l| {
            let mut t = l.split_whitespace();
            match t.next()? {
                "ExitAddress" => t.next().map(str::to_owned),
                "ExitNode" | "Published" | "LastStatus" => None,
                first => Some(first.to_owned()),
            }
        }),
        Format::AwsIpRanges => json_fields(
            body,
            &[("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")],
        ),
        Format::GcpCloud => json_fields(
            body,
            &[("prefixes", "ipv4Prefix"), ("prefixes", "ipv6Prefix")],
        ),
    };
    p.prefixes.sort();
    p.prefixes.dedup();
    p
}

/// Text lines: comments (`#`, `;`) and blank lines skipped, `pick` finds the address.
fn lines(body: &str, pick: impl Fn(&str) -> Option<String>) -> Parsed {
    let mut p = Parsed::default();
    for (i, raw) in body.lines().enumerate() {
        let line = raw.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(addr) = pick(line) {
            p.push(i + 1, &addr);
        }
    }
    p
}

fn spamhaus(body: &str) -> Parsed {
    let mut p = Parsed::default();
    for (i, raw) in body.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if line.starts_with('{') {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => match v.get("cidr").and_then(Value::as_str) {
                    Some(c) => p.push(i + 1, c),
                    // The metadata line (`"type":"metadata"`) carries no prefix.
                    None if v.get("type").is_some() => {}
                    None => p.skip(i + 1, || "a JSON line without `cidr`".into()),
                },
                Err(e) => p.skip(i + 1, || format!("not JSON: {e}")),
            }
        } else {
            // `PREFIX ; SBLID`: everything before the `;` is the prefix.
            let first = line.split(';').next().unwrap_or("").trim();
            p.push(i + 1, first);
        }
    }
    p
}

/// A JSON document whose prefixes sit in arrays of objects (`array[].field`).
fn json_fields(body: &str, fields: &[(&str, &str)]) -> Parsed {
    let mut p = Parsed::default();
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            p.skip(e.line(), || format!("not JSON: {e}"));
            return p;
        }
    };
    for (array, field) in fields {
        let Some(items) = v.get(array).and_then(Value::as_array) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = item.get(field).and_then(Value::as_str) {
                p.push(i + 1, s);
            } else if fields
                .iter()
                .all(|(a, f)| *a != *array || item.get(f).is_none())
            {
                p.skip(i + 1, || {
                    format!("`{array}` element {} has no `{field}`", i + 1)
                });
            }
        }
    }
    if p.prefixes.is_empty() && p.bad_count == 0 {
        p.skip(1, || {
            format!(
                "no `{}` array",
                fields
                    .iter()
                    .map(|(a, _)| *a)
                    .collect::<Vec<_>>()
                    .join("` or `")
            )
        });
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(p: &Parsed) -> Vec<String> {
        p.prefixes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn cidr_lists_with_comments_and_a_bad_line() {
        let p = parse(
            Format::CidrList,
            "# my list\n203.0.113.0/24  # office\n198.51.100.7\n; note\nnope\n2001:db8:2::1\n",
        );
        assert_eq!(
            strs(&p),
            ["198.51.100.7/32", "203.0.113.0/24", "2001:db8:2::/64"]
        );
        assert_eq!(
            p.bad,
            vec![Bad {
                line: 5,
                why: "`nope` is not an address or prefix".into()
            }]
        );
    }

    #[test]
    fn spamhaus_drop_text_and_json_lines() {
        let text = "; Spamhaus DROP List\n203.0.113.0/24 ; SBL1\n198.51.100.0/22 ; SBL2\n";
        assert_eq!(
            strs(&parse(Format::SpamhausDrop, text)),
            ["198.51.100.0/22", "203.0.113.0/24"]
        );
        let json = "{\"cidr\":\"203.0.113.0/24\",\"sblid\":\"SBL1\",\"rir\":\"ripencc\"}\n{\"cidr\":\"2001:db8:8::/48\",\"sblid\":\"SBL3\"}\n{\"type\":\"metadata\",\"timestamp\":1}\n{\"cidr\":\"x\"}\n{broken\n";
        let p = parse(Format::SpamhausDrop, json);
        assert_eq!(strs(&p), ["203.0.113.0/24", "2001:db8:8::/48"]);
        assert_eq!(p.bad.iter().map(|b| b.line).collect::<Vec<_>>(), [4, 5]);
    }

    #[test]
    fn tor_exit_lists_bulk_and_detailed() {
        assert_eq!(
            strs(&parse(Format::TorExitList, "203.0.113.66\n203.0.113.67\n")).len(),
            2
        );
        let detailed = "ExitNode 0011BD\nPublished 2024-01-01 00:00:00\nLastStatus 2024-01-01 01:00:00\nExitAddress 203.0.113.66 2024-01-01 01:02:03\n";
        assert_eq!(
            strs(&parse(Format::TorExitList, detailed)),
            ["203.0.113.66/32"]
        );
    }

    #[test]
    fn cloud_ranges_json() {
        let aws = r#"{"syncToken":"1","prefixes":[{"ip_prefix":"198.51.100.0/24","region":"x","service":"EC2"},{"ip_prefix":"bad"}],"ipv6_prefixes":[{"ipv6_prefix":"2001:db8:1000::/36"}]}"#;
        let p = parse(Format::AwsIpRanges, aws);
        assert_eq!(strs(&p), ["198.51.100.0/24", "2001:db8:1000::/36"]);
        assert_eq!(p.bad.len(), 1);
        let gcp = r#"{"prefixes":[{"ipv4Prefix":"203.0.113.0/25","service":"Google Cloud"},{"ipv6Prefix":"2001:db8:2000::/40"}]}"#;
        assert_eq!(
            strs(&parse(Format::GcpCloud, gcp)),
            ["203.0.113.0/25", "2001:db8:2000::/40"]
        );
        let p = parse(Format::GcpCloud, "<html>");
        assert!(p.prefixes.is_empty() && p.bad[0].why.contains("not JSON"));
        assert!(
            parse(Format::AwsIpRanges, "{}").bad[0]
                .why
                .contains("no `prefixes`")
        );
    }

    #[test]
    fn junk_lines_are_counted_and_only_the_first_few_kept() {
        let body = "junk line\n".repeat(100_000) + "203.0.113.0/24\n";
        let p = parse(Format::CidrList, &body);
        assert_eq!(strs(&p), ["203.0.113.0/24"]);
        assert_eq!(p.bad_count, 100_000);
        assert_eq!(p.bad.len(), KEPT);
        assert_eq!(p.bad[0].line, 1);
    }
}
