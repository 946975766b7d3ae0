//! `ipwarden lookup <IP>`.

use std::net::IpAddr;

use ipwarden::{
    cli::{Conn, Format},
    enrich::record::Flag,
    wire::{LookupView, Request, Response},
};

fn flag(f: Flag) -> &'static str {
    match f {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

/// Prints an answer for people (also used by `explain`).
pub fn print(v: &LookupView, indent: &str) {
    let origin = if v.cached {
        format!("cached {}s ago", v.age_secs)
    } else {
        "fresh".to_owned()
    };
    let Some(r) = &v.record else {
        println!("{indent}IPASIS rejected {} as invalid ({origin})", v.addr);
        return;
    };
    println!("{indent}IPASIS on {} ({origin}):", v.source);
    println!(
        "{indent}  tor {}, vpn {}, proxy {}, hosting {}, crawler {}, relay {}, abuse {}",
        flag(r.tor),
        flag(r.vpn),
        flag(r.proxy),
        flag(r.hosting),
        flag(r.crawler),
        flag(r.relay),
        flag(r.abuse)
    );
    println!(
        "{indent}  operator {}, ASN {}, country {}",
        r.operator.as_deref().unwrap_or("unknown"),
        r.asn
            .map_or_else(|| "unknown".to_owned(), |a| format!("AS{a}")),
        r.country.as_deref().unwrap_or("unknown")
    );
}

pub fn run(addr: IpAddr, fresh: bool, conn: &Conn, format: Format) -> anyhow::Result<()> {
    let response = crate::commands::ask::call(conn, Request::Lookup { addr, fresh })?;
    let Response::Lookup(v) = &response else {
        return crate::commands::ask::unexpected(&response);
    };
    if format.json {
        return crate::commands::print::print_json(&response);
    }
    print(v, "");
    Ok(())
}
