//! `sd_notify(3)` without libsystemd: one datagram to `$NOTIFY_SOCKET`.
//!
//! `READY=1` is sent once every interface is attached (or adopted), the maps hold the restored
//! decisions and the control socket listens, so `systemctl start` returns when the host is
//! protected and the CLI works.

use std::{ffi::OsStr, os::unix::net::UnixDatagram};

/// Sends `state` (e.g. `READY=1`) to the service manager, if there is one.
pub fn notify(state: &str) {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), state);
}

/// `RELOADING=1` with the `MONOTONIC_USEC=` that `Type=notify-reload` (systemd 253) asks for;
/// older managers ignore both. `READY=1` follows when the reload is done.
pub fn reloading() -> String {
    // SAFETY: an all-zero timespec is a valid out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is writable; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// Sends `state` to the socket at `path` (`@name` for an abstract socket); does nothing when
/// `path` is `None`. Split from [`notify`] so that tests pass the path in: setting
/// `NOTIFY_SOCKET` in a test would race every other thread of the test binary that reads the
/// environment (which is why `std::env::set_var` is `unsafe`).
fn notify_to(path: Option<&OsStr>, state: &str) {
    let Some(path) = path else {
        return;
    };
    let result = (|| -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            socket.send_to(state.as_bytes(), path)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        notify_to(Some(path.as_os_str()), "READY=1");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("ipwarden-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(Some(OsStr::new(&format!("@{name}"))), "STOPPING=1");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
