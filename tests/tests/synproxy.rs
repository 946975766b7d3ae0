//! SYN cookies in XDP (`[synproxy]`): a real HTTP server behind ipwarden in `always` mode, real
//! clients (curl, the kernel's own TCP), forged ACKs and a spoofed SYN flood from raw frames.
//! The program answers every SYN to the protected port; netfilter's SYNPROXY (the daemon's
//! nftables table) opens the connection to the listener once the cookie checks out.
//!
//! Test-bed traps: the client's veth needs NAPI for the frames the edge's program sends back
//! with `XDP_TX` (an empty XDP program on it gives it; GRO alone did not on this kernel). Its TX
//! checksum offload stays on: with it off, the edge's stack gets IPv6 segments whose checksum
//! nothing verified, and nftables' `synproxy` checks those with the IPv4 routine and drops them
//! (`nft_synproxy_eval` calls `nf_ip_checksum` for both families). A real NIC verifies TCP
//! checksums itself and is not affected (README, "SYN floods").
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ipwarden_tests::{
    Daemon, DaemonEnv,
    frames::{RawSocket, Tcp, tcp4},
    topology::{CLIENT_IF, CLIENT_MAC, CLIENT_V4, EDGE_MAC, EDGE_V4, EDGE_V6},
};
use sha2::{Digest, Sha256};

const PORT: u16 = 8080;
/// Where the probe server (see [`PROBE`]) listens.
const PROBE_PORT: u16 = 8081;

/// A server that answers each connection with what its socket negotiated (`TCP_INFO`: the
/// options bits, send and receive window scales, send MSS), then closes it.
const PROBE: &str = r#"
import socket, struct, sys
srv = socket.socket(socket.AF_INET6)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("::", int(sys.argv[1])))
srv.listen(64)
while True:
    c, _ = srv.accept()
    i = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    c.sendall(("%d %d %d %d\n" % (i[5], i[6] & 15, i[6] >> 4, struct.unpack_from("I", i, 16)[0])).encode())
    c.close()
"#;

/// A client that connects, reads the probe server's line and adds its own `TCP_INFO`.
const CLIENT: &str = r#"
import socket, struct, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
line = c.makefile().readline().strip()
i = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
print(line, i[5], i[6] & 15, i[6] >> 4, struct.unpack_from("I", i, 16)[0])
"#;

const CONFIG: &str = r#"
# A download's ACKs from one client run at tens of thousands of packets a second: not a flood
# these tests are about.
[detection]
poll_interval = "200ms"
pps_threshold = 1000000000
syn_pps_threshold = 1000000000
hard_pps_limit = 1000000000

[metrics]
listen = "127.0.0.1:9720"

[synproxy]
ports = [8080, 8081]
"#;

/// `python3 -m http.server` in the edge namespace on both families, stopped on drop.
struct Server {
    child: Child,
    probe: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(env: &DaemonEnv) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                env.topo.edge.name(),
                "python3",
                "-m",
                "http.server",
            ])
            .arg(PORT.to_string())
            .args(["--bind", "::", "--directory"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server");
        let probe = Command::new("ip")
            .args([
                "netns",
                "exec",
                env.topo.edge.name(),
                "python3",
                "-c",
                PROBE,
            ])
            .arg(PROBE_PORT.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the probe server");
        let server = Self { child, probe, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !env
            .topo
            .edge
            .exec("ss", &["-Htln"])
            .contains(&format!(":{PORT} "))
            || !env
                .topo
                .edge
                .exec("ss", &["-Htln"])
                .contains(&format!(":{PROBE_PORT} "))
        {
            assert!(Instant::now() < deadline, "the HTTP server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Writes a file of `len` pseudo-random bytes; its SHA-256.
    fn file(&self, name: &str, len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(self.dir.path().join(name)).expect("creating the file"),
        );
        let mut hash = Sha256::new();
        let mut block = [0u8; 8192];
        let mut left = len;
        while left > 0 {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            let n = left.min(block.len());
            f.write_all(&block[..n]).expect("writing the file");
            hash.update(&block[..n]);
            left -= n;
        }
        f.flush().expect("writing the file");
        hash.finalize().to_vec()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for c in [&mut self.child, &mut self.probe] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Bed {
    env: DaemonEnv,
    _daemon: Daemon,
    server: Server,
}

fn bed() -> Bed {
    let bed = bed_with(CONFIG);
    bed.wait_until("the synproxy answers", |p| p["answering"] == true);
    bed
}

/// A bed whose daemon runs `config` (up, not necessarily answering).
fn bed_with(config: &str) -> Bed {
    let env = DaemonEnv::new(config, &[]);
    env.topo.give_client_napi();
    let server = Server::start(&env);
    let daemon = env.start();
    let bed = Bed {
        env,
        _daemon: daemon,
        server,
    };
    bed.wait_until("the synproxy's view", |p| !p.is_null());
    bed
}

impl Bed {
    /// Waits (at most 15 s) until the synproxy's `status` view satisfies `f`.
    fn wait_until(&self, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f(&self.synproxy()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {}\n{}",
                self.synproxy(),
                self.env.home.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn synproxy(&self) -> serde_json::Value {
        self.env.home.json(&["status"])["synproxy"].clone()
    }

    /// A synproxy counter as the daemon last read it, after waiting a poll or two.
    fn count(&self, name: &str) -> u64 {
        std::thread::sleep(Duration::from_millis(500));
        self.synproxy()["counts"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no synproxy count {name}: {}", self.synproxy()))
    }

    /// `curl` in the client namespace; the downloaded file's SHA-256.
    fn download(&self, url: &str) -> Vec<u8> {
        let out = tempfile::NamedTempFile::new().expect("a temporary file");
        let path = out.path().to_str().expect("a UTF-8 path");
        let code = self.env.topo.client.exec(
            "curl",
            &[
                "-sS",
                "-g",
                "--max-time",
                "60",
                "-o",
                path,
                "-w",
                "%{http_code}",
                url,
            ],
        );
        assert_eq!(code.trim(), "200", "GET {url}");
        Sha256::digest(std::fs::read(out.path()).expect("reading the download")).to_vec()
    }

    /// A TCP counter of the edge's kernel (`/proc/net/netstat` TcpExt, or `/proc/net/snmp` Tcp).
    fn edge_tcp(&self, table: &str, name: &str) -> u64 {
        let text = self.env.topo.edge.exec("cat", &[table]);
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [head, values] = pair else { continue };
            let (heads, vals): (Vec<&str>, Vec<&str>) = (
                head.split_whitespace().collect(),
                values.split_whitespace().collect(),
            );
            if let Some(i) = heads.iter().position(|h| *h == name) {
                return vals[i].parse().expect("a counter");
            }
        }
        panic!("no {name} in {table}")
    }
}

/// What both ends of one connection negotiated (`TCP_INFO`).
#[derive(Debug, PartialEq, Eq)]
struct End {
    /// `TCPI_OPT_*` bits: 1 timestamps, 2 SACK, 4 window scale.
    options: u8,
    snd_wscale: u8,
    rcv_wscale: u8,
    snd_mss: u32,
}

const TS: u8 = 1;
const SACK: u8 = 2;
const WSCALE: u8 = 4;

/// Connects from the client to the probe server at `addr`: (the listener's end, the client's).
fn probe(bed: &Bed, addr: IpAddr) -> (End, End) {
    let out = bed.env.topo.client.exec(
        "python3",
        &["-c", CLIENT, &addr.to_string(), &PROBE_PORT.to_string()],
    );
    let n: Vec<u32> = out
        .split_whitespace()
        .map(|w| w.parse().expect("a number"))
        .collect();
    assert_eq!(n.len(), 8, "{out}");
    let end = |i: usize| End {
        options: n[i] as u8,
        snd_wscale: n[i + 1] as u8,
        rcv_wscale: n[i + 2] as u8,
        snd_mss: n[i + 3],
    };
    (end(0), end(4))
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn downloads_through_cookies_are_whole_and_keep_the_clients_options() {
    let bed = bed();
    let want = bed.server.file("big", 50 << 20);
    for url in [
        format!("http://{EDGE_V4}:{PORT}/big"),
        format!("http://[{EDGE_V6}]:{PORT}/big"),
    ] {
        assert_eq!(bed.download(&url), want, "{url}: the bytes match");
    }
    assert!(bed.count("answered") >= 2, "{}", bed.synproxy());
    assert!(bed.count("accepted") >= 2, "{}", bed.synproxy());
    assert_eq!(
        bed.count("refused"),
        0,
        "no packet of a real connection is taken for a forged ACK"
    );
    // The listener never saw a SYN flood nor sent a cookie of its own.
    assert_eq!(bed.edge_tcp("/proc/net/netstat", "ListenOverflows"), 0);
    assert_eq!(bed.edge_tcp("/proc/net/netstat", "SyncookiesSent"), 0);

    // What the client offered is what the listener's socket has; the scale we advertised is
    // the listener's own.
    for addr in [IpAddr::V4(EDGE_V4), IpAddr::V6(EDGE_V6)] {
        let (server, client) = probe(&bed, addr);
        eprintln!("{addr}: listener {server:?}, client {client:?}");
        assert_eq!(server.options, TS | SACK | WSCALE, "{addr}: {server:?}");
        assert_eq!(client.options, TS | SACK | WSCALE, "{addr}: {client:?}");
        assert_eq!(
            server.snd_wscale, client.rcv_wscale,
            "{addr}: the listener scales by the client's offer"
        );
        assert_eq!(
            server.rcv_wscale, client.snd_wscale,
            "{addr}: the SYN-ACK advertised the listener's scale"
        );
        assert!(client.snd_mss >= 1400 && server.snd_mss >= 1400, "{addr}");
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_client_without_timestamps_or_with_a_small_mss_gets_a_working_connection() {
    let bed = bed();
    let want = bed.server.file("one", 1 << 20);
    let url = format!("http://{EDGE_V4}:{PORT}/one");

    // A route with advmss 1300: the cookie keeps the MSS class, the listener sends no more.
    bed.env.topo.client.ip(&[
        "route",
        "replace",
        "198.51.100.0/24",
        "dev",
        CLIENT_IF,
        "advmss",
        "1300",
    ]);
    assert_eq!(bed.download(&url), want);
    let (server, _) = probe(&bed, IpAddr::V4(EDGE_V4));
    assert!(
        (1200..=1300).contains(&server.snd_mss),
        "the listener's MSS is the client's 1300 (less options): {server:?}"
    );

    // No timestamps: the documented loss. No window scale, no SACK (a cookie without a
    // timestamp echo has nowhere to carry them), but a connection that works.
    bed.env
        .topo
        .client
        .exec("sysctl", &["-qw", "net.ipv4.tcp_timestamps=0"]);
    assert_eq!(bed.download(&url), want);
    let (server, client) = probe(&bed, IpAddr::V4(EDGE_V4));
    assert_eq!(
        (server.options, client.options),
        (0, 0),
        "{server:?} {client:?}"
    );
}

/// The raw cookie helpers and netfilter's SYNPROXY check no sysctl: a host with the kernel's
/// own SYN cookies off (`tcp_syncookies = 0`) is protected all the same, so `config check`
/// has nothing to refuse there.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cookies_work_with_the_hosts_own_syn_cookies_off() {
    let bed = bed();
    bed.env
        .topo
        .edge
        .exec("sysctl", &["-qw", "net.ipv4.tcp_syncookies=0"]);
    let want = bed.server.file("small", 256 << 10);
    for url in [
        format!("http://{EDGE_V4}:{PORT}/small"),
        format!("http://[{EDGE_V6}]:{PORT}/small"),
    ] {
        let accepted = bed.count("accepted");
        assert_eq!(bed.download(&url), want, "{url}");
        assert!(
            bed.count("accepted") > accepted,
            "{url}: through a cookie: {}",
            bed.synproxy()
        );
    }
}

/// A small xorshift: forged numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn forged_acks_are_dropped_and_counted_and_never_reach_the_listener() {
    let bed = bed();
    let resets = bed.edge_tcp("/proc/net/snmp", "OutRsts");
    let sock = RawSocket::open(&bed.env.topo.client, CLIENT_IF);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    const FORGED: usize = 2000;
    let sent = sock.send_many(FORGED, |_| {
        let r = rng.next();
        tcp4(
            EDGE_MAC,
            CLIENT_MAC,
            CLIENT_V4,
            EDGE_V4,
            Tcp {
                sport: 1024 + (r as u16 % 60000),
                dport: PORT,
                seq: (r >> 16) as u32,
                ack: (r >> 32) as u32,
                flags: 0x10,
                options: &[],
            },
        )
    });
    assert_eq!(sent, FORGED);
    let deadline = Instant::now() + Duration::from_secs(5);
    while bed.count("refused") < FORGED as u64 {
        assert!(Instant::now() < deadline, "{}", bed.synproxy());
    }
    assert_eq!(
        bed.count("refused"),
        FORGED as u64,
        "every forged ACK, once"
    );
    assert_eq!(
        bed.edge_tcp("/proc/net/snmp", "OutRsts"),
        resets,
        "the listener answered none of them with a reset: it never saw them"
    );
    // The scrape says the same.
    let scrape = bed.env.topo.edge.exec(
        "curl",
        &["-sS", "--max-time", "5", "http://127.0.0.1:9720/metrics"],
    );
    for line in [
        format!("ipwarden_synproxy_total{{outcome=\"refused\"}} {FORGED}"),
        "ipwarden_synproxy_answering 1".to_owned(),
        "ipwarden_synproxy_mode_changes_total{to=\"answering\"} 1".to_owned(),
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "no `{line}` in\n{scrape}"
        );
    }
    // And `stats`, on the interface.
    let stats = bed.env.home.json(&["stats"]);
    let counters = &stats["interfaces"][0]["counters"];
    assert_eq!(counters["synproxy_refused"], FORGED as u64, "{stats}");
    assert_eq!(counters["synproxy_accepted"], 0, "{stats}");
    // A real connection still works.
    let want = bed.server.file("small", 64 << 10);
    assert_eq!(
        bed.download(&format!("http://{EDGE_V4}:{PORT}/small")),
        want
    );
}

/// Spoofed SYNs to the protected port from sources all over 203.0.113.0/24 and 192.0.2.0/24
/// (random ports) until `flooding` goes false; bounded at 400 000 SYNs and `most`. How many
/// were sent.
fn spoofed_syns(bed: &Bed, flooding: &std::sync::atomic::AtomicBool, most: Duration) -> usize {
    let sock = RawSocket::open(&bed.env.topo.client, CLIENT_IF);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // A Linux client's options (a header as long as the SYN-ACK's), a bare MSS (hping3-like
    // floods: the SYN-ACK is longer than the SYN) and none at all.
    let full = [
        2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let shapes: [&[u8]; 3] = [&full, &full[..4], &[]];
    let mut sent = 0;
    let start = Instant::now();
    while flooding.load(std::sync::atomic::Ordering::Relaxed)
        && sent < 400_000
        && start.elapsed() < most
    {
        sent += sock.send_many(1000, |_| {
            let r = rng.next();
            let net = if r & 1 == 0 {
                [203, 0, 113]
            } else {
                [192, 0, 2]
            };
            let src = Ipv4Addr::new(net[0], net[1], net[2], (r >> 8) as u8);
            tcp4(
                EDGE_MAC,
                CLIENT_MAC,
                src,
                EDGE_V4,
                Tcp {
                    sport: 1024 + ((r >> 16) as u16 % 60000),
                    dport: PORT,
                    seq: (r >> 32) as u32,
                    ack: 0,
                    flags: 0x02,
                    options: shapes[(r >> 48) as usize % shapes.len()],
                },
            )
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    sent
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn under_attack_answers_only_while_syns_flood_the_port() {
    let bed = bed_with(&CONFIG.replace(
        "ports = [8080, 8081]",
        "ports = [8080, 8081]\nwhen = \"under_attack\"\nsyn_pps = 2000\ncalm = \"3s\"",
    ));
    let want = bed.server.file("page", 64 << 10);
    let url = format!("http://{EDGE_V4}:{PORT}/page");
    // No flood: the listener answers its SYNs itself.
    assert_eq!(bed.synproxy()["answering"], false);
    assert_eq!(bed.download(&url), want);
    assert_eq!(bed.count("answered"), 0, "{}", bed.synproxy());
    assert!(bed.count("syns") >= 1, "SYNs are counted while waiting");

    let flooding = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|s| {
        let flood = s.spawn(|| spoofed_syns(&bed, &flooding, Duration::from_secs(12)));
        bed.wait_until("answering under the flood", |p| p["answering"] == true);
        assert_eq!(bed.download(&url), want, "a real client during the flood");
        flooding.store(false, std::sync::atomic::Ordering::Relaxed);
        flood.join().expect("the flood");
    });
    assert!(bed.count("answered") > 0, "{}", bed.synproxy());
    // Quiet for `calm`: back to the listeners.
    bed.wait_until("the flood's end", |p| p["answering"] == false);
    let p = bed.synproxy();
    assert_eq!(
        (p["entered"].as_u64(), p["left"].as_u64()),
        (Some(1), Some(1)),
        "{p}"
    );
    let answered = bed.count("answered");
    assert_eq!(bed.download(&url), want);
    assert_eq!(
        bed.count("answered"),
        answered,
        "no cookie once the flood is over"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_spoofed_syn_flood_is_answered_while_real_clients_get_through() {
    let bed = bed();
    let want = bed.server.file("page", 256 << 10);
    let url = format!("http://{EDGE_V4}:{PORT}/page");
    let (answered, syns) = (bed.count("answered"), bed.count("syns"));
    let flooding = std::sync::atomic::AtomicBool::new(true);
    let (flooded, fetched) = std::thread::scope(|s| {
        let flood = s.spawn(|| spoofed_syns(&bed, &flooding, Duration::from_secs(8)));
        std::thread::sleep(Duration::from_millis(300));
        let mut fetched = 0;
        for _ in 0..20 {
            assert_eq!(bed.download(&url), want, "a real client during the flood");
            fetched += 1;
        }
        flooding.store(false, std::sync::atomic::Ordering::Relaxed);
        (flood.join().expect("the flood"), fetched)
    });
    let answered = bed.count("answered") - answered;
    let syns = bed.count("syns") - syns;
    eprintln!(
        "{flooded} spoofed SYNs sent, {syns} reached the program, {answered} SYN-ACKs, {fetched} downloads: {}",
        bed.synproxy()
    );
    assert_eq!(fetched, 20);
    // The veth drops frames of a burst before the program sees them when its ring is full: how
    // many depends on how fast the sender outruns it, which varies fivefold from run to run here
    // (22 000 to 122 000 frames sent in the same downloads' time, 15 % to 60 % of them reaching
    // the program), so the flood's size is asserted, not its share. Every SYN the program sees
    // is answered, whatever its options' length (the downloads' own SYNs are among them).
    assert_eq!(bed.count("unfit"), 0, "{}", bed.synproxy());
    assert!(
        syns >= 5_000,
        "{syns} of {flooded} spoofed SYNs reached the program"
    );
    assert!(
        answered as f64 >= syns as f64 * 0.99,
        "{answered} of {syns} SYNs answered"
    );
    assert_eq!(
        bed.edge_tcp("/proc/net/netstat", "ListenOverflows"),
        0,
        "the listener's queue never overflowed"
    );
}
