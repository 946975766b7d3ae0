//! The fleet, listing and decision-sources sections.

use std::{fmt::Write as _, time::Duration};

/// Section 5: fleet propagation (see `crate::bench::fleet`).
pub fn fleet_section(md: &mut String, quick: bool) -> anyhow::Result<()> {
    use crate::bench::fleet::quantile;
    let mut f = crate::bench::fleet::measure(quick)?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let _ = writeln!(
        md,
        "## 5. Fleet

A JetStream server (Debian's nats-server 2.9.10) on a hub namespace, {} peer daemons on their own edges (poll interval 200 ms); decisions written into the bucket as a third host would write them; each peer's kernel block map watched. Latency = put acknowledged by the server → entry in a peer's map.
",
        f.peers
    );
    let _ = writeln!(
        md,
        "| load | samples | median | p99 | max |\n| --- | --- | --- | --- | --- |"
    );
    let n = f.steady.len();
    let _ = writeln!(
        md,
        "| 1 decision/s | {n} | {:.1} ms | {:.1} ms | {:.1} ms |",
        ms(quantile(&mut f.steady, 0.5)),
        ms(quantile(&mut f.steady, 0.99)),
        ms(quantile(&mut f.steady, 1.0))
    );
    let n = f.burst_latency.len();
    let _ = writeln!(
        md,
        "| burst of {} (256 puts in flight) | {n} | {:.0} ms | {:.0} ms | {:.0} ms |\n",
        f.burst,
        ms(quantile(&mut f.burst_latency, 0.5)),
        ms(quantile(&mut f.burst_latency, 0.99)),
        ms(quantile(&mut f.burst_latency, 1.0))
    );
    let _ = writeln!(
        md,
        "- the whole burst in both peers' maps {:.2} s after its first put; a peer polled {} times meanwhile, {} intervals elapsed (polls are not stalled)",
        f.burst_all.as_secs_f64(),
        f.burst_polls.0,
        f.burst_polls.1
    );
    let _ = writeln!(
        md,
        "- a host joining a bucket of {} decisions: {:.2} s from its start until its maps hold them all\n",
        f.join,
        f.join_time.as_secs_f64()
    );
    Ok(())
}

/// Section 6: decisions at a million through the daemon and the CLI.
pub fn listing_section(md: &mut String, quick: bool) -> anyhow::Result<()> {
    let n = if quick { 100_000 } else { 1_000_000 };
    let f = crate::bench::listing::measure(n)?;
    let _ = writeln!(
        md,
        "## 6. Decisions at a million\n\nThe real daemon (default configuration) and CLI; {} IPv6 /64s.\n\n- `ipwarden import FILE` ({} lines; parse, one request, one durable transaction, then the maps): {:.2} s\n- `ipwarden list --json` of all of them (paged, {} per answer, streamed; {:.0} MB of JSON): {:.2} s\n- daemon peak RSS: {:.0} MB\n",
        f.decisions,
        f.decisions,
        f.import.as_secs_f64(),
        20_000,
        f.list_bytes as f64 / 1e6,
        f.list_json.as_secs_f64(),
        f.daemon_peak_mb
    );
    Ok(())
}

/// Section 7: CrowdSec and feeds at scale.
pub fn sources_section(md: &mut String, quick: bool) -> anyhow::Result<()> {
    let f = crate::bench::sources::measure(quick)?;
    let _ = writeln!(
        md,
        "## 7. CrowdSec and feeds at scale\n\nThe real daemon and a real CrowdSec LAPI (Debian's 1.4.6, LAPI only, in the daemon's namespace); times from the moment the source holds the decisions to the moment the kernel maps hold them all (IPv6 values, enforced per /64).\n\n- CrowdSec startup set of {}: {:.2} s (CrowdSec's nftables bouncer: about 45 s for 100k)\n- a CrowdSec delta of {} (poll interval 500 ms, resync every 5 s): {:.2} s; {} of them reached ipwarden only through a resync (the LAPI's deltas lost them)\n- a feed file of {} prefixes (refresh 1 s): {:.2} s\n",
        f.startup,
        f.startup_time.as_secs_f64(),
        f.delta,
        f.delta_time.as_secs_f64(),
        f.healed,
        f.feed,
        f.feed_time.as_secs_f64()
    );
    Ok(())
}

/// Section 8: the verdict endpoint (see `crate::bench::verdict`).
pub fn verdict_section(md: &mut String, quick: bool) -> anyhow::Result<()> {
    use crate::bench::verdict::{Load, median};
    let f = crate::bench::verdict::measure(quick)?;
    let _ = writeln!(
        md,
        "## 8. The verdict endpoint

`wrk` (1 thread, {} keep-alive connections, {} s a run, runs interleaved, medians over {} rounds) against the endpoint on one runtime thread (100 000 decisions in its mirror) and against nginx answering 204 (one worker: the floor).
",
        f.connections,
        f.secs,
        f.floor.len()
    );
    let _ = writeln!(
        md,
        "| target | verdicts/s | p50 | p99 | rate vs nginx 204 |\n| --- | --- | --- | --- | --- |"
    );
    let floor = median(&f.floor, |l| l.per_sec);
    let row = |md: &mut String, name: &str, loads: &[Load]| {
        let rate = median(loads, |l| l.per_sec);
        let _ = writeln!(
            md,
            "| {name} | {rate:.0} | {:.2} ms | {:.2} ms | {:.2}x |",
            median(loads, |l| l.p50_ms),
            median(loads, |l| l.p99_ms),
            rate / floor
        );
    };
    row(md, "nginx `return 204`", &f.floor);
    row(md, "verdict, cached answer", &f.cached);
    row(md, "verdict, unknown address (lookup queued)", &f.unknown);
    let _ = writeln!(md);
    Ok(())
}
