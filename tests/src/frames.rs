//! Hand-built Ethernet frames and an `AF_PACKET` socket to send them: for sources a socket cannot
//! have (spoofed floods) and frames a stack would never send (truncated, odd ethertypes).

use std::{
    ffi::CString,
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use crate::{netns::NetNs, traffic::MAX_LOOP};

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + UDP frame with `payload` zero bytes (UDP checksum 0: allowed for IPv4).
pub fn udp4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: usize,
) -> Vec<u8> {
    let mut f = ethernet(dst_mac, src_mac, 0x0800);
    let total = (20 + 8 + payload) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let csum = checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&9999u16.to_be_bytes());
    f.extend_from_slice(&9999u16.to_be_bytes());
    f.extend_from_slice(&(8 + payload as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(f.len() + payload, 0);
    f
}

/// An Ethernet + IPv6 + UDP frame (checksum left zero: the XDP program does not check it, and
/// the stack drops it after the program has counted it).
pub fn udp6(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    payload: usize,
) -> Vec<u8> {
    let mut f = ethernet(dst_mac, src_mac, 0x86DD);
    let mut ip = [0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(8 + payload as u16).to_be_bytes());
    ip[6] = 17;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&9999u16.to_be_bytes());
    f.extend_from_slice(&9999u16.to_be_bytes());
    f.extend_from_slice(&(8 + payload as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(f.len() + payload, 0);
    f
}

/// A TCP segment's header fields (no payload).
#[derive(Clone, Copy, Debug)]
pub struct Tcp<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// TCP flag bits (0x02 SYN, 0x10 ACK, …).
    pub flags: u8,
    /// Options, a multiple of 4 bytes long.
    pub options: &'a [u8],
}

impl Tcp<'_> {
    /// The header with its checksum over `pseudo` (the pseudo-header's bytes) filled in.
    fn header(&self, pseudo: &[u8]) -> Vec<u8> {
        assert!(self.options.len().is_multiple_of(4) && self.options.len() <= 40);
        let mut t = Vec::with_capacity(20 + self.options.len());
        t.extend_from_slice(&self.sport.to_be_bytes());
        t.extend_from_slice(&self.dport.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        t.push((((20 + self.options.len()) / 4) as u8) << 4);
        t.push(self.flags);
        t.extend_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(self.options);
        let mut all = pseudo.to_vec();
        all.extend_from_slice(&(t.len() as u32).to_be_bytes());
        all.extend_from_slice(&[0, 0, 0, 6]);
        all.extend_from_slice(&t);
        let c = checksum(&all);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }
}

/// An Ethernet + IPv4 + TCP frame with correct checksums.
pub fn tcp4(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, tcp: Tcp) -> Vec<u8> {
    let mut pseudo = src.octets().to_vec();
    pseudo.extend_from_slice(&dst.octets());
    let t = tcp.header(&pseudo);
    let mut f = ethernet(dst_mac, src_mac, 0x0800);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + t.len()) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let csum = checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&t);
    f
}

/// An Ethernet + IPv6 + TCP frame with a correct checksum.
pub fn tcp6(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, tcp: Tcp) -> Vec<u8> {
    let mut pseudo = src.octets().to_vec();
    pseudo.extend_from_slice(&dst.octets());
    let t = tcp.header(&pseudo);
    let mut f = ethernet(dst_mac, src_mac, 0x86DD);
    let mut ip = [0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(t.len() as u16).to_be_bytes());
    ip[6] = 6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&t);
    f
}

/// A frame of arbitrary ethertype and body.
pub fn raw(dst_mac: [u8; 6], src_mac: [u8; 6], ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = ethernet(dst_mac, src_mac, ethertype);
    f.extend_from_slice(body);
    f
}

/// An `AF_PACKET` socket bound to one interface of one namespace.
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSocket {
    /// Opens a sending socket on `iface` inside `ns`.
    pub fn open(ns: &NetNs, iface: &str) -> Self {
        let name = CString::new(iface).expect("interface name");
        ns.run(move || {
            // SAFETY: plain syscalls with valid arguments; the fd is owned right away.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(fd >= 0, "socket(AF_PACKET): {}", io::Error::last_os_error());
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: `name` is NUL-terminated.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            assert!(ifindex > 0, "no interface {name:?} in the namespace");
            Self { fd, ifindex }
        })
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_ll is valid; we fill the fields the kernel reads.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` and `addr` are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends the frames `make(i)` for `i in 0..count`, paced for the veth ring, stopping at
    /// [`MAX_LOOP`]. `ENOBUFS` (a full queue) is retried after a pause. Returns frames sent.
    pub fn send_many(&self, count: usize, mut make: impl FnMut(usize) -> Vec<u8>) -> usize {
        let deadline = Instant::now() + MAX_LOOP;
        let mut sent = 0;
        while sent < count && Instant::now() < deadline {
            match self.send(&make(sent)) {
                Ok(()) => sent += 1,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(e) => panic!("sending raw frame {sent}: {e}"),
            }
            if sent % 64 == 0 {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        sent
    }
}
