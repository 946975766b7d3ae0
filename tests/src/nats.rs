//! A NATS server with JetStream (Debian's `nats-server`), started by the test that needs it:
//! a temporary store directory, a free port, on loopback or on an address inside a namespace.
//! Stopped on drop; `stop` and `restart` (same store, same port) model a partition or a crash.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::netns::NetNs;

/// Where the binary is: Debian installs it in /usr/sbin, which a non-root PATH may lack.
fn binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nats-server");
    if sbin.exists() {
        return sbin;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed: run `cargo xtask setup` (Debian package nats-server)"
            )
        })
}

/// A free TCP port on `ip` (in the calling thread's namespace).
fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .expect("binding to find a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// A running JetStream server.
pub struct NatsServer {
    child: Option<Child>,
    dir: TempDir,
    ns: Option<String>,
    pub addr: SocketAddr,
    monitor: u16,
    /// A configuration file (users and their permissions), when the server has one.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// A server on 127.0.0.1.
    pub fn start() -> Self {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (port, monitor) = (free_port(ip), free_port(ip));
        Self::spawn(None, SocketAddr::new(ip, port), monitor, None)
    }

    /// A server on 127.0.0.1 reading `config` (NATS configuration syntax: `authorization`,
    /// `accounts`; the listen address, store and JetStream come from the command line).
    pub fn start_with_config(config: &str) -> Self {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (port, monitor) = (free_port(ip), free_port(ip));
        Self::spawn(None, SocketAddr::new(ip, port), monitor, Some(config))
    }

    /// A server listening on `ip` inside `ns` (an address of the namespace).
    pub fn start_in(ns: &NetNs, ip: IpAddr) -> Self {
        let (port, monitor) = ns.run(move || (free_port(ip), free_port(ip)));
        Self::spawn(
            Some(ns.name().to_owned()),
            SocketAddr::new(ip, port),
            monitor,
            None,
        )
    }

    fn spawn(ns: Option<String>, addr: SocketAddr, monitor: u16, config: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ipw-nats-")
            .tempdir()
            .expect("a store directory");
        let config = config.map(|text| {
            let path = dir.path().join("server.conf");
            std::fs::write(&path, text).expect("writing the server's config");
            path
        });
        let mut s = Self {
            child: None,
            dir,
            ns,
            addr,
            monitor,
            config,
        };
        s.restart();
        s
    }

    /// `nats://ADDR:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Starts the server again (same store, same port) and waits (bounded) until it accepts
    /// connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        cmd.arg("-js")
            .arg("-sd")
            .arg(self.dir.path())
            .args(["-a", &self.addr.ip().to_string()])
            .args(["-p", &self.addr.port().to_string()])
            .args(["-m", &self.monitor.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("server.log")).expect("server log"),
            ));
        self.child = Some(cmd.spawn().expect("starting nats-server"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = match &self.ns {
                Some(_) => Command::new("ip")
                    .args(["netns", "exec", self.ns.as_deref().unwrap_or_default()])
                    .args([
                        "bash",
                        "-c",
                        &format!("exec 3<>/dev/tcp/{}/{}", self.addr.ip(), self.addr.port()),
                    ])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                None => TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok(),
            };
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up within 10 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (as a crash or a partition would); its store stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
