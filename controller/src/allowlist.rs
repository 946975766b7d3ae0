//! The effective allowlist: prefixes that are never blocked, each with where it came from.
//!
//! Built-in and configured entries come from the configuration, protected ones (default
//! gateways, the IPASIS API's addresses) from the daemon's own lookups, runtime ones from
//! `ipwarden allow add` (stored). The kernel passes an allowlisted source even when a block
//! entry matches it; the engine also refuses to make such a block in the first place.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Where an allowlist entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowOrigin {
    /// `ipwarden allow add` (stored; removable at runtime).
    Runtime,
    /// Default gateways and the API's addresses, found at start.
    Protected,
    /// Loopback and link-local (`allow.builtin`).
    Builtin,
    /// `allow.prefixes` in the configuration file.
    Config,
}

impl AllowOrigin {
    /// Stable lower-case name (its serde name).
    pub fn name(self) -> &'static str {
        crate::names::of(&self)
    }
}

impl fmt::Display for AllowOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether two prefixes share any address: they agree on the shorter one's bits. Asked for
/// every allowlist entry of every decision proposed, so it compares integers.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let len = a.prefix_len().min(b.prefix_len());
    match (a, b) {
        (IpNet::V4(a), IpNet::V4(b)) => {
            let differ = (a.addr().to_bits() ^ b.addr().to_bits()).checked_shr(32 - u32::from(len));
            differ.unwrap_or(0) == 0
        }
        (IpNet::V6(a), IpNet::V6(b)) => {
            let differ =
                (a.addr().to_bits() ^ b.addr().to_bits()).checked_shr(128 - u32::from(len));
            differ.unwrap_or(0) == 0
        }
        _ => false,
    }
}

/// The addresses never to block right now (found by the daemon in the routes and DNS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protected {
    pub prefixes: Vec<IpNet>,
    /// Whether a default gateway was found (if not, `status` warns).
    pub gateway_found: bool,
}

/// The three kinds of entry, kept apart so each is replaced on its own (a reload replaces the
/// configured ones, a route change the protected ones).
#[derive(Debug, Default)]
pub struct Allowlist {
    configured: Vec<(IpNet, AllowOrigin)>,
    protected: Vec<IpNet>,
    runtime: BTreeSet<IpNet>,
}

impl Allowlist {
    /// Replaces the entries from the configuration.
    pub fn set_configured(&mut self, entries: Vec<(IpNet, AllowOrigin)>) {
        self.configured = entries;
    }

    /// Replaces the protected addresses' prefixes.
    pub fn set_protected(&mut self, prefixes: Vec<IpNet>) {
        self.protected = prefixes;
    }

    /// The protected addresses' prefixes.
    pub fn protected(&self) -> &[IpNet] {
        &self.protected
    }

    /// Replaces the runtime entries (at restore).
    pub fn set_runtime(&mut self, prefixes: impl IntoIterator<Item = IpNet>) {
        self.runtime = prefixes.into_iter().collect();
    }

    pub fn add_runtime(&mut self, prefix: IpNet) {
        self.runtime.insert(prefix);
    }

    pub fn remove_runtime(&mut self, prefix: &IpNet) {
        self.runtime.remove(prefix);
    }

    /// Every entry with its origin; a prefix in several kinds shows the one hardest to remove
    /// (configured, then protected, then runtime).
    pub fn entries(&self) -> BTreeMap<IpNet, AllowOrigin> {
        let mut out: BTreeMap<IpNet, AllowOrigin> = self
            .runtime
            .iter()
            .map(|p| (*p, AllowOrigin::Runtime))
            .collect();
        out.extend(self.protected.iter().map(|p| (*p, AllowOrigin::Protected)));
        out.extend(self.configured.iter().copied());
        out
    }

    /// The configured entry for exactly `prefix`, if any.
    pub fn configured(&self, prefix: &IpNet) -> Option<AllowOrigin> {
        self.configured
            .iter()
            .find(|(p, _)| p == prefix)
            .map(|(_, o)| *o)
    }

    /// The first entry sharing an address with `prefix`: a block on it would be refused.
    ///
    /// Asked once per proposed decision (a million in a bulk load), so it walks the three kinds
    /// in place: the first overlapping prefix in prefix order, with the origin [`Self::entries`]
    /// would show for it.
    pub fn conflict(&self, prefix: &IpNet) -> Option<(IpNet, AllowOrigin)> {
        let first = *self
            .configured
            .iter()
            .map(|(p, _)| p)
            .chain(&self.protected)
            .chain(&self.runtime)
            .filter(|a| overlaps(a, prefix))
            .min()?;
        let configured = self.configured.iter().rev().find(|(p, _)| *p == first);
        let origin = match configured {
            Some((_, o)) => *o,
            None if self.protected.contains(&first) => AllowOrigin::Protected,
            None => AllowOrigin::Runtime,
        };
        Some((first, origin))
    }

    /// The entries covering one address.
    pub fn covering(&self, addr: IpAddr) -> Vec<(IpNet, AllowOrigin)> {
        self.entries()
            .into_iter()
            .filter(|(a, _)| a.contains(&addr))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// The integer comparison against containment of either network, for prefixes of both
    /// families, every length class, host bits set or not, and near misses.
    #[test]
    fn overlaps_is_containment_either_way() {
        let mut next = crate::testing::below(0x9E37_79B9_7F4A_7C15u64);
        let prefix = |next: &mut dyn FnMut(u64) -> u64| -> IpNet {
            let (addr, max) = match next(3) {
                0 => (IpAddr::from([192, 0, 2, next(256) as u8]), 33),
                1 => (IpAddr::from([192, 0, next(4) as u8, next(256) as u8]), 33),
                _ => {
                    let tail = [next(65536) as u16, next(4) as u16];
                    (
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, tail[1], tail[0]]),
                        129,
                    )
                }
            };
            IpNet::new(addr, next(max) as u8).unwrap()
        };
        let mut both = 0;
        for _ in 0..20_000 {
            let (a, b) = (prefix(&mut next), prefix(&mut next));
            let want = a.contains(&b.network()) || b.contains(&a.network());
            assert_eq!(overlaps(&a, &b), want, "{a} {b}");
            both += usize::from(want);
        }
        assert!(both > 1000 && both < 19_000, "{both} of 20000 overlapped");
    }

    #[test]
    fn a_conflict_is_the_first_overlapping_entry_with_the_origin_entries_shows() {
        let mut a = Allowlist::default();
        a.set_configured(vec![
            (net("10.0.0.0/8"), AllowOrigin::Builtin),
            (net("198.51.100.0/24"), AllowOrigin::Config),
        ]);
        a.set_protected(vec![net("198.51.100.0/24"), net("198.51.100.7/32")]);
        a.set_runtime([
            net("198.51.100.7/32"),
            net("198.51.100.128/25"),
            net("2001:db8::/48"),
        ]);
        for probe in [
            "198.51.100.7/32",
            "198.51.100.0/16",
            "198.51.100.200/32",
            "10.1.2.3/32",
            "2001:db8::/32",
            "2001:db8:0:1::/64",
            "192.0.2.0/24",
            "0.0.0.0/1",
        ] {
            let p = net(probe);
            let slow = a.entries().into_iter().find(|(e, _)| overlaps(e, &p));
            assert_eq!(a.conflict(&p), slow, "{probe}");
        }
    }

    #[test]
    fn conflicts_are_overlaps_in_either_direction() {
        let mut a = Allowlist::default();
        a.set_configured(vec![(net("198.51.100.0/24"), AllowOrigin::Config)]);
        a.add_runtime(net("203.0.113.9/32"));
        assert_eq!(
            a.conflict(&net("198.51.100.0/16")),
            Some((net("198.51.100.0/24"), AllowOrigin::Config))
        );
        assert_eq!(
            a.conflict(&net("203.0.113.0/24")),
            Some((net("203.0.113.9/32"), AllowOrigin::Runtime))
        );
        assert_eq!(a.conflict(&net("192.0.2.0/24")), None);
    }

    #[test]
    fn the_label_hardest_to_remove_wins() {
        let mut a = Allowlist::default();
        let p = net("192.0.2.1/32");
        a.add_runtime(p);
        a.set_protected(vec![p]);
        assert_eq!(a.entries()[&p], AllowOrigin::Protected);
        a.set_configured(vec![(p, AllowOrigin::Config)]);
        assert_eq!(a.entries()[&p], AllowOrigin::Config);
        assert_eq!(a.configured(&p), Some(AllowOrigin::Config));
        assert_eq!(a.len(), 1);
    }
}
