//! `ipwarden list` and `ipwarden history`.

use std::io::Write as _;

use ipnet::IpNet;
use ipwarden::{
    cli::{ActionArg, Conn, Format, ImportArgs},
    decision::{Action, Decision, Origin, now_unix_ms},
    output::table,
    wire::{Hits, Request, Response},
};

/// `manual`, `velocity`, `feed:NAME`.
fn holder(d: &Decision) -> String {
    d.holder().to_string()
}

/// Decisions per answer: a million would not fit in one (16 MiB).
const PAGE: usize = 20_000;

/// Every decision (of `origin`), page by page, handed to `each` in prefix order; stops after
/// `limit`.
/// Returns what each decision dropped (read with the first page).
fn pages(
    conn: &Conn,
    origin: Option<Origin>,
    limit: Option<usize>,
    mut each: impl FnMut(Decision) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Hits>> {
    let mut after = None;
    let mut all_hits = Vec::new();
    let mut left = limit.unwrap_or(usize::MAX);
    loop {
        let request = Request::List {
            origin,
            after,
            limit: Some(PAGE.min(left.max(1))),
        };
        let response = crate::commands::ask::call(conn, request)?;
        let Response::Decisions {
            decisions,
            next,
            hits,
        } = response
        else {
            return crate::commands::ask::unexpected(&response);
        };
        all_hits.extend(hits);
        for d in decisions {
            if left == 0 {
                return Ok(all_hits);
            }
            left -= 1;
            each(d)?;
        }
        match next {
            Some(n) if left > 0 => after = Some(n),
            _ => return Ok(all_hits),
        }
    }
}

pub fn run(
    conn: &Conn,
    format: Format,
    action: Option<ActionArg>,
    origin: Option<Origin>,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    listing(conn, format, action, origin, limit, true)
}

/// `list`, or `export` (`with_hits` false: the decisions alone, as `import` reads them).
fn listing(
    conn: &Conn,
    format: Format,
    action: Option<ActionArg>,
    origin: Option<Origin>,
    limit: Option<usize>,
    with_hits: bool,
) -> anyhow::Result<()> {
    let want = action.map(|a| match a {
        ActionArg::Block => Action::Block,
        ActionArg::Challenge => Action::Challenge,
    });
    let keep = |d: &Decision| want.is_none_or(|w| d.action == w);
    if format.json {
        // Streamed in the shape of one `decisions` answer, so a million need no second copy.
        let out = std::io::stdout();
        let mut out = std::io::BufWriter::new(out.lock());
        write!(out, "{{\"type\":\"decisions\",\"decisions\":[")?;
        let mut first = true;
        let mut listed = std::collections::HashSet::new();
        let hits = pages(conn, origin, limit, |d| {
            if keep(&d) {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                serde_json::to_writer(&mut out, &d)?;
                listed.insert(d.prefix);
            }
            Ok(())
        })?;
        write!(out, "]")?;
        let hits: Vec<&Hits> = hits.iter().filter(|h| listed.contains(&h.prefix)).collect();
        if with_hits && !hits.is_empty() {
            write!(out, ",\"hits\":")?;
            serde_json::to_writer(&mut out, &hits)?;
        }
        writeln!(out, "}}")?;
        return Ok(out.flush()?);
    }
    let mut decisions = Vec::new();
    let hits: std::collections::HashMap<IpNet, u64> = pages(conn, origin, limit, |d| {
        if keep(&d) {
            decisions.push(d);
        }
        Ok(())
    })?
    .into_iter()
    .map(|h| (h.prefix, h.packets))
    .collect();
    let now = now_unix_ms();
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            vec![
                d.prefix.to_string(),
                d.action.name().to_owned(),
                holder(d),
                d.remaining(now)
                    .map_or_else(|| "never".to_owned(), crate::commands::print::human),
                hits.get(&d.prefix)
                    .map_or_else(|| "-".to_owned(), |&n| format!("~{}", count(n))),
                d.reason.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "PREFIX",
                "ACTION",
                "ORIGIN",
                "EXPIRES IN",
                "DROPPED",
                "REASON"
            ],
            &rows
        )
    );
    Ok(())
}

pub fn history(
    prefix: Option<IpNet>,
    limit: usize,
    conn: &Conn,
    format: Format,
) -> anyhow::Result<()> {
    let response = crate::commands::ask::call(conn, Request::History { prefix, limit })?;
    let Response::History { entries } = &response else {
        return crate::commands::ask::unexpected(&response);
    };
    if format.json {
        return crate::commands::print::print_json(&response);
    }
    let now = now_unix_ms();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let d = &e.decision;
            vec![
                d.prefix.to_string(),
                d.action.name().to_owned(),
                holder(d),
                format!(
                    "{} {} ago",
                    e.end.name(),
                    crate::commands::print::human(std::time::Duration::from_millis(
                        now.saturating_sub(e.ended_unix_ms)
                    ))
                ),
                d.ttl()
                    .map_or_else(|| "permanent".to_owned(), crate::commands::print::human),
                d.reason.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["PREFIX", "ACTION", "ORIGIN", "ENDED", "LASTED", "REASON"],
            &rows
        )
    );
    Ok(())
}

/// Largest file `import` reads.
const MAX_IMPORT: u64 = 512 << 20;

pub fn import(args: &ImportArgs) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut text = String::new();
    let read = if args.file.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_IMPORT + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(&args.file)
            .and_then(|f| f.take(MAX_IMPORT + 1).read_to_string(&mut text))
    };
    read.map_err(|e| anyhow::anyhow!("reading {}: {e}", args.file.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_IMPORT,
        "{} is larger than {MAX_IMPORT} bytes",
        args.file.display()
    );
    let parsed = ipwarden::import::parse(&text);
    drop(text);
    for s in parsed.skipped.iter().take(20) {
        eprintln!("{}:{}: skipped: {}", args.file.display(), s.at, s.why);
    }
    if parsed.skipped.len() > 20 {
        eprintln!("… and {} more skipped", parsed.skipped.len() - 20);
    }
    let n = parsed.entries.len();
    let skipped = parsed.skipped.len();
    // Entries go to the daemon; their prefixes and lines stay, to name refused lines.
    let lines: Vec<(IpNet, usize)> = parsed
        .entries
        .iter()
        .map(|e| e.prefix)
        .zip(parsed.lines.iter().copied())
        .collect();
    let entries = parsed.entries;
    let response = crate::commands::ask::call(
        &args.conn,
        Request::Import {
            decisions: entries,
            origin: (args.origin != Origin::Manual).then_some(args.origin),
            source: args.name.clone(),
            ttl_secs: args.ttl.map(|t| t.as_secs().max(1)),
        },
    )?;
    let Response::Imported {
        enacted,
        refused,
        reasons,
        refused_prefixes,
    } = response
    else {
        return crate::commands::ask::unexpected(&response);
    };
    for r in &reasons {
        eprintln!("{r}");
    }
    for p in &refused_prefixes {
        for (_, line) in lines.iter().filter(|(q, _)| q == p) {
            eprintln!("{}:{line}: {p} refused", args.file.display());
        }
    }
    println!("imported {enacted} of {n} decisions ({refused} refused; {skipped} lines skipped)");
    // What did not fit is a failure the caller must see (what fit stays imported).
    anyhow::ensure!(
        !reasons.iter().any(|r| r.contains(" is full (")),
        "{refused} decisions were refused (see above)"
    );
    Ok(())
}

pub fn export(conn: &Conn, origin: Option<Origin>) -> anyhow::Result<()> {
    listing(conn, Format { json: true }, None, origin, None, false)
}

/// A packet count in a column: `640`, `12.8k`, `3.2M`.
fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}
