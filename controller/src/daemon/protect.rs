//! Addresses the daemon must never block: the default gateways (blocking them cuts the host
//! off) and the addresses the daemon itself talks to (the IPASIS endpoint, the fleet's servers).
//! They join the allowlist with origin `protected`. Found at start, then again every
//! [`REFRESH`] and on every reload: routes change and DNS answers move (and a daemon that
//! starts before the network, as the unit orders it, resolves nothing at first).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs as _},
    sync::Arc,
};

use ipnet::IpNet;
use tokio::sync::mpsc;

/// How often the gateways and the hosts' addresses are read again.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

pub use crate::allowlist::Protected;

/// The hosts the daemon talks to: blocking them would cut it off from its API and peers.
pub fn urls(cfg: &crate::config::Config, ipasis_on: bool) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    if ipasis_on {
        urls.push(cfg.ipasis.base_url.to_string());
    }
    urls.extend(
        cfg.fleet
            .iter()
            .flat_map(|f| f.url.iter().map(ToString::to_string)),
    );
    urls
}

/// Reads the gateways and resolves `urls` every [`REFRESH`] and when `wake` is notified (a
/// reload), sending what it found; the engine applies changes only. A panic while reading is
/// reported on `panics` (the daemon stops: protection must not silently stop following the
/// routes).
pub async fn refresh(
    urls: Vec<String>,
    wake: Arc<tokio::sync::Notify>,
    out: mpsc::Sender<Protected>,
    panics: mpsc::UnboundedSender<String>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = wake.notified() => {}
        }
        let urls = urls.clone();
        let found =
            tokio::task::spawn_blocking(move || current(urls.iter().map(String::as_str))).await;
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                let message = super::shared::panic_message(e);
                let _ = panics.send(format!("reading the gateways: {message}"));
                return;
            }
        };
        if out.send(found).await.is_err() {
            return;
        }
    }
}

/// Reads the routes and resolves `urls` (blocking: DNS).
pub fn current<'a>(urls: impl IntoIterator<Item = &'a str>) -> Protected {
    let mut addrs = gateways();
    let gateway_found = !addrs.is_empty();
    for url in urls {
        addrs.extend(resolve(url));
    }
    let mut prefixes = prefixes(&addrs);
    prefixes.sort();
    prefixes.dedup();
    Protected {
        prefixes,
        gateway_found,
    }
}

/// Default gateways from the routing tables of this network namespace.
///
/// Read through `/proc/self/net/`: the shipped unit sets `ProcSubset=pid`, which hides
/// `/proc/net` (a link to `self/net`) but not the process's own directory. Reading `/proc/net`
/// there found nothing, silently, and the gateway went unprotected.
pub fn gateways() -> Vec<IpAddr> {
    gateways_in(std::path::Path::new("/proc"))
}

/// [`gateways`] from a proc filesystem mounted at `proc`.
pub fn gateways_in(proc: &std::path::Path) -> Vec<IpAddr> {
    let net = proc.join("self/net");
    let mut out = Vec::new();
    // route: Iface Destination Gateway ... in little-endian hex.
    if let Ok(text) = std::fs::read_to_string(net.join("route")) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 2
                && f[1] == "00000000"
                && f[2] != "00000000"
                && let Ok(gw) = u32::from_str_radix(f[2], 16)
            {
                out.push(IpAddr::V4(Ipv4Addr::from(gw.to_le_bytes())));
            }
        }
    }
    // ipv6_route: dest, dest_len, src, src_len, next_hop, ...
    if let Ok(text) = std::fs::read_to_string(net.join("ipv6_route")) {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 4
                && f[1] == "00"
                && f[0].chars().all(|c| c == '0')
                && f[4].chars().any(|c| c != '0')
                && let Ok(v) = u128::from_str_radix(f[4], 16)
            {
                out.push(IpAddr::V6(Ipv6Addr::from(v)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The addresses a URL's host resolves to (empty if it does not resolve now, or the URL has
/// no host). Parsed with the URL type the HTTP client uses, so that what is protected is the
/// host the client connects to (userinfo, IPv6 literals, default ports included).
pub fn resolve(url: &str) -> Vec<IpAddr> {
    let Ok(url) = reqwest::Url::parse(url) else {
        return Vec::new();
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let Some(host) = url.host_str() else {
        return Vec::new();
    };
    // IPv6 literals come bracketed.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut out: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(a) => vec![a],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect())
            .unwrap_or_default(),
    };
    out.sort();
    out.dedup();
    out
}

/// The host prefixes to protect.
pub fn prefixes(addrs: &[IpAddr]) -> Vec<IpNet> {
    addrs.iter().map(|a| IpNet::from(*a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_to_their_hosts() {
        assert_eq!(
            resolve("http://127.0.0.1:8080/v1"),
            vec![IpAddr::from([127, 0, 0, 1])]
        );
        assert_eq!(
            resolve("https://[2001:db8::1]/x"),
            vec!["2001:db8::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            resolve("http://[::1]:9/"),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        assert!(resolve("not a url").is_empty());
        // What a hand-written parser got wrong: userinfo before the host, nats:// URLs.
        assert_eq!(
            resolve("nats://user@198.51.100.9:4222"),
            vec![IpAddr::from([198, 51, 100, 9])]
        );
        assert_eq!(resolve("http://localhost:1/"), {
            let mut v: Vec<IpAddr> = ("localhost", 1)
                .to_socket_addrs()
                .unwrap()
                .map(|s| s.ip())
                .collect();
            v.sort();
            v.dedup();
            v
        });
    }
}
