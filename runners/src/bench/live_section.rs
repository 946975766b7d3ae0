//! The live section: frames per second through a real receive path, against the stack, nftables
//! and xdp-filter.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::{
    kernel, live, report,
    spray_section::{many_sources, many_unblocked},
    stats,
};

/// Section 2: live drop rate across a veth pair, interleaved rounds.
pub fn live_section(
    md: &mut String,
    bpffs: &std::path::Path,
    subjects: &mut [kernel::Subject],
    entries: usize,
    opts: &crate::bench::Options,
) -> anyhow::Result<()> {
    let (rounds, frames) = if opts.quick {
        (7, 3_000_000)
    } else {
        (15, 6_000_000)
    };
    let _ = writeln!(md, "## 2. Live drop rate across a veth pair\n");
    if !live::tools_present() {
        anyhow::bail!("the live benchmark needs ethtool and nft (cargo xtask bench installs them)");
    }
    eprintln!("live: building the veth pair");
    let mut bed = live::Bed::new(ipwarden::dataplane::object::baseline::TX)?;
    let names = [
        "no filter (the stack discards)".to_owned(),
        format!("nftables netdev ingress drop, set of {entries}"),
        "empty XDP_DROP".to_owned(),
        format!("ipwarden, {entries} entries per family"),
        format!("xdp-filter, {entries} entries per family"),
        "parse-only XDP_DROP (reads the source, no lookup)".to_owned(),
    ];
    let mut touch = kernel::touch(bpffs)?;
    let mut samples: Vec<Vec<live::Sample>> = vec![Vec::new(); names.len()];
    let find = |kind| kernel::subject_index(subjects, kind, entries);
    let drop_i = find(kernel::Kind::EmptyDrop).context("no empty XDP_DROP subject")?;
    let iw_i = find(kernel::Kind::Ipwarden).context("no ipwarden subject")?;
    let xf_i = find(kernel::Kind::XdpFilter);
    for round in 0..rounds {
        eprintln!("live: round {} of {rounds}", round + 1);
        for k in 0..names.len() {
            let which = (k + round) % names.len();
            let mut receiver = match which {
                0 => live::Receiver::Stack,
                1 => live::Receiver::Nftables { entries },
                2 => live::Receiver::Xdp(&mut subjects[drop_i]),
                3 => live::Receiver::Xdp(&mut subjects[iw_i]),
                4 => match xf_i {
                    Some(i) => live::Receiver::Xdp(&mut subjects[i]),
                    None => continue,
                },
                _ => live::Receiver::Xdp(&mut touch),
            };
            let s = bed
                .measure(&mut receiver, live::Traffic::OneSource, frames)
                .with_context(|| format!("live: {}", names[which]))?;
            samples[which].push(s);
        }
    }
    // Ratios are taken within each round (the VM's speed flips between rounds), then the median.
    let ratio = |i: usize, base: usize| -> f64 {
        let r: Vec<f64> = samples[i]
            .iter()
            .zip(&samples[base])
            .map(|(a, b)| a.pps / b.pps)
            .collect();
        stats(&r).0
    };
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if samples[i].is_empty() {
            continue;
        }
        let pps: Vec<f64> = samples[i].iter().map(|s| s.pps).collect();
        let cpu: Vec<f64> = samples[i].iter().map(|s| s.cpu * 100.0).collect();
        let (m, _) = stats(&pps);
        let max = pps.iter().copied().fold(0.0, f64::max);
        rows.push(vec![
            name.clone(),
            format!("{:.2} ({:.2})", m / 1e6, max / 1e6),
            format!("{:.0}", stats(&cpu).0),
            format!("{:.0}", stats(&cpu).0 * 1e7 / m.max(1.0)),
            format!("{:.2}", ratio(i, 2)),
            format!("{:.2}", ratio(i, 5)),
            format!("{:.1}", ratio(i, 1)),
        ]);
    }
    let _ = writeln!(
        md,
        "{rounds} interleaved rounds of {frames} 64-byte UDP frames from one blocked IPv4 source, generated on CPU 0 by {}; the receiving veth's threaded NAPI pinned to CPU 1; XDP programs attached in native mode. Rate = frames the receiver processed per second of generation (median, max in parentheses); receiver CPU = busy share of CPU 1 (jiffy resolution); ns/frame = receiver CPU time per processed frame; ratios are medians of the per-round ratios. The generator itself tops out near the empty XDP_DROP rate, so that rate is a lower bound of the receiver's capacity{}.\n",
        bed.flood_source(),
        if bed.from_user_space() {
            ": here every fast receiver meets the generator's limit, and only ns/frame (the receiver's CPU time) tells them apart, each with the copy the skb costs"
        } else {
            ""
        }
    );
    md.push_str(&report::table(
        &[
            "receiver",
            "Mpps",
            "receiver CPU %",
            "ns/frame",
            "vs empty XDP_DROP",
            "vs parse-only",
            "vs nftables",
        ],
        &rows,
    ));
    md.push('\n');
    many_sources(md, bpffs, &mut bed, subjects, &mut touch, entries, opts)?;
    let drop_i = kernel::subject_index(subjects, kernel::Kind::EmptyDrop, entries)
        .context("no empty XDP_DROP subject")?;
    many_unblocked(md, bpffs, &mut bed, &mut subjects[drop_i], entries, opts)?;
    super::deployed::deployed(md, &mut bed, opts)
}
