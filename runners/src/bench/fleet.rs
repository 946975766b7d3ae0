//! Fleet propagation: how long a decision published to the fleet takes to reach the peers' data
//! planes, at one decision per second and in a burst of 10 000, and how long a host joining a
//! bucket of 100 000 decisions takes until its maps hold them all.
//!
//! A JetStream server on a hub namespace, two (and later a third) real daemons on their own
//! edges; the decisions are written into the bucket as host `edge-a` would write them, from a
//! client inside the hub namespace, and the peers' kernel block maps are watched from here.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use ipwarden::{
    decision::{Decision, Holder, Origin, now_unix_ms},
    fleet::{keys, wire::Shared},
};
use ipwarden_tests::{Daemon, DaemonEnv, fleet::Hub};

/// What was measured.
pub struct FleetFigures {
    pub peers: usize,
    /// Per decision, put acknowledged → in a peer's block map (every peer's sample).
    pub steady: Vec<Duration>,
    pub burst: usize,
    /// Per decision of the burst, its put acknowledged → in a peer's block map.
    pub burst_latency: Vec<Duration>,
    /// First put → every peer's maps hold the whole burst.
    pub burst_all: Duration,
    /// Polls a peer made during the burst, and how many its interval allows.
    pub burst_polls: (u64, u64),
    pub join: usize,
    /// A fresh daemon's start → its maps hold the whole bucket.
    pub join_time: Duration,
}

const POLL: Duration = Duration::from_millis(200);

fn config(hub: &Hub, name: &str) -> String {
    format!(
        "[detection]\npoll_interval = \"200ms\"\n\n[fleet]\nurl = \"{}\"\nhost_id = \"{name}\"\n",
        hub.nats.url()
    )
}

/// The n-th benchmark prefix: IPv6 /64s of 2001:db8::/32 (`base` picks a range per phase).
fn prefix(base: u16, n: usize) -> IpNet {
    let hi = base + (n >> 16) as u16;
    let lo = (n & 0xffff) as u16;
    IpNet::new(IpAddr::from([0x2001, 0xdb8, hi, lo, 0, 0, 0, 0u16]), 64).expect("a /64")
}

/// `edge-a`'s key and value for a block of `p`.
fn entry(p: IpNet) -> (String, Vec<u8>) {
    let d = Decision::block(
        p,
        Holder::of(Origin::Manual),
        "fleet benchmark",
        now_unix_ms(),
        Some(Duration::from_secs(3600)),
    );
    let key = keys::decision_key("edge-a", &d.holder(), &d.prefix);
    (
        key,
        serde_json::to_vec(&Shared::of("edge-a", &d)).expect("serializes"),
    )
}

/// Puts `entries` from inside the hub namespace, `concurrency` at a time, `pace` apart when
/// given; each key's acknowledgement time goes into `acked`.
fn publish(
    hub: &Hub,
    entries: Vec<(String, Vec<u8>)>,
    concurrency: usize,
    pace: Option<Duration>,
    acked: Arc<Mutex<HashMap<String, Instant>>>,
) -> anyhow::Result<()> {
    let url = hub.nats.url();
    hub.ns.run(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = async_nats::connect(url).await?;
            let kv = async_nats::jetstream::new(client)
                .get_key_value("ipwarden-decisions")
                .await?;
            let mut it = entries.into_iter();
            loop {
                let chunk: Vec<_> = it.by_ref().take(concurrency).collect();
                if chunk.is_empty() {
                    return Ok(());
                }
                let puts = chunk.into_iter().map(|(k, v)| {
                    let kv = kv.clone();
                    let acked = acked.clone();
                    async move {
                        kv.put(&k, v.into()).await?;
                        acked.lock().expect("lock").insert(k, Instant::now());
                        Ok::<_, anyhow::Error>(())
                    }
                });
                for r in futures_util::future::join_all(puts).await {
                    r?;
                }
                if let Some(p) = pace {
                    tokio::time::sleep(p).await;
                }
            }
        })
    })
}

/// Watches `envs`' block maps until each holds every prefix in `want` (or `limit` passes);
/// the time each prefix first appeared in each map.
fn watch_maps(
    envs: &[&DaemonEnv],
    want: &[IpNet],
    limit: Duration,
    every: Duration,
) -> Vec<HashMap<IpNet, Instant>> {
    let mut seen: Vec<HashMap<IpNet, Instant>> = vec![HashMap::new(); envs.len()];
    let planes: Vec<_> = envs.iter().map(|e| e.ipw.dataplane()).collect();
    let deadline = Instant::now() + limit;
    let complete = |s: &HashMap<IpNet, Instant>| want.iter().all(|p| s.contains_key(p));
    while Instant::now() < deadline && !seen.iter().all(complete) {
        for (i, dp) in planes.iter().enumerate() {
            if complete(&seen[i]) {
                continue;
            }
            let now = Instant::now();
            if let Ok(rules) = dp.blocks() {
                for r in rules {
                    seen[i].entry(r.net).or_insert(now);
                }
            }
        }
        std::thread::sleep(every);
    }
    seen
}

pub fn measure(quick: bool) -> anyhow::Result<FleetFigures> {
    let hub = Hub::new();
    let peers: Vec<DaemonEnv> = ["edge-b", "edge-c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let env = DaemonEnv::new(&config(&hub, name), &[]);
            hub.link(&env, i + 1);
            env
        })
        .collect();
    let _daemons: Vec<Daemon> = peers.iter().map(|e| e.start()).collect();
    let up = Instant::now();
    while peers
        .iter()
        .any(|e| e.home.json(&["status"])["fleet"]["connected"] != true)
    {
        anyhow::ensure!(
            up.elapsed() < Duration::from_secs(15),
            "the fleet link did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let refs: Vec<&DaemonEnv> = peers.iter().collect();

    // One decision per second.
    let n = if quick { 10 } else { 30 };
    let mut steady = Vec::new();
    for k in 0..n {
        let p = prefix(0x1000, k);
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let (key, value) = entry(p);
        let watcher = std::thread::scope(|s| {
            let w = s.spawn(|| {
                watch_maps(
                    &refs,
                    &[p],
                    Duration::from_secs(5),
                    Duration::from_micros(500),
                )
            });
            publish(&hub, vec![(key.clone(), value)], 1, None, acked.clone())?;
            anyhow::Ok(w.join().expect("watcher"))
        })?;
        let at = acked.lock().expect("lock")[&key];
        for s in &watcher {
            let t = s
                .get(&p)
                .ok_or_else(|| anyhow::anyhow!("{p} never reached a peer"))?;
            steady.push(t.saturating_duration_since(at));
        }
        std::thread::sleep(Duration::from_millis(1000).saturating_sub(at.elapsed()));
    }

    // A burst.
    let burst = 10_000;
    let want: Vec<IpNet> = (0..burst).map(|i| prefix(0x2000, i)).collect();
    let entries: Vec<_> = want.iter().map(|p| entry(*p)).collect();
    let keys_of: HashMap<String, IpNet> = entries
        .iter()
        .map(|(k, _)| k.clone())
        .zip(want.iter().copied())
        .collect();
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let polls = |e: &DaemonEnv| e.home.json(&["status"])["polls"].as_u64().unwrap_or(0);
    let polls_before = polls(refs[0]);
    let t0 = Instant::now();
    let all_want: Vec<IpNet> = (0..n)
        .map(|k| prefix(0x1000, k))
        .chain(want.iter().copied())
        .collect();
    let seen = std::thread::scope(|s| {
        let w = s.spawn(|| {
            watch_maps(
                &refs,
                &all_want,
                Duration::from_secs(120),
                Duration::from_millis(20),
            )
        });
        publish(&hub, entries, 256, None, acked.clone())?;
        anyhow::Ok(w.join().expect("watcher"))
    })?;
    let burst_all = t0.elapsed();
    let polls_after = polls(refs[0]);
    let acked = acked.lock().expect("lock");
    let mut burst_latency = Vec::new();
    for s in &seen {
        anyhow::ensure!(
            s.len() >= all_want.len(),
            "a peer holds {} of {} after 120 s",
            s.len(),
            all_want.len()
        );
        for (k, at) in acked.iter() {
            let p = keys_of[k];
            burst_latency.push(s[&p].saturating_duration_since(*at));
        }
    }
    let allowed = (burst_all.as_secs_f64() / POLL.as_secs_f64()) as u64;

    // A host joining a bucket of `join` decisions.
    let join = if quick { 20_000 } else { 100_000 };
    let more: Vec<_> = (burst..join).map(|i| entry(prefix(0x2000, i))).collect();
    let total = join + n;
    publish(&hub, more, 256, None, Arc::new(Mutex::new(HashMap::new())))?;
    let fresh = DaemonEnv::new(&config(&hub, "edge-d"), &[]);
    hub.link(&fresh, 3);
    let t0 = Instant::now();
    let _d = fresh.start();
    loop {
        let held = fresh.home.json(&["status"])["decisions"]
            .as_u64()
            .unwrap_or(0);
        if held as usize >= total {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "the joiner holds {held} of {total} after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let join_time = t0.elapsed();
    // Memory is updated after the maps (store, planes, memory): check the maps hold them.
    let in_maps = fresh.ipw.dataplane().blocks()?.len();
    anyhow::ensure!(
        in_maps >= total,
        "the joiner's maps hold {in_maps} of {total}"
    );
    Ok(FleetFigures {
        peers: refs.len(),
        steady,
        burst,
        burst_latency,
        burst_all,
        burst_polls: (polls_after - polls_before, allowed),
        join: total,
        join_time,
    })
}

/// The `q`-quantile of `v` (sorted here).
pub fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}
