//! The in-kernel section: cost per packet with BPF_PROG_TEST_RUN.

use std::fmt::Write as _;

use super::{kernel, report, stats};

/// Section 1: in-kernel cost per packet. Returns the loaded subjects for the live section.
pub fn kernel_section(
    md: &mut String,
    bpffs: &std::path::Path,
    sizes: &[usize],
    (rounds, repeat, warm): (usize, u32, usize),
    out: &std::path::Path,
) -> anyhow::Result<Vec<kernel::Subject>> {
    eprintln!("in-kernel cost: loading programs and filling maps");
    let mut subjects = vec![
        kernel::empty(bpffs, false)?,
        kernel::empty(bpffs, true)?,
        kernel::touch(bpffs)?,
    ];
    for &n in sizes {
        eprintln!("  ipwarden with {n} entries per family, counters warm with {warm} sources");
        subjects.push(kernel::ipwarden(bpffs, n, warm)?);
    }
    let xdp_filter = std::path::Path::new(kernel::XDP_FILTER_OBJECT).exists();
    if xdp_filter {
        for &n in sizes {
            eprintln!("  xdp-filter with {n} entries per family");
            subjects.push(kernel::xdp_filter(bpffs, n)?);
        }
    } else {
        let _ = writeln!(
            md,
            "xdp-filter was not measured: {} is missing (Debian package xdp-tools).\n",
            kernel::XDP_FILTER_OBJECT
        );
    }
    eprintln!("in-kernel cost: {rounds} rounds");
    let cells = kernel::measure(&subjects, rounds, repeat)?;

    let _ = writeln!(md, "## 1. In-kernel cost per packet (ns)\n");
    let floor: Vec<String> = cells
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                kernel::Kind::EmptyPass | kernel::Kind::EmptyDrop | kernel::Kind::Touch
            ) && c.case == "IPv4 pass"
        })
        .map(|c| {
            let (m, mn) = stats(&c.samples);
            format!("{}: {m:.1} ({mn:.1})", c.subject)
        })
        .collect();
    let _ = writeln!(
        md,
        "Floor: {} (the parse-only program runs ipwarden's frame parser and drops: the part of any filter's cost that reading the packet takes).\n",
        floor.join(", ")
    );
    let cases = crate::bench::frames::cases();
    let mut rows = Vec::new();
    for case in &cases {
        for &n in sizes {
            let cell = |kind| {
                cells
                    .iter()
                    .find(|c| c.kind == kind && c.entries == n && c.case == case.name)
            };
            let iw = cell(kernel::Kind::Ipwarden);
            let xf = cell(kernel::Kind::XdpFilter);
            let fmt = |c: Option<&kernel::Cell>| {
                c.map(|c| {
                    let (m, mn) = stats(&c.samples);
                    format!("{m:.1} ({mn:.1})")
                })
                .unwrap_or_else(|| "–".into())
            };
            let net_iw = iw.map(|c| report::net(&cells, c, case.drop));
            let net_xf = xf.map(|c| report::net(&cells, c, case.drop));
            rows.push(vec![
                case.name.to_owned(),
                n.to_string(),
                fmt(iw),
                net_iw
                    .map(|v| format!("{v:+.1}"))
                    .unwrap_or_else(|| "–".into()),
                fmt(xf),
                net_xf
                    .map(|v| format!("{v:+.1}"))
                    .unwrap_or_else(|| "–".into()),
                match (net_iw, net_xf) {
                    (Some(a), Some(b)) if b > 0.5 => format!("{:.2}", a / b),
                    _ => "–".into(),
                },
            ]);
        }
    }
    md.push_str(&report::table(
        &[
            "case",
            "entries",
            "ipwarden",
            "ipwarden net",
            "xdp-filter",
            "xdp-filter net",
            "net ratio",
        ],
        &rows,
    ));
    let _ = writeln!(
        md,
        "\nipwarden entries: per family, 1 % of them (at most 10k) shorter prefixes in the LPM tries, the rest exact /32 and /64; counter maps warm with {warm} sources per family. xdp-filter has no prefixes: its entries are all exact.\n"
    );

    let series = |kind, case: &str| -> Vec<(usize, f64)> {
        sizes
            .iter()
            .filter_map(|&n| {
                cells
                    .iter()
                    .find(|c| c.kind == kind && c.entries == n && c.case == case)
                    .map(|c| (n, report::net(&cells, c, case.contains("drop"))))
            })
            .collect()
    };
    let mut plot = vec![
        (
            "ipwarden IPv4 drop".to_owned(),
            "#c0392b",
            series(kernel::Kind::Ipwarden, "IPv4 drop (/32)"),
        ),
        (
            "ipwarden IPv4 pass".to_owned(),
            "#e67e22",
            series(kernel::Kind::Ipwarden, "IPv4 pass"),
        ),
        (
            "ipwarden IPv6 drop".to_owned(),
            "#8e44ad",
            series(kernel::Kind::Ipwarden, "IPv6 drop (/64)"),
        ),
    ];
    if xdp_filter {
        plot.push((
            "xdp-filter IPv4 drop".to_owned(),
            "#2980b9",
            series(kernel::Kind::XdpFilter, "IPv4 drop (/32)"),
        ));
        plot.push((
            "xdp-filter IPv4 pass".to_owned(),
            "#16a085",
            series(kernel::Kind::XdpFilter, "IPv4 pass"),
        ));
    }
    std::fs::write(
        out.join("kernel-cost.svg"),
        report::svg("In-kernel net cost per packet", &plot),
    )?;
    let _ = writeln!(
        md,
        "![net cost per packet against block-set size](kernel-cost.svg)\n"
    );

    Ok(subjects)
}
