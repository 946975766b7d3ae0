//! `ipwarden-bench`: the benchmark runner behind `cargo xtask bench` (run as root).
//!
//! `ipwarden-bench [--quick] [--out DIR]` runs everything and writes `DIR/RESULTS.md` and
//! `DIR/kernel-cost.svg`; `ipwarden-bench probe poll|engine …` are the child processes that
//! measure one scenario's memory alone.

use std::{fmt::Write as _, path::PathBuf, process::Command, time::Duration};

use anyhow::Context as _;
use ipwarden_runners::bench::{
    self, controller, kernel,
    kernel_section::kernel_section,
    live,
    live_section::live_section,
    more_sections::{fleet_section, listing_section, sources_section, verdict_section},
    report, stats,
};
use ipwarden_tests::{BpfFs, require_privileges};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("probe") {
        return probe(&args[1..]);
    }
    require_privileges();
    let only_live = args.first().map(String::as_str) == Some("live");
    let opts = bench::Options {
        quick: args.iter().any(|a| a == "--quick"),
        out: args
            .iter()
            .position(|a| a == "--out")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("bench")),
    };
    if args.first().map(String::as_str) == Some("sources") {
        let mut md = String::new();
        sources_section(&mut md, opts.quick)?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("deployed") {
        // The deployed-daemon rows of the live section alone, printed.
        let mut bed = live::Bed::new(ipwarden::dataplane::object::baseline::TX)?;
        let mut md = String::new();
        bench::deployed::deployed(&mut md, &mut bed, &opts)?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("enact") {
        // One poll's 10 000 velocity decisions, printed.
        let bpffs = BpfFs::new();
        let state = tempfile::tempdir()?;
        let mut times = Vec::new();
        let mut writes = 0;
        for _ in 0..if opts.quick { 3 } else { 7 } {
            let state = tempfile::tempdir_in(state.path())?;
            let e = controller::enact(bpffs.path(), state.path(), 10_000)?;
            times.push(e.tick_s);
            writes = e.store_writes;
        }
        let (median, min) = stats(&times);
        println!(
            "Enacting the 10000 velocity decisions of one poll (detect, decide, store, enforce in real maps): median {:.3} s, min {:.3} s, {writes} write transaction(s), {} runs",
            median,
            min,
            times.len()
        );
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("accuracy") {
        let mut md = String::new();
        bench::accuracy::accuracy_section(&mut md)?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("daemon") {
        let mut md = String::new();
        daemon_section(&mut md, opts.quick)?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("listing") {
        let mut md = String::new();
        listing_section(&mut md, opts.quick)?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("verdict") {
        let mut md = String::new();
        verdict_section(&mut md, opts.quick)?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("syncookies") {
        // SYN cookies under a spoofed SYN flood, printed.
        let bpffs = BpfFs::new();
        let mut md = String::new();
        bench::synproxy_section::syn_cookies(&mut md, bpffs.path(), &opts)?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("fleet") {
        // The fleet section alone, printed.
        let mut md = String::new();
        fleet_section(&mut md, opts.quick)?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("kernel") {
        // The in-kernel section alone at the smallest and largest size, printed.
        let bpffs = BpfFs::new();
        let mut md = String::new();
        kernel_section(
            &mut md,
            bpffs.path(),
            &[1, 1_000_000],
            (3, 200_000, 100_000),
            &std::env::temp_dir(),
        )?;
        println!("{md}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("spray") {
        // Working on the many-sources path: `spray N [SUBJECT]` sprays N blocked /64s at
        // ipwarden and xdp-filter (1M entries each), or at SUBJECT alone (for a profiler), and
        // prints each run's rate.
        let counts: Vec<u32> = args
            .get(1)
            .context("spray N[,N…]")?
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let unblocked = args.iter().any(|a| a == "--unblocked");
        let only = args.get(2).filter(|a| !a.starts_with("--")).cloned();
        let bpffs = BpfFs::new();
        let entries = 1_000_000;
        let mut subjects = if unblocked {
            [
                kernel::ipwarden_sink(bpffs.path(), entries)?,
                kernel::xdp_filter_deny(bpffs.path(), entries)?,
            ]
        } else {
            [
                kernel::ipwarden(bpffs.path(), entries, 100_000)?,
                kernel::xdp_filter(bpffs.path(), entries)?,
            ]
        };
        let mut bed = live::Bed::new(ipwarden::dataplane::object::baseline::TX)?;
        let mut dp = ipwarden::dataplane::Dataplane::open(&ipwarden::dataplane::PinDir::new(
            bpffs.path(),
            format!("{}{entries}", if unblocked { "sink" } else { "bench" }),
        ))?;
        eprintln!("index ways (v4, v6): {:?}", dp.index_len()?);
        if args.iter().any(|a| a == "--no-admission") {
            dp.set_admission(Default::default(), &[])?;
        }
        for round in 0..if opts.quick { 3 } else { 7 } {
            for (i, s) in subjects.iter_mut().enumerate() {
                if only.as_deref().is_some_and(|o| !s.name.starts_with(o)) {
                    continue;
                }
                let name = s.name.clone();
                for &n in &counts {
                    let traffic = if unblocked && args.iter().any(|a| a == "--syn") {
                        live::Traffic::SpraySynUnblocked(n)
                    } else if unblocked {
                        live::Traffic::SprayUnblocked(n)
                    } else {
                        live::Traffic::Spray(n)
                    };
                    let r = bed.measure(&mut live::Receiver::Xdp(s), traffic, 3_000_000)?;
                    println!(
                        "round {round} {i} {name} {n}: {:.2} Mpps, {:.0} ns/frame",
                        r.pps / 1e6,
                        r.cpu * 1e9 / r.pps
                    );
                }
            }
        }
        return Ok(());
    }
    if only_live {
        // The live section alone, printed, for working on it.
        let bpffs = BpfFs::new();
        let n = 1_000_000;
        let mut subjects = vec![
            kernel::empty(bpffs.path(), true)?,
            kernel::ipwarden(bpffs.path(), n, 100_000)?,
            kernel::xdp_filter(bpffs.path(), n)?,
        ];
        let mut md = String::new();
        live_section(&mut md, bpffs.path(), &mut subjects, n, &opts)?;
        println!("{md}");
        return Ok(());
    }
    run(&opts)
}

fn probe(args: &[String]) -> anyhow::Result<()> {
    let bpffs = BpfFs::new();
    let n =
        |i: usize| -> anyhow::Result<usize> { Ok(args.get(i).context("missing size")?.parse()?) };
    let json = match args.first().map(String::as_str) {
        Some("poll") => serde_json::to_string(&controller::probe_poll(bpffs.path(), n(1)?)?)?,
        Some("engine") => {
            let state = tempfile::tempdir()?;
            serde_json::to_string(&controller::probe_engine(
                bpffs.path(),
                state.path(),
                n(1)?,
                n(2)?,
            )?)?
        }
        other => anyhow::bail!("unknown probe {other:?}"),
    };
    println!("{json}");
    Ok(())
}

fn child(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(std::env::current_exe()?)
        .arg("probe")
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "probe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!(
        "{cores} vCPU ({cpu}), {:.0} GiB, kernel {}",
        mem as f64 / 1048576.0,
        kernel.trim()
    )
}

fn run(opts: &bench::Options) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (rounds, repeat) = if opts.quick {
        (3, 200_000)
    } else {
        (7, 1_000_000)
    };
    let sizes: &[usize] = &[1, 10_000, 100_000, 1_000_000];
    let warm = 100_000;
    std::fs::create_dir_all(&opts.out)?;
    let mut md = String::new();
    let _ = writeln!(md, "# ipwarden benchmark results\n");
    let _ = writeln!(md, "- machine: {}", machine());
    let _ = writeln!(
        md,
        "- date: {}",
        Command::new("date")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "- command: `cargo xtask bench{}` (as root)",
        if opts.quick { " --quick" } else { "" }
    );
    let _ = writeln!(
        md,
        "- method: BPF_PROG_TEST_RUN, {repeat} repetitions per run, {rounds} interleaved rounds; medians (min in parentheses); \"net\" = above the empty XDP_PASS (pass cases) or XDP_DROP (drop cases) program of the same run. CPU speed on these VMs varies by up to 2x for seconds at a time: compare within a table, not across runs.\n"
    );

    let bpffs = BpfFs::new();
    let mut subjects = kernel_section(
        &mut md,
        bpffs.path(),
        sizes,
        (rounds, repeat, warm),
        &opts.out,
    )?;
    let largest = *sizes.last().expect("sizes");
    live_section(&mut md, bpffs.path(), &mut subjects, largest, opts)?;
    drop(subjects);
    bench::synproxy_section::syn_cookies(&mut md, bpffs.path(), opts)?;

    // 3. Controller scale.
    eprintln!("controller: poll cost");
    let _ = writeln!(md, "## 3. Controller\n");
    let poll_sizes: &[usize] = &[10_000, 100_000, 1_000_000];
    let mut rows = Vec::new();
    for &n in poll_sizes {
        let mut runs: Vec<controller::PollCost> = Vec::new();
        for _ in 0..if opts.quick { 1 } else { 3 } {
            runs.push(controller::parse(&child(&["poll", &n.to_string()])?)?);
        }
        let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_ms).collect();
        let read: Vec<f64> = runs.iter().map(|r| r.read_ms).collect();
        let kernel: Vec<f64> = runs.iter().map(|r| r.kernel_ms).collect();
        let rss: Vec<f64> = runs.iter().map(|r| r.peak_rss_mb).collect();
        rows.push(vec![
            n.to_string(),
            format!("{:.0}", stats(&cpu).0),
            format!("{:.0}", stats(&kernel).0),
            format!("{:.0}", stats(&read).0),
            format!("{:.0}", stats(&rss).0),
        ]);
    }
    let _ = writeln!(
        md,
        "One steady-state poll (batched read of every counter, rates over the window), half IPv4 sources, half IPv6 /64s; each size in its own process:\n"
    );
    md.push_str(&report::table(
        &[
            "active sources",
            "CPU ms per poll",
            "of which kernel (sys) ms",
            "read into snapshots (wall ms)",
            "peak RSS MB",
        ],
        &rows,
    ));

    eprintln!("controller: engine with many decisions");
    let (decisions, sources) = if opts.quick {
        (100_000, 100_000)
    } else {
        (1_000_000, 1_000_000)
    };
    let e: controller::EngineScale = controller::parse(&child(&[
        "engine",
        &decisions.to_string(),
        &sources.to_string(),
    ])?)?;
    let _ = writeln!(
        md,
        "\nDaemon core (engine, store, detector) with {} decisions bulk-loaded (one durable transaction, then the maps) and {} active sources: bulk load {:.1} s, peak RSS {:.0} MB; the decisions covering an address (asked for each heavy hitter found, and by `explain`) found in {:.1} µs; a restart reads the decisions back from the store in {:.2} s.\n",
        e.decisions, e.sources, e.bulk_load_s, e.peak_rss_mb, e.covering_us, e.reload_s
    );

    eprintln!("controller: enrichment throughput");
    let t = controller::enrichment_throughput(
        if opts.quick { 100 } else { 400 },
        4,
        Duration::from_millis(50),
    )?;
    let _ = writeln!(
        md,
        "Enrichment client against the stand-in API with {} ms added latency, {} lookups at concurrency {}: {:.1} lookups/s (the configured `requests_per_second`, default 5, is the operational bound).\n",
        t.latency_ms, t.lookups, t.concurrency, t.per_second
    );

    eprintln!("daemon: idle CPU and reaction time");
    daemon_section(&mut md, opts.quick)?;

    eprintln!("detection under a spray: hidden heavy sources");
    bench::accuracy::accuracy_section(&mut md)?;

    eprintln!("outside sources: CrowdSec and a feed");
    sources_section(&mut md, opts.quick)?;

    eprintln!("decisions at a million: import and list");
    listing_section(&mut md, opts.quick)?;

    eprintln!("fleet: propagation and join");
    fleet_section(&mut md, opts.quick)?;

    eprintln!("the verdict endpoint under load");
    verdict_section(&mut md, opts.quick)?;

    let _ = writeln!(md, "Whole run: {:.0} s.", started.elapsed().as_secs_f64());
    std::fs::write(opts.out.join("RESULTS.md"), &md)?;
    println!("{md}");
    eprintln!("wrote {}", opts.out.join("RESULTS.md").display());
    Ok(())
}

/// Section 4: idle CPU, and reaction with and without loud-source hints.
fn daemon_section(md: &mut String, quick: bool) -> anyhow::Result<()> {
    let d = bench::daemon::measure(
        Duration::from_secs(if quick { 5 } else { 20 }),
        if quick { 3 } else { 5 },
    )?;
    let _ = writeln!(md, "## 4. The daemon\n");
    let _ = writeln!(
        md,
        "- idle CPU (default configuration, one interface, no traffic, {} s): {:.2} % of one core",
        d.idle_window.as_secs(),
        d.idle_cpu_percent
    );
    let poll = d.poll_interval.as_secs_f64() * 1e3;
    let ms = |v: &[Duration]| -> (f64, f64, f64) {
        let mut v: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let _ = writeln!(
        md,
        "- reaction, first packet of a 5000 pps flood to first dropped packet, poll interval {poll:.0} ms, Tor verdict, {} floods each (median, min–max):",
        d.hinted.cached.len()
    );
    for (what, hinted, polled) in [
        ("answer cached", &d.hinted.cached, &d.polled.cached),
        (
            "answer looked up (stand-in API, 50 ms latency)",
            &d.hinted.uncached,
            &d.polled.uncached,
        ),
    ] {
        let (h, hmin, hmax) = ms(hinted);
        let (p, pmin, pmax) = ms(polled);
        let _ = writeln!(
            md,
            "  - {what}: **{h:.0} ms** ({hmin:.0}–{hmax:.0}) with loud-source hints (default `fast_window`), {p:.0} ms ({pmin:.0}–{pmax:.0}) with polls only: {:.2}× the polls-only time",
            h / p
        );
    }
    let _ = writeln!(md);
    Ok(())
}
