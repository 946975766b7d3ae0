//! One source's counters as a poll hands them to the detector.

use std::net::IpAddr;

use ipnet::IpNet;

use super::tracks::Key;

/// One source's cumulative counters at one poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub packets: u64,
    pub bytes: u64,
    pub syn: u64,
    /// Kernel time of the source's first packet (the rate baseline of a new source).
    pub first_seen_ns: u64,
    /// A real address of the source: the address itself, or for an IPv6 /64 the last one seen.
    pub addr: IpAddr,
}

/// One source's cumulative counters at one poll, keyed as the detector keys it: 56 bytes,
/// where its prefix and a [`Snapshot`] took 80. A poll of a million sources holds a million
/// of them at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub key: Key,
    pub packets: u64,
    pub bytes: u64,
    pub syn: u64,
    /// Kernel time of the source's first packet.
    pub first_seen_ns: u64,
    /// The low 64 bits of a real address of the source (IPv6; the key holds the rest).
    pub addr_low: u64,
}

impl Reading {
    /// The source: an IPv4 /32 or an IPv6 /64.
    pub fn source(&self) -> IpNet {
        self.key.net()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            packets: self.packets,
            bytes: self.bytes,
            syn: self.syn,
            first_seen_ns: self.first_seen_ns,
            addr: self.key.addr(self.addr_low),
        }
    }

    /// Another attachment's counters of the same source, summed in.
    pub fn add(&mut self, other: &Reading) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.syn += other.syn;
        self.first_seen_ns = self.first_seen_ns.min(other.first_seen_ns);
    }
}

impl From<(IpNet, Snapshot)> for Reading {
    fn from((source, s): (IpNet, Snapshot)) -> Self {
        Self {
            key: Key::of(&source),
            packets: s.packets,
            bytes: s.bytes,
            syn: s.syn,
            first_seen_ns: s.first_seen_ns,
            addr_low: Key::low(&s.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_round_trips() {
        assert!(size_of::<Reading>() <= 56, "{}", size_of::<Reading>());
        let s = Snapshot {
            packets: 7,
            bytes: 700,
            syn: 2,
            first_seen_ns: 5,
            addr: "2001:db8:1:2::9".parse().unwrap(),
        };
        let source: IpNet = "2001:db8:1:2::/64".parse().unwrap();
        let r = Reading::from((source, s));
        assert_eq!((r.source(), r.snapshot()), (source, s));
        let mut sum = r;
        sum.add(&Reading {
            first_seen_ns: 3,
            ..r
        });
        assert_eq!((sum.packets, sum.syn, sum.first_seen_ns), (14, 4, 3));
    }
}
