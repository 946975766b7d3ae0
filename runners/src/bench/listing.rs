//! Decisions at a million through the real daemon and CLI: `ipwarden import` of 1M lines (one
//! durable transaction, then the maps) and `ipwarden list --json` of 1M decisions (paged over
//! the control socket, streamed to stdout).

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ipwarden_tests::{DaemonEnv, ipwarden::binary};

pub struct ListingFigures {
    pub decisions: usize,
    pub import: Duration,
    pub list_json: Duration,
    pub list_bytes: usize,
    pub daemon_peak_mb: f64,
}

pub fn measure(n: usize) -> anyhow::Result<ListingFigures> {
    let env = DaemonEnv::new(&format!("[decisions]\nmax_decisions = {}\n", n + 16), &[]);
    let daemon = env.start();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("list.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
    writeln!(f, "# {n} IPv6 /64s of 2001:db8::/32")?;
    for i in 0..n {
        writeln!(f, "2001:db8:{:x}:{:x}::/64", 0x100 + (i >> 16), i & 0xffff)?;
    }
    f.flush()?;
    drop(f);
    let t0 = Instant::now();
    let out = env.home.cli(&["import", file.to_str().expect("utf-8")]);
    let import = t0.elapsed();
    anyhow::ensure!(out.contains(&format!("imported {n} of {n}")), "{out}");
    let t0 = Instant::now();
    let listed = Command::new(binary())
        .args(["list", "--json", "--socket"])
        .arg(env.home.socket())
        .stderr(Stdio::inherit())
        .output()?;
    let list_json = t0.elapsed();
    anyhow::ensure!(listed.status.success(), "list --json failed");
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    let count = v["decisions"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(count == n, "list --json gave {count} of {n}");
    let in_maps = env.ipw.dataplane().blocks()?.len();
    anyhow::ensure!(in_maps == n, "the maps hold {in_maps} of {n}");
    Ok(ListingFigures {
        decisions: n,
        import,
        list_json,
        list_bytes: listed.stdout.len(),
        daemon_peak_mb: daemon.peak_rss_kb() as f64 / 1024.0,
    })
}
