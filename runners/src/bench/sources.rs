//! Outside decision sources at scale, through the real daemon: a CrowdSec LAPI (Debian's 1.4.6)
//! holding 100 000 decisions when the daemon starts, a delta of 10 000 more, and a feed file of
//! 100 000 prefixes. Each figure: from the moment the source has them to the moment the
//! daemon's kernel maps hold them all.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use ipwarden_tests::{DaemonEnv, crowdsec::Lapi};

pub struct SourceFigures {
    pub startup: usize,
    pub startup_time: Duration,
    pub delta: usize,
    pub delta_time: Duration,
    /// Decisions of the delta that only the periodic resync brought (the LAPI lost them).
    pub healed: u64,
    pub feed: usize,
    pub feed_time: Duration,
}

/// Waits (bounded) until the maps hold at least `n` entries.
fn until_maps_hold(env: &DaemonEnv, n: usize, limit: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let dp = env.ipw.dataplane();
    loop {
        // Status first (cheap); the maps once it says enough (they are written before memory).
        let held = env.home.json(&["status"])["decisions"]
            .as_u64()
            .unwrap_or(0) as usize;
        if held >= n && dp.blocks()?.len() >= n {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(t0.elapsed() < limit, "{held} of {n} after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A CSV for `cscli decisions import`: `count` IPv6 /64s (as /128 values, enforced per /64).
fn csv(path: &std::path::Path, base: u16, count: usize) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "duration,scope,type,value")?;
    for i in 0..count {
        writeln!(
            f,
            "24h,ip,ban,2001:db8:{:x}:{:x}::1",
            base + (i >> 16) as u16,
            i & 0xffff
        )?;
    }
    Ok(f.flush()?)
}

pub fn measure(quick: bool) -> anyhow::Result<SourceFigures> {
    let (startup, delta, feed) = if quick {
        (20_000, 2_000, 20_000)
    } else {
        (100_000, 10_000, 100_000)
    };
    let env = DaemonEnv::new("", &[]);
    let lapi = Lapi::start(Some(&env.topo.edge));
    let dir = env.home.config().parent().expect("home").to_owned();
    let key = dir.join("crowdsec.key");
    lapi.bouncer_key("bench", &key);
    let file = dir.join("startup.csv");
    csv(&file, 0x3000, startup)?;
    lapi.cscli(&["decisions", "import", "-i", file.to_str().expect("utf-8")]);
    let feed_file = dir.join("feed.txt");
    std::fs::write(&feed_file, "")?;
    std::fs::write(
        env.home.config(),
        format!(
            "[crowdsec]\nlapi_url = \"{}\"\napi_key_file = \"{}\"\npoll_interval = \"500ms\"\nresync_interval = \"5s\"\n\n[[feeds]]\nname = \"bench\"\nurl = \"file:{}\"\nformat = \"cidr-list\"\nrefresh = \"1s\"\n",
            lapi.url(),
            key.display(),
            feed_file.display()
        ),
    )?;
    let _daemon = env.start();
    let startup_time = until_maps_hold(&env, startup, Duration::from_secs(120))?;

    let file = dir.join("delta.csv");
    csv(&file, 0x4000, delta)?;
    // The delta counts from when the LAPI has it.
    lapi.cscli(&["decisions", "import", "-i", file.to_str().expect("utf-8")]);
    let delta_time = until_maps_hold(&env, startup + delta, Duration::from_secs(120))?;
    let healed = env.home.json(&["status"])["crowdsec"]["last_resync_missing"]
        .as_u64()
        .unwrap_or(0);

    let mut body = String::with_capacity(feed * 24);
    for i in 0..feed {
        body.push_str(&format!(
            "2001:db8:{:x}:{:x}::/64\n",
            0x5000 + (i >> 16),
            i & 0xffff
        ));
    }
    let tmp = feed_file.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &feed_file)?;
    let feed_time = until_maps_hold(&env, startup + delta + feed, Duration::from_secs(120))?;
    Ok(SourceFigures {
        startup,
        startup_time,
        delta,
        delta_time,
        healed,
        feed,
        feed_time,
    })
}
