//! In-kernel cost per packet with BPF_PROG_TEST_RUN: ipwarden at several block-set sizes,
//! xdp-filter (Debian's xdp-tools objects, loaded with aya) with equivalent exact rules, and
//! empty XDP_PASS / XDP_DROP programs as the floor, all interleaved in the same rounds.
//!
//! Every run checks the program's verdict, so a benchmark of a filter that does not filter
//! fails instead of reporting a fast number.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuHashMap, PerCpuValues},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
    util::nr_cpus,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipwarden::dataplane::{Capacities, Dataplane, PinDir, object};
use ipwarden_common::{BlockEntry, Reason, SrcStats, SrcStatsV6, names};

use super::frames::{self, Case};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// Where Debian's xdp-tools puts xdp-filter's allow-by-default, drop-on-match IP program (`xdpfilt_alw_ip`: "alw" is the default policy).
pub const XDP_FILTER_OBJECT: &str = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_ip.o";
/// Its deny-by-default twin (`xdpfilt_dny_ip`): frames its rules do not match are dropped.
pub const XDP_FILTER_DENY_OBJECT: &str = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_dny_ip.o";

/// A loaded program under test.
pub struct Subject {
    pub name: String,
    /// Block-set size, for the plot (0 for the empty baselines).
    pub entries: usize,
    pub kind: Kind,
    ebpf: Ebpf,
    program: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    EmptyPass,
    EmptyDrop,
    /// Parses the frame (reads the source) and drops it.
    Touch,
    Ipwarden,
    XdpFilter,
    /// ipwarden with passed frames dropped (`bench-sink`).
    IpwardenSink,
    /// The same with admission off: every source gets a counter.
    IpwardenSinkAllTracked,
    /// xdp-filter's deny-by-default program: drops what its rules do not match.
    XdpFilterDeny,
    /// Sends every frame back unchanged (`bench_tx`): what a live bed costs a frame that is
    /// answered, with no work in the program.
    Reflect,
}

impl Subject {
    fn xdp(&self) -> &Xdp {
        self.ebpf
            .program(&self.program)
            .expect("program present")
            .try_into()
            .expect("an XDP program")
    }

    /// The program, for attaching it to an interface.
    pub fn xdp_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(&self.program)
            .expect("program present")
            .try_into()
            .expect("an XDP program")
    }

    /// Average ns per run over `repeat` runs, and the verdict.
    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<(u32, f64), ProgramError> {
        let r = self.xdp().test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        })?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }

    /// Whether this subject should be run on `case`, and the verdict it must give.
    pub fn expects(&self, case: &Case) -> Option<u32> {
        match self.kind {
            Kind::EmptyPass => Some(XDP_PASS),
            Kind::EmptyDrop | Kind::Touch | Kind::IpwardenSink | Kind::IpwardenSinkAllTracked => {
                Some(XDP_DROP)
            }
            Kind::XdpFilterDeny | Kind::Reflect => None,
            Kind::Ipwarden => Some(if case.drop { XDP_DROP } else { XDP_PASS }),
            Kind::XdpFilter => {
                case.xdp_filter
                    .then_some(if case.drop { XDP_DROP } else { XDP_PASS })
            }
        }
    }
}

fn load(bytes: &[u8], pin_dir: &Path, sizes: &[(&'static str, u32)]) -> anyhow::Result<Ebpf> {
    std::fs::create_dir_all(pin_dir)?;
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(pin_dir);
    for (name, size) in sizes {
        loader.map_max_entries(name, *size);
    }
    loader.load(bytes).context("loading the object")
}

fn load_program(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<()> {
    let p: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()?;
    p.load().with_context(|| format!("verifying {name}"))?;
    Ok(())
}

/// A baseline program `prog` of the object `bytes`, loaded with maps of its own.
fn baseline(
    bpffs: &Path,
    (bytes, prog): (&[u8], &str),
    name: &str,
    kind: Kind,
) -> anyhow::Result<Subject> {
    if bytes.is_empty() {
        bail!("this build has no baseline objects (AYA_BUILD_SKIP); run `cargo xtask bench`");
    }
    let mut ebpf = load(bytes, &bpffs.join(prog), &[])?;
    load_program(&mut ebpf, prog)?;
    Ok(Subject {
        name: name.into(),
        entries: 0,
        kind,
        ebpf,
        program: prog.into(),
    })
}

/// An empty baseline.
pub fn empty(bpffs: &Path, drop: bool) -> anyhow::Result<Subject> {
    if drop {
        let object = (object::baseline::DROP, "bench_drop");
        baseline(bpffs, object, "empty XDP_DROP", Kind::EmptyDrop)
    } else {
        let object = (object::baseline::PASS, "bench_pass");
        baseline(bpffs, object, "empty XDP_PASS", Kind::EmptyPass)
    }
}

/// The parse-only baseline: ipwarden's parser reads the source, then `XDP_DROP`.
pub fn touch(bpffs: &Path) -> anyhow::Result<Subject> {
    let object = (object::baseline::TOUCH, "bench_touch");
    baseline(bpffs, object, "parse-only XDP_DROP", Kind::Touch)
}

/// The answering floor: `bench_tx`, which sends every frame back out of the interface it came
/// in on, unchanged (no parsing, no cookie, no checksum).
pub fn reflector(bpffs: &Path) -> anyhow::Result<Subject> {
    let object = (object::baseline::TX, "bench_tx");
    baseline(bpffs, object, "XDP_TX of every frame", Kind::Reflect)
}

/// Filler keys for large block sets. The IPv4 ones are map keys only: no packet is ever sent to
/// or from them. The IPv6 ones lie in 2001:db8::/32 and the live benchmark's spray generator
/// (`ebpf/src/bin/tx.rs`, which writes the same encoding) sends from them inside its veth pair.
fn filler_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0A00_0000u32 + i as u32)
}

pub fn filler_v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x8000 | (i >> 16) as u16,
        i as u16,
        0,
        0,
        0,
        0,
    )
}

/// Distinct /48s for the prefix part of the IPv6 set.
fn filler_v6_48(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x4000 + i as u16, 0, 0, 0, 0, 0)
}

/// How many of `entries` are shorter prefixes: 1 %, at most 10k (the mix).
pub fn prefix_count(entries: usize) -> usize {
    (entries / 100).min(10_000)
}

/// ipwarden with `entries` block entries per family (1 % of them prefixes, at most 10k), and
/// the counter maps warm with `warm` sources per family.
pub fn ipwarden(bpffs: &Path, entries: usize, warm: usize) -> anyhow::Result<Subject> {
    ipwarden_sized(bpffs, entries, warm, Capacities::default().src_v4)
}

/// As [`ipwarden`], with counter maps of `src_capacity` entries.
pub fn ipwarden_sized(
    bpffs: &Path,
    entries: usize,
    warm: usize,
    src_capacity: u32,
) -> anyhow::Result<Subject> {
    ipwarden_variant(bpffs, entries, warm, src_capacity, Kind::Ipwarden)
}

/// The ipwarden program that drops what it passes (see [`Kind::IpwardenSink`]), with the same
/// block set as [`ipwarden`].
pub fn ipwarden_sink(bpffs: &Path, entries: usize) -> anyhow::Result<Subject> {
    ipwarden_variant(
        bpffs,
        entries,
        0,
        Capacities::default().src_v4,
        Kind::IpwardenSink,
    )
}

/// As [`ipwarden_sink`], with admission off (every source tracked), in maps of its own: a spray
/// measured against it leaves nothing in the other sink's counters.
pub fn ipwarden_sink_without_admission(bpffs: &Path, entries: usize) -> anyhow::Result<Subject> {
    let s = ipwarden_variant(
        bpffs,
        entries,
        0,
        Capacities::default().src_v4,
        Kind::IpwardenSinkAllTracked,
    )?;
    Dataplane::open(&PinDir::new(bpffs, format!("sinkall{entries}")))?
        .set_admission(Default::default(), &[])?;
    Ok(s)
}

fn ipwarden_variant(
    bpffs: &Path,
    entries: usize,
    warm: usize,
    src_capacity: u32,
    kind: Kind,
) -> anyhow::Result<Subject> {
    let (bytes, program, dir, name) = match kind {
        Kind::IpwardenSink => (
            object::baseline::SINK,
            "ipwarden_sink",
            format!("sink{entries}"),
            format!("ipwarden (passed frames dropped), {entries}"),
        ),
        Kind::IpwardenSinkAllTracked => (
            object::baseline::SINK,
            "ipwarden_sink",
            format!("sinkall{entries}"),
            format!("ipwarden (passed frames dropped, admission off), {entries}"),
        ),
        _ => (
            object::OBJECT,
            names::PROGRAM,
            format!("bench{entries}"),
            format!("ipwarden {entries}"),
        ),
    };
    if bytes.is_empty() {
        bail!("this build has no XDP object (AYA_BUILD_SKIP); run `cargo xtask bench`");
    }
    let pins = PinDir::new(bpffs, dir);
    let caps = Capacities::default();
    let mut ebpf = load(
        bytes,
        &pins.dir(),
        &[
            (names::BLOCK_V4, caps.block_v4.max(entries as u32)),
            (names::BLOCK_V6, caps.block_v6.max(entries as u32)),
            (names::SRC_V4, src_capacity),
            (names::SRC_V6, src_capacity),
        ],
    )?;
    load_program(&mut ebpf, program)?;
    let mut dp = Dataplane::open(&pins)?;
    let prefixes = prefix_count(entries);
    let entry = BlockEntry::block(Reason::FEED, BlockEntry::NEVER);
    // The frames' own entries first, so even a size of 1 blocks them.
    dp.block(IpNet::V4(Ipv4Net::new(frames::DROP_V4, 32)?), entry)?;
    dp.block(IpNet::V6(Ipv6Net::new(frames::DROP_V6, 64)?), entry)?;
    dp.block(
        IpNet::V4(Ipv4Net::new(frames::DROP_V4_PREFIX, 24)?.trunc()),
        entry,
    )?;
    let exact = (1..entries.saturating_sub(prefixes)).flat_map(|i| {
        [
            IpNet::V4(Ipv4Net::new_assert(filler_v4(i), 32)),
            IpNet::V6(Ipv6Net::new_assert(filler_v6(i), 64)),
        ]
    });
    let wider = (1..prefixes).flat_map(|i| {
        [
            IpNet::V4(Ipv4Net::new_assert(filler_v4(i << 8), 24)),
            IpNet::V6(Ipv6Net::new_assert(filler_v6_48(i), 48)),
        ]
    });
    dp.block_all(exact.chain(wider).map(|net| (net, entry)))?;
    // As a daemon's resync leaves it: maps only this build wrote, so the index may vouch.
    dp.vouch_for_index()?;
    // As a daemon with the default `[detection]` sets it.
    dp.set_admission(admission(), &[])?;
    warm_counters(&pins, warm)?;
    // As a daemon's start leaves them: every entry marked, the marks trusted.
    dp.mark_tracked()?;
    Ok(Subject {
        name,
        entries,
        kind,
        ebpf,
        program: program.into(),
    })
}

/// The product's program with the synproxy answering SYNs to `port` (its program loaded into
/// the slot the main program tail-calls), an empty block set, in maps of its own. The MSS and
/// window scale are what a daemon would advertise on a 1500-byte link with this machine's
/// sysctls.
pub fn ipwarden_synproxy(bpffs: &Path, port: u16) -> anyhow::Result<Subject> {
    let bytes = object::OBJECT;
    if bytes.is_empty() {
        bail!("this build has no XDP object (AYA_BUILD_SKIP); run `cargo xtask bench`");
    }
    let pins = PinDir::new(bpffs, "synproxy");
    let mut ebpf = load(bytes, &pins.dir(), &[])?;
    load_program(&mut ebpf, names::SYNACK_PROGRAM)?;
    let fd = {
        let p: &Xdp = ebpf
            .program(names::SYNACK_PROGRAM)
            .context("no synproxy program")?
            .try_into()?;
        p.fd()?.try_clone()?
    };
    let mut slots = aya::maps::ProgramArray::try_from(
        ebpf.map_mut(names::SYNPROXY_PROG)
            .context("no synproxy program slot")?,
    )?;
    slots.set(0, &fd, 0)?;
    load_program(&mut ebpf, names::PROGRAM)?;
    let mut dp = Dataplane::open(&pins)?;
    dp.vouch_for_index()?;
    dp.set_admission(admission(), &[])?;
    dp.mark_tracked()?;
    dp.set_synproxy(
        ipwarden_common::synproxy::SynproxyConfig {
            flags: ipwarden_common::synproxy::SynproxyConfig::ANSWER
                | ipwarden_common::synproxy::SynproxyConfig::COUNT,
            mss_v4: 1460,
            mss_v6: 1440,
            wscale: 7,
            ttl: 64,
            _pad: [0; 6],
        },
        &[port],
    )?;
    Ok(Subject {
        name: format!("ipwarden synproxy (port {port})"),
        entries: 0,
        kind: Kind::Ipwarden,
        ebpf,
        program: names::PROGRAM.into(),
    })
}

/// The admission level a daemon with the default `[detection]` sets on this machine.
pub fn admission() -> ipwarden_common::admit::AdmitLevel {
    let cpus = aya::util::online_cpus().map_or(1, |c| c.len().max(1) as u32);
    ipwarden::detect::admission::level(&ipwarden::config::DetectionConfig::default(), cpus)
}

/// Fills the per-source counter maps with `n` sources per family, as traffic would.
pub fn warm_counters(pins: &PinDir, n: usize) -> anyhow::Result<()> {
    let cpus = nr_cpus().map_err(|(_, e)| e)?;
    let map = Map::from_map_data(MapData::from_pin(pins.map(names::SRC_V4))?)?;
    let mut v4: PerCpuHashMap<MapData, [u8; 4], SrcStats> = map.try_into()?;
    let stats = SrcStats {
        packets: 1,
        bytes: 64,
        syn: 1,
        first_seen_ns: 1,
    };
    for i in 0..n {
        v4.insert(
            filler_v4(i).octets(),
            PerCpuValues::try_from(vec![stats; cpus])?,
            0,
        )?;
    }
    let map = Map::from_map_data(MapData::from_pin(pins.map(names::SRC_V6))?)?;
    let mut v6: PerCpuHashMap<MapData, [u8; 8], SrcStatsV6> = map.try_into()?;
    let v6_stats = SrcStatsV6 {
        stats,
        last_addr: [0; 16],
    };
    for i in 0..n {
        let key = ipwarden_common::key::v6_prefix(&filler_v6(i).octets());
        v6.insert(key, PerCpuValues::try_from(vec![v6_stats; cpus])?, 0)?;
    }
    Ok(())
}

/// xdp-filter in allow-by-default IP mode, dropping matched sources, with `entries` source rules per family.
pub fn xdp_filter(bpffs: &Path, entries: usize) -> anyhow::Result<Subject> {
    xdp_filter_policy(bpffs, entries, false)
}

/// xdp-filter in deny-by-default IP mode with the same rules: it drops every frame they do not
/// match (the unblocked sprays' baseline).
pub fn xdp_filter_deny(bpffs: &Path, entries: usize) -> anyhow::Result<Subject> {
    xdp_filter_policy(bpffs, entries, true)
}

fn xdp_filter_policy(bpffs: &Path, entries: usize, deny: bool) -> anyhow::Result<Subject> {
    let (path, program, kind, dir) = if deny {
        (
            XDP_FILTER_DENY_OBJECT,
            "xdpfilt_dny_ip",
            Kind::XdpFilterDeny,
            "xdpfiltdny",
        )
    } else {
        (
            XDP_FILTER_OBJECT,
            "xdpfilt_alw_ip",
            Kind::XdpFilter,
            "xdpfilt",
        )
    };
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading {path} (Debian package xdp-tools)"))?;
    let size = entries.max(10_000) as u32;
    let mut ebpf = load(
        &bytes,
        &bpffs.join(format!("{dir}{entries}")),
        &[("filter_ipv4", size), ("filter_ipv6", size)],
    )?;
    load_program(&mut ebpf, program)?;
    let cpus = nr_cpus().map_err(|(_, e)| e)?;
    // MAP_FLAG_SRC (xdp-filter's common_kern_user.h): match the packet's source address.
    let flag = || PerCpuValues::try_from(vec![1u64; cpus]);
    {
        let mut v4: PerCpuHashMap<&mut MapData, u32, u64> = ebpf
            .map_mut("filter_ipv4")
            .context("no filter_ipv4 map")?
            .try_into()?;
        v4.insert(u32::from_ne_bytes(frames::DROP_V4.octets()), flag()?, 0)?;
        for i in 1..entries {
            v4.insert(u32::from_ne_bytes(filler_v4(i).octets()), flag()?, 0)?;
        }
    }
    {
        let mut v6: PerCpuHashMap<&mut MapData, [u8; 16], u64> = ebpf
            .map_mut("filter_ipv6")
            .context("no filter_ipv6 map")?
            .try_into()?;
        v6.insert(frames::DROP_V6.octets(), flag()?, 0)?;
        for i in 1..entries {
            v6.insert(filler_v6(i).octets(), flag()?, 0)?;
        }
    }
    Ok(Subject {
        name: if deny {
            format!("xdp-filter deny-by-default {entries}")
        } else {
            format!("xdp-filter {entries}")
        },
        entries,
        kind,
        ebpf,
        program: program.into(),
    })
}

/// One measured cell: a subject on a case.
#[derive(Clone, Debug)]
pub struct Cell {
    pub subject: String,
    pub kind: Kind,
    pub entries: usize,
    pub case: &'static str,
    pub samples: Vec<f64>,
}

/// Interleaved rounds over every subject and case.
pub fn measure(subjects: &[Subject], rounds: usize, repeat: u32) -> anyhow::Result<Vec<Cell>> {
    let cases = frames::cases();
    let mut cells: Vec<Cell> = Vec::new();
    for round in 0..rounds {
        // Rotate the order each round so no subject always runs first after a pause.
        for k in 0..subjects.len() {
            let s = &subjects[(k + round) % subjects.len()];
            for case in &cases {
                let Some(want) = s.expects(case) else {
                    continue;
                };
                let (got, ns) = s
                    .run(&case.frame, repeat)
                    .with_context(|| format!("{} on {}", s.name, case.name))?;
                if got != want {
                    bail!(
                        "{} returned {got} on {}, expected {want}",
                        s.name,
                        case.name
                    );
                }
                match cells
                    .iter_mut()
                    .find(|c| c.subject == s.name && c.case == case.name)
                {
                    Some(c) => c.samples.push(ns),
                    None => cells.push(Cell {
                        subject: s.name.clone(),
                        kind: s.kind,
                        entries: s.entries,
                        case: case.name,
                        samples: vec![ns],
                    }),
                }
            }
        }
    }
    Ok(cells)
}

/// The subject of `kind` (with `entries` entries, unless it is the empty XDP_DROP).
pub fn subject_index(subjects: &[Subject], kind: Kind, entries: usize) -> Option<usize> {
    subjects
        .iter()
        .position(|s| s.kind == kind && (kind == Kind::EmptyDrop || s.entries == entries))
}
