//! `bench/RESULTS.md` and the plot of net cost against block-set size.

use std::fmt::Write as _;

use super::{
    kernel::{Cell, Kind},
    stats,
};

/// Net cost of a cell: its median minus the median of the empty program with the same
/// verdict in the same run.
pub fn net(cells: &[Cell], cell: &Cell, drop: bool) -> f64 {
    let base = if drop {
        Kind::EmptyDrop
    } else {
        Kind::EmptyPass
    };
    let floor = cells
        .iter()
        .find(|c| c.kind == base && c.case == cell.case)
        .map(|c| stats(&c.samples).0)
        .unwrap_or(f64::NAN);
    stats(&cell.samples).0 - floor
}

/// One line of the plot: label, colour, (entries, net ns) points.
pub type Series<'a> = (String, &'a str, Vec<(usize, f64)>);

/// A line plot (SVG) of net ns per packet against entries (log scale) per series.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let (w, h, left, bottom, top, right) = (760.0, 420.0, 70.0, 60.0, 40.0, 200.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| (p.0.max(1) as f64).log10()))
        .collect();
    let xmax = xs.iter().copied().fold(1.0, f64::max);
    let ymax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(10.0, f64::max)
        * 1.15;
    let x = |e: usize| left + (e.max(1) as f64).log10() / xmax * pw;
    let y = |v: f64| top + ph - (v.max(0.0) / ymax) * ph;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" font-size="14" text-anchor="middle">{title}</text>"#,
        left + pw / 2.0
    );
    // Axes and grid.
    let steps = 5;
    for i in 0..=steps {
        let v = ymax * i as f64 / steps as f64;
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
            left + pw
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"#,
            left - 6.0,
            yy + 4.0
        );
    }
    for e in [1usize, 10, 100, 1_000, 10_000, 100_000, 1_000_000] {
        if (e as f64).log10() > xmax + 1e-9 {
            continue;
        }
        let xx = x(e);
        let label = match e {
            1_000_000 => "1M".to_owned(),
            e if e >= 1000 => format!("{}k", e / 1000),
            e => e.to_string(),
        };
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/>"##,
            top + ph
        );
        let _ = writeln!(
            out,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">block entries per family (log scale)</text>"#,
        left + pw / 2.0,
        h - 15.0
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle">ns per packet above the empty program</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    for (i, (name, color, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|(e, v)| format!("{:.1},{:.1}", x(*e), y(*v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (e, v) in points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x(*e),
                y(*v)
            );
        }
        let ly = top + 10.0 + i as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/>"#,
            left + pw + 12.0,
            left + pw + 32.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{name}</text>"#,
            left + pw + 38.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        " --- |".repeat(header.len())
    );
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}
