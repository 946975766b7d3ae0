//! Many sources sprayed in turn, blocked and unblocked, against xdp-filter.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::{kernel, live, report, stats};

/// Section 2, continued: a random-source flood of unblocked sources, the case that fills the
/// counter maps. Passed frames would go up the kernel stack, whose cost would hide the
/// filters'; so ipwarden runs as its sink variant (the same program, passed frames dropped) and
/// xdp-filter as its deny-by-default program (frames no rule matches are dropped), both with
/// the same million-entry rule sets the sprayed sources miss.
pub fn many_unblocked(
    md: &mut String,
    bpffs: &std::path::Path,
    bed: &mut live::Bed,
    empty: &mut kernel::Subject,
    entries: usize,
    opts: &crate::bench::Options,
) -> anyhow::Result<()> {
    eprintln!("live, unblocked sources: loading the sink variant and xdp-filter deny");
    let mut sink = kernel::ipwarden_sink(bpffs, entries)?;
    let mut all_tracked = kernel::ipwarden_sink_without_admission(bpffs, entries)?;
    let mut deny = kernel::xdp_filter_deny(bpffs, entries).ok();
    // The sink at the production admission level (see `kernel::admission`), and a second one
    // with admission off (every source tracked, as before admission existed), in maps of its
    // own so that neither's counters hold the other's spray.
    let on = kernel::admission();
    let open = |dir: &str| {
        ipwarden::dataplane::Dataplane::open(&ipwarden::dataplane::PinDir::new(
            bpffs,
            format!("{dir}{entries}"),
        ))
    };
    let (mut dp, dp_all) = (open("sink")?, open("sinkall")?);
    let passed = |dp: &ipwarden::dataplane::Dataplane| -> anyhow::Result<u64> {
        Ok(dp.globals()?.get(ipwarden_common::GlobalCounter::Passed))
    };
    let (rounds, frames) = if opts.quick {
        (5, 3_000_000)
    } else {
        (9, 6_000_000)
    };
    let slots = ipwarden_common::front::FRONT_SLOTS;
    let capacity = ipwarden_common::capacity::SRC_V6;
    let counts = [1u32, slots / 4, slots * 4, 1_000_000];
    // [count][subject: empty drop, ipwarden sink, xdp-filter deny, ipwarden sink without
    // admission, ipwarden sink with its marks withdrawn (sources beyond the front table only)]
    let mut samples = vec![vec![Vec::<live::Sample>::new(); 5]; counts.len()];
    for round in 0..rounds {
        eprintln!("live, unblocked sources: round {} of {rounds}", round + 1);
        for (c, &n) in counts.iter().enumerate() {
            let subjects = if n > slots { 5 } else { 4 };
            for k in 0..subjects {
                let which = (k + round + c) % subjects;
                // The marks withdrawn: every new source looked up in the per-source map, as
                // before marks (see `ipwarden_common::tracked`); given back after.
                if which == 4 {
                    dp.withdraw_tracked_marks()?;
                }
                let mut receiver = match which {
                    0 => live::Receiver::Xdp(empty),
                    1 | 4 => live::Receiver::Xdp(&mut sink),
                    3 => live::Receiver::Xdp(&mut all_tracked),
                    _ => match deny.as_mut() {
                        Some(d) => live::Receiver::Xdp(d),
                        None => continue,
                    },
                };
                let counted = if which == 3 { &dp_all } else { &dp };
                let before = passed(counted)?;
                let s = bed
                    .measure(&mut receiver, live::Traffic::SprayUnblocked(n), frames)
                    .with_context(|| format!("live, {n} unblocked sources"))?;
                // The sinks (with admission, without it, with the marks withdrawn).
                if matches!(which, 1 | 3 | 4) {
                    // Every sprayed source misses the block set: a drop would mean it did not.
                    let got = passed(counted)? - before;
                    anyhow::ensure!(
                        got * 100 >= s.processed * 99,
                        "ipwarden passed {got} of {} frames from {n} unblocked /64s",
                        s.processed
                    );
                }
                if which == 4 {
                    dp.mark_tracked()?;
                }
                samples[c][which].push(s);
            }
        }
    }
    let mark_rows: Vec<Vec<String>> = counts
        .iter()
        .zip(&samples)
        .filter(|(_, s)| !s[4].is_empty())
        .map(|(&n, s)| {
            let mpps =
                |v: &[live::Sample]| stats(&v.iter().map(|s| s.pps).collect::<Vec<_>>()).0 / 1e6;
            let ns = |v: &[live::Sample]| {
                stats(&v.iter().map(|s| s.cpu * 1e9 / s.pps).collect::<Vec<_>>()).0
            };
            let r: Vec<f64> = s[1].iter().zip(&s[4]).map(|(a, b)| a.pps / b.pps).collect();
            vec![
                n.to_string(),
                format!("{:.2}", mpps(&s[1])),
                format!("{:.2}", mpps(&s[4])),
                format!("{:.0}", ns(&s[1])),
                format!("{:.0}", ns(&s[4])),
                format!("{:.2}", stats(&r).0),
            ]
        })
        .collect();
    let rows = counts
        .iter()
        .zip(&samples)
        .map(|(&n, s)| {
            let mut row = spray_row(n, &s[0], None, &s[1], &s[2]);
            let r: Vec<f64> = s[1].iter().zip(&s[3]).map(|(a, b)| a.pps / b.pps).collect();
            row.extend([
                format!(
                    "{:.2}",
                    stats(&s[3].iter().map(|s| s.pps).collect::<Vec<_>>()).0 / 1e6
                ),
                format!("{:.2}", stats(&r).0),
            ]);
            row
        })
        .collect::<Vec<_>>();
    let _ = writeln!(
        md,
        "### Many unblocked sources\n\n{rounds} interleaved rounds of {frames} 80-byte IPv6 UDP frames per source count, each frame from the next of N /64s that no entry covers (2001:db8:2000::/44), against the same {entries}-entry sets. Passed frames would go up the kernel stack and measure it rather than the filters, so ipwarden runs as `bench-sink` (the product's program from the same source files, passed frames dropped) and xdp-filter as `xdpfilt_dny_ip` (deny by default: frames its rules miss are dropped). Beyond the front table ({slots} slots per CPU) every ipwarden frame flushes the slot's occupant into its aggregate cells and, with admission at the production level ({} packets a CPU an epoch), into the admission sketch, then looks the new source up (index, hash, prefix trie); \"without admission\" is the same program with admission off and maps of its own, where every flush goes into the per-source LRU map ({capacity} entries, evicting beyond), interleaved with the others. Every sink run is checked to have passed ≥ 99 % of the frames.\n",
        on.packets
    );
    // The same spray as TCP SYNs, against the same spray as UDP, interleaved: the SYN
    // signature path is on every frame of a spoofed SYN flood.
    let syn_counts = [slots * 4, 1_000_000];
    let mut syn_samples = vec![vec![Vec::<live::Sample>::new(); 2]; syn_counts.len()];
    for round in 0..rounds {
        eprintln!("live, unblocked SYNs: round {} of {rounds}", round + 1);
        for (c, &n) in syn_counts.iter().enumerate() {
            for k in 0..2 {
                let which = (k + round) % 2;
                let traffic = if which == 0 {
                    live::Traffic::SprayUnblocked(n)
                } else {
                    live::Traffic::SpraySynUnblocked(n)
                };
                let s = bed
                    .measure(&mut live::Receiver::Xdp(&mut sink), traffic, frames)
                    .with_context(|| format!("live, {n} unblocked sources, {traffic:?}"))?;
                syn_samples[c][which].push(s);
            }
        }
    }
    let syn_rows: Vec<Vec<String>> = syn_counts
        .iter()
        .zip(&syn_samples)
        .map(|(&n, s)| {
            let mpps =
                |v: &[live::Sample]| stats(&v.iter().map(|s| s.pps).collect::<Vec<_>>()).0 / 1e6;
            let r: Vec<f64> = s[1].iter().zip(&s[0]).map(|(a, b)| a.pps / b.pps).collect();
            vec![
                n.to_string(),
                format!("{:.2}", mpps(&s[0])),
                format!("{:.2}", mpps(&s[1])),
                format!("{:.2}", stats(&r).0),
            ]
        })
        .collect();
    md.push_str(&report::table(
        &[
            "sources (/64s)",
            "empty XDP_DROP Mpps",
            "ipwarden Mpps",
            "xdp-filter deny Mpps",
            "empty ns/frame",
            "ipwarden ns/frame",
            "xdp-filter ns/frame",
            "ipwarden vs empty",
            "ipwarden vs xdp-filter",
            "ipwarden without admission Mpps",
            "with vs without admission",
        ],
        &rows,
    ));
    let _ = writeln!(
        md,
        "\nThe marks of tracked sources (see `common/src/tracked.rs`): a flushed source whose mark is clear has no per-source entry and skips the lookup in the LRU map. The same sink with its marks withdrawn (every flushed source looked up, as before marks), interleaved with the runs above:\n"
    );
    md.push_str(&report::table(
        &[
            "sources (/64s)",
            "ipwarden Mpps",
            "marks withdrawn Mpps",
            "ipwarden ns/frame",
            "marks withdrawn ns/frame",
            "with vs without marks",
        ],
        &mark_rows,
    ));
    let _ = writeln!(
        md,
        "\nThe same spray as TCP SYNs (78-byte frames, every one a new source's SYN signature), interleaved with the UDP spray, {rounds} rounds each, ipwarden's sink variant:\n"
    );
    md.push_str(&report::table(
        &[
            "sources (/64s)",
            "ipwarden UDP Mpps",
            "ipwarden SYN Mpps",
            "SYN vs UDP",
        ],
        &syn_rows,
    ));
    md.push('\n');
    Ok(())
}

/// Section 2, continued: blocked IPv6 traffic from many /64s in turn, so that sources stop
/// fitting in ipwarden's per-CPU front table and each frame takes the full path (flush, lookup,
/// claim). Interleaved with the empty XDP_DROP and parse-only programs on the same traffic.
pub fn many_sources(
    md: &mut String,
    bpffs: &std::path::Path,
    bed: &mut live::Bed,
    subjects: &mut [kernel::Subject],
    touch: &mut kernel::Subject,
    entries: usize,
    opts: &crate::bench::Options,
) -> anyhow::Result<()> {
    let drop_i = kernel::subject_index(subjects, kernel::Kind::EmptyDrop, entries)
        .context("no empty XDP_DROP subject")?;
    let iw_i = kernel::subject_index(subjects, kernel::Kind::Ipwarden, entries)
        .context("no ipwarden subject")?;
    // xdp-filter's IPv6 set holds the same filler addresses: an exact-match filter doing one
    // per-CPU hash lookup per frame, whatever the number of sources.
    let xf_i = kernel::subject_index(subjects, kernel::Kind::XdpFilter, entries);
    let (rounds, frames) = if opts.quick {
        (5, 3_000_000)
    } else {
        (9, 6_000_000)
    };
    let slots = ipwarden_common::front::FRONT_SLOTS;
    // The spray cycles through filler entries of the block set, all exact /64s.
    let exact = entries - kernel::prefix_count(entries) - 1;
    let mut counts = vec![
        1u32,
        slots / 4,
        slots * 4,
        u32::try_from(exact.min(1_000_000))?,
    ];
    // Only sources the set blocks (a smaller set sprays fewer).
    counts.retain(|&n| n as usize <= exact);
    counts.sort_unstable();
    counts.dedup();
    let dp = ipwarden::dataplane::Dataplane::open(&ipwarden::dataplane::PinDir::new(
        bpffs,
        format!("bench{entries}"),
    ))?;
    let dropped = || -> anyhow::Result<u64> {
        Ok(dp.globals()?.get(ipwarden_common::GlobalCounter::Dropped))
    };
    // [count][subject: empty drop, parse-only, ipwarden, xdp-filter]
    let mut samples = vec![vec![Vec::<live::Sample>::new(); 4]; counts.len()];
    for round in 0..rounds {
        eprintln!("live, many sources: round {} of {rounds}", round + 1);
        for (c, &n) in counts.iter().enumerate() {
            for k in 0..4 {
                let which = (k + round + c) % 4;
                let mut receiver = match which {
                    0 => live::Receiver::Xdp(&mut subjects[drop_i]),
                    1 => live::Receiver::Xdp(touch),
                    2 => live::Receiver::Xdp(&mut subjects[iw_i]),
                    _ => match xf_i {
                        Some(i) => live::Receiver::Xdp(&mut subjects[i]),
                        None => continue,
                    },
                };
                let before = dropped()?;
                let s = bed
                    .measure(&mut receiver, live::Traffic::Spray(n), frames)
                    .with_context(|| format!("live, {n} sources"))?;
                if which == 2 {
                    // Every sprayed source is in the block set: anything else means the
                    // generator and the filler entries disagree, and the rate would be a lie.
                    let got = dropped()? - before;
                    anyhow::ensure!(
                        got * 100 >= s.processed * 99,
                        "ipwarden dropped {got} of {} frames from {n} sprayed /64s: the spray does not hit the block set",
                        s.processed
                    );
                }
                samples[c][which].push(s);
            }
        }
    }
    let rows = counts
        .iter()
        .zip(&samples)
        .map(|(&n, s)| spray_row(n, &s[0], Some(&s[1]), &s[2], &s[3]))
        .collect::<Vec<_>>();
    let _ = writeln!(
        md,
        "### Many sources\n\n{rounds} interleaved rounds of {frames} 80-byte IPv6 UDP frames per source count, each frame from the next of N blocked /64s in turn (exact entries of ipwarden's {entries}-entry set), generated as above (the in-kernel generator: `bench_spray`) and received as above. ipwarden's front table holds {slots} sources per CPU: up to about that many (less the hash collisions) stay on the cached path; beyond it a frame's source is found in the block index (one cache line) and dropped without taking the slot from its holder (from another blocked source it does, one frame in eight). Every ipwarden run is checked to have dropped ≥ 99 % of the frames the receiver processed.\n"
    );
    md.push_str(&report::table(
        &[
            "sources (/64s)",
            "empty XDP_DROP Mpps",
            "parse-only Mpps",
            "ipwarden Mpps",
            "xdp-filter Mpps",
            "empty ns/frame",
            "ipwarden ns/frame",
            "xdp-filter ns/frame",
            "ipwarden vs empty",
            "ipwarden vs xdp-filter",
        ],
        &rows,
    ));
    md.push('\n');
    Ok(())
}

/// One row of a spray table: the source count, the rates (empty, [parse-only,] ipwarden,
/// xdp-filter), the receiver's ns per frame (empty, ipwarden, xdp-filter) and ipwarden's
/// median per-round ratios against the empty program and xdp-filter ("–" where xdp-filter was
/// not measured).
pub fn spray_row(
    n: u32,
    empty: &[live::Sample],
    parse: Option<&[live::Sample]>,
    iw: &[live::Sample],
    xf: &[live::Sample],
) -> Vec<String> {
    let ratio = |a: &[live::Sample], b: &[live::Sample]| -> f64 {
        let r: Vec<f64> = a.iter().zip(b).map(|(a, b)| a.pps / b.pps).collect();
        stats(&r).0
    };
    let mpps = |v: &[live::Sample]| stats(&v.iter().map(|s| s.pps).collect::<Vec<_>>()).0 / 1e6;
    let ns = |v: &[live::Sample]| {
        let cpu = stats(&v.iter().map(|s| s.cpu).collect::<Vec<_>>()).0;
        cpu * 1e3 / mpps(v).max(1e-9)
    };
    let or_dash = |f: &dyn Fn(&[live::Sample]) -> String| {
        if xf.is_empty() {
            "–".to_owned()
        } else {
            f(xf)
        }
    };
    let mut row = vec![n.to_string(), format!("{:.2}", mpps(empty))];
    row.extend(parse.map(|p| format!("{:.2}", mpps(p))));
    row.extend([
        format!("{:.2}", mpps(iw)),
        or_dash(&|v| format!("{:.2}", mpps(v))),
        format!("{:.0}", ns(empty)),
        format!("{:.0}", ns(iw)),
        or_dash(&|v| format!("{:.0}", ns(v))),
        format!("{:.2}", ratio(iw, empty)),
        or_dash(&|v| format!("{:.2}", ratio(iw, v))),
    ]);
    row
}
