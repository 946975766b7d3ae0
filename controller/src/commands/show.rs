//! `ipwarden status`, `ipwarden top` and `ipwarden stats`: read-only views of the daemon.

use ipwarden::{
    cli::{Conn, Format},
    output::table,
    wire::{Request, Response},
};

pub fn status(conn: &Conn, format: Format) -> anyhow::Result<()> {
    let response = crate::commands::ask::call(conn, Request::Status)?;
    let Response::Status(s) = &response else {
        return crate::commands::ask::unexpected(&response);
    };
    if format.json {
        return crate::commands::print::print_json(&response);
    }
    println!(
        "ipwarden {} (pid {}), up {}",
        s.version,
        s.pid,
        crate::commands::print::human(std::time::Duration::from_secs(s.uptime_secs))
    );
    println!(
        "config:    {}",
        s.config.as_deref().unwrap_or("built-in defaults")
    );
    println!("state:     {}", s.state_db);
    for i in &s.interfaces {
        println!(
            "interface: {} ({}){}",
            i.iface,
            i.attach,
            if i.monitor { ", monitor mode" } else { "" }
        );
        if let Some(why) = &i.out_of_sync {
            println!("           OUT OF SYNC with the store (rebuilt at the next poll): {why}");
        }
        if let Some(p) = &i.program {
            println!(
                "           program: id {}, build {}{}, layout {}{}",
                p.program_id,
                p.build,
                if p.version.is_empty() {
                    String::new()
                } else {
                    format!(" (ipwarden {})", p.version)
                },
                p.layout,
                if p.current {
                    ""
                } else {
                    " - NOT this binary's build"
                }
            );
        }
    }
    let by: Vec<String> = s
        .decisions_by_origin
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "decisions: {}{}",
        s.decisions,
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        }
    );
    let fills: Vec<String> = s
        .maps
        .iter()
        .map(|m| {
            let mut f = format!("{} {}/{}", m.map, m.entries, m.capacity);
            if m.refused > 0 || m.left_out > 0 {
                f.push_str(&format!(
                    " (FULL: {} refused, {} held but left out; raise {})",
                    m.refused, m.left_out, m.setting
                ));
            }
            f
        })
        .collect();
    if !fills.is_empty() {
        println!("maps:      {}", fills.join(", "));
    }
    if !s.refusals.is_empty() {
        let r: Vec<String> = s
            .refusals
            .iter()
            .map(|r| format!("{} {} {}", r.count, r.origin, r.why))
            .collect();
        println!("refused:   {}", r.join(", "));
    }
    println!("allowlist: {} prefixes", s.allow);
    println!(
        "sources:   {} tracked, {} heavy hitters",
        s.tracked_sources, s.heavy_hitters
    );
    println!(
        "polls:     {} (last took {} ms{})",
        s.polls,
        s.last_poll_ms,
        if s.late_polls > 0 {
            format!(", {} took longer than the interval", s.late_polls)
        } else {
            String::new()
        }
    );
    if let Some(a) = &s.admission {
        if a.level_packets_per_cpu == 0 {
            println!("admission: off (detection.admission = 0): every source is tracked");
        } else {
            println!(
                "admission: sources tracked from {} pps ({} packets a CPU an epoch); {} flushes admitted, {} held in the sketch; {} loud network cells admit all members{}",
                a.level_pps,
                a.level_packets_per_cpu,
                a.admitted,
                a.held,
                a.flagged_cells,
                if a.without.is_empty() {
                    String::new()
                } else {
                    format!(" (not on {}: an older program)", a.without.join(", "))
                }
            );
        }
    }
    if let Some(p) = &s.synproxy {
        let c = &p.counts;
        println!(
            "synproxy:  ports {} ({}): {}; {:.0} SYN/s; {} SYNs answered with cookies, {} handshakes proven, {} forged ACKs dropped, {} SYNs to existing connections, {} to no listener, {} unfit; MSS {}/{}, window scale {}",
            p.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
            p.when,
            match (&p.problem, p.answering) {
                (Some(why), _) => format!("NOT ANSWERING: {why}"),
                (None, true) => "answering SYNs".to_owned(),
                (None, false) => "waiting (SYNs go to the listeners)".to_owned(),
            },
            p.syn_pps,
            c.answered,
            c.accepted,
            c.refused,
            c.existing,
            c.no_listener,
            c.unfit,
            p.mss_v4,
            p.mss_v6,
            if p.wscale > 14 {
                "none".to_owned()
            } else {
                p.wscale.to_string()
            }
        );
    }
    if let Some(h) = &s.hints {
        if h.fast_window_ms == 0 {
            println!(
                "hints:     off (detection.fast_window = 0): heavy hitters are found at polls"
            );
        } else {
            println!(
                "hints:     {} sent by the program ({} lost, ring full), {} sources measured over {} ms, {} loud, {} judged before their poll{}",
                h.sent,
                h.lost,
                h.measured,
                h.fast_window_ms,
                h.loud,
                h.decided,
                if h.dropped + h.failed > 0 {
                    format!(" ({} dropped, {} reads failed)", h.dropped, h.failed)
                } else {
                    String::new()
                }
            );
        }
    }
    if s.aggregates_tracked > 0 {
        println!(
            "networks:  {} tracked as aggregates, {} heavy",
            s.aggregates_tracked, s.heavy_aggregates
        );
    }
    println!("ipasis:    {}", s.enrichment);
    if let Some(p) = &s.ipasis {
        println!(
            "           queue {} (dropped {}), in flight {}, requests today {}/{}, answers {}, failures {}, cache hits {}",
            p.queued,
            p.dropped,
            p.in_flight,
            p.requests_today,
            p.daily_quota,
            p.stats.answers,
            p.stats.failures,
            p.stats.cache_hits
        );
        if let (Some(secs), Some(why)) = (p.paused_secs, &p.pause_reason) {
            println!("           paused for {secs}s: {why}");
        }
        if let Some(e) = &p.stats.last_error {
            println!("           last error: {e}");
        }
    }
    if let Some(f) = &s.fleet {
        println!(
            "fleet:     {} as {} on {} ({}), revision {}{}",
            if f.connected {
                "connected"
            } else {
                "DISCONNECTED"
            },
            f.host_id,
            f.servers.join(", "),
            f.bucket,
            f.applied_revision,
            f.lag.map(|l| format!(", {l} behind")).unwrap_or_default()
        );
        println!(
            "           published {} (waiting {}), applied {}, unreadable {}, shared answers {}, claims {}",
            f.published, f.pending_publish, f.applied, f.unreadable, f.shared_answers, f.claims_won
        );
        match f.last_heard_unix_ms {
            Some(at) => println!(
                "           last heard from the server {} ago",
                super::print::human(std::time::Duration::from_millis(
                    ipwarden::decision::now_unix_ms().saturating_sub(at)
                ))
            ),
            None => println!("           never heard from the server"),
        }
        if let Some(e) = &f.last_error {
            println!("           last error: {e}");
        }
    }
    if let Some(c) = &s.crowdsec {
        println!(
            "crowdsec:  {} {} ({} decisions held, {} full resyncs{})",
            if c.connected {
                "connected to"
            } else {
                "DISCONNECTED from"
            },
            c.lapi_url,
            c.held,
            c.resyncs,
            if c.last_resync_missing + c.last_resync_stale > 0 {
                format!(
                    ", the last found {} missing and {} stale",
                    c.last_resync_missing, c.last_resync_stale
                )
            } else {
                String::new()
            }
        );
        if !c.ignored.is_empty() {
            let why: Vec<String> = c.ignored.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!("           ignored: {}", why.join(", "));
        }
        if let Some(e) = &c.last_error {
            println!("           last error: {e}");
        }
    }
    if let Some(p) = &s.policy {
        println!(
            "policy:    poll {} ms over a {} ms window; heavy at {} pps or {} SYN/s ({} them), hard limit {} pps; score: block at {}, challenge at {}; TTL {} s{}",
            p.poll_interval_ms,
            p.window_ms,
            p.pps_threshold,
            p.syn_pps_threshold,
            p.on_heavy_hitter,
            p.hard_pps_limit,
            p.block_at,
            p.challenge_at,
            p.default_ttl_secs,
            if p.monitor {
                "; MONITOR mode: nothing is dropped"
            } else {
                ""
            }
        );
    }
    if let Some(v) = &s.verdict {
        println!(
            "verdicts:  http://{}/verdict: {} allowed, {} challenged, {} blocked; {} pages, {} passes, {} solutions refused",
            v.listen, v.allowed, v.challenged, v.blocked, v.pages, v.passes, v.refused
        );
        if v.lost > 0 {
            println!(
                "           {} passes could not lift their XDP rate limit (the engine's queue was full)",
                v.lost
            );
        }
    }
    for w in &s.warnings {
        println!("warning:   {w}");
    }
    Ok(())
}

/// `top --watch`: on a terminal, redraws in place (cursor home, clear) like top(1); otherwise
/// prints each refresh after a timestamp line, with no escape codes, for logs and pipes.
pub fn top_watch(
    conn: &Conn,
    format: Format,
    n: usize,
    every: std::time::Duration,
    iterations: Option<u64>,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal as _, Write as _};
    let terminal = std::io::stdout().is_terminal() && !format.json;
    let mut done = 0u64;
    loop {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        if terminal {
            print!("\x1b[H\x1b[2J");
            println!(
                "ipwarden top: every {:.1} s, {now} (Ctrl-C to stop)\n",
                every.as_secs_f64()
            );
        } else if !format.json {
            println!("== {now}");
        }
        top(conn, format, n)?;
        std::io::stdout().flush()?;
        done += 1;
        if iterations.is_some_and(|max| done >= max) {
            return Ok(());
        }
        std::thread::sleep(every);
    }
}

pub fn top(conn: &Conn, format: Format, n: usize) -> anyhow::Result<()> {
    let response = crate::commands::ask::call(conn, Request::Top { n })?;
    let Response::Top { sources } = &response else {
        return crate::commands::ask::unexpected(&response);
    };
    if format.json {
        return crate::commands::print::print_json(&response);
    }
    let rows: Vec<Vec<String>> = sources
        .iter()
        .map(|s| {
            vec![
                s.source.to_string(),
                format!("{:.0}", s.pps),
                format!("{:.0}", s.syn_pps),
                s.packets.to_string(),
                s.bytes.to_string(),
                if s.heavy { "yes" } else { "" }.to_owned(),
                s.decision.map_or("-", |a| a.name()).to_owned(),
                s.os.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "SOURCE", "PPS", "SYN/S", "PACKETS", "BYTES", "HEAVY", "DECISION", "OS"
            ],
            &rows
        )
    );
    Ok(())
}

pub fn stats(conn: &Conn, format: Format) -> anyhow::Result<()> {
    let response = crate::commands::ask::call(conn, Request::Stats)?;
    let Response::Stats { interfaces } = &response else {
        return crate::commands::ask::unexpected(&response);
    };
    if format.json {
        return crate::commands::print::print_json(&response);
    }
    for (i, iface) in interfaces.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", iface.iface);
        let rows: Vec<Vec<String>> = iface
            .counters
            .iter()
            .map(|(k, v)| vec![k.clone(), v.to_string()])
            .collect();
        print!("{}", table(&["COUNTER", "FRAMES"], &rows));
    }
    Ok(())
}
