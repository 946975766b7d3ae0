//! One IP-intelligence answer, read tolerantly from the shapes IPASIS has published.
//!
//! Shape A nests capitalised flags under `privacy` (`privacy.Tor`), shape B has flat
//! `is_tor`-style booleans; the ASN is `"AS64500"` or `64500`, under `asn.ASN`, `asn.asn`,
//! `asn.number` or a top-level `asn`; the operator is `company.Name`/`company.name`, else
//! `asn.Name`/`asn.name`, else a flat `isp`. A flag that is absent is *unknown*, not false.
//! Unknown fields are ignored. Anything that is not a JSON object is an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// A tri-state flag: `None` when the answer did not say.
pub type Flag = Option<bool>;

/// What IPASIS says about one address (one IPv6 /64).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub tor: Flag,
    pub vpn: Flag,
    pub proxy: Flag,
    pub hosting: Flag,
    pub crawler: Flag,
    pub relay: Flag,
    pub abuse: Flag,
    pub asn: Option<u32>,
    pub operator: Option<String>,
    pub country: Option<String>,
}

/// A body that cannot be read as an answer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// Not JSON (an HTML error page, a truncated body, invalid UTF-8, too deeply nested).
    #[error("response is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("response is JSON but not an object")]
    NotObject,
    /// A field has a type no published shape uses.
    #[error("response field `{field}` has an unexpected type")]
    Field { field: &'static str },
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .filter(|v| !v.is_null())
}

/// The first of `paths` present, as a bool; a present non-bool is an error.
fn flag(v: &Value, field: &'static str, paths: &[&[&str]]) -> Result<Flag, RecordError> {
    for path in paths {
        if let Some(x) = get(v, path) {
            return match x {
                Value::Bool(b) => Ok(Some(*b)),
                _ => Err(RecordError::Field { field }),
            };
        }
    }
    Ok(None)
}

fn text(v: &Value, paths: &[&[&str]]) -> Option<String> {
    paths
        .iter()
        .filter_map(|p| get(v, p))
        .filter_map(Value::as_str)
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}

fn asn(v: &Value) -> Result<Option<u32>, RecordError> {
    let candidates: [&[&str]; 5] = [
        &["asn", "ASN"],
        &["asn", "asn"],
        &["asn", "number"],
        &["asn", "Number"],
        &["asn"],
    ];
    for path in candidates {
        match get(v, path) {
            None | Some(Value::Object(_)) => continue,
            Some(Value::Number(n)) => {
                return n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or(RecordError::Field { field: "asn" });
            }
            Some(Value::String(s)) => {
                let digits = s.trim().trim_start_matches("AS").trim_start_matches("as");
                if digits.is_empty() {
                    return Ok(None);
                }
                return digits
                    .parse()
                    .map(Some)
                    .map_err(|_| RecordError::Field { field: "asn" });
            }
            Some(_) => return Err(RecordError::Field { field: "asn" }),
        }
    }
    Ok(None)
}

impl Record {
    /// Parses a response body.
    pub fn parse(body: &[u8]) -> Result<Self, RecordError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| RecordError::NotJson(e.to_string()))?;
        if !v.is_object() {
            return Err(RecordError::NotObject);
        }
        Ok(Self {
            tor: flag(
                &v,
                "tor",
                &[&["privacy", "Tor"], &["privacy", "tor"], &["is_tor"]],
            )?,
            vpn: flag(
                &v,
                "vpn",
                &[&["privacy", "VPN"], &["privacy", "vpn"], &["is_vpn"]],
            )?,
            proxy: flag(
                &v,
                "proxy",
                &[&["privacy", "Proxy"], &["privacy", "proxy"], &["is_proxy"]],
            )?,
            hosting: flag(
                &v,
                "hosting",
                &[
                    &["privacy", "Hosting"],
                    &["privacy", "hosting"],
                    &["is_hosting"],
                ],
            )?,
            crawler: flag(
                &v,
                "crawler",
                &[
                    &["privacy", "Crawler"],
                    &["privacy", "crawler"],
                    &["is_crawler"],
                ],
            )?,
            relay: flag(
                &v,
                "relay",
                &[&["privacy", "Relay"], &["privacy", "relay"], &["is_relay"]],
            )?,
            abuse: flag(
                &v,
                "abuse",
                &[&["privacy", "Abuse"], &["privacy", "abuse"], &["is_abuse"]],
            )?,
            asn: asn(&v)?,
            operator: text(
                &v,
                &[
                    &["company", "Name"],
                    &["company", "name"],
                    &["asn", "Name"],
                    &["asn", "name"],
                    &["isp"],
                ],
            ),
            country: text(&v, &[&["country"], &["country_code"]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE_A: &str = r#"{ "ip": "203.0.113.7", "city": "x", "country": "US",
      "asn": { "ASN": "AS64500", "Name": "EXAMPLE-NET", "Route": "203.0.113.0/24", "Type": "hosting" },
      "company": { "Name": "Example Hosting Ltd", "Domain": "example.net", "Type": "hosting" },
      "privacy": { "VPN": false, "Proxy": false, "Tor": true, "Relay": false, "Hosting": true,
                   "Abuse": false, "AI": false, "Crawler": false, "Service": "" } }"#;

    const SHAPE_B: &str = r#"{ "ip": "203.0.113.7", "is_tor": true, "is_vpn": false,
      "asn": { "number": 64500, "name": "EXAMPLE-NET" },
      "company": { "name": "Example Hosting Ltd", "domain": "example.net" },
      "abuse": { "score": 87 } }"#;

    #[test]
    fn shape_a_nested_capitalised() {
        let r = Record::parse(SHAPE_A.as_bytes()).unwrap();
        assert_eq!(r.tor, Some(true));
        assert_eq!(r.hosting, Some(true));
        assert_eq!(r.vpn, Some(false));
        assert_eq!(r.crawler, Some(false));
        assert_eq!(r.asn, Some(64500));
        assert_eq!(r.operator.as_deref(), Some("Example Hosting Ltd"));
        assert_eq!(r.country.as_deref(), Some("US"));
    }

    #[test]
    fn shape_b_flat_with_unknowns() {
        let r = Record::parse(SHAPE_B.as_bytes()).unwrap();
        assert_eq!((r.tor, r.vpn), (Some(true), Some(false)));
        // Not mentioned: unknown, not false. (`abuse` here is an object about a score, not the flag.)
        assert_eq!((r.proxy, r.hosting, r.crawler), (None, None, None));
        assert_eq!(r.abuse, None);
        assert_eq!(r.asn, Some(64500));
        assert_eq!(r.operator.as_deref(), Some("Example Hosting Ltd"));
    }

    #[test]
    fn operator_falls_back_to_the_asn_name_then_isp() {
        let r = Record::parse(br#"{"asn":{"ASN":"AS1","Name":"NET-ONE"}}"#).unwrap();
        assert_eq!(r.operator.as_deref(), Some("NET-ONE"));
        let r = Record::parse(br#"{"isp":"Some ISP","is_hosting":true}"#).unwrap();
        assert_eq!(r.operator.as_deref(), Some("Some ISP"));
        assert_eq!(r.hosting, Some(true));
        let r = Record::parse(br#"{"asn":"AS7"}"#).unwrap();
        assert_eq!(r.asn, Some(7));
    }

    #[test]
    fn an_empty_object_knows_nothing() {
        assert_eq!(Record::parse(b"{}").unwrap(), Record::default());
    }

    #[test]
    fn bad_bodies_are_errors() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for bad in [
            &b"<html><body>502 Bad Gateway</body></html>"[..],
            b"{\"privacy\": {\"Tor\": tru",
            b"",
            b"\xff\xfe{}",
            b"[1,2,3]",
            b"\"a string\"",
            deep.as_bytes(),
        ] {
            assert!(
                Record::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            Record::parse(br#"{"privacy":{"Tor":"yes"}}"#),
            Err(RecordError::Field { field: "tor" })
        );
        assert_eq!(
            Record::parse(br#"{"asn":{"ASN":"ASnope"}}"#),
            Err(RecordError::Field { field: "asn" })
        );
    }
}
