//! Section 2, continued: the unblocked spray as TCP SYNs against ipwarden as it is deployed: the
//! real daemon on the receiving veth, polling at its default interval, with a million /64 blocks
//! imported through its CLI; against xdp-filter (allow by default, its million-entry set) and an
//! empty XDP_PASS. All three pass the sprayed SYNs up the stack, so the receiver's CPU per frame
//! above the empty XDP_PASS's is what the filter adds, the daemon's polls included.

use std::{fmt::Write as _, io::Write as _};

use anyhow::Context as _;
use ipwarden::dataplane::{Dataplane, PinDir};
use ipwarden_common::GlobalCounter;
use ipwarden_tests::{BpfFs, Daemon, DaemonHome, Ipwarden};
use nix::sys::signal::Signal;

use super::{kernel, live, report, stats};

/// Blocks imported through the daemon (IPv6 /64s of 2001:db8:100::/40, which the spray's
/// 2001:db8:2000::/44 misses).
const BLOCKS: usize = 1_000_000;

/// Production defaults, except room for the blocks and no aggregates: the spray's /48s are
/// themselves an aggregate flood, which the daemon would block, and the row would no longer
/// measure passed frames.
fn config() -> String {
    format!(
        "[decisions]\nmax_decisions = {}\n[detection.aggregate]\nv4_levels = []\nv6_levels = []\n",
        BLOCKS + 16
    )
}

/// Receiver CPU nanoseconds per processed frame.
fn ns(s: &live::Sample) -> f64 {
    s.cpu * 1e9 / s.pps.max(1.0)
}

fn median_ns(v: &[live::Sample]) -> f64 {
    stats(&v.iter().map(ns).collect::<Vec<_>>()).0
}

/// Interleaved rounds of the two baselines (`subjects[pair.0]`, `subjects[pair.1]`):
/// `[count][empty XDP_PASS, xdp-filter]`.
fn baselines(
    bed: &mut live::Bed,
    subjects: &mut [kernel::Subject],
    pair: (usize, usize),
    counts: &[u32],
    rounds: usize,
    frames: u32,
) -> anyhow::Result<Vec<[Vec<live::Sample>; 2]>> {
    let mut out = vec![[Vec::new(), Vec::new()]; counts.len()];
    for round in 0..rounds {
        for (c, &n) in counts.iter().enumerate() {
            for k in 0..2 {
                let which = (k + round + c) % 2;
                let subject = &mut subjects[if which == 0 { pair.0 } else { pair.1 }];
                let s = bed
                    .measure(
                        &mut live::Receiver::Xdp(subject),
                        live::Traffic::SpraySynUnblocked(n),
                        frames,
                    )
                    .with_context(|| format!("deployed: baseline {which}, {n} sources"))?;
                out[c][which].push(s);
            }
        }
    }
    Ok(out)
}

/// The daemon's figures besides the samples.
struct Run {
    samples: Vec<Vec<live::Sample>>,
    /// The same program with the daemon paused (`SIGSTOP`): what the program costs alone.
    paused: Vec<Vec<live::Sample>>,
    last_poll_ms: f64,
    tracked: u64,
    peak_mb: f64,
    import_s: f64,
    /// The daemon's CPU with the blocks held and no traffic, in percent of one core.
    idle_percent: f64,
}

/// The daemon stopped (`SIGSTOP`) while this lives: no poll, no hint read, the program on the
/// interface as it was. Continued (`SIGCONT`) when dropped, whatever happened meanwhile.
struct Paused<'a>(&'a Daemon);

impl<'a> Paused<'a> {
    fn new(daemon: &'a Daemon) -> Self {
        daemon.signal(Signal::SIGSTOP);
        Self(daemon)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        // Not `Daemon::signal`, which panics: a drop may run while an error unwinds.
        let _ = nix::sys::signal::kill(self.0.pid(), Signal::SIGCONT);
    }
}

/// How long the daemon's idle CPU is measured after the import.
const IDLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts the daemon on the bed's receiver, imports the blocks, measures, detaches.
fn daemon_runs(
    bed: &mut live::Bed,
    counts: &[u32],
    rounds: usize,
    frames: u32,
) -> anyhow::Result<Run> {
    let bpffs = BpfFs::new();
    let home = DaemonHome::new(&config(), bpffs.path());
    let iface = bed.dut_if();
    let daemon = Daemon::start_on(&home, bed.dut(), iface);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("blocks.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
    for i in 0..BLOCKS {
        writeln!(f, "2001:db8:{:x}:{:x}::/64", 0x100 + (i >> 16), i & 0xffff)?;
    }
    f.flush()?;
    drop(f);
    let t0 = std::time::Instant::now();
    let out = home.cli(&["import", file.to_str().context("utf-8 path")?]);
    let import_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.contains(&format!("imported {BLOCKS} of {BLOCKS}")),
        "{out}"
    );
    let dp = Dataplane::open(&PinDir::new(bpffs.path(), iface))?;
    let held = dp.blocks()?.len();
    anyhow::ensure!(held == BLOCKS, "the maps hold {held} of {BLOCKS} blocks");
    // Idle with a million decisions: each poll's upkeep must not read them all.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let idle_percent = super::controller::idle_cpu(daemon.pid().as_raw(), IDLE_WINDOW)?;
    let dropped =
        |dp: &Dataplane| -> anyhow::Result<u64> { Ok(dp.globals()?.get(GlobalCounter::Dropped)) };
    let mut samples = vec![Vec::new(); counts.len()];
    let mut paused = vec![Vec::new(); counts.len()];
    let measured = (|| -> anyhow::Result<()> {
        for round in 0..rounds {
            eprintln!("live, deployed daemon: round {} of {rounds}", round + 1);
            for (c, &n) in counts.iter().enumerate() {
                // Running and paused in turn, in an order that alternates with the round.
                for k in 0..2 {
                    let pause = (k + round + c) % 2 == 1;
                    let _paused = pause.then(|| Paused::new(&daemon));
                    let before = dropped(&dp)?;
                    let s = bed
                        .measure(
                            &mut live::Receiver::Attached,
                            live::Traffic::SpraySynUnblocked(n),
                            frames,
                        )
                        .with_context(|| format!("deployed daemon, {n} sources"))?;
                    // Every sprayed source misses the blocks: a drop would measure something
                    // else.
                    let got = dropped(&dp)? - before;
                    anyhow::ensure!(
                        got * 100 <= s.processed,
                        "the daemon dropped {got} of {} sprayed frames",
                        s.processed
                    );
                    if pause {
                        paused[c].push(s);
                    } else {
                        samples[c].push(s);
                    }
                }
            }
        }
        Ok(())
    })();
    let status = home.json(&["status"]);
    let peak_mb = daemon.peak_rss_kb() as f64 / 1024.0;
    // The program outlives the daemon by design (gap-free restarts): detach it, or the bed's
    // next receivers cannot attach.
    Ipwarden::new(&bpffs).ok(Some(bed.dut()), &["detach", "--iface", iface]);
    drop(daemon);
    measured?;
    Ok(Run {
        samples,
        paused,
        last_poll_ms: status["last_poll_ms"].as_f64().unwrap_or_default(),
        tracked: status["tracked_sources"].as_u64().unwrap_or_default(),
        peak_mb,
        import_s,
        idle_percent,
    })
}

/// Appends the deployed rows.
pub fn deployed(
    md: &mut String,
    bed: &mut live::Bed,
    opts: &crate::bench::Options,
) -> anyhow::Result<()> {
    eprintln!("live, deployed daemon: baselines");
    let (rounds, frames) = if opts.quick {
        (5, 3_000_000)
    } else {
        (9, 6_000_000)
    };
    let counts = [ipwarden_common::front::FRONT_SLOTS * 4, 1_000_000];
    if !std::path::Path::new(kernel::XDP_FILTER_OBJECT).exists() {
        let _ = writeln!(
            md,
            "\nAs deployed: not measured, xdp-filter is not installed (`cargo xtask setup`).\n"
        );
        return Ok(());
    }
    // The baselines on a bpffs of their own, xdp-filter with as many entries as the daemon
    // holds blocks (the quick bench's other sets are smaller).
    let entries = BLOCKS;
    let bpffs = BpfFs::new();
    let mut subjects = [
        kernel::empty(bpffs.path(), false)?,
        kernel::xdp_filter(bpffs.path(), entries)?,
    ];
    let (subjects, pair) = (&mut subjects[..], (0, 1));
    // The daemon holds the interface while it runs, so its rounds cannot interleave with the
    // others': the baselines are measured before and after it, and both are shown.
    let before = baselines(bed, subjects, pair, &counts, rounds, frames)?;
    let run = daemon_runs(bed, &counts, rounds, frames)?;
    eprintln!("live, deployed daemon: baselines again");
    let after = baselines(bed, subjects, pair, &counts, rounds, frames)?;
    let mut rows = Vec::new();
    for (c, &n) in counts.iter().enumerate() {
        let both = |i: usize| -> Vec<live::Sample> {
            before[c][i].iter().chain(&after[c][i]).cloned().collect()
        };
        let (empty, xf, iw, alone) = (
            median_ns(&both(0)),
            median_ns(&both(1)),
            median_ns(&run.samples[c]),
            median_ns(&run.paused[c]),
        );
        let (xf_net, iw_net) = (xf - empty, iw - empty);
        // The daemon's share: per-round differences, running minus paused, measured next to
        // each other.
        let share = stats(
            &run.samples[c]
                .iter()
                .zip(&run.paused[c])
                .map(|(r, p)| ns(r) - ns(p))
                .collect::<Vec<_>>(),
        )
        .0;
        rows.push(vec![
            n.to_string(),
            format!(
                "{:.0} ({:.0} / {:.0})",
                empty,
                median_ns(&before[c][0]),
                median_ns(&after[c][0])
            ),
            format!(
                "{:.0} ({:.0} / {:.0})",
                xf,
                median_ns(&before[c][1]),
                median_ns(&after[c][1])
            ),
            format!("{iw:.0}"),
            format!("{xf_net:+.0}"),
            format!("{iw_net:+.0}"),
            format!("{:.2}", iw_net / xf_net.max(1.0)),
            format!("{alone:.0}"),
            format!("{share:+.0}"),
            format!(
                "{:.2}",
                stats(&run.samples[c].iter().map(|s| s.pps).collect::<Vec<_>>()).0 / 1e6
            ),
        ]);
    }
    let _ = writeln!(
        md,
        "\nAs deployed: the same spray as TCP SYNs ({frames} frames a run, {rounds} rounds per source count) against the real daemon on the receiving veth (default configuration, poll interval {} s, aggregates off), after `ipwarden import` of {BLOCKS} IPv6 /64 blocks ({:.1} s; then, idle with them for {} s, the daemon used {:.2} % of a core), against xdp-filter (allow by default, {entries} entries per family) and an empty XDP_PASS. All three pass the SYNs up the stack (to an address the receiver does not hold, where the stack drops them), so \"net\" is the receiver's CPU per frame above the empty XDP_PASS's: what the filter adds, with the daemon's polls and loud-source hints included for ipwarden (its threads run on either CPU). The daemon holds the interface while it runs: its rounds are interleaved among the source counts, and the baselines are measured before and after it (medians of both; each block's median in parentheses). Each daemon round is run twice, in turn: as deployed, and with the daemon paused (`SIGSTOP`: no poll, no hint read; the program on the interface unchanged), which splits ipwarden's cost into the program's and what the running daemon adds to the receiver's CPU. At the end the daemon tracked {} sources, its last poll took {} ms, its peak RSS was {:.0} MB. Checked: the daemon dropped under 1 % of the sprayed frames.\n",
        ipwarden::config::Config::default()
            .detection
            .poll_interval
            .as_secs_f64(),
        run.import_s,
        IDLE_WINDOW.as_secs(),
        run.idle_percent,
        run.tracked,
        run.last_poll_ms,
        run.peak_mb
    );
    md.push_str(&report::table(
        &[
            "sources (/64s)",
            "empty XDP_PASS ns/frame (before / after)",
            "xdp-filter ns/frame (before / after)",
            "ipwarden daemon ns/frame",
            "xdp-filter net",
            "ipwarden net",
            "ipwarden net vs xdp-filter net",
            "ipwarden, daemon paused, ns/frame",
            "daemon running − paused (median of rounds)",
            "ipwarden Mpps",
        ],
        &rows,
    ));
    md.push('\n');
    Ok(())
}
