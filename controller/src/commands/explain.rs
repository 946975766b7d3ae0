//! `ipwarden explain <IP>`.

use std::net::IpAddr;

use ipwarden::{
    cli::{Conn, Format},
    decision::now_unix_ms,
    ipc::protocol::{Request, Response},
};

pub fn run(addr: IpAddr, conn: &Conn, format: Format) -> anyhow::Result<()> {
    let response = super::call(conn, Request::Explain { addr })?;
    let Response::Explain(e) = &response else {
        return super::unexpected(&response);
    };
    if format.json {
        return super::print_json(&response);
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
            |t| format!("expires in {}", super::human(t)),
        );
        println!(
            "  {} {} by {} ({}): {}{}",
            format!("{:?}", d.action).to_lowercase(),
            d.prefix,
            d.origin.name(),
            expiry,
            d.reason,
            d.score.map(|s| format!(", score {s}")).unwrap_or_default()
        );
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
        None => println!("  no recent traffic"),
    }
    Ok(())
}
