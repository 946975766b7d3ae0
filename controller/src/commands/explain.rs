//! `ipwarden explain <IP>`.

use std::net::IpAddr;

use ipwarden::{
    cli::{Conn, Format},
    decision::now_unix_ms,
    wire::{Request, Response},
};

pub fn run(addr: IpAddr, conn: &Conn, format: Format) -> anyhow::Result<()> {
    let response = crate::commands::ask::call(conn, Request::Explain { addr })?;
    let Response::Explain(e) = &response else {
        return crate::commands::ask::unexpected(&response);
    };
    if format.json {
        return crate::commands::print::print_json(&response);
    }
    println!(
        "{addr} is counted and judged as {}: {}",
        e.source, e.verdict
    );
    for a in &e.allow {
        println!(
            "  allowlisted by {} ({}): passes whatever else matches",
            a.prefix, a.origin
        );
    }
    let now = now_unix_ms();
    for d in &e.decisions {
        let expiry = d.remaining(now).map_or_else(
            || "permanent".to_owned(),
            |t| format!("expires in {}", crate::commands::print::human(t)),
        );
        println!(
            "  {} {} by {} ({}): {}",
            d.action.name(),
            d.prefix,
            d.holder(),
            expiry,
            d.reason,
        );
        if let Some(r) = &d.recidive {
            let ttl = d
                .ttl()
                .map_or_else(|| "permanent".to_owned(), crate::commands::print::human);
            println!(
                "    repeat offender: blocked {} time{} before within decisions.recidive_window, so {} x {}^{} = {}{}",
                r.earlier,
                if r.earlier == 1 { "" } else { "s" },
                crate::commands::print::human(std::time::Duration::from_secs(r.base_ttl_secs)),
                r.factor,
                r.earlier,
                ttl,
                if r.capped {
                    " (capped at decisions.max_ttl)"
                } else {
                    ""
                }
            );
        }
        if let Some(score) = d.score {
            println!("    score {score}:");
            for f in &d.factors {
                println!("      {:+4}  {}", f.weight, f.name);
            }
        }
        if let Some(rate) = d.rate {
            println!(
                "    each source may send {} pps (bursts of {})",
                rate.pps, rate.burst
            );
        }
    }
    for h in &e.hits {
        println!(
            "  dropped {}: about {} packets (one dropped packet in {} is counted)",
            if h.prefix == e.source {
                "from this source".to_owned()
            } else {
                format!("under {}", h.prefix)
            },
            h.packets,
            ipwarden_common::stats::HIT_SAMPLE
        );
    }
    if let Some(v) = &e.enrichment {
        super::lookup::print(v, "  ");
    }
    match &e.rates {
        Some(r) => println!(
            "  now: {:.0} pps, {:.0} SYN/s, {} packets, {} bytes{}",
            r.pps,
            r.syn_pps,
            r.packets,
            r.bytes,
            if r.heavy { ", heavy hitter" } else { "" }
        ),
        None => match &e.untracked {
            Some(u) => println!(
                "  not tracked (below admission): estimated at most {} packets in the last {} ms, at most {} pps; tracked from {} packets a CPU an epoch (the sketch only over-counts)",
                u.packets_at_most, u.epoch_elapsed_ms, u.pps_at_most, u.level_packets_per_cpu
            ),
            None => println!("  no recent traffic"),
        },
    }
    for f in &e.fingerprints {
        println!(
            "  SYN signature {} from {}: {}{}, {} hops away",
            f.signature,
            f.addr,
            f.os,
            f.rule
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            f.hops
        );
    }
    for a in &e.aggregates {
        println!(
            "  in {}: {:.0} pps, {:.0} SYN/s from {} active sources{}",
            a.net,
            a.pps,
            a.syn_pps,
            a.members,
            if a.heavy { ", heavy aggregate" } else { "" }
        );
    }
    Ok(())
}
