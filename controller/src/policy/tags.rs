//! Feed tags (`hosting`, `tor`, `proxy`) by prefix: looked up once per heavy hitter, by prefix
//! length (one hash probe per length present), whatever the number of prefixes.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
};

use ipnet::IpNet;

use crate::config::Tag;

/// One feed's prefixes, grouped by (family, length).
#[derive(Debug, Default)]
struct PrefixSet(BTreeMap<(bool, u8), HashSet<IpNet>>);

impl PrefixSet {
    fn new(prefixes: Vec<IpNet>) -> Self {
        let mut by_len: BTreeMap<(bool, u8), HashSet<IpNet>> = BTreeMap::new();
        for p in prefixes {
            let p = p.trunc();
            by_len
                .entry((p.addr().is_ipv6(), p.prefix_len()))
                .or_default()
                .insert(p);
        }
        Self(by_len)
    }

    fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|((v6, len), set)| {
            *v6 == addr.is_ipv6() && IpNet::new(addr, *len).is_ok_and(|n| set.contains(&n.trunc()))
        })
    }
}

/// Every tagging feed's prefixes.
#[derive(Debug, Default)]
pub struct Tags(BTreeMap<String, (Tag, PrefixSet)>);

impl Tags {
    /// Replaces a feed's tagged set.
    pub fn set(&mut self, feed: String, tag: Tag, prefixes: Vec<IpNet>) {
        self.0.insert(feed, (tag, PrefixSet::new(prefixes)));
    }

    /// The tags covering an address, with the feed that gave each.
    pub fn of(&self, addr: IpAddr) -> Vec<(Tag, &str)> {
        self.0
            .iter()
            .filter(|(_, (_, set))| set.contains(addr))
            .map(|(feed, (tag, _))| (*tag, feed.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_cover_their_prefixes_only() {
        let mut t = Tags::default();
        t.set(
            "aws".into(),
            Tag::Hosting,
            vec![
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8:1000::/36".parse().unwrap(),
            ],
        );
        t.set(
            "tor".into(),
            Tag::Tor,
            vec!["198.51.100.66/32".parse().unwrap()],
        );
        let at = |t: &Tags, s: &str| {
            t.of(s.parse().unwrap())
                .into_iter()
                .map(|(tag, f)| (tag, f.to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(&t, "198.51.100.7"),
            vec![(Tag::Hosting, "aws".to_owned())]
        );
        assert_eq!(at(&t, "198.51.100.66").len(), 2);
        assert_eq!(at(&t, "2001:db8:1000:ffff::1").len(), 1);
        assert!(at(&t, "203.0.113.7").is_empty());
        assert!(at(&t, "2001:db8:2000::1").is_empty());
        t.set("aws".into(), Tag::Hosting, Vec::new());
        assert!(at(&t, "198.51.100.7").is_empty());
    }
}
