//! The whole daemon: idle CPU, and reaction time from a flood's first packet to its first
//! dropped packet, for a source whose IPASIS answer is cached and for one that needs a lookup
//! (the stand-in adds 50 ms), with the default one-second poll interval.

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
    /// First packet to first drop, source answer cached.
    pub reaction_cached: Duration,
    /// First packet to first drop, source looked up (50 ms API latency).
    pub reaction_uncached: Duration,
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
                Duration::from_secs(4),
            )
        });
        let deadline = start + Duration::from_secs(4);
        loop {
            if dropped(ipw) > before {
                return Ok(start.elapsed());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no drop within 4 s of the flood's start"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

pub fn measure(idle_window: Duration) -> anyhow::Result<DaemonFigures> {
    let bpffs = BpfFs::new();
    let topo = Topology::two_hosts();
    let cached = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 40));
    let uncached = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 41));
    topo.add_source(cached);
    topo.add_source(uncached);
    let stub = IpasisStub::start_in(&topo.edge);
    stub.set_fallback(Reply::json(answers::TOR).delayed(Duration::from_millis(50)));
    let home = DaemonHome::new("", bpffs.path());
    let key = home.config().with_file_name("ipasis.key");
    std::fs::write(&key, "ipasis_bench_key")?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    // Production defaults except the API's address and key.
    std::fs::write(
        home.config(),
        format!(
            "[ipasis]\nbase_url = \"{}\"\nkey_file = \"{}\"\n",
            stub.base_url(),
            key.display()
        ),
    )?;
    let daemon = Daemon::start(&home, &topo.edge);
    let ipw = Ipwarden::new(&bpffs);
    std::thread::sleep(Duration::from_secs(1));
    let idle = super::controller::idle_cpu(daemon.pid().as_raw(), idle_window)?;

    // Warm the cache for one source, as a previous episode would have.
    home.cli(&["lookup", &cached.to_string()]);
    let reaction_cached = reaction(&topo, &ipw, cached).context("cached source")?;
    let reaction_uncached = reaction(&topo, &ipw, uncached).context("uncached source")?;
    drop(daemon);
    Ok(DaemonFigures {
        idle_cpu_percent: idle,
        idle_window,
        poll_interval: ipwarden::config::Config::default().detection.poll_interval,
        reaction_cached,
        reaction_uncached,
    })
}
