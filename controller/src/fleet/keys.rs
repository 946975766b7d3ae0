//! Key encoding in the fleet's buckets. NATS KV keys allow `[-/_=.a-zA-Z0-9]` only, and `.`
//! separates tokens: host names and source names are reduced to that alphabet without dots,
//! and prefixes (which carry `:` in IPv6 and `.` in IPv4) are written with `:` as `_`, as the
//! last part of the key so their dots do not matter.

use ipnet::IpNet;

use crate::decision::{Holder, Origin};

/// `s` in the key alphabet, without `.`: other characters become `-`; never empty.
pub fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if t.is_empty() { "-".to_owned() } else { t }
}

/// A prefix as a key part: reversible by [`prefix_of`].
pub fn prefix_part(prefix: &IpNet) -> String {
    prefix.to_string().replace(':', "_")
}

/// The prefix a key part stands for.
pub fn prefix_of(part: &str) -> Option<IpNet> {
    part.replace('_', ":").parse().ok()
}

/// The key of a host's decision: `host.origin.source.prefix` (`_` for no source name).
pub fn decision_key(host: &str, holder: &Holder, prefix: &IpNet) -> String {
    format!(
        "{}.{}.{}.{}",
        token(host),
        holder.origin.name(),
        holder
            .source
            .as_deref()
            .map_or_else(|| "_".to_owned(), token),
        prefix_part(prefix)
    )
}

/// A decision key's parts: (host token, origin, prefix).
pub fn parse_decision_key(key: &str) -> Option<(&str, Origin, IpNet)> {
    let mut parts = key.splitn(4, '.');
    let host = parts.next()?;
    let origin = parts.next()?;
    let _source = parts.next()?;
    let prefix = prefix_of(parts.next()?)?;
    let origin = Origin::ALL.into_iter().find(|o| o.name() == origin)?;
    Some((host, origin, prefix))
}

/// The key of a source unit's shared IPASIS answer (and of its lookup claim).
pub fn answer_key(source: &IpNet) -> String {
    prefix_part(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_use_the_nats_alphabet_and_round_trip() {
        let valid = |k: &str| {
            k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-/_=.".contains(c))
        };
        for (host, holder, p) in [
            ("edge-a", Holder::of(Origin::Velocity), "203.0.113.7/32"),
            (
                "edge.b:1 é",
                Holder::named(Origin::Feed, "spamhaus drop"),
                "2001:db8:2::/64",
            ),
            ("", Holder::of(Origin::Manual), "::/0"),
        ] {
            let prefix: IpNet = p.parse().unwrap();
            let key = decision_key(host, &holder, &prefix);
            assert!(valid(&key), "{key}");
            let (h, o, back) = parse_decision_key(&key).unwrap();
            assert_eq!((h, o, back), (token(host).as_str(), holder.origin, prefix));
            assert!(!h.contains('.'));
        }
        assert_eq!(token("edge.b:1 é"), "edge-b-1--");
        assert_eq!(
            answer_key(&"2001:db8:2::/64".parse().unwrap()),
            "2001_db8_2__/64"
        );
        assert!(parse_decision_key("a.nonsense._.203.0.113.7/32").is_none());
        assert!(parse_decision_key("a.manual._.not-a-prefix").is_none());
        assert!(parse_decision_key("garbage").is_none());
    }
}
