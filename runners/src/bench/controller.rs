//! Controller scale: the CPU time and memory of a poll at 10k–1M active sources, the daemon's
//! memory with many sources and decisions, bulk loading decisions, and the enrichment client's
//! throughput against the stand-in with added latency.
//!
//! Memory figures come from child processes (`ipwarden-bench probe …`), so each peak RSS is
//! that of one scenario alone.

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ipnet::IpNet;
use ipwarden::{
    config::Config,
    daemon::{poll, state::State},
    dataplane::{Dataplane, PinDir},
    decision::{Holder, Origin},
    detect::Detector,
    engine::{AttachKind, BlockRequest, Plane},
    store::Store,
};
use serde::{Deserialize, Serialize};

use super::kernel;

/// CPU time (user + system) of this process so far, and its peak RSS in bytes.
pub fn usage() -> (Duration, u64) {
    let (user, sys, rss) = usage_split();
    (user + sys, rss)
}

/// User CPU, system CPU and peak RSS of this process.
pub fn usage_split() -> (Duration, Duration, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_maxrss as u64 * 1024)
}

/// One poll-cost measurement (from a child process).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PollCost {
    pub sources: usize,
    /// CPU time of reading all counters (batched) and computing rates, one steady-state poll.
    pub cpu_ms: f64,
    pub wall_ms: f64,
    /// Of which reading the maps.
    pub read_ms: f64,
    /// Of the CPU time, what the kernel spent (the batched map reads, page faults).
    pub kernel_ms: f64,
    pub peak_rss_mb: f64,
}

/// Child process body: `sources` IPv4 sources plus as many IPv6 /64s, three polls, the third
/// measured (the first two build the tracks, as a running daemon has).
pub fn probe_poll(bpffs: &Path, sources: usize) -> anyhow::Result<PollCost> {
    ipwarden::heap::settle();
    let per_family = sources / 2;
    let subject = kernel::ipwarden_sized(bpffs, 1, per_family, (2 * per_family as u32).max(1024))?;
    let pins = PinDir::new(bpffs, "bench1");
    let readers = vec![Dataplane::open(&pins)?];
    let mut detector = Detector::new(Config::default().detection);
    for _ in 0..2 {
        let p = poll::read(&readers, true)?;
        detector.observe(p.now_ns, p.readings);
    }
    let (user0, sys0, _) = usage_split();
    let t0 = Instant::now();
    let p = poll::read(&readers, true)?;
    let read = t0.elapsed();
    let tracked = p.readings.len();
    detector.observe(p.now_ns, p.readings);
    let wall = t0.elapsed();
    let (user1, sys1, rss) = usage_split();
    anyhow::ensure!(
        tracked == per_family * 2,
        "read {tracked} sources, expected {}",
        per_family * 2
    );
    drop(subject);
    Ok(PollCost {
        sources: tracked,
        cpu_ms: ((user1 + sys1) - (user0 + sys0)).as_secs_f64() * 1e3,
        kernel_ms: (sys1 - sys0).as_secs_f64() * 1e3,
        wall_ms: wall.as_secs_f64() * 1e3,
        read_ms: read.as_secs_f64() * 1e3,
        peak_rss_mb: rss as f64 / 1e6,
    })
}

/// The daemon core with many decisions and sources (from a child process).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EngineScale {
    pub decisions: usize,
    pub sources: usize,
    /// Seconds to store (one transaction) and enforce all decisions.
    pub bulk_load_s: f64,
    /// Microseconds to find the decisions covering an address (what each heavy hitter and
    /// `explain` asks), IPv4 and IPv6 alike, with the decisions loaded.
    pub covering_us: f64,
    pub peak_rss_mb: f64,
    /// Seconds a restart takes to read the decisions back from the store (after the peak
    /// RSS is taken: a second copy is read while the first is dropped).
    pub reload_s: f64,
}

/// Child process body: an engine with `decisions` bulk-loaded decisions, then `sources`
/// sources tracked by its detector.
pub fn probe_engine(
    bpffs: &Path,
    state: &Path,
    decisions: usize,
    sources: usize,
) -> anyhow::Result<EngineScale> {
    ipwarden::heap::settle();
    let per_family = sources / 2;
    let _subject = kernel::ipwarden_sized(bpffs, 1, per_family, (2 * per_family as u32).max(1024))?;
    let pins = PinDir::new(bpffs, "bench1");
    let mut cfg = Config::default();
    cfg.decisions.max_decisions = decisions + 16;
    let store = Store::open(state)?;
    let plane = Plane::new(
        "bench",
        AttachKind::Adopted,
        Box::new(Dataplane::open(&pins)?),
    );
    let mut engine = State::new(cfg, None, store, vec![plane]);
    let requests: Vec<BlockRequest> = (0..decisions)
        .map(|i| BlockRequest {
            prefix: IpNet::from(IpAddr::from(
                0x6440_0000u32.wrapping_add(i as u32).to_be_bytes(),
            )),
            ttl: None,
            permanent: false,
            reason: None,
            replace: false,
            challenge: None,
        })
        .collect();
    let t0 = Instant::now();
    let (n, refused) = engine
        .engine
        .bulk_block(requests, Holder::named(Origin::Feed, "bench"))?;
    let bulk = t0.elapsed();
    anyhow::ensure!(
        n == decisions && refused == 0,
        "{n} enacted, {refused} refused"
    );
    const LOOKUPS: u32 = 10_000;
    let t0 = Instant::now();
    let mut found = 0;
    for i in 0..LOOKUPS {
        let addr = if i % 2 == 0 {
            IpAddr::from(0x6440_0000u32.wrapping_add(i * 97).to_be_bytes())
        } else {
            IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16])
        };
        found += engine
            .engine
            .book()
            .covering(std::hint::black_box(addr))
            .len();
    }
    let covering = t0.elapsed();
    anyhow::ensure!(found > 0 || decisions == 0, "no lookup found its decision");
    let readers = vec![Dataplane::open(&pins)?];
    for _ in 0..2 {
        let p = poll::read(&readers, true)?;
        engine.tick(p.now_ns, p.readings, Duration::ZERO);
    }
    let (_, rss) = usage();
    drop(engine);
    let t0 = Instant::now();
    let read = Store::open(state)?.decisions()?.len();
    let reload = t0.elapsed();
    anyhow::ensure!(
        read == decisions,
        "{read} decisions read back of {decisions}"
    );
    Ok(EngineScale {
        decisions,
        sources: per_family * 2,
        bulk_load_s: bulk.as_secs_f64(),
        covering_us: covering.as_secs_f64() * 1e6 / f64::from(LOOKUPS),
        peak_rss_mb: rss as f64 / 1e6,
        reload_s: reload.as_secs_f64(),
    })
}

/// Enrichment client throughput against the stand-in with `latency` per answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrichThroughput {
    pub lookups: usize,
    pub concurrency: usize,
    pub latency_ms: u64,
    pub per_second: f64,
}

pub fn enrichment_throughput(
    lookups: usize,
    concurrency: usize,
    latency: Duration,
) -> anyhow::Result<EnrichThroughput> {
    use ipwarden_tests::ipasis_stub::{IpasisStub, Reply, answers};
    let stub = IpasisStub::start();
    stub.set_fallback(Reply::json(answers::HOSTING).delayed(latency));
    let cfg = ipwarden::config::IpasisConfig {
        base_url: ipwarden::config::Url::parse(&stub.base_url()).expect("the stub URL parses"),
        ..Default::default()
    };
    let key = ipwarden::enrich::ApiKey::new("ipasis_bench", "bench")?;
    let client = ipwarden::enrich::IpasisClient::new(&cfg, &key)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    rt.block_on(async {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = Vec::new();
        for i in 0..lookups {
            let c = client.clone();
            let permit = sem.clone().acquire_owned().await.expect("semaphore");
            tasks.push(tokio::spawn(async move {
                let addr = IpAddr::from([192, 0, 2, (i % 250) as u8]);
                let r = c.lookup(addr).await;
                drop(permit);
                r
            }));
        }
        for t in tasks {
            t.await.context("lookup task")?.context("lookup")?;
        }
        anyhow::Ok(())
    })?;
    let took = t0.elapsed();
    Ok(EnrichThroughput {
        lookups,
        concurrency,
        latency_ms: latency.as_millis() as u64,
        per_second: lookups as f64 / took.as_secs_f64(),
    })
}

/// CPU use of an idle daemon over `window`, in percent of one core.
pub fn idle_cpu(pid: i32, window: Duration) -> anyhow::Result<f64> {
    let ticks = || -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let after = stat.rsplit_once(')').context("stat format")?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let a = ticks()?;
    std::thread::sleep(window);
    let b = ticks()?;
    Ok((b - a) as f64 / hz / window.as_secs_f64() * 100.0)
}

/// Parses a probe's JSON line.
pub fn parse<T: for<'de> Deserialize<'de>>(stdout: &[u8]) -> anyhow::Result<T> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().context("probe printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("probe output: {text}"))
}

/// One poll that makes `n` velocity decisions (a flood spread over `n` sources, each above
/// `pps_threshold`), against real pinned maps and a real store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enactment {
    pub decisions: usize,
    /// Seconds the poll's engine work took (detect, decide, store in one transaction, enforce).
    pub tick_s: f64,
    /// Write transactions (fsyncs) it cost.
    pub store_writes: u64,
}

pub fn enact(bpffs: &Path, state: &Path, n: usize) -> anyhow::Result<Enactment> {
    let _subject = kernel::ipwarden_sized(bpffs, 1, 1024, (2 * n as u32).max(1024))?;
    let pins = PinDir::new(bpffs, "bench1");
    let mut cfg = Config::default();
    cfg.decisions.max_decisions = n + 16;
    let plane = Plane::new(
        "bench",
        AttachKind::Adopted,
        Box::new(Dataplane::open(&pins)?),
    );
    let mut engine = State::new(cfg, None, Store::open(state)?, vec![plane]);
    const S: u64 = 1_000_000_000;
    // A first, empty poll (it also prunes the history: a write of its own).
    engine.tick(100 * S, Vec::new(), Duration::ZERO);
    let snapshots: Vec<ipwarden::detect::Reading> = (0..n)
        .map(|i| {
            let addr = IpAddr::from(0x6440_0000u32.wrapping_add(i as u32).to_be_bytes());
            (
                ipwarden::net::host_prefix(addr),
                ipwarden::detect::Snapshot {
                    packets: 50_000,
                    bytes: 5_000_000,
                    syn: 0,
                    first_seen_ns: 100 * S,
                    addr,
                },
            )
                .into()
        })
        .collect();
    let writes = engine.engine.store_writes();
    let t0 = Instant::now();
    engine.tick(110 * S, snapshots, Duration::ZERO);
    let tick = t0.elapsed();
    anyhow::ensure!(
        engine.engine.book().len() == n,
        "{} of {n} decisions enacted",
        engine.engine.book().len()
    );
    Ok(Enactment {
        decisions: n,
        tick_s: tick.as_secs_f64(),
        store_writes: engine.engine.store_writes() - writes,
    })
}
