//! Passive TCP SYN fingerprints on the real data plane: a real Linux `connect()` is classified
//! Linux, a crafted Windows-like SYN Windows; a source the stand-in IPASIS calls residential
//! whose SYNs look like a Linux server gets `residential_proxy_suspect` and is challenged, one
//! with a Windows desktop's SYNs is not.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use ipwarden_tests::{
    BpfFs, Daemon, DaemonHome, Topology,
    frames::{RawSocket, raw},
    ipasis_stub::IpasisStub,
    require_privileges,
    topology::{CLIENT_IF, CLIENT_MAC, CLIENT_V4, EDGE_MAC, EDGE_V4},
    traffic::tcp_connect,
};
use serde_json::Value;

/// Linux: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
const LINUX: &[u8] = &[
    2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];
/// Windows 10: MSS 1460, NOP, window scale 8, NOP, NOP, SACK permitted.
const WINDOWS: &[u8] = &[2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2];

/// An IPv4 TCP SYN from `src` to the edge's port 80.
fn syn4(src: Ipv4Addr, ttl: u8, window: u16, options: &[u8], sport: u16) -> Vec<u8> {
    let tcp_len = 20 + options.len();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = ttl;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&EDGE_V4.octets());
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp.extend_from_slice(options);
    raw(EDGE_MAC, CLIENT_MAC, 0x0800, &[&ip[..], &tcp].concat())
}

struct Env {
    topo: Topology,
    home: DaemonHome,
    _stub: IpasisStub,
    _bpffs: BpfFs,
}

impl Env {
    fn new() -> Self {
        require_privileges();
        let bpffs = BpfFs::new();
        let topo = Topology::two_hosts();
        let stub = IpasisStub::start_in(&topo.edge);
        // Every source is residential to the stand-in (its default answer). A SYN flood above
        // syn_pps_threshold is a heavy hitter; velocity (20) + residential_proxy_suspect (30)
        // reaches challenge_at (50), velocity alone does not.
        let home = DaemonHome::with_ipasis(
            r#"
[detection]
poll_interval = "200ms"
window = "2s"
pps_threshold = 100000
syn_pps_threshold = 300
hard_pps_limit = 1000000

[detection.aggregate]
v4_levels = []
v6_levels = []

[scoring]
velocity_pps = 300
"#,
            &stub.base_url(),
            bpffs.path(),
        );
        Self {
            topo,
            home,
            _stub: stub,
            _bpffs: bpffs,
        }
    }

    fn explain(&self, addr: &str) -> Value {
        self.home.json(&["explain", addr])
    }

    /// Waits (bounded) until `explain addr` shows a fingerprint.
    fn fingerprints(&self, addr: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let e = self.explain(addr);
            let f = e["fingerprints"].as_array().cloned().unwrap_or_default();
            if !f.is_empty() {
                return f;
            }
            assert!(Instant::now() < deadline, "no fingerprint for {addr}: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SYNs from `src` at about 1000 per second for 2 s, from changing source ports.
    fn syn_flood(&self, src: Ipv4Addr, ttl: u8, window: u16, options: &[u8]) {
        let sock = RawSocket::open(&self.topo.client, CLIENT_IF);
        let start = Instant::now();
        let mut sent = 0u32;
        while start.elapsed() < Duration::from_secs(2) {
            let due = (start.elapsed().as_secs_f64() * 1000.0) as u32;
            while sent < due {
                let f = syn4(src, ttl, window, options, 10_000 + (sent % 50_000) as u16);
                if sock.send(&f).is_err() {
                    break;
                }
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn decision(&self, prefix: &str) -> Option<Value> {
        self.home.json(&["list"])["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["prefix"] == prefix)
            .cloned()
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_real_linux_connect_is_linux_and_a_crafted_windows_syn_is_windows() {
    let env = Env::new();
    let _daemon = Daemon::start(&env.home, &env.topo.edge);
    // The client namespace's own kernel opens the connection (the port is closed: the SYN is
    // all that is needed).
    let _ = tcp_connect(
        &env.topo.client,
        CLIENT_V4.into(),
        (EDGE_V4, 9).into(),
        Duration::from_secs(1),
    );
    let f = env.fingerprints(&CLIENT_V4.to_string());
    assert_eq!(f[0]["os"], "linux", "{f:?}");
    assert_eq!(f[0]["hops"], 0, "{f:?}");
    assert!(
        f[0]["signature"]
            .as_str()
            .unwrap()
            .contains(":mss,sok,ts,nop,ws"),
        "{f:?}"
    );

    let windows = Ipv4Addr::new(203, 0, 113, 50);
    let sock = RawSocket::open(&env.topo.client, CLIENT_IF);
    sock.send(&syn4(windows, 117, 64240, WINDOWS, 50_000))
        .unwrap();
    let f = env.fingerprints("203.0.113.50");
    assert_eq!(f[0]["os"], "windows", "{f:?}");
    assert_eq!(f[0]["hops"], 11, "{f:?}");
    // `top` shows the OS guess per source (once a poll has counted it).
    let deadline = Instant::now() + Duration::from_secs(5);
    let row = loop {
        let top = env.home.json(&["top"]);
        if let Some(r) = top["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["source"] == "203.0.113.50/32")
        {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "{top}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(row["os"], "windows", "{row}");
    let text = env.home.cli(&["explain", "203.0.113.50"]);
    assert!(
        text.contains("SYN signature 4:117:df:64240:1460:8:"),
        "{text}"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_residential_linux_server_stack_is_challenged_and_a_windows_desktop_is_not() {
    let env = Env::new();
    let _daemon = Daemon::start(&env.home, &env.topo.edge);
    let proxy = Ipv4Addr::new(203, 0, 113, 60);
    env.syn_flood(proxy, 58, 64240, LINUX);
    let deadline = Instant::now() + Duration::from_secs(8);
    let d = loop {
        if let Some(d) = env.decision("203.0.113.60/32") {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "the Linux-stack residential source was not decided:\n{}",
            env.home.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(d["action"], "challenge", "{d}");
    assert_eq!(d["origin"], "ipasis", "{d}");
    let factors = d["factors"].to_string();
    assert!(factors.contains("residential_proxy_suspect"), "{d}");
    let e = env.explain("203.0.113.60");
    assert_eq!(e["fingerprints"][0]["os"], "linux", "{e}");
    assert_eq!(e["fingerprints"][0]["hops"], 6, "{e}");
    assert!(
        e["decisions"]
            .to_string()
            .contains("residential_proxy_suspect"),
        "{e}"
    );

    let desktop = Ipv4Addr::new(203, 0, 113, 61);
    env.syn_flood(desktop, 120, 64240, WINDOWS);
    // Looked up and scored (velocity only): allowed, so no decision.
    let deadline = Instant::now() + Duration::from_secs(8);
    while env.explain("203.0.113.61")["enrichment"].is_null() {
        assert!(Instant::now() < deadline, "the desktop was never looked up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(env.decision("203.0.113.61/32").is_none());
    let e = env.explain("203.0.113.61");
    assert_eq!(e["fingerprints"][0]["os"], "windows", "{e}");
    let _ = IpAddr::from(desktop);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_syn_flood_from_new_sources_records_only_the_budget_and_counts_the_rest() {
    use ipwarden_common::fingerprint::SIG_BUDGET_PER_JIFFY;
    let fx = ipwarden_tests::fixture::Fixture::attached(&[]);
    let sock = RawSocket::open(&fx.topo.client, CLIENT_IF);
    let unrecorded = || fx.ipw.dataplane().globals().unwrap().2;
    // A few new sources, well apart: each is recorded.
    for i in 0..5u32 {
        let src = Ipv4Addr::from(0xCB00_7100 + i);
        sock.send(&syn4(src, 64, 64240, LINUX, 40000)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fx.ipw.dataplane().signatures().unwrap().len(), 5);
    assert_eq!(unrecorded(), 0);
    // 3 000 new sources as fast as one CPU sends them (far over 64 a jiffy): the program
    // records a budget's worth a jiffy and counts every other one.
    let n = 3000u32;
    let started = Instant::now();
    let sent = ipwarden_tests::cpu::on_cpu(0, || {
        let mut sent = 0u32;
        for i in 0..n {
            // 203.0.113.0/24 and 192.0.2.0/24 in turn, ports varied: distinct (source, SYN).
            let base = if i % 2 == 0 { 0xCB00_7100 } else { 0xC000_0200 };
            let src = Ipv4Addr::from(base + (i / 2) % 256);
            let frame = syn4(src, 64, 64240 - (i / 512) as u16, LINUX, 40000);
            if sock.send(&frame).is_ok() {
                sent += 1;
            }
        }
        sent
    })
    .unwrap();
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let recorded = fx.ipw.dataplane().signatures().unwrap().len() as u64 - 5;
    let skipped = unrecorded();
    eprintln!("{sent} SYNs in {took:?}: {recorded} recorded, {skipped} left unrecorded");
    assert!(
        skipped > 0,
        "nothing left unrecorded: {recorded} recorded in {took:?}"
    );
    // Every new (source, signature) pair was either recorded or counted; a pair the memo saw
    // twice is neither.
    assert!(recorded + skipped <= u64::from(sent));
    // At most the budget in each jiffy the flood lasted (HZ ≤ 1000), plus the jiffy it ended in.
    let jiffies = took.as_millis() as u64 + 2;
    assert!(
        recorded <= SIG_BUDGET_PER_JIFFY * jiffies,
        "{recorded} recorded in {took:?}"
    );
    // Sent again at a calm rate, the flood's first 40 SYNs are all recorded now: a SYN left
    // unrecorded is not remembered as seen.
    let frames: Vec<(Ipv4Addr, Vec<u8>)> = (0..40u32)
        .map(|i| {
            let base = if i % 2 == 0 { 0xCB00_7100 } else { 0xC000_0200 };
            let src = Ipv4Addr::from(base + (i / 2) % 256);
            (src, syn4(src, 64, 64240, LINUX, 40000))
        })
        .collect();
    for (_, f) in &frames {
        sock.send(f).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(100));
    let kept: std::collections::BTreeSet<String> = fx
        .ipw
        .dataplane()
        .signatures()
        .unwrap()
        .iter()
        .map(|(net, _)| net.to_string())
        .collect();
    for (src, _) in &frames {
        assert!(kept.contains(&format!("{src}/32")), "{src} not recorded");
    }
}
