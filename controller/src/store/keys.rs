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
    push_prefix(out, prefix);
    out.push('|');
    out.push_str(origin.name());
    out.push('|');
    out.push_str(source.unwrap_or(""));
}

/// Appends `prefix` as its `Display` writes it. IPv4 is written by hand: a bulk load formats a
/// million keys, and the formatter's machinery took most of the 0.16 s that cost.
fn push_prefix(out: &mut String, prefix: &IpNet) {
    let IpNet::V4(net) = prefix else {
        use std::fmt::Write as _;
        let _ = write!(out, "{prefix}");
        return;
    };
    for (i, octet) in net.addr().octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, octet);
    }
    out.push('/');
    push_decimal(out, net.prefix_len());
}

/// Appends `n` in decimal without leading zeros.
fn push_decimal(out: &mut String, n: u8) {
    if n >= 100 {
        out.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        out.push(char::from(b'0' + n / 10 % 10));
    }
    out.push(char::from(b'0' + n % 10));
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

#[cfg(test)]
mod tests {
    use ipnet::IpNet;

    /// The hand-written IPv4 form is `Display`'s, for every octet value and length.
    #[test]
    fn prefixes_are_written_as_display_writes_them() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut nets: Vec<IpNet> = (0..=255u32)
            .map(|o| IpNet::new([o as u8, 0, 9, 255].into(), (o % 33) as u8).expect("≤ 32"))
            .collect();
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed >> 40) as u8 % 33;
            nets.push(IpNet::new((seed as u32).to_be_bytes().into(), len).expect("≤ 32"));
            let v6 = std::net::Ipv6Addr::from(u128::from(seed) << 64 | u128::from(seed >> 3));
            nets.push(IpNet::new(v6.into(), len * 4 % 129).expect("≤ 128"));
        }
        nets.push("2001:db8::/64".parse().expect("a prefix"));
        nets.push("::ffff:198.51.100.0/120".parse().expect("a prefix"));
        for net in nets {
            let mut got = String::new();
            super::push_prefix(&mut got, &net);
            assert_eq!(got, net.to_string());
        }
    }
}
