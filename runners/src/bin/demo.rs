//! `cargo xtask demo`: a one-command tour of ipwarden on a namespace topology.
//!
//! Builds `client ── veth ── edge`, runs the daemon on the edge with IP intelligence from a
//! stand-in IPASIS API (no key or network needed), and floods it from a Tor exit, a hosting
//! provider, a residential line and an IPv6 host rotating addresses inside its /64, while a
//! normal client keeps talking. Shows the daemon finding the floods (`top`), deciding
//! (`list`, `explain`, `lookup`), what got through before and after, a web site behind nginx
//! asking ipwarden about each client (a browser solving the challenge if
//! chromium-headless-shell is installed), a spoofed SYN flood at the web port answered with
//! SYN cookies in XDP, and that enforcement outlives the daemon.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use std::os::unix::fs::PermissionsExt as _;

use ipwarden_tests::{
    BpfFs, Daemon, DaemonHome, Ipwarden, Topology, browser,
    ipasis_stub::{IpasisStub, Reply, answers},
    nginx::{self, Nginx},
    require_privileges,
    topology::{CLIENT_V4, EDGE_IF, EDGE_V4, EDGE_V6},
    traffic::{UdpSink, udp_flood, udp_send},
};

/// A Tor exit (the stand-in says so).
const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// A hosting provider's address: challenged, not banned.
const HOSTING_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 88);
/// A residential line with a busy user: fast, but not blocked by enrichment.
const HOME_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
/// A VPN user browsing the site (never floods).
const VPN_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
const ATTACKER_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0xa, 0xb, 0xc, 0xd),
];

/// The demo's configuration: faster polls and lower thresholds than production, so a flood a
/// laptop can generate is found in a second; IPASIS is the stand-in on the edge's loopback.
const CONFIG: &str = r#"[detection]
poll_interval = "500ms"
window = "3s"
pps_threshold = 1000
syn_pps_threshold = 200
hard_ttl = "10m"

[ipasis]
base_url = "BASE_URL"
key_file = "KEY_FILE"

[scoring]
challenge_pps = 20
challenge_burst = 10

[verdict]
difficulty = 18
[synproxy]
ports = [8080]
"#;

fn step(text: &str) {
    println!("\n=== {text}");
}

fn show(home: &DaemonHome, args: &[&str]) {
    println!("$ ipwarden {}", args.join(" "));
    print!("{}", home.cli(args));
}

/// Sends a round of traffic from everyone and prints what the edge received, per source.
fn round(topo: &Topology, sink4: &UdpSink, sink6: &UdpSink) {
    let to4 = SocketAddr::new(EDGE_V4.into(), 5353);
    let to6 = SocketAddr::new(EDGE_V6.into(), 5353);
    let mut sent = vec![(
        IpAddr::from(CLIENT_V4),
        udp_send(&topo.client, CLIENT_V4.into(), to4, 50, 64),
    )];
    for a in [ATTACKER_V4, HOSTING_V4, HOME_V4] {
        sent.push((a.into(), udp_send(&topo.client, a.into(), to4, 100, 64)));
    }
    for a in ATTACKER_V6 {
        sent.push((a.into(), udp_send(&topo.client, a.into(), to6, 50, 64)));
    }
    let mut got = sink4.drain(Duration::from_millis(300));
    got.extend(sink6.drain(Duration::from_millis(300)));
    println!("{:<28} {:>6} {:>9}", "SOURCE", "SENT", "RECEIVED");
    for (src, n) in sent {
        println!(
            "{:<28} {:>6} {:>9}",
            src.to_string(),
            n,
            got.get(&src).copied().unwrap_or(0)
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--fleet") {
        ipwarden_runners::fleet_demo::run();
        return;
    }
    require_privileges();
    step("building a client and an edge host in network namespaces");
    let bpffs = BpfFs::new();
    let topo = Topology::two_hosts();
    for a in [ATTACKER_V4, HOSTING_V4, HOME_V4, VPN_V4] {
        topo.add_source(a.into());
    }
    for a in ATTACKER_V6 {
        topo.add_source(a.into());
    }
    // The synproxy's SYN-ACKs leave the edge with XDP_TX; the client's veth needs NAPI for them.
    topo.give_client_napi();
    println!(
        "client {} ── veth ── edge {} ({EDGE_IF})",
        topo.client.name(),
        topo.edge.name()
    );
    let sink4 = UdpSink::bind(&topo.edge, SocketAddr::new(EDGE_V4.into(), 5353));
    let sink6 = UdpSink::bind(&topo.edge, SocketAddr::new(EDGE_V6.into(), 5353));

    step("a stand-in IPASIS API on the edge's loopback, with what it will say");
    let stub = IpasisStub::start_in(&topo.edge);
    stub.set(&ATTACKER_V4.to_string(), Reply::json(answers::TOR));
    stub.set(&HOSTING_V4.to_string(), Reply::json(answers::HOSTING));
    stub.set(&HOME_V4.to_string(), Reply::json(answers::RESIDENTIAL));
    stub.set(&VPN_V4.to_string(), Reply::json(answers::VPN));
    stub.set(&CLIENT_V4.to_string(), Reply::json(answers::RESIDENTIAL));
    stub.set_fallback(Reply::json(answers::HOSTING_PROXY));
    println!(
        "{ATTACKER_V4}: Tor exit   {HOSTING_V4}: hosting   {HOME_V4}: residential   2001:db8:2::/64: hosting + proxy"
    );

    step("starting the daemon on the edge (ipwarden run --iface edge0) with this configuration");
    let home = DaemonHome::new("", bpffs.path());
    let key_file = home.config().with_file_name("ipasis.key");
    std::fs::write(&key_file, "ipasis_demo_not_a_real_key").expect("writing the demo key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = CONFIG
        .replace("BASE_URL", &stub.base_url())
        .replace("KEY_FILE", key_file.to_str().expect("utf-8 path"));
    print!("{config}");
    std::fs::write(home.config(), &config).expect("writing the config");
    let daemon = Daemon::start(&home, &topo.edge);
    show(&home, &["status"]);

    step("normal traffic: everything is delivered");
    round(&topo, &sink4, &sink6);

    step(
        "floods: three IPv4 sources at 2000 pps each, and 2001:db8:2::/64 at 3 x 700 pps from rotating addresses; 198.51.100.2 stays at 100 pps",
    );
    let polls_before = home.json(&["status"])["polls"].as_u64().unwrap_or(0);
    let tor = format!("{ATTACKER_V4}/32");
    let mut tor_polls = None;
    std::thread::scope(|s| {
        let dst4 = SocketAddr::new(EDGE_V4.into(), 9);
        let dst6 = SocketAddr::new(EDGE_V6.into(), 9);
        let t = &topo;
        s.spawn(move || {
            udp_flood(
                &t.client,
                CLIENT_V4.into(),
                dst4,
                100,
                Duration::from_secs(3),
            )
        });
        for a in [ATTACKER_V4, HOSTING_V4, HOME_V4] {
            s.spawn(move || udp_flood(&t.client, a.into(), dst4, 2000, Duration::from_secs(3)));
        }
        for a in ATTACKER_V6 {
            s.spawn(move || udp_flood(&t.client, a.into(), dst6, 700, Duration::from_secs(3)));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while tor_polls.is_none() && std::time::Instant::now() < deadline {
            let list = home.json(&["list"]);
            if list["decisions"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["prefix"] == tor.as_str()))
            {
                tor_polls = home.json(&["status"])["polls"]
                    .as_u64()
                    .map(|p| p - polls_before);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(800));
        show(&home, &["top", "-n", "6"]);
    });
    match tor_polls {
        Some(p) => println!(
            "(the Tor flood was blocked {p} poll(s) after it started; poll interval 500ms)"
        ),
        None => println!("(the Tor flood was not blocked within 3 s: see `ipwarden status`)"),
    }

    step("what the daemon decided, and why");
    show(&home, &["list"]);
    show(&home, &["explain", &ATTACKER_V4.to_string()]);
    show(&home, &["explain", &HOSTING_V4.to_string()]);
    show(&home, &["lookup", &HOME_V4.to_string()]);
    println!(
        "$ ipwarden list --action challenge --json   # the set an L7 proxy serves a CAPTCHA to"
    );
    print!("{}", home.cli(&["list", "--action", "challenge", "--json"]));

    step(
        "the same normal traffic again: blocked sources' packets die in XDP, the challenged one keeps its rate (burst 10, 20 pps), the residential one and the client pass",
    );
    // A challenged source that just flooded has spent its burst; give it a second to refill.
    std::thread::sleep(Duration::from_millis(1500));
    round(&topo, &sink4, &sink6);
    show(&home, &["stats"]);

    step("an operator blocks a range by hand, and a block over an allowlisted prefix is refused");
    show(
        &home,
        &[
            "block",
            "192.0.2.0/24",
            "--ttl",
            "1h",
            "--reason",
            "seen in a feed",
        ],
    );
    println!("$ ipwarden block 127.0.0.1");
    let out = home.cli_output(&["block", "127.0.0.1"]);
    print!("{}", String::from_utf8_lossy(&out.stderr));

    step(
        "several origins on one source: the operator also blocks the Tor exit; lifting the manual block leaves IPASIS's in force",
    );
    let tor_addr = ATTACKER_V4.to_string();
    show(
        &home,
        &[
            "block",
            &tor_addr,
            "--ttl",
            "2d",
            "--reason",
            "abuse report",
        ],
    );
    show(&home, &["list", "--origin", "manual"]);
    show(&home, &["unblock", &tor_addr]);
    show(&home, &["history", &tor_addr]);

    web(&topo, &home);

    step("stopping the daemon: the program stays attached and keeps dropping");
    drop(daemon);
    round(&topo, &sink4, &sink6);

    step("detaching and cleaning up");
    let ipw = Ipwarden::new(&bpffs);
    println!("$ ipwarden detach --iface {EDGE_IF}");
    print!("{}", ipw.ok(None, &["detach", "--iface", EDGE_IF]));
}

/// The `synproxy:` line of `ipwarden status`.
fn synproxy_line(home: &DaemonHome) -> String {
    home.cli(&["status"])
        .lines()
        .find(|l| l.starts_with("synproxy:"))
        .unwrap_or("synproxy: (not in status)")
        .to_owned()
}

/// A spoofed SYN flood at the web site's port while the client browses: answered in XDP.
fn syn_flood(topo: &Topology, home: &DaemonHome) {
    use ipwarden_tests::{
        frames::{RawSocket, Tcp, tcp4},
        topology::{CLIENT_IF, CLIENT_MAC, EDGE_MAC},
    };
    step(
        "a spoofed SYN flood at the web port ([synproxy] ports = [8080]): the XDP program answers every SYN with a SYN cookie, nginx never sees one, and real clients still get in",
    );
    println!("$ ipwarden status | grep synproxy");
    println!("{}", synproxy_line(home));
    let sock = RawSocket::open(&topo.client, CLIENT_IF);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mss = [2, 4, 0x05, 0xB4];
    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            // 40 000 SYNs from random addresses in 203.0.113.128/25 and random ports.
            sock.send_many(40_000, |_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                tcp4(
                    EDGE_MAC,
                    CLIENT_MAC,
                    Ipv4Addr::new(203, 0, 113, 128 | (x as u8 & 0x7f)),
                    EDGE_V4,
                    Tcp {
                        sport: 1024 + (x >> 8) as u16 % 60000,
                        dport: nginx::PORT,
                        seq: (x >> 32) as u32,
                        ack: 0,
                        flags: 0x02,
                        options: &mss,
                    },
                )
            })
        });
        println!("{}   # during the flood", curl(topo, CLIENT_V4, ""));
        let sent = flood.join().expect("the flood");
        println!("(sent {sent} spoofed SYNs)");
    });
    std::thread::sleep(Duration::from_millis(1200));
    println!("$ ipwarden status | grep synproxy");
    println!("{}", synproxy_line(home));
    let overflows = topo
        .edge
        .exec("nstat", &["-az", "TcpExtListenOverflows"])
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    println!("$ nstat -az TcpExtListenOverflows   # on the edge\n{overflows}");
}

/// `curl` through nginx from `src`: the status line and the application's answer.
fn curl(topo: &Topology, src: Ipv4Addr, extra: &str) -> String {
    let url = format!("http://{EDGE_V4}:{}/app", nginx::PORT);
    let out = topo.client.exec_output(
        "curl",
        &[
            "-s",
            "--max-time",
            "3",
            "--interface",
            &src.to_string(),
            "-w",
            "\n%{http_code}",
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let shown = if body.contains("<title>") {
        format!("the challenge page ({}), no pass", extra)
    } else {
        body.trim().to_owned()
    };
    format!("{src:<15} HTTP {code:<4} {shown}")
}

/// The verdict endpoint behind nginx: what the application sees of a clean, a VPN, a
/// challenged and a blocked client, and a browser solving the challenge.
fn web(topo: &Topology, home: &DaemonHome) {
    step(
        "a web site behind nginx, which asks ipwarden about every request (auth_request to the verdict endpoint)",
    );
    let _nginx = Nginx::start(&topo.edge, &EDGE_V4.to_string(), "127.0.0.1:9721");
    println!(
        "$ curl http://{EDGE_V4}:{}/app   # from each source; the application shows the X-Ipwarden-* headers it got",
        nginx::PORT
    );
    println!("{}", curl(topo, CLIENT_V4, ""));
    // The VPN user's first request queues its lookup (never waited for); the next shows it.
    let _ = curl(topo, VPN_V4, "");
    std::thread::sleep(Duration::from_millis(800));
    println!("{}", curl(topo, VPN_V4, ""));
    println!("{}", curl(topo, HOSTING_V4, "401"));
    println!(
        "{}",
        curl(topo, ATTACKER_V4, "").replace("HTTP 000 ", "no TCP handshake: XDP drops its SYNs")
    );

    syn_flood(topo, home);

    step(
        "the client is challenged by hand; a real browser solves the page and gets its full speed back",
    );
    show(
        home,
        &[
            "block",
            &CLIENT_V4.to_string(),
            "--challenge",
            "20",
            "--ttl",
            "10m",
        ],
    );
    println!("{}", curl(topo, CLIENT_V4, "401"));
    if !browser::installed() {
        println!("(chromium-headless-shell is not installed: `cargo xtask setup` installs it)");
        return;
    }
    let url = format!("http://{EDGE_V4}:{}/app", nginx::PORT);
    println!("$ chromium-headless-shell --headless --dump-dom {url}   # in the client's namespace");
    let started = std::time::Instant::now();
    let out = browser::dump_dom(&topo.client, &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    match dom
        .split("<p id=\"app\">")
        .nth(1)
        .and_then(|s| s.split("</p>").next())
    {
        Some(app) => println!(
            "{app}   (solved and redirected in {:.1} s)",
            started.elapsed().as_secs_f64()
        ),
        None => println!(
            "(the browser did not reach the application: {})",
            dom.trim()
        ),
    }
    show(home, &["list", "--origin", "challenge-pass"]);
    show(home, &["explain", &CLIENT_V4.to_string()]);
}
