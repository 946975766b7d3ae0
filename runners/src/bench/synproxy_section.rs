//! SYN cookies under a spoofed SYN flood: SYN-ACKs the receiver's one CPU sends per second with
//! ipwarden's synproxy answering in XDP, against the kernel's own SYN cookies (no XDP program,
//! `tcp_syncookies = 2`: every SYN answered with a cookie by the stack), interleaved in the
//! same bed (see `live`): the generator floods IPv6 SYNs from 65 536 /64s to port 443 of the
//! receiver, where a listener waits.

use std::fmt::Write as _;

use anyhow::{Context as _, ensure};

use super::{kernel, live, report, stats};

/// What one run answered: SYN-ACKs per second, and the receiver's CPU share.
struct Answered {
    rate: f64,
    cpu: f64,
    processed: u64,
    answered: u64,
}

/// The receiver's `TcpExt` counter `name` (`SyncookiesSent`, `ListenDrops`, …).
fn netstat(bed: &live::Bed, name: &str) -> anyhow::Result<u64> {
    let text = bed.dut().exec("cat", &["/proc/net/netstat"]);
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [head, values] = pair else { continue };
        let heads: Vec<&str> = head.split_whitespace().collect();
        let vals: Vec<&str> = values.split_whitespace().collect();
        if heads.first() != Some(&"TcpExt:") {
            continue;
        }
        if let Some(i) = heads.iter().position(|h| *h == name) {
            return Ok(vals[i].parse()?);
        }
    }
    anyhow::bail!("no {name} in the receiver's /proc/net/netstat")
}

/// Section: SYN cookies.
pub fn syn_cookies(
    md: &mut String,
    bpffs: &std::path::Path,
    opts: &crate::bench::Options,
) -> anyhow::Result<()> {
    eprintln!("SYN cookies: building the bed");
    let mut bed = live::Bed::new(ipwarden::dataplane::object::baseline::TX)?;
    let dut_if = bed.dut_if();
    // The receiver owns the SYNs' destination and routes the spoofed sources back through the
    // pair (its own SYN-ACKs go out the way the SYNs came), through a neighbour that never
    // needs resolving.
    bed.dut().ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/64", super::frames::DST_V6),
        "dev",
        dut_if,
        "nodad",
    ]);
    bed.dut().ip(&[
        "-6",
        "neigh",
        "replace",
        "2001:db8:1::2",
        "lladdr",
        "02:00:5e:00:00:fe",
        "dev",
        dut_if,
        "nud",
        "permanent",
    ]);
    bed.dut().ip(&[
        "-6",
        "route",
        "add",
        "2001:db8::/32",
        "via",
        "2001:db8:1::2",
        "dev",
        dut_if,
    ]);
    bed.dut()
        .exec("sysctl", &["-qw", "net.ipv4.tcp_syncookies=2"]);
    // The SYN-ACKs must arrive, in both cases: frames sent with `XDP_TX` need NAPI on the
    // sending veth, which an XDP program gives it (the kernel's SYN-ACKs arrive as ordinary
    // frames). Both are then dropped there, in XDP: the IPv4 clients of the connection rows
    // share the generator's CPU.
    bed.drop_v6_at_sender()?;
    bed.sender_napi_on_generator_cpu()?;
    let listener = bed.listen((std::net::Ipv6Addr::UNSPECIFIED, live::SYN_PORT).into())?;
    let mut proxy = kernel::ipwarden_synproxy(bpffs, live::SYN_PORT)?;
    let mut floor = kernel::reflector(bpffs)?;
    let pins = ipwarden::dataplane::PinDir::new(bpffs, "synproxy");
    let dp = ipwarden::dataplane::Dataplane::open(&pins)?;
    let answered_xdp = || -> anyhow::Result<u64> {
        Ok(dp
            .synproxy_counts()?
            .context("the synproxy's maps are missing")?
            .answered)
    };
    if std::env::var_os("SYN_DEBUG").is_some() {
        let before = dp.synproxy_counts()?;
        let r = proxy.run(bed.synflood_frame(), 1000)?;
        eprintln!("test run: {r:?}, {before:?} -> {:?}", dp.synproxy_counts()?);
    }
    let (rounds, frames) = if opts.quick {
        (5, 2_000_000)
    } else {
        (9, 4_000_000)
    };
    const SOURCES: u32 = 65_536;
    /// Few enough to stay in the front table: the synproxy's own cost, without the source
    /// path's for a new source per frame.
    const FEW: u32 = 64;
    // [kernel, ipwarden, ipwarden with few sources, the bed's floor]
    let mut runs: [Vec<Answered>; 4] = Default::default();
    for round in 0..rounds {
        eprintln!("SYN cookies: round {} of {rounds}", round + 1);
        for k in 0..runs.len() {
            let which = (k + round) % runs.len();
            let (s, answered) = if which == 3 {
                // Every frame it processes it sends back: its answers are its verdicts, as
                // the synproxy's `answered` counts its.
                let s = bed.measure(
                    &mut live::Receiver::Xdp(&mut floor),
                    live::Traffic::SynFlood(SOURCES),
                    frames,
                )?;
                let answered = s.processed;
                (s, answered)
            } else if which == 0 {
                let before = netstat(&bed, "SyncookiesSent")?;
                let s = bed.measure(
                    &mut live::Receiver::Stack,
                    live::Traffic::SynFlood(SOURCES),
                    frames,
                )?;
                (s, netstat(&bed, "SyncookiesSent")? - before)
            } else {
                let before = answered_xdp()?;
                let s = bed.measure(
                    &mut live::Receiver::Xdp(&mut proxy),
                    live::Traffic::SynFlood(if which == 1 { SOURCES } else { FEW }),
                    frames,
                )?;
                (s, answered_xdp()? - before)
            };
            ensure!(
                answered * 100 >= s.processed * 90,
                "{} answered {answered} of {} SYNs it processed ({:?})",
                ["the kernel", "ipwarden", "ipwarden", "the reflector"][which],
                s.processed,
                dp.synproxy_counts()
            );
            let secs = s.processed as f64 / s.pps;
            runs[which].push(Answered {
                rate: answered as f64 / secs,
                cpu: s.cpu,
                processed: s.processed,
                answered,
            });
        }
    }
    let med =
        |v: &[Answered], f: fn(&Answered) -> f64| stats(&v.iter().map(f).collect::<Vec<_>>()).0;
    let ratios: Vec<f64> = runs[1]
        .iter()
        .zip(&runs[0])
        .map(|(x, k)| x.rate / k.rate)
        .collect();
    let per_cpu = |v: &[Answered]| med(v, |a| a.rate / a.cpu.max(0.01));
    // Microseconds of a busy receiving CPU per answer.
    let us = |v: &[Answered]| 1e6 / per_cpu(v).max(1e-9);
    let (kernel_us, ipw_us, few_us, floor_us) =
        (us(&runs[0]), us(&runs[1]), us(&runs[2]), us(&runs[3]));
    let rows: Vec<Vec<String>> = [
        ("kernel SYN cookies (no XDP, tcp_syncookies = 2)", &runs[0]),
        ("ipwarden synproxy (XDP_TX)", &runs[1]),
        (
            "ipwarden synproxy, 64 sources (they stay in the front table)",
            &runs[2],
        ),
        (
            "the bed's floor: every SYN sent back unchanged (`bench_tx`)",
            &runs[3],
        ),
    ]
    .iter()
    .map(|(name, v)| {
        vec![
            (*name).to_owned(),
            format!("{:.2}", med(v, |a| a.rate) / 1e6),
            format!("{:.0}", med(v, |a| a.cpu) * 100.0),
            format!("{:.2}", per_cpu(v) / 1e6),
            format!("{:.2}", per_cpu(v) / per_cpu(&runs[0])),
            format!(
                "{} / {}",
                v.iter().map(|a| a.answered).sum::<u64>(),
                v.iter().map(|a| a.processed).sum::<u64>()
            ),
        ]
    })
    .collect();
    let _ = writeln!(
        md,
        "### SYN cookies under a spoofed SYN flood\n\n{rounds} interleaved rounds of {frames} IPv6 SYNs (valid checksums, an MSS option) to port 443 of the receiver, each from the next of {SOURCES} /64s, with a listener on port 443: the kernel's own SYN cookies (no XDP program, `net.ipv4.tcp_syncookies = 2`, counted by `TcpExtSyncookiesSent`) against ipwarden's synproxy (the product's program answering with `XDP_TX`, counted by its `answered` counter). The receiver's NAPI runs on one CPU; the SYN-ACKs go back out through the pair in both cases and are dropped by an XDP program on the sender's veth, in a NAPI thread on the generator's CPU (as a NIC's transmit ring takes them off the receiver's CPU). A third series sends the same SYNs from 64 /64s only, which stay in ipwarden's front table: what the synproxy itself costs, without the source path's cost of a new source per frame. Every run is checked to have answered ≥ 90 % of the SYNs it processed. The SYNs came from {}. **ipwarden / kernel: {:.2}× the SYN-ACKs per second** (median of per-round ratios). A fourth series measures the bed itself: a program that sends every SYN back unchanged, with no work at all, answers at {floor_us:.2} µs of a busy receiving CPU per frame (receiving the frame into XDP and sending it back through the pair), against {ipw_us:.2} µs for ipwarden ({few_us:.2} µs from 64 sources) and {kernel_us:.2} µs for the kernel: no XDP answer can beat the kernel by more than {:.1}× here, and ipwarden's own work per SYN-ACK above that floor is {:.2} µs against the kernel's {:.2} µs ({:.1}×).\n",
        bed.flood_source(),
        stats(&ratios).0,
        kernel_us / floor_us,
        ipw_us - floor_us,
        kernel_us - floor_us,
        (kernel_us - floor_us) / (ipw_us - floor_us).max(1e-9),
    );
    md.push_str(&report::table(
        &[
            "answering",
            "SYN-ACKs (M/s)",
            "receiver CPU %",
            "M/s per busy CPU",
            "per busy CPU vs kernel",
            "answered / processed",
        ],
        &rows,
    ));
    md.push('\n');
    super::synproxy_legit::legit_during_flood(
        md,
        &mut bed,
        &listener,
        &mut proxy,
        (live::SYN_PORT, SOURCES, med(&runs[0], |a| a.rate)),
        (netstat, || {
            Ok(dp
                .synproxy_counts()?
                .context("the synproxy's maps are missing")?
                .accepted)
        }),
        opts,
    )?;
    cost_when_not_taken(md, &mut proxy, &pins, opts)
}

/// The in-kernel cost (BPF_PROG_TEST_RUN) of frames the synproxy does not take, with it off
/// and with it answering on another port, interleaved: what protecting a port costs every other
/// packet.
fn cost_when_not_taken(
    md: &mut String,
    proxy: &mut kernel::Subject,
    pins: &ipwarden::dataplane::PinDir,
    opts: &crate::bench::Options,
) -> anyhow::Result<()> {
    use ipwarden_common::synproxy::SynproxyConfig;
    let mut dp = ipwarden::dataplane::Dataplane::open(pins)?;
    let on = SynproxyConfig {
        flags: SynproxyConfig::ANSWER | SynproxyConfig::COUNT,
        mss_v4: 1460,
        mss_v6: 1440,
        wscale: 7,
        ttl: 64,
        _pad: [0; 6],
    };
    let (rounds, repeat) = if opts.quick {
        (5, 200_000)
    } else {
        (9, 1_000_000)
    };
    let cases: Vec<_> = super::frames::cases()
        .into_iter()
        .filter(|c| !c.drop)
        .collect();
    // [case][off, on]
    let mut ns = vec![[Vec::new(), Vec::new()]; cases.len()];
    for round in 0..rounds {
        for k in 0..2 {
            let which = if std::env::var_os("SYN_ONLY_XDP").is_some() {
                1
            } else {
                (k + round) % 2
            };
            if which == 0 {
                dp.set_synproxy(SynproxyConfig::default(), &[])?;
            } else {
                dp.set_synproxy(on, &[8443])?;
            }
            for (i, case) in cases.iter().enumerate() {
                let (verdict, t) = proxy.run(&case.frame, repeat)?;
                // XDP_PASS: nothing here is blocked, and the synproxy takes none of them.
                ensure!(verdict == 2, "{}: verdict {verdict}", case.name);
                ns[i][which].push(t);
            }
        }
    }
    let rows: Vec<Vec<String>> = cases
        .iter()
        .zip(&ns)
        .map(|(c, [off, on])| {
            let deltas: Vec<f64> = on.iter().zip(off).map(|(a, b)| a - b).collect();
            vec![
                c.name.to_owned(),
                format!("{:.1}", stats(off).0),
                format!("{:.1}", stats(on).0),
                format!("{:+.1}", stats(&deltas).0),
            ]
        })
        .collect();
    let _ = writeln!(
        md,
        "In-kernel cost (BPF_PROG_TEST_RUN, ns, {rounds} interleaved rounds of {repeat} runs) of frames the synproxy does not take (the SYNs go to port 443, the protected port is 8443), with the synproxy off and answering:\n"
    );
    md.push_str(&report::table(
        &[
            "frame",
            "synproxy off",
            "synproxy on",
            "on − off (median of rounds)",
        ],
        &rows,
    ));
    md.push('\n');
    dp.set_synproxy(on, &[live::SYN_PORT])?;
    Ok(())
}
