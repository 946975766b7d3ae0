//! The whole daemon: idle CPU, and reaction time from a flood's first packet to its first
//! dropped packet, for sources whose IPASIS answer is cached and for ones that need a lookup
//! (the stand-in adds 50 ms), with the default one-second poll interval: with loud-source hints
//! (the default `detection.fast_window`) and without them (polls only), in the same run.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::PermissionsExt as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ipwarden_common::GlobalCounter;

use ipwarden_tests::{
    BpfFs, Daemon, DaemonHome, Ipwarden, Topology,
    ipasis_stub::{IpasisStub, Reply, answers},
    topology::EDGE_V4,
    traffic::udp_flood,
};

/// What the daemon measurements found.
pub struct DaemonFigures {
    pub idle_cpu_percent: f64,
    pub idle_window: Duration,
    pub poll_interval: Duration,
    /// First packet to first drop, with hints: sources whose answer is cached, and sources
    /// looked up (50 ms API latency); one figure per flood.
    pub hinted: Reactions,
    /// The same without hints (`detection.fast_window = 0`).
    pub polled: Reactions,
}

/// Reaction times of one configuration.
#[derive(Default)]
pub struct Reactions {
    pub cached: Vec<Duration>,
    pub uncached: Vec<Duration>,
}

fn dropped(ipw: &Ipwarden) -> u64 {
    ipw.dataplane()
        .globals()
        .map(|g| g.get(GlobalCounter::Dropped))
        .unwrap_or(0)
}

/// Floods from `src` and returns the time from the first packet to the first drop.
fn reaction(topo: &Topology, ipw: &Ipwarden, src: IpAddr) -> anyhow::Result<Duration> {
    let before = dropped(ipw);
    std::thread::scope(|s| {
        let start = Instant::now();
        s.spawn(|| {
            udp_flood(
                &topo.client,
                src,
                (EDGE_V4, 9).into(),
                5000,
                Duration::from_secs(3),
            )
        });
        let deadline = start + Duration::from_secs(3);
        loop {
            if dropped(ipw) > before {
                return Ok(start.elapsed());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no drop within 3 s of the flood's start"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// One daemon with `extra` configuration; `floods` sources of each kind flooded in turn (a
/// blocked source stays blocked, so each flood has its own). `idle`: measure idle CPU first.
fn run(
    extra: &str,
    floods: u8,
    base: u8,
    idle: Option<Duration>,
) -> anyhow::Result<(Reactions, Option<f64>)> {
    let bpffs = BpfFs::new();
    let topo = Topology::two_hosts();
    let source = |i: u8| IpAddr::V4(Ipv4Addr::new(203, 0, 113, base + i));
    for i in 0..2 * floods {
        topo.add_source(source(i));
    }
    let stub = IpasisStub::start_in(&topo.edge);
    stub.set_fallback(Reply::json(answers::TOR).delayed(Duration::from_millis(50)));
    let home = DaemonHome::new("", bpffs.path());
    let key = home.config().with_file_name("ipasis.key");
    std::fs::write(&key, "ipasis_bench_key")?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    // Production defaults except the API's address and key (and `extra`).
    std::fs::write(
        home.config(),
        format!(
            "[ipasis]\nbase_url = \"{}\"\nkey_file = \"{}\"\n{extra}",
            stub.base_url(),
            key.display()
        ),
    )?;
    let daemon = Daemon::start(&home, &topo.edge);
    let ipw = Ipwarden::new(&bpffs);
    std::thread::sleep(Duration::from_secs(1));
    let idle = match idle {
        Some(w) => Some(super::controller::idle_cpu(daemon.pid().as_raw(), w)?),
        None => None,
    };
    let mut r = Reactions::default();
    for i in 0..floods {
        // Warm the cache for one source, as a previous episode would have.
        let cached = source(2 * i);
        home.cli(&["lookup", &cached.to_string()]);
        r.cached
            .push(reaction(&topo, &ipw, cached).context("cached source")?);
        r.uncached
            .push(reaction(&topo, &ipw, source(2 * i + 1)).context("uncached source")?);
    }
    drop(daemon);
    Ok((r, idle))
}

pub fn measure(idle_window: Duration, floods: u8) -> anyhow::Result<DaemonFigures> {
    let (hinted, idle) = run("", floods, 40, Some(idle_window))?;
    let (polled, _) = run("[detection]\nfast_window = \"0s\"\n", floods, 80, None)?;
    Ok(DaemonFigures {
        idle_cpu_percent: idle.unwrap_or_default(),
        idle_window,
        poll_interval: ipwarden::config::Config::default().detection.poll_interval,
        hinted,
        polled,
    })
}
