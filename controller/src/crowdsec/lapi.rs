//! What the CrowdSec local API (LAPI) sends a bouncer on `GET /v1/decisions/stream`, read
//! tolerantly and bounded: `new` and `deleted` arrays (`null` when empty), each decision with its
//! scope, value, type, origin, scenario and a Go duration.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use thiserror::Error;

/// One decision as the LAPI streams it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LapiDecision {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub scope: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub duration: String,
}

/// One answer of the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StreamAnswer {
    #[serde(default)]
    pub new: Option<Vec<LapiDecision>>,
    #[serde(default)]
    pub deleted: Option<Vec<LapiDecision>>,
}

/// Why an answer or a field could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LapiError {
    #[error("the answer is not the stream's JSON: {0}")]
    Json(String),
    #[error("`{0}` is not a Go duration")]
    Duration(String),
    #[error("`{0}` is not an address or a range")]
    Value(String),
}

impl StreamAnswer {
    pub fn parse(body: &[u8]) -> Result<Self, LapiError> {
        // serde would also read a struct from an array: only an object is the stream's answer.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(LapiError::Json("not a JSON object".into()));
        }
        serde_json::from_slice(body).map_err(|e| LapiError::Json(e.to_string()))
    }
}

/// A Go `time.Duration` string (`59m58.768371552s`, `850ms`, `1h`, `3µs`, `-1.5s`): its length,
/// `None` when zero or negative (a deleted or expired decision).
pub fn go_duration(s: &str) -> Result<Option<Duration>, LapiError> {
    let bad = || LapiError::Duration(s.chars().take(64).collect());
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(None);
    }
    if rest.is_empty() || s.len() > 64 {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * unit;
        rest = &rest[unit_len..];
    }
    if negative || total <= 0.0 || !total.is_finite() {
        return Ok(None);
    }
    Ok(Some(Duration::from_secs_f64(
        total.min(100.0 * 365.0 * 86400.0),
    )))
}

/// A decision's value as a prefix: an address (its host prefix), or a range as typed (host bits
/// kept by the LAPI are cut). IPv4-mapped IPv6 values become IPv4.
pub fn value_prefix(value: &str) -> Result<IpNet, LapiError> {
    let value = value.trim();
    let net = if value.contains('/') {
        value
            .parse::<IpNet>()
            .map_err(|_| LapiError::Value(value.chars().take(64).collect()))?
    } else {
        let addr: std::net::IpAddr = value
            .parse()
            .map_err(|_| LapiError::Value(value.chars().take(64).collect()))?;
        IpNet::from(addr)
    };
    Ok(crate::net::unmap(net).trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_the_lapi_writes_them() {
        let ms = |s| go_duration(s).unwrap().map(|d| d.as_millis());
        assert_eq!(ms("59m58.768371552s"), Some(3_598_768));
        assert_eq!(ms("850ms"), Some(850));
        assert_eq!(ms("1h"), Some(3_600_000));
        assert_eq!(ms("1h2m3.5s"), Some(3_723_500));
        assert_eq!(go_duration("3µs").unwrap(), Some(Duration::from_micros(3)));
        assert_eq!(go_duration("-1m2.5s").unwrap(), None);
        assert_eq!(go_duration("0").unwrap(), None);
        for bad in ["", "5", "m", "1x", "1.2.3s", "--1s", &"9".repeat(100)] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn streams_with_nulls_and_values_of_every_shape() {
        let a = StreamAnswer::parse(br#"{"deleted":null,"new":null}"#).unwrap();
        assert_eq!(a, StreamAnswer::default());
        let a = StreamAnswer::parse(
            br#"{"deleted":[],"new":[{"duration":"29m59.7s","id":2,"origin":"cscli","scenario":"manual 'captcha' from 'x'","scope":"Range","type":"captcha","value":"203.0.113.9/29","extra":1}]}"#,
        )
        .unwrap();
        let d = &a.new.unwrap()[0];
        assert_eq!((d.kind.as_str(), d.scope.as_str()), ("captcha", "Range"));
        assert!(StreamAnswer::parse(b"<html>").is_err());
        assert!(StreamAnswer::parse(b"[]").is_err());
        let p = |s| value_prefix(s).unwrap().to_string();
        assert_eq!(p("203.0.113.9/29"), "203.0.113.8/29");
        assert_eq!(p("::ffff:198.51.100.15"), "198.51.100.15/32");
        assert_eq!(p("::ffff:c633:640f"), "198.51.100.15/32");
        assert_eq!(p("2001:db8::1"), "2001:db8::1/128");
        assert!(value_prefix("example.com").is_err());
    }
}
