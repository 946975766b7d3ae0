//! Bounded traffic: every loop stops at a count *and* a deadline.

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netns::NetNs;

/// The hard ceiling on any traffic loop in the test bed.
pub const MAX_LOOP: Duration = Duration::from_secs(20);

/// Sends `count` UDP datagrams of `payload` bytes from `src` to `dst` inside `ns`, paced so the
/// veth ring (256 frames) never overflows. Returns how many were handed to the kernel.
pub fn udp_send(ns: &NetNs, src: IpAddr, dst: SocketAddr, count: usize, payload: usize) -> usize {
    ns.run(move || {
        let socket = UdpSocket::bind(SocketAddr::new(src, 0))
            .unwrap_or_else(|e| panic!("binding UDP to {src}: {e}"));
        let buf = vec![0xA5u8; payload];
        let deadline = Instant::now() + MAX_LOOP;
        let mut sent = 0;
        while sent < count && Instant::now() < deadline {
            socket
                .send_to(&buf, dst)
                .unwrap_or_else(|e| panic!("UDP {src} -> {dst}: {e}"));
            sent += 1;
            if sent % 32 == 0 {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        sent
    })
}

/// Sends UDP from `src` to `dst` inside `ns` at about `pps` packets per second for `duration`
/// (at most [`MAX_LOOP`]); returns how many were sent. Paced per millisecond, so the veth ring
/// never overflows below ~200 kpps.
pub fn udp_flood(ns: &NetNs, src: IpAddr, dst: SocketAddr, pps: u64, duration: Duration) -> u64 {
    let duration = duration.min(MAX_LOOP);
    ns.run(move || {
        let socket = UdpSocket::bind(SocketAddr::new(src, 0))
            .unwrap_or_else(|e| panic!("binding UDP to {src}: {e}"));
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < duration {
            let due = (start.elapsed().as_secs_f64() * pps as f64) as u64;
            while sent < due {
                // A full queue (ENOBUFS) is a lost packet, not a failure, for a flood.
                let _ = socket.send_to(&[0x5A; 32], dst);
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    })
}

/// Received datagrams per source, shared with the receiving thread.
type Tally = Arc<Mutex<(BTreeMap<IpAddr, usize>, Instant)>>;

/// A UDP socket listening inside a namespace, drained continuously by its own thread so the
/// socket buffer never overflows and loses datagrams a test is counting.
pub struct UdpSink {
    tally: Tally,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Longest a sink keeps receiving, whatever the test does.
const SINK_LIFETIME: Duration = Duration::from_secs(300);

impl UdpSink {
    /// Binds `addr` inside `ns` and starts counting.
    pub fn bind(ns: &NetNs, addr: SocketAddr) -> Self {
        let socket = ns.run(move || {
            UdpSocket::bind(addr).unwrap_or_else(|e| panic!("binding UDP sink {addr}: {e}"))
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("setting a read timeout");
        let tally: Tally = Arc::new(Mutex::new((BTreeMap::new(), Instant::now())));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (tally, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let born = Instant::now();
                while !stop.load(Ordering::Relaxed) && born.elapsed() < SINK_LIFETIME {
                    match socket.recv_from(&mut buf) {
                        Ok((_, from)) => {
                            let mut t = tally.lock().expect("tally lock");
                            *t.0.entry(from.ip()).or_insert(0) += 1;
                            t.1 = Instant::now();
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => panic!("receiving on the UDP sink: {e}"),
                    }
                }
            })
        };
        Self {
            tally,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `quiet` has passed without a datagram (at most [`MAX_LOOP`]), then returns the
    /// counts per source since the last call and resets them.
    pub fn drain(&self, quiet: Duration) -> BTreeMap<IpAddr, usize> {
        let start = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let mut t = self.tally.lock().expect("tally lock");
            if t.1.elapsed() >= quiet || start.elapsed() >= MAX_LOOP {
                return std::mem::take(&mut t.0);
            }
        }
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Attempts one TCP connection from `src` to `dst` inside `ns`; the result of `connect`.
pub fn tcp_connect(ns: &NetNs, src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<()> {
    ns.run(move || {
        let domain = if dst.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
        socket.connect_timeout(&SockAddr::from(dst), timeout)
    })
}

/// Pings `dst` from `src` inside `ns` `count` times (0.2 s apart, 1 s timeout); how many answered.
pub fn ping(ns: &NetNs, src: IpAddr, dst: IpAddr, count: u32) -> u32 {
    let out = ns.exec_output(
        "ping",
        &[
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            &src.to_string(),
            &dst.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "unexpected ping output: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
