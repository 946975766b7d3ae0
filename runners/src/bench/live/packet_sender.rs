//! The benchmark's traffic from user space, for machines whose kernel refuses live-frames test
//! runs (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` returns `EPERM` in some
//! sandboxes): an `AF_PACKET` socket on the sending veth, bypassing the qdisc, sending the
//! frames the in-kernel generators make (the same templates, the same sources in the same
//! order) with `sendmmsg`, a batch per call.
//!
//! It is slower than the in-kernel generator (an skb and a copy per frame, a syscall per batch),
//! so a section measured with it says so: a rate it could not exceed is the generator's, not
//! the receiver's.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ipwarden_tests::cpu::on_cpu;

use super::{Bed, DUT_CPU, GEN_CPU, GEN_IF, Sample, Spray, Traffic, cpu_times};

/// Frames per `sendmmsg`.
const BATCH: usize = 64;
/// Ethernet (14) + the IPv6 header's bytes before the source (8) + 2001:0db8: where the
/// source's third and fourth groups start (as `ebpf/src/bin/tx.rs`).
const SOURCE_GROUPS_3_4: usize = 14 + 8 + 4;
/// Where the source's last group starts.
const SOURCE_GROUP_8: usize = 14 + 8 + 14;
/// `SOL_PACKET` option: transmit straight to the driver.
const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// An `AF_PACKET` socket bound to one interface of the namespace it was opened in.
pub struct PacketSender {
    fd: OwnedFd,
}

impl PacketSender {
    /// Opens the socket on `ifindex`: call it inside the interface's namespace.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: plain socket call; the descriptor is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed sockaddr_ll is valid; the fields set below make it an address.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // Protocol 0: send only (nothing is received on this socket).
        // SAFETY: `addr` is a sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // SAFETY: an int option of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Sends `frames` frames made from `template`: all the same, or with `spray`'s sources in
    /// turn (as `bench_spray` and `bench_synspray` make them; see [`Spray`]). Stops at `limit`;
    /// how many the kernel took.
    ///
    /// Unpaced (`pps` `None`), a batch the transmit path does not take whole is made again with
    /// the next sources: the sender waits for the receiver, which measures the receiver's
    /// capacity. Paced, it sends at `pps` on average and what the path does not take is lost,
    /// as an attacker's frames are when a host falls behind (none of them waits for it).
    pub fn send(
        &self,
        template: &[u8],
        spray: Option<Spray>,
        frames: u32,
        pps: Option<f64>,
        limit: Duration,
    ) -> io::Result<u64> {
        assert!(spray.is_none_or(|s| s.sources > 0) && template.len() > SOURCE_GROUP_8 + 2);
        let len = template.len();
        let mut buf = vec![0u8; BATCH * len];
        for frame in buf.chunks_exact_mut(len) {
            frame.copy_from_slice(template);
        }
        let mut next = 0u32;
        let (mut sent, mut made) = (0u64, 0u64);
        let started = Instant::now();
        let goal = u64::from(frames);
        while (if pps.is_some() { made } else { sent }) < goal && started.elapsed() < limit {
            if let Some(pps) = pps {
                let due = Duration::from_secs_f64(made as f64 / pps);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let n = BATCH.min((goal - if pps.is_some() { made } else { sent }) as usize);
            if let Some(s) = spray {
                for frame in buf.chunks_exact_mut(len).take(n) {
                    let i = next % s.sources;
                    next = i + 1;
                    let (g3, g4) = (s.base | (next >> 16), next & 0xffff);
                    frame[SOURCE_GROUPS_3_4..SOURCE_GROUPS_3_4 + 4]
                        .copy_from_slice(&(g3 << 16 | g4).to_be_bytes());
                    if s.keep_checksum {
                        let sum = g3 + g4;
                        let g8 = !((sum & 0xffff) + (sum >> 16)) & 0xffff;
                        frame[SOURCE_GROUP_8..SOURCE_GROUP_8 + 2]
                            .copy_from_slice(&(g8 as u16).to_be_bytes());
                    }
                }
            }
            sent += self.send_batch(&mut buf, len, n)? as u64;
            made += n as u64;
        }
        Ok(sent)
    }

    /// One `sendmmsg` of the first `n` frames of `buf`; how many the kernel took (a full
    /// transmit path takes fewer: the next batch goes on with the next sources).
    fn send_batch(&self, buf: &mut [u8], len: usize, n: usize) -> io::Result<usize> {
        let mut iov: Vec<libc::iovec> = buf
            .chunks_exact_mut(len)
            .take(n)
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: len,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: a zeroed msghdr is valid (no name, no control data).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: `msgs` holds `n` headers whose iovecs point into `buf`, alive for the call.
        let rc = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // A full transmit path: nothing taken this time.
            if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(rc as usize)
    }
}

impl Bed {
    /// Where this bed's frames came from, for the report: the kernel's live-frames test runs,
    /// or the `AF_PACKET` socket when the kernel refused them.
    pub fn flood_source(&self) -> &'static str {
        if self.from_user_space {
            "an AF_PACKET socket on the sender's veth (`sendmmsg`, the qdisc bypassed: this kernel refuses live-frames test runs), which hands the receiver skbs, not XDP frames: the receiver's XDP program pays a copy per frame the in-kernel generator spares it"
        } else {
            "the in-kernel generators (`ebpf/src/bin/tx.rs`, live-frames test runs)"
        }
    }

    /// Whether the frames come from the `AF_PACKET` socket (the kernel refused live frames).
    pub fn from_user_space(&self) -> bool {
        self.from_user_space
    }

    /// [`Bed::send`] from an `AF_PACKET` socket, as fast as the receiver takes the frames (the
    /// kernel refused a live-frames run).
    pub(super) fn send_from_user_space(
        &mut self,
        traffic: Traffic,
        frames: u32,
    ) -> anyhow::Result<Sample> {
        self.send_paced(traffic, frames, None)
    }

    /// Sends `frames` frames of `traffic` at `pps` on average from an `AF_PACKET` socket
    /// (live-frames runs cannot be paced: they send all their frames at once), whatever
    /// receiver is installed: a flood a host can keep up with, or not, by choice.
    pub fn flood_paced(
        &mut self,
        traffic: Traffic,
        frames: u32,
        pps: f64,
    ) -> anyhow::Result<Sample> {
        self.pin_napi()?;
        self.send_paced(traffic, frames, Some(pps))
    }

    fn send_paced(
        &mut self,
        traffic: Traffic,
        frames: u32,
        pps: Option<f64>,
    ) -> anyhow::Result<Sample> {
        let (_, template, spray) = self.pattern(traffic)?;
        let template = template.to_vec();
        // veth hands a socket's frames to the receiver's NAPI (its thread, on the receiver's
        // CPU) only when the sender has no TSO; otherwise the sending CPU would receive them.
        self.sender.exec("ethtool", &["-K", GEN_IF, "tso", "off"]);
        let (rx0, _) = self.rx()?;
        let cpu0 = cpu_times(DUT_CPU)?;
        let gen0 = cpu_times(GEN_CPU)?;
        let (sent, elapsed, cpu1) = on_cpu(GEN_CPU, || {
            let started = Instant::now();
            let sent = self.inside(&self.sender, || {
                let socket = PacketSender::open(self.gen_ifindex)?;
                socket.send(&template, spray, frames, pps, Duration::from_secs(120))
            });
            (sent, started.elapsed(), cpu_times(DUT_CPU))
        })?;
        let gen1 = cpu_times(GEN_CPU)?;
        let sent = sent?.context("sending from an AF_PACKET socket")?;
        let mut sample = self.counted(rx0, cpu0, cpu1?, elapsed, sent)?;
        let total = (gen1.1 - gen0.1) as f64;
        sample.sender_cpu = Some(if total > 0.0 {
            (gen1.0 - gen0.0) as f64 / total
        } else {
            0.0
        });
        Ok(sample)
    }
}

/// Whether a test run failed because the kernel does not permit it (live frames in some
/// sandboxes), not because of the program or the frame.
pub(super) fn refused(e: &aya::programs::ProgramError) -> bool {
    matches!(e, aya::programs::ProgramError::SyscallError(s)
        if s.io_error.raw_os_error() == Some(libc::EPERM))
}
