//! A paced random-source spray for namespace tests: IPv6 UDP frames sent from the client's
//! veth through a raw socket, each from another /64 of 2001:db8:2000::/44 in turn, with heavy
//! and medium sources of known rates hidden in it (2001:db8:3000:j::/64 and
//! 2001:db8:3100:j::/64). Paced, with the edge's NAPI in a thread on the other CPU, so that the
//! edge processes every frame and each hidden source's rate is what the shape says. (The
//! benchmark's in-kernel generator cannot be paced: each of its runs is a burst that overflows
//! the veth's ring, and a run costs about 24 ms of set-up.)

use std::{
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use crate::{
    Topology,
    frames::RawSocket,
    topology::{CLIENT_IF, CLIENT_MAC, EDGE_IF, EDGE_MAC, EDGE_V6},
};

/// A medium source sends one frame for every this many of a heavy one (with as many medium as
/// heavy sources).
pub const MEDIUM_EVERY: u32 = 8;
/// Frames between two looks at the clock.
const PACE_EVERY: u64 = 256;
/// Where the source's third and fourth 16-bit groups are in the frame: Ethernet (14), the IPv6
/// header's bytes before the source (8), the source's first four bytes (2001:0db8).
const GROUPS_3_4: usize = 14 + 8 + 4;

/// What to send.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Distinct sprayed /64s, cycled through.
    pub sources: u32,
    /// Hidden heavy sources: one frame in `period` comes from one of them in turn.
    pub heavy: u32,
    pub period: u32,
    /// Hidden medium sources: one frame in `period × MEDIUM_EVERY` comes from one of them.
    pub medium: u32,
    /// Frames per second.
    pub rate: u32,
}

impl Shape {
    /// Packets per second of one heavy source.
    pub fn heavy_pps(&self) -> f64 {
        f64::from(self.rate) / f64::from(self.period) / f64::from(self.heavy)
    }

    /// Packets per second of one medium source.
    pub fn medium_pps(&self) -> f64 {
        f64::from(self.rate) / f64::from(self.period * MEDIUM_EVERY) / f64::from(self.medium)
    }

    /// The third and fourth source groups of frame `k`.
    fn groups(&self, k: u64, sprayed: &mut u32) -> u32 {
        let period = u64::from(self.period.max(2));
        let (turn, r) = (k / period, k % period);
        if self.heavy > 0 && r == 0 {
            return (0x3000 << 16) | (turn % u64::from(self.heavy)) as u32;
        }
        if self.medium > 0 && r == 1 && turn % u64::from(MEDIUM_EVERY) == 0 {
            return (0x3100 << 16)
                | ((turn / u64::from(MEDIUM_EVERY)) % u64::from(self.medium)) as u32;
        }
        let n = *sprayed % self.sources.max(1) + 1;
        *sprayed = sprayed.wrapping_add(1);
        ((0x2000 | (n >> 16)) << 16) | (n & 0xffff)
    }
}

/// The /64 of heavy source `j`, as ipwarden prints it.
pub fn heavy(j: u16) -> String {
    Ipv6Addr::new(0x2001, 0xdb8, 0x3000, j, 0, 0, 0, 0).to_string() + "/64"
}

/// The /64 of medium source `j`.
pub fn medium(j: u16) -> String {
    Ipv6Addr::new(0x2001, 0xdb8, 0x3100, j, 0, 0, 0, 0).to_string() + "/64"
}

/// The sender.
pub struct Spray {
    sock: RawSocket,
    frame: Vec<u8>,
}

impl Spray {
    pub fn new(topo: &Topology) -> Self {
        // The edge's NAPI in a thread of its own, on the CPU the sender leaves free.
        topo.edge.exec(
            "sh",
            &["-c", &format!("echo 1 > /sys/class/net/{EDGE_IF}/threaded")],
        );
        let src = Ipv6Addr::new(0x2001, 0xdb8, 0x2000, 1, 0, 0, 0, 2);
        Self {
            sock: RawSocket::open(&topo.client, CLIENT_IF),
            frame: crate::frames::udp6(EDGE_MAC, CLIENT_MAC, src, EDGE_V6, 18),
        }
    }

    /// Sends `shape` for `duration` (and at most `duration × rate` frames); the frames sent.
    pub fn send(&mut self, shape: Shape, duration: Duration) -> u64 {
        pin_napi(EDGE_IF, 1);
        crate::cpu::on_cpu(0, || self.paced(shape, duration)).expect("pinning the sender")
    }

    fn paced(&mut self, shape: Shape, duration: Duration) -> u64 {
        let start = Instant::now();
        let total = (duration.as_secs_f64() * f64::from(shape.rate)) as u64;
        let mut sprayed = 0u32;
        let mut k = 0u64;
        while k < total && start.elapsed() < duration + Duration::from_secs(2) {
            if k.is_multiple_of(PACE_EVERY) {
                let due = Duration::from_secs_f64(k as f64 / f64::from(shape.rate));
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let g = shape.groups(k, &mut sprayed);
            self.frame[GROUPS_3_4..GROUPS_3_4 + 4].copy_from_slice(&g.to_be_bytes());
            match self.sock.send(&self.frame) {
                Ok(()) => k += 1,
                // A full queue: the same frame again after a pause.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("sending spray frame {k}: {e}"),
            }
        }
        k
    }
}

/// Pins the threaded-NAPI kernel threads of `iface` to `cpu`.
fn pin_napi(iface: &str, cpu: usize) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let prefix = format!("napi/{iface}-");
    let mut set = CpuSet::new();
    set.set(cpu).expect("a CPU");
    let mut pinned = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(&prefix)
            && sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set).is_ok()
        {
            pinned += 1;
        }
    }
    assert!(pinned > 0, "no threaded-NAPI thread for {iface}");
}

/// What a daemon made of a spray with hidden sources (see [`hidden`]).
pub struct Hidden {
    pub sent: u64,
    /// Heavy sources decided, of `shape.heavy`.
    pub heavy_found: usize,
    pub heavy_missed: Vec<String>,
    /// Decided prefixes that are not heavy sources.
    pub others: Vec<String>,
    /// Every decision's origin.
    pub origins: Vec<String>,
    /// From the spray's start to the last decision.
    pub last_decided: Duration,
    /// Medium sources still in the counter maps at the end (seen, and judged below the
    /// threshold).
    pub medium_counted: usize,
    /// Sources in the counter maps and front tables at the end.
    pub counted: usize,
    /// The daemon's peak resident memory (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
    /// `status` at the end.
    pub status: serde_json::Value,
}

/// Starts a daemon with `config` in a fresh test bed, sprays `shape` at it for `duration`, and
/// says what it decided.
pub fn hidden(config: &str, shape: Shape, duration: Duration) -> Hidden {
    let unix_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis() as u64
    };
    let env = crate::DaemonEnv::new(config, &[]);
    let _daemon = env.start();
    let mut generator = Spray::new(&env.topo);
    let start_ms = unix_ms();
    let sent = generator.send(shape, duration);
    let status = env.home.json(&["status"]);
    let decisions = env.decisions();
    let heavy_all: Vec<String> = (0..shape.heavy as u16).map(heavy).collect();
    let decided: Vec<String> = decisions
        .iter()
        .map(|d| d["prefix"].as_str().expect("prefix").to_owned())
        .collect();
    let counted: std::collections::BTreeSet<String> = env
        .ipw
        .dataplane()
        .sources_v6()
        .expect("reading the counters")
        .iter()
        .map(|s| s.net.to_string())
        .collect();
    Hidden {
        sent,
        heavy_found: heavy_all.iter().filter(|h| decided.contains(h)).count(),
        heavy_missed: heavy_all
            .iter()
            .filter(|h| !decided.contains(h))
            .cloned()
            .collect(),
        others: decided
            .iter()
            .filter(|p| !heavy_all.contains(p))
            .cloned()
            .collect(),
        origins: decisions
            .iter()
            .map(|d| d["origin"].as_str().unwrap_or("").to_owned())
            .collect(),
        last_decided: Duration::from_millis(
            decisions
                .iter()
                .filter_map(|d| d["created_unix_ms"].as_u64())
                .map(|t| t.saturating_sub(start_ms))
                .max()
                .unwrap_or(0),
        ),
        medium_counted: (0..shape.medium as u16)
            .map(medium)
            .filter(|m| counted.contains(m))
            .count(),
        counted: counted.len(),
        peak_rss_kib: status["pid"]
            .as_u64()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0),
        status,
    }
}
