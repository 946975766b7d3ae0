//! Live drop rate across a veth pair: a generator namespace transmits one blocked source's frames
//! as fast as the kernel can build them, and the receiving end of the pair, in its own namespace,
//! drops them with each subject in turn: ipwarden, an empty XDP_DROP program, xdp-filter, an
//! nftables netdev-ingress rule, or nothing at all (the stack discards them).
//!
//! The generator is BPF_PROG_TEST_RUN in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`) running
//! a program that returns `XDP_TX` with the sending veth as its ingress interface: every run
//! transmits the frame out of that veth, at 10+ Mpps from one CPU. The receiving veth runs its
//! NAPI poll in a kernel thread (threaded NAPI) pinned to the other CPU, so the receiver's
//! capacity is measured on a CPU of its own. What the receiver processed is its `rx_packets`;
//! frames the generator made while the receive ring was full are counted by veth as
//! `rx_dropped` and are not part of the rate. Everything stays inside the two namespaces.

use std::{
    fs::File,
    net::Ipv4Addr,
    os::fd::AsFd as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use nix::{
    sched::{CloneFlags, CpuSet, sched_setaffinity, setns},
    unistd::Pid,
};

use super::{frames, kernel::Subject};

mod packet_sender;
mod traffic;
use ipwarden_tests::{cmd, cpu::on_cpu, netns::NetNs};
use packet_sender::refused;
pub use traffic::{Spray, Traffic};

/// The generator's programs (`ebpf/src/bin/tx.rs`): one source, and many IPv6 /64s.
const TX_PROGRAM: &str = "bench_tx";
const SPRAY_PROGRAM: &str = "bench_spray";
const SYN_SPRAY_PROGRAM: &str = "bench_synspray";
const DROP_V6_PROGRAM: &str = "bench_drop_v6";
const GEN_IF: &str = "lg0";
const DUT_IF: &str = "ld0";
const DUT_ADDR: Ipv4Addr = frames::DST_V4;
const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The generator runs on this CPU, the receiver's NAPI thread on the other.
const GEN_CPU: usize = 0;
const DUT_CPU: usize = 1;
/// The port [`Traffic::SynFlood`]'s SYNs go to.
pub const SYN_PORT: u16 = 443;
/// Frames per live-frames batch: the kernel's maximum.
const BATCH: u32 = 256;

/// What one subject does to the frames on the receiving side.
pub enum Receiver<'a> {
    /// Nothing: the frames go up the stack (UDP to a closed port) and are discarded there.
    Stack,
    /// An nftables netdev ingress chain dropping the source, with a set of `entries` addresses.
    Nftables { entries: usize },
    /// An XDP program in native (driver) mode.
    Xdp(&'a mut Subject),
    /// Whatever is attached already (a daemon's own program): nothing to install.
    Attached,
}

/// One measured run.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Frames the receiver processed per second.
    pub pps: f64,
    /// Busy share of the receiver's CPU during the run (0–1).
    pub cpu: f64,
    /// Frames the generator made.
    pub sent: u64,
    /// Frames the receiver processed.
    pub processed: u64,
    /// Busy share of the sending CPU (0–1), where a flood from user space was made (`None`
    /// for the in-kernel generator, which keeps its CPU busy by design).
    pub sender_cpu: Option<f64>,
}

/// The two namespaces, the veth pair between them and the generator.
pub struct Bed {
    // Declared before the namespaces so the program is unloaded before they go.
    generator: Ebpf,
    frame: Vec<u8>,
    frame_v6: Vec<u8>,
    frame_syn6: Vec<u8>,
    frame_synflood: Vec<u8>,
    gen_ifindex: u32,
    /// The kernel refused a live-frames run: every flood comes from
    /// `packet_sender::PacketSender`.
    from_user_space: bool,
    home: File,
    sender: NetNs,
    dut: NetNs,
}

impl Bed {
    /// Builds the pair and loads the generator. Needs two CPUs.
    pub fn new(tx_object: &[u8]) -> anyhow::Result<Self> {
        let cpus = std::thread::available_parallelism()?.get();
        ensure!(
            cpus >= 2,
            "the live benchmark needs 2 CPUs (one sends, one receives); this machine has {cpus}"
        );
        ensure!(
            !tx_object.is_empty(),
            "this build has no generator object (AYA_BUILD_SKIP); run `cargo xtask bench`"
        );
        let sender = NetNs::new("sender");
        let dut = NetNs::new("dut");
        sender.ip(&[
            "link",
            "add",
            GEN_IF,
            "type",
            "veth",
            "peer",
            "name",
            DUT_IF,
            "netns",
            dut.name(),
        ]);
        sender.ip(&["addr", "add", &format!("{GEN_ADDR}/24"), "dev", GEN_IF]);
        dut.ip(&["addr", "add", &format!("{DUT_ADDR}/24"), "dev", DUT_IF]);
        // Receiving XDP frames without an XDP program needs veth's NAPI, which GRO turns on.
        dut.exec("ethtool", &["-K", DUT_IF, "gro", "on"]);
        sender.ip(&["link", "set", GEN_IF, "up"]);
        dut.ip(&["link", "set", DUT_IF, "up"]);
        // The blocked source is reachable back through the pair, so the stack baseline takes the
        // frames all the way to UDP (reverse-path filtering would otherwise drop them early).
        dut.ip(&[
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            &GEN_ADDR.to_string(),
        ]);
        dut.exec(
            "sh",
            &["-c", &format!("echo 1 > /sys/class/net/{DUT_IF}/threaded")],
        );
        let gen_mac = mac(&sender, GEN_IF)?;
        let dut_mac = mac(&dut, DUT_IF)?;
        let gen_ifindex = ifindex(&sender, GEN_IF)?;

        let mut generator = Ebpf::load(tx_object).context("loading the generator")?;
        let p: &mut Xdp = generator
            .program_mut(TX_PROGRAM)
            .context("no generator program")?
            .try_into()?;
        p.load().context("verifying the generator")?;
        let p: &mut Xdp = generator
            .program_mut(SPRAY_PROGRAM)
            .context("no spray generator program")?
            .try_into()?;
        p.load().context("verifying the spray generator")?;
        let p: &mut Xdp = generator
            .program_mut(SYN_SPRAY_PROGRAM)
            .context("no SYN spray generator program")?
            .try_into()?;
        p.load().context("verifying the SYN spray generator")?;
        // The destination is the receiver's own address, to a port nobody listens on.
        let frame = ipwarden_tests::frames::udp4(dut_mac, gen_mac, frames::DROP_V4, DUT_ADDR, 18);
        let frame_v6 = ipwarden_tests::frames::udp6(
            dut_mac,
            gen_mac,
            super::kernel::filler_v6(1),
            frames::DST_V6,
            18,
        );
        let mut frame_syn6 = frames::syn_v6(super::kernel::filler_v6(1));
        frame_syn6[..6].copy_from_slice(&dut_mac);
        frame_syn6[6..12].copy_from_slice(&gen_mac);
        // Groups 3, 4 and 8 of the source zero: `bench_synspray` fills them in keeping the
        // address's checksum contribution, so this checksum holds for every source.
        let frame_synflood = ipwarden_tests::frames::tcp6(
            dut_mac,
            gen_mac,
            std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0x5e, 0, 0x1, 0),
            frames::DST_V6,
            ipwarden_tests::frames::Tcp {
                sport: 40000,
                dport: SYN_PORT,
                seq: 0x1234_5678,
                ack: 0,
                flags: 0x02,
                options: &[2, 4, 0x05, 0xA0],
            },
        );
        let template: [u8; 78] = frame_synflood
            .as_slice()
            .try_into()
            .context("the SYN template is 78 bytes")?;
        let mut map: Array<_, [u8; 78]> = generator
            .map_mut("SYN_TEMPLATE")
            .context("no SYN_TEMPLATE map in the generator")?
            .try_into()?;
        map.set(0, template, 0)?;
        Ok(Self {
            generator,
            frame,
            frame_v6,
            frame_syn6,
            frame_synflood,
            gen_ifindex,
            from_user_space: false,
            home: File::open("/proc/self/ns/net")?,
            sender,
            dut,
        })
    }

    /// The template frame of [`Traffic::SynFlood`].
    pub fn synflood_frame(&self) -> &[u8] {
        &self.frame_synflood
    }

    /// The receiving namespace.
    pub fn dut(&self) -> &NetNs {
        &self.dut
    }

    /// The sending namespace.
    pub fn sender(&self) -> &NetNs {
        &self.sender
    }

    /// The receiving interface's name, in [`Bed::dut`].
    pub fn dut_if(&self) -> &'static str {
        DUT_IF
    }

    /// The sending interface's name, in [`Bed::sender`].
    pub fn gen_if(&self) -> &'static str {
        GEN_IF
    }

    /// A TCP listener on `addr` in the receiving namespace (it stays there when dropped into
    /// this one's hands).
    pub fn listen(&self, addr: std::net::SocketAddr) -> anyhow::Result<std::net::TcpListener> {
        self.inside(&self.dut, || std::net::TcpListener::bind(addr))?
            .with_context(|| format!("listening on {addr} in the receiver's namespace"))
    }

    /// Runs `f` on this thread inside `ns`, then returns to the namespace it came from.
    fn inside<T>(&self, ns: &NetNs, f: impl FnOnce() -> T) -> anyhow::Result<T> {
        inside(&self.home, ns, f)
    }

    /// Attaches `bench_drop_v6` to the sending veth (see there), instead of whatever program
    /// gave it NAPI: the answers to a spoofed IPv6 flood cost the generator's CPU an XDP drop,
    /// not a trip through its stack.
    pub fn drop_v6_at_sender(&mut self) -> anyhow::Result<()> {
        self.sender
            .ip(&["link", "set", "dev", GEN_IF, "xdp", "off"]);
        let Self {
            generator,
            home,
            sender,
            ..
        } = self;
        let p: &mut Xdp = generator
            .program_mut(DROP_V6_PROGRAM)
            .context("no IPv6 drop program in the generator")?
            .try_into()?;
        p.load().context("verifying the IPv6 drop program")?;
        inside(home, sender, || p.attach(GEN_IF, XdpMode::Driver))?
            .context("attaching the IPv6 drop program to the sending veth")?;
        Ok(())
    }

    /// Gives the sending veth a NAPI thread of its own on the generator's CPU (its NAPI must be
    /// on: an XDP program attached): frames the receiver sends back are then received there,
    /// not on the receiver's CPU, whose work is what is measured.
    pub fn sender_napi_on_generator_cpu(&self) -> anyhow::Result<()> {
        self.sender.exec(
            "sh",
            &["-c", &format!("echo 1 > /sys/class/net/{GEN_IF}/threaded")],
        );
        pin_threads(&format!("napi/{GEN_IF}-"), GEN_CPU)
    }

    /// Pins the receiver's NAPI thread (it exists once the interface is up) to [`DUT_CPU`].
    fn pin_napi(&self) -> anyhow::Result<()> {
        pin_threads(&format!("napi/{DUT_IF}-"), DUT_CPU)
    }
}

/// Runs `f` on this thread inside `ns`, then returns to `home`, the namespace it came from.
fn inside<T>(home: &File, ns: &NetNs, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    let target = File::open(format!("/run/netns/{}", ns.name()))?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET).context("entering a namespace")?;
    let out = f();
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET).context("leaving a namespace")?;
    Ok(out)
}

/// Moves the calling thread into the namespace `name` for good (a thread of its own: see
/// [`NetNs::name`]).
pub fn enter_namespace(name: &str) -> anyhow::Result<()> {
    let target = File::open(format!("/run/netns/{name}"))?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {name}"))
}

/// Pins every kernel thread whose name starts with `prefix` to `cpu`; at least one must exist.
fn pin_threads(prefix: &str, cpu: usize) -> anyhow::Result<()> {
    let mut pinned = 0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            let mut set = CpuSet::new();
            set.set(cpu)?;
            sched_setaffinity(Pid::from_raw(pid), &set)
                .with_context(|| format!("pinning {}", comm.trim_end()))?;
            pinned += 1;
        }
    }
    ensure!(
        pinned > 0,
        "no threaded-NAPI kernel thread {prefix}*: threaded NAPI is not available"
    );
    Ok(())
}

impl Bed {
    /// Receiver counters: processed and dropped-at-the-ring frames.
    fn rx(&self) -> anyhow::Result<(u64, u64)> {
        let out = self.dut.ip(&["-s", "-j", "link", "show", DUT_IF]);
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let rx = &v[0]["stats64"]["rx"];
        Ok((
            rx["packets"].as_u64().context("no rx packets")?,
            rx["dropped"].as_u64().context("no rx dropped")?,
        ))
    }

    /// Sets the spray generator's source count and base and restarts its cycle.
    fn set_spray(&mut self, sources: u32, base: u32) -> anyhow::Result<()> {
        let mut map: Array<_, u32> = self
            .generator
            .map_mut("SPRAY")
            .context("no SPRAY map in the generator")?
            .try_into()?;
        map.set(0, 0, 0)?;
        map.set(1, sources, 0)?;
        map.set(2, base, 0)?;
        Ok(())
    }

    /// Sends `frames` frames of `traffic` and measures what the receiver processed.
    fn send(&mut self, traffic: Traffic, frames: u32) -> anyhow::Result<Sample> {
        self.pin_napi()?;
        if self.from_user_space {
            return self.send_from_user_space(traffic, frames);
        }
        let (program, frame, spray) = self.pattern(traffic)?;
        let frame = frame.to_vec();
        if let Some(s) = spray {
            self.set_spray(s.sources, s.base)?;
        }
        let xdp: &Xdp = self
            .generator
            .program(program)
            .context("no generator program")?
            .try_into()?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.gen_ifindex.to_ne_bytes());
        let (rx0, _) = self.rx()?;
        let cpu0 = cpu_times(DUT_CPU)?;
        let (run, elapsed, cpu1) = on_cpu(GEN_CPU, || {
            let started = Instant::now();
            let run = self.inside(&self.sender, || {
                xdp.test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&ctx),
                    repeat: frames,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..TestRunOptions::default()
                })
            });
            let elapsed = started.elapsed();
            // The receiver's ring (a few hundred frames) drains in microseconds: its CPU time is
            // read now, its counters after a pause.
            (run, elapsed, cpu_times(DUT_CPU))
        })?;
        let cpu1 = cpu1?;
        match run? {
            Err(e) if refused(&e) => {
                eprintln!(
                    "the kernel refuses live-frames test runs here ({e}): the frames come \
                     from an AF_PACKET socket instead, slower (see `packet_sender`)"
                );
                self.from_user_space = true;
                return self.send_from_user_space(traffic, frames);
            }
            run => run.context("live-frames run")?,
        };
        self.counted(rx0, cpu0, cpu1, elapsed, u64::from(frames))
    }

    /// The sample of a run that sent `sent` frames in `elapsed`, from the receiver's counters
    /// and CPU times before it (`rx0`, `cpu0`) and at its end (`cpu1`).
    fn counted(
        &self,
        rx0: u64,
        cpu0: (u64, u64),
        cpu1: (u64, u64),
        elapsed: Duration,
        sent: u64,
    ) -> anyhow::Result<Sample> {
        std::thread::sleep(Duration::from_millis(50));
        let (rx1, _) = self.rx()?;
        let processed = rx1 - rx0;
        ensure!(
            processed > 0,
            "the receiver processed nothing: the generator's frames do not reach {DUT_IF}"
        );
        let busy = (cpu1.0 - cpu0.0) as f64;
        let total = (cpu1.1 - cpu0.1) as f64;
        Ok(Sample {
            pps: processed as f64 / elapsed.as_secs_f64(),
            cpu: if total > 0.0 { busy / total } else { 0.0 },
            sent,
            processed,
            sender_cpu: None,
        })
    }

    /// Installs `receiver` on the receiving veth, sends `frames` frames of `traffic` and
    /// removes it again.
    pub fn measure(
        &mut self,
        receiver: &mut Receiver<'_>,
        traffic: Traffic,
        frames: u32,
    ) -> anyhow::Result<Sample> {
        self.with_receiver(receiver, |bed| bed.send(traffic, frames))
    }

    /// Runs `f` with `receiver` installed on the receiving veth, then removes it.
    pub fn with_receiver<T>(
        &mut self,
        receiver: &mut Receiver<'_>,
        f: impl FnOnce(&mut Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match receiver {
            Receiver::Stack | Receiver::Attached => f(self),
            Receiver::Nftables { entries } => {
                self.nft_install(*entries)?;
                let s = f(self);
                self.dut
                    .exec("nft", &["delete", "table", "netdev", "ipwbench"]);
                s
            }
            Receiver::Xdp(subject) => {
                let program = subject.xdp_mut();
                let link = self
                    .inside(&self.dut, || program.attach(DUT_IF, XdpMode::Driver))?
                    .with_context(|| format!("attaching {} natively", subject.name))?;
                let s = f(self);
                subject.xdp_mut().detach(link)?;
                s
            }
        }
    }

    /// Sends `frames` frames of `traffic` with whatever receiver is installed (see
    /// [`Bed::with_receiver`]).
    pub fn flood(&mut self, traffic: Traffic, frames: u32) -> anyhow::Result<Sample> {
        self.send(traffic, frames)
    }

    /// The receiver's IPv4 address (the sender's stack reaches it directly, on the pair's /24).
    pub fn dut_addr(&self) -> Ipv4Addr {
        DUT_ADDR
    }

    /// An nftables netdev ingress chain on the receiving veth that drops sources in a set of
    /// `entries` addresses (the blocked one and fillers).
    fn nft_install(&self, entries: usize) -> anyhow::Result<()> {
        use std::fmt::Write as _;
        let mut script = format!(
            "table netdev ipwbench {{\n set blocked {{ type ipv4_addr; size {}; elements = {{ {}",
            entries.max(1),
            frames::DROP_V4
        );
        for i in 1..entries {
            let _ = write!(script, ", {}", Ipv4Addr::from(0x0A00_0000u32 + i as u32));
        }
        let _ = write!(
            script,
            " }} }}\n chain ingress {{ type filter hook ingress device {DUT_IF} priority -500; policy accept; ip saddr @blocked drop; }}\n}}\n"
        );
        let path = std::env::temp_dir().join(format!("ipwbench-{}.nft", std::process::id()));
        std::fs::write(&path, script)?;
        let out = self
            .dut
            .exec_output("nft", &["-f", &path.to_string_lossy()]);
        let _ = std::fs::remove_file(&path);
        if !out.status.success() {
            bail!(
                "nft -f failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

fn mac(ns: &NetNs, iface: &str) -> anyhow::Result<[u8; 6]> {
    let v: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", iface]))?;
    let s = v[0]["address"].as_str().context("no MAC address")?;
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(s.split(':')) {
        *o = u8::from_str_radix(part, 16)?;
    }
    Ok(out)
}

fn ifindex(ns: &NetNs, iface: &str) -> anyhow::Result<u32> {
    let v: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", iface]))?;
    Ok(v[0]["ifindex"].as_u64().context("no ifindex")? as u32)
}

/// (busy, total) jiffies of one CPU from /proc/stat.
fn cpu_times(cpu: usize) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&name))
        .with_context(|| format!("no {name}in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal …
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Ok((total - idle, total))
}

/// Whether `ethtool` and `nft` are installed (`cargo xtask bench` installs them).
pub fn tools_present() -> bool {
    cmd::output("sh", &["-c", "command -v ethtool && command -v nft"])
        .status
        .success()
}
