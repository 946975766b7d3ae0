//! The verdict endpoint under a keep-alive load generator (`wrk`), against nginx answering a
//! static 204 in the same run (the floor: what one HTTP hop costs here). The endpoint runs in
//! this process on one runtime thread with 100 000 decisions in its mirror; `wrk` runs on the
//! other core. Cached: every request is about one address with a cached IPASIS answer; unknown:
//! every request a new random IPv6 /64 (no answer, so a lookup is queued each time).

use std::{net::IpAddr, process::Command, sync::Arc, time::Duration};

use anyhow::Context as _;
use ipnet::IpNet;
use ipwarden::{
    config::{Config, VerdictConfig},
    decision::{Decision, Holder, Origin, now_unix_ms},
    enrich::{ApiKey, IpasisClient, Pipeline, Record},
    store::{CachedAnswer, Store},
    verdict::{Endpoint, Key, Parts, Table},
};
use ipwarden_tests::nginx;

/// One load's figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Medians over the rounds, per target.
pub struct VerdictFigures {
    pub floor: Vec<Load>,
    pub cached: Vec<Load>,
    pub unknown: Vec<Load>,
    pub connections: u32,
    pub secs: u64,
}

const CACHED: &str = "198.51.100.7";

fn endpoint(dir: &std::path::Path, port: u16) -> anyhow::Result<Arc<Endpoint>> {
    let store = Store::open(dir)?;
    store.put_answer(
        IpNet::from(CACHED.parse::<IpAddr>()?),
        &CachedAnswer {
            record: Some(Record {
                vpn: Some(true),
                hosting: Some(true),
                ..Record::default()
            }),
            fetched_unix_ms: now_unix_ms(),
            host: None,
        },
    )?;
    let now = now_unix_ms();
    let decisions: Vec<Decision> = (0..100_000u32)
        .map(|i| {
            Decision::block(
                IpNet::from(IpAddr::from((0x6440_0000u32 + i).to_be_bytes())),
                Holder::of(Origin::Feed),
                "bench",
                now,
                None,
            )
        })
        .collect();
    let cfg = Config {
        verdict: Some(VerdictConfig {
            listen: ([127, 0, 0, 1], port).into(),
            ..VerdictConfig::default()
        }),
        ..Config::default()
    };
    let key = ApiKey::new("ipasis_bench_key_000000", "bench")?;
    let client = IpasisClient::new(&cfg.ipasis, &key)?;
    // Never run: lookups queue until the queue is full, as under a flood of new addresses.
    let pipeline = Arc::new(Pipeline::new(cfg.ipasis.clone(), client));
    let (events, _) = tokio::sync::mpsc::channel(16);
    Ok(Arc::new(Endpoint::new(
        &cfg,
        Parts {
            table: Table::seeded(decisions.iter(), Vec::new()),
            answers: store.answers(),
            pipeline: Some(pipeline),
            events,
            key: Key::from_bytes([1; 32]),
        },
    )))
}

fn wrk(url: &str, script: &std::path::Path, connections: u32, secs: u64) -> anyhow::Result<Load> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk (cargo xtask bench installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {text}");
    let ms = |label: &str| -> Option<f64> {
        let v = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))?
            .split_whitespace()
            .nth(1)?
            .to_owned();
        let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = n.parse().ok()?;
        Some(match unit {
            "us" => n / 1e3,
            "ms" => n,
            "s" => n * 1e3,
            _ => return None,
        })
    };
    let per_sec = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("wrk printed no rate")?;
    // A non-2xx answer is expected (401/403 are verdicts); socket errors are not.
    anyhow::ensure!(
        !text.contains("Socket errors"),
        "wrk saw socket errors: {text}"
    );
    Ok(Load {
        per_sec,
        p50_ms: ms("50%").context("no p50")?,
        p99_ms: ms("99%").context("no p99")?,
    })
}

const CACHED_LUA: &str = r#"wrk.headers["X-Forwarded-For"] = "198.51.100.7""#;
const UNKNOWN_LUA: &str = r#"
math.randomseed(7)
request = function()
  local a = string.format("2001:db8:%x:%x::1", math.random(0, 65535), math.random(0, 65535))
  return wrk.format("GET", "/verdict", { ["X-Forwarded-For"] = a })
end
"#;

pub fn measure(quick: bool) -> anyhow::Result<VerdictFigures> {
    let dir = tempfile::tempdir()?;
    let port = 19721;
    let ep = endpoint(dir.path(), port)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let server = rt.block_on(ipwarden::verdict::serve(ep))?;
    let runner = std::thread::spawn(move || rt.block_on(server));
    let floor_dir = tempfile::tempdir()?;
    let floor = FloorNginx::start(floor_dir.path(), 19722)?;
    let scripts = tempfile::tempdir()?;
    let cached_lua = scripts.path().join("cached.lua");
    let unknown_lua = scripts.path().join("unknown.lua");
    std::fs::write(&cached_lua, CACHED_LUA)?;
    std::fs::write(&unknown_lua, UNKNOWN_LUA)?;
    let (rounds, secs, connections) = if quick { (2, 3, 16) } else { (3, 5, 16) };
    let mut f = VerdictFigures {
        floor: Vec::new(),
        cached: Vec::new(),
        unknown: Vec::new(),
        connections,
        secs,
    };
    let verdict_url = format!("http://127.0.0.1:{port}/verdict");
    for _ in 0..rounds {
        f.floor.push(wrk(
            "http://127.0.0.1:19722/",
            &cached_lua,
            connections,
            secs,
        )?);
        f.cached
            .push(wrk(&verdict_url, &cached_lua, connections, secs)?);
        f.unknown
            .push(wrk(&verdict_url, &unknown_lua, connections, secs)?);
    }
    drop(floor);
    drop(runner);
    Ok(f)
}

/// nginx answering 204 to everything, one worker.
struct FloorNginx(std::process::Child);

impl FloorNginx {
    fn start(dir: &std::path::Path, port: u16) -> anyhow::Result<Self> {
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n  server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }} }}\n"
            ),
        )?;
        let child = Command::new(nginx::binary())
            .args(["-p", &d.to_string(), "-c", "nginx.conf", "-e", "error.log"])
            .spawn()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(std::time::Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self(child))
    }
}

impl Drop for FloorNginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The median of one figure over rounds.
pub fn median(loads: &[Load], f: impl Fn(&Load) -> f64) -> f64 {
    crate::bench::stats(&loads.iter().map(f).collect::<Vec<_>>()).0
}
