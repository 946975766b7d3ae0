//! Real connections during a spoofed SYN flood: how many whole connections (a handshake, a
//! two-byte answer, the close) clients in the sender's namespace complete per second with the
//! listener on the flooded port, without the flood and during it, with the kernel's own SYN
//! cookies and with ipwarden's synproxy as the daemon sets it up (the program answering SYNs,
//! netfilter's SYNPROXY completing the handshakes a cookie proves), interleaved.
//!
//! A cookie answer is only worth having if the connections it is there for still get in: this
//! is the figure an operator cares about, where the SYN-ACK rate is the mechanism's.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};

use super::{kernel, live, report, stats};

/// Client threads, each with one connection at a time.
const CLIENTS: usize = 8;
/// Client addresses (198.51.100.100 and up, on the sender's veth), taken in turn: a run makes
/// hundreds of thousands of connections, and the server holds each closed one's 4-tuple in
/// TIME_WAIT for a minute. A SYN for a tuple a socket still holds is passed to the stack by
/// design, so with one address most connections would not be cookie handshakes.
const ADDRESSES: u8 = 64;
/// How long a connection may take before it counts as failed.
const PATIENCE: Duration = Duration::from_secs(3);
/// What the server answers.
const ANSWER: &[u8] = b"ok";

/// Counts of one measurement.
#[derive(Clone, Copy, Default)]
struct Tally {
    done: u64,
    failed: u64,
    /// Whole connections, counted or not (warming up, finishing).
    all: u64,
}

/// Connections per second, without and during the flood, and what the listener dropped.
#[derive(Default)]
struct Series {
    quiet: Vec<f64>,
    flooded: Vec<f64>,
    failed: u64,
    listen_drops: u64,
    /// Connections made, and handshakes the synproxy proved by cookie meanwhile.
    made: u64,
    proven: u64,
    /// Busy shares of the receiver's and the sender's CPU during the floods.
    cpu: Vec<f64>,
    sender_cpu: Vec<f64>,
}

/// The `i`th client address.
fn client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 100 + (i % usize::from(ADDRESSES)) as u8)
}

/// One connection from `from`: connect, read the answer to its end, close. Whether it was
/// whole.
fn connection(from: Ipv4Addr, to: SocketAddr) -> bool {
    let open = || -> std::io::Result<TcpStream> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.bind(&SocketAddr::from((from, 0)).into())?;
        s.connect_timeout(&to.into(), PATIENCE)?;
        Ok(s.into())
    };
    let Ok(s) = open() else {
        return false;
    };
    if s.set_read_timeout(Some(PATIENCE)).is_err() {
        return false;
    }
    let mut got = Vec::with_capacity(ANSWER.len());
    s.take(16).read_to_end(&mut got).is_ok() && got == ANSWER
}

/// How the clients connect.
#[derive(Clone, Copy)]
enum Load {
    /// Each client opens its next connection as soon as the last one ends: the rate measures
    /// what the two CPUs have left for the clients and the server as much as the receiver.
    Saturating,
    /// Each client opens a connection every this often (or at once when late): whether the
    /// connections a host's users open get in, at a rate the CPUs can serve.
    Paced(Duration),
}

/// The loads measured.
const LOADS: [Load; 2] = [Load::Saturating, Load::Paced(Duration::from_millis(10))];

impl Load {
    fn name(self) -> String {
        match self {
            Load::Saturating => "as fast as they can".into(),
            Load::Paced(every) => format!(
                "paced, {:.0}/s offered",
                CLIENTS as f64 / every.as_secs_f64()
            ),
        }
    }
}

/// Runs `during` while `CLIENTS` threads in the namespace `ns` connect to `to` one connection
/// after another at `load`; what they completed and failed while it ran, and how long it ran.
fn with_clients<T>(
    ns: &str,
    to: SocketAddr,
    load: Load,
    during: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Tally, Duration)> {
    let (run, counting) = (AtomicBool::new(true), AtomicBool::new(false));
    let (done, failed, all) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (run, counting) = (&run, &counting);
                let (done, failed, all) = (&done, &failed, &all);
                s.spawn(move || -> anyhow::Result<()> {
                    live::enter_namespace(ns)?;
                    let mut next = t;
                    let mut due = Instant::now();
                    while run.load(Ordering::Relaxed) {
                        if let Load::Paced(every) = load {
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            due = Instant::now() + every;
                        }
                        let whole = connection(client_addr(next), to);
                        next += CLIENTS;
                        all.fetch_add(u64::from(whole), Ordering::Relaxed);
                        if counting.load(Ordering::Relaxed) {
                            if whole { done } else { failed }.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        // The clients connect before anything is counted (their threads and first sockets).
        std::thread::sleep(Duration::from_millis(200));
        counting.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let out = during();
        let elapsed = started.elapsed();
        counting.store(false, Ordering::Relaxed);
        let tally = Tally {
            done: done.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            all: 0,
        };
        run.store(false, Ordering::Relaxed);
        for c in clients {
            c.join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        }
        let tally = Tally {
            all: all.load(Ordering::Relaxed),
            ..tally
        };
        Ok((out?, tally, elapsed))
    })
}

/// Accepts connections on `listener` and answers each with [`ANSWER`] until `stop`.
fn serve(listener: &TcpListener, stop: &AtomicBool) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut c, _)) => {
                let _ = c.set_nonblocking(false);
                let _ = c.write_all(ANSWER);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(500));
            }
            Err(e) => return Err(e).context("accepting"),
        }
    }
    Ok(())
}

/// ipwarden's half of the handshake completion: the daemon's nftables table, with conntrack's
/// mid-stream pickup off, in the receiver's namespace.
fn install_nft(bed: &live::Bed, port: u16) -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!("ipwbench-synproxy-{}.nft", std::process::id()));
    std::fs::write(&path, ipwarden::synproxy::nft::table(&[port], 1460, 7))?;
    let out = bed
        .dut()
        .exec_output("nft", &["-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    anyhow::ensure!(
        out.status.success(),
        "installing the SYNPROXY table: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    bed.dut()
        .exec("sysctl", &["-qw", "net.netfilter.nf_conntrack_tcp_loose=0"]);
    Ok(())
}

fn remove_nft(bed: &live::Bed) {
    bed.dut().exec(
        "nft",
        &["delete", "table", "inet", ipwarden::synproxy::nft::TABLE],
    );
}

/// Flood rates, as multiples of the kernel's own SYN cookie capacity measured just before: a
/// flood the kernel keeps up with, and one it cannot (which ipwarden's answers should).
const RATES: [f64; 2] = [0.5, 1.5];

/// The section's measurement, on the SYN cookie section's bed (its listener on `port`, SYN
/// floods from `sources` sources, paced at [`RATES`] times `kernel_rate`, the SYN-ACKs per
/// second the kernel's own cookies sent in the section above), with the receiver's `TcpExt`
/// counters and the synproxy's count of proven handshakes.
///
/// The floods are paced (`Bed::flood_paced`): a sender that waits whenever the veth's ring is
/// full, as the unpaced generator does to measure capacity, also wins every slot of it from the
/// clients, and the figure would be the test bed's, whoever answers.
pub fn legit_during_flood(
    md: &mut String,
    bed: &mut live::Bed,
    listener: &TcpListener,
    proxy: &mut kernel::Subject,
    (port, sources, kernel_rate): (u16, u32, f64),
    (netstat, proven): (
        impl Fn(&live::Bed, &str) -> anyhow::Result<u64>,
        impl Fn() -> anyhow::Result<u64>,
    ),
    opts: &crate::bench::Options,
) -> anyhow::Result<()> {
    let (rounds, flood_for) = if opts.quick {
        (3, Duration::from_secs(3))
    } else {
        (5, Duration::from_secs(5))
    };
    let to = SocketAddr::from((bed.dut_addr(), port));
    let ns = bed.sender().name().to_owned();
    // Connections close server side first (the server's TIME_WAITs do not hold the client's
    // ports), and the client may use every port.
    bed.sender().exec(
        "sysctl",
        &["-qw", "net.ipv4.ip_local_port_range=1024 65000"],
    );
    for i in 0..usize::from(ADDRESSES) {
        bed.sender().ip(&[
            "addr",
            "add",
            &format!("{}/24", client_addr(i)),
            "dev",
            bed.gen_if(),
        ]);
    }
    let stop = AtomicBool::new(false);
    // [load][rate][kernel, ipwarden]
    let mut series: [[[Series; 2]; RATES.len()]; LOADS.len()] = Default::default();
    let mut offered: [Vec<f64>; RATES.len()] = Default::default();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let server = s.spawn(|| serve(listener, &stop));
        let result = (|| -> anyhow::Result<()> {
            for round in 0..rounds {
                eprintln!("SYN cookies: connections, round {} of {rounds}", round + 1);
                for (l, load) in LOADS.iter().enumerate() {
                    for (r, rate) in RATES.iter().enumerate() {
                        let pps = rate * kernel_rate;
                        let frames = (pps * flood_for.as_secs_f64()) as u32;
                        for k in 0..2 {
                            let which = (k + round) % 2;
                            let v = &mut series[l][r][which];
                            let sample = measure_once(
                                bed,
                                (to, &ns, *load),
                                which,
                                &mut *proxy,
                                (sources, frames, pps),
                                (&netstat, &proven),
                                v,
                            )?;
                            offered[r].push(sample.sent as f64 / flood_secs(&sample));
                        }
                    }
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("the server panicked"))??;
        result
    })?;
    report_rows(
        md,
        &series,
        &offered,
        (rounds, flood_for, port, kernel_rate),
    );
    Ok(())
}

/// The flood's length in seconds, from what the receiver processed at its rate.
fn flood_secs(s: &live::Sample) -> f64 {
    s.processed as f64 / s.pps.max(1e-9)
}

/// One measurement of one receiver (`which`: 0 the kernel, 1 ipwarden): clients without the
/// flood for 1.5 s, then during a flood of `frames` SYNs at `pps`; the flood's sample.
#[allow(
    clippy::too_many_arguments,
    reason = "one measurement's bed, receiver, flood and counters, each already grouped"
)]
fn measure_once(
    bed: &mut live::Bed,
    (to, ns, load): (SocketAddr, &str, Load),
    which: usize,
    proxy: &mut kernel::Subject,
    (sources, frames, pps): (u32, u32, f64),
    (netstat, proven): (
        &impl Fn(&live::Bed, &str) -> anyhow::Result<u64>,
        &impl Fn() -> anyhow::Result<u64>,
    ),
    v: &mut Series,
) -> anyhow::Result<live::Sample> {
    let port = to.port();
    let mut receiver = if which == 0 {
        live::Receiver::Stack
    } else {
        install_nft(bed, port)?;
        live::Receiver::Xdp(proxy)
    };
    let (drops, proven_before) = (netstat(bed, "ListenDrops")?, proven()?);
    let measured = bed.with_receiver(&mut receiver, |bed| {
        let (_, quiet, quiet_for) = with_clients(ns, to, load, || {
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        })?;
        let (sample, flooded, flood_for) = with_clients(ns, to, load, || {
            bed.flood_paced(live::Traffic::SynFlood(sources), frames, pps)
        })?;
        Ok((quiet, quiet_for, flooded, flood_for, sample))
    });
    if which == 1 {
        remove_nft(bed);
    }
    let (quiet, quiet_for, flooded, flood_for, sample) = measured?;
    v.quiet.push(quiet.done as f64 / quiet_for.as_secs_f64());
    v.flooded
        .push(flooded.done as f64 / flood_for.as_secs_f64());
    v.failed += flooded.failed + quiet.failed;
    v.listen_drops += netstat(bed, "ListenDrops")? - drops;
    v.made += quiet.all + flooded.all;
    v.proven += proven()? - proven_before;
    v.cpu.push(sample.cpu);
    v.sender_cpu.push(sample.sender_cpu.unwrap_or(f64::NAN));
    Ok(sample)
}

/// The section's text and table.
fn report_rows(
    md: &mut String,
    series: &[[[Series; 2]; RATES.len()]; LOADS.len()],
    offered: &[Vec<f64>; RATES.len()],
    (rounds, flood_for, port, kernel_rate): (usize, Duration, u16, f64),
) {
    let kept = |v: &Series| -> f64 {
        let r: Vec<f64> = v
            .flooded
            .iter()
            .zip(&v.quiet)
            .map(|(f, q)| f / q.max(1e-9))
            .collect();
        stats(&r).0
    };
    let names = [
        "kernel SYN cookies (no XDP, tcp_syncookies = 2)",
        "ipwarden synproxy (XDP cookies + netfilter SYNPROXY)",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut summary = Vec::new();
    for ((l, load), (r, rate)) in LOADS
        .iter()
        .enumerate()
        .flat_map(|l| RATES.iter().enumerate().map(move |r| (l, r)))
    {
        for (which, name) in names.iter().enumerate() {
            let v = &series[l][r][which];
            rows.push(vec![
                (*name).to_owned(),
                load.name(),
                format!("{rate}× ({:.0} k/s)", stats(&offered[r]).0 / 1e3),
                format!("{:.0}", stats(&v.quiet).0),
                format!("{:.0}", stats(&v.flooded).0),
                format!("{:.0} %", kept(v) * 100.0),
                v.failed.to_string(),
                v.listen_drops.to_string(),
                format!("{} / {}", v.proven, v.made),
                format!(
                    "{:.0} / {:.0}",
                    stats(&v.cpu).0 * 100.0,
                    stats(&v.sender_cpu).0 * 100.0
                ),
            ]);
        }
        summary.push(format!(
            "clients {}, flood at {rate}× the kernel's capacity: kernel {:.0} %, ipwarden {:.0} %",
            load.name(),
            kept(&series[l][r][0]) * 100.0,
            kept(&series[l][r][1]) * 100.0
        ));
    }
    let _ = writeln!(
        md,
        "#### Real connections during the flood

{rounds} interleaved rounds: {CLIENTS} client threads in the sender's namespace open one IPv4 connection after another, as fast as they can or each every 10 ms (from {ADDRESSES} addresses in turn, so that no 4-tuple repeats while the server holds it in TIME_WAIT) to the flooded listener (port {port}; a connection is whole when the server's two-byte answer and its close arrive within {PATIENCE:?}), for 1.5 s without the flood, then during {flood_for:?} of spoofed SYNs from the same sources as above, paced at {RATES:?} times the SYN-ACKs per second the kernel's own cookies sent above ({:.0} k/s): a flood the kernel keeps up with and one it cannot. The floods come from an `AF_PACKET` socket on the sender's veth, paced, and what the veth does not take is lost, as an attacker's frames are (an unpaced sender waits for the ring and so takes every slot of it from the clients, whoever answers). ipwarden runs as the daemon sets it up: the program answers SYNs with cookies and the daemon's nftables table (netfilter's SYNPROXY, `nf_conntrack_tcp_loose = 0`) completes the handshakes they prove (the last column counts them: the rest found a socket for their 4-tuple, the server's TIME_WAIT from an earlier connection, and were passed to the stack). Everything shares the machine's 2 CPUs: the generator's, where the clients also run (with the NAPI thread that drops the SYN-ACKs), and the receiver's, where its NAPI and the server run: the last column says how busy each was during the floods, and a busy sender's CPU leaves the clients less time whoever answers. **Connections kept during the flood: {}** (median of per-round ratios; the goal is 90 %).\n",
        kernel_rate / 1e3,
        summary.join("; "),
    );
    md.push_str(&report::table(
        &[
            "receiver",
            "clients",
            "flood (× kernel capacity, offered)",
            "connections/s, no flood",
            "connections/s, flood",
            "kept",
            "connections failed",
            "listen drops",
            "proven by cookie / made",
            "CPU % in the flood: receiver / sender",
        ],
        &rows,
    ));
    md.push('\n');
}
