//! Running the real daemon (`ipwarden run`) inside the edge namespace as a child process, with a
//! private config, socket and state directory, and talking to it through the real CLI.

use std::{
    fs::File,
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tempfile::TempDir;

use crate::{ipwarden::binary, netns::NetNs, topology::EDGE_IF};

/// A daemon's files; they outlive daemon processes, so restarts find their state.
pub struct DaemonHome {
    dir: TempDir,
    bpffs: PathBuf,
}

impl DaemonHome {
    /// A home whose configuration is `config` followed by an `[ipasis]` section pointing at
    /// `base_url` with a key file (mode 0600) in the home.
    pub fn with_ipasis(config: &str, base_url: &str, bpffs: &Path) -> Self {
        let home = Self::new("", bpffs);
        let key_file = home.config().with_file_name("ipasis.key");
        std::fs::write(&key_file, "ipasis_4f3c2b1a09f8e7d6c5b4a392").expect("writing the key");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 0600 on the key");
        std::fs::write(
            home.config(),
            format!(
                "{config}\n[ipasis]\nbase_url = \"{base_url}\"\nkey_file = \"{}\"\n",
                key_file.display()
            ),
        )
        .expect("writing the configuration");
        home
    }

    /// A home with `config` as its configuration file, pinning under `bpffs`.
    pub fn new(config: &str, bpffs: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ipw-daemon-")
            .tempdir()
            .expect("creating a temporary directory");
        std::fs::write(dir.path().join("ipwarden.toml"), config).expect("writing the config");
        Self {
            dir,
            bpffs: bpffs.to_owned(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("ipwarden.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("ipwarden.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// `ipwarden args… --socket <this daemon>`.
    pub fn cli_output(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .unwrap_or_else(|e| panic!("running ipwarden {}: {e}", args.join(" ")))
    }

    /// `ipwarden args…` against this daemon; stdout, panicking with stderr on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "`ipwarden {}` failed ({}): {}\n--- daemon log ---\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ipwarden args… --json` parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.cli(&all)).expect("JSON output")
    }

    /// What the daemons of this home have logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

/// A running `ipwarden run`; terminated (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    /// Starts the daemon in `edge` and waits (bounded) until its socket answers `status`.
    pub fn start(home: &DaemonHome, edge: &NetNs) -> Self {
        Self::start_with(home, edge, &[])
    }

    /// As [`Daemon::start`], with extra environment variables.
    pub fn start_with(home: &DaemonHome, edge: &NetNs, env: &[(&str, &Path)]) -> Self {
        Self::start_args(home, edge, env, &[])
    }

    /// As [`Daemon::start`], with extra environment variables and `run` arguments.
    pub fn start_args(
        home: &DaemonHome,
        edge: &NetNs,
        env: &[(&str, &Path)],
        args: &[&str],
    ) -> Self {
        let daemon = Self::spawn_args(home, edge, env, args);
        daemon.until_up(home);
        daemon
    }

    /// Spawns the daemon without waiting for it.
    pub fn spawn(home: &DaemonHome, edge: &NetNs, env: &[(&str, &Path)]) -> Self {
        Self::spawn_args(home, edge, env, &[])
    }

    /// Spawns the daemon with extra `run` arguments, without waiting for it.
    pub fn spawn_args(
        home: &DaemonHome,
        edge: &NetNs,
        env: &[(&str, &Path)],
        args: &[&str],
    ) -> Self {
        Self::spawn_wrapped(home, edge, env, args, &[], EDGE_IF)
    }

    /// As [`Daemon::start`], on interface `iface` of namespace `ns` (a bench's own bed).
    pub fn start_on(home: &DaemonHome, ns: &NetNs, iface: &str) -> Self {
        let daemon = Self::spawn_wrapped(home, ns, &[], &[], &[], iface);
        daemon.until_up(home);
        daemon
    }

    /// As [`Daemon::start`], with the whole command run through `wrapper` (a command that
    /// execs its arguments, e.g. one that mounts a different /proc first).
    pub fn start_wrapped(home: &DaemonHome, edge: &NetNs, wrapper: &[&str]) -> Self {
        let daemon = Self::spawn_wrapped(home, edge, &[], &[], wrapper, EDGE_IF);
        daemon.until_up(home);
        daemon
    }

    /// Waits (bounded) until the daemon answers `status` on its socket.
    fn until_up(&self, home: &DaemonHome) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(UnixStream::connect(home.socket()).is_ok()
            && home.cli_output(&["status"]).status.success())
        {
            assert!(
                Instant::now() < deadline,
                "the daemon did not come up within 15 s:\n{}",
                home.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_wrapped(
        home: &DaemonHome,
        edge: &NetNs,
        env: &[(&str, &Path)],
        args: &[&str],
        wrapper: &[&str],
        iface: &str,
    ) -> Self {
        let log = File::options()
            .create(true)
            .append(true)
            .open(home.log())
            .expect("opening the daemon log");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg("ip");
                c
            }
            None => Command::new("ip"),
        };
        cmd.args(["netns", "exec", edge.name()])
            .arg(binary())
            .args(["run", "--iface", iface, "--config"])
            .arg(home.config())
            .arg("--socket")
            .arg(home.socket())
            .arg("--state-dir")
            .arg(home.state_dir())
            .args(args)
            .env("IPWARDEN_BPFFS", &home.bpffs)
            .env("IPWARDEN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // `ip netns exec` execs the daemon in place, so the child's pid is the daemon's.
        let child = cmd.spawn().expect("spawning the daemon");
        Self { child: Some(child) }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Sends a signal.
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signalling the daemon");
    }

    /// SIGKILL, as a crash would: nothing is cleaned up.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded); returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = c.try_wait().expect("waiting for the daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("the daemon ignored SIGTERM for 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the process to exit by itself; its status, or `None` if it is
    /// still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The daemon's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading the daemon's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The usual start of a daemon test: privileges checked, a private bpffs, the two-host
/// topology with extra client sources, and a daemon home with `config`. Field order is drop
/// order: namespaces first, then the home, then the bpffs holding the pins.
pub struct DaemonEnv {
    pub topo: crate::Topology,
    pub ipw: crate::Ipwarden,
    pub home: DaemonHome,
    _bpffs: crate::BpfFs,
}

impl DaemonEnv {
    pub fn new(config: &str, sources: &[std::net::IpAddr]) -> Self {
        crate::require_privileges();
        let bpffs = crate::BpfFs::new();
        let topo = crate::Topology::two_hosts();
        for s in sources {
            topo.add_source(*s);
        }
        let ipw = crate::Ipwarden::new(&bpffs);
        let home = DaemonHome::new(config, bpffs.path());
        Self {
            topo,
            ipw,
            home,
            _bpffs: bpffs,
        }
    }

    /// Starts the daemon in the edge namespace and waits until it answers.
    pub fn start(&self) -> Daemon {
        Daemon::start(&self.home, &self.topo.edge)
    }

    /// `ipwarden list --json`'s decisions.
    pub fn decisions(&self) -> Vec<serde_json::Value> {
        self.home.json(&["list"])["decisions"]
            .as_array()
            .expect("decisions array")
            .clone()
    }

    /// The prefixes of the decisions.
    pub fn prefixes(&self) -> std::collections::BTreeSet<String> {
        self.decisions()
            .iter()
            .map(|d| d["prefix"].as_str().expect("prefix").to_owned())
            .collect()
    }

    /// The exact and prefix block entries in the kernel maps.
    pub fn kernel_blocks(&self) -> std::collections::BTreeSet<String> {
        self.ipw
            .dataplane()
            .blocks()
            .expect("reading the block maps")
            .iter()
            .map(|r| r.net.to_string())
            .collect()
    }

    /// The allowlist entries in the maps, as `198.51.100.2/32`.
    pub fn kernel_allows(&self) -> std::collections::BTreeSet<String> {
        self.ipw
            .dataplane()
            .allows()
            .expect("reading the allow maps")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The kernel's entry for exactly `prefix` (as `203.0.113.7/32`): its action and reason
    /// code, i.e. which origin's decision the data plane enforces.
    pub fn enforced(&self, prefix: &str) -> Option<(u8, u32)> {
        self.ipw
            .dataplane()
            .blocks()
            .expect("reading the block maps")
            .into_iter()
            .find(|r| r.net.to_string() == prefix)
            .map(|r| (r.entry.action, r.entry.reason))
    }

    /// A heavy hitter: 2 000 UDP datagrams a second for 2 s from `src` to the edge's port 7001
    /// (over `pps_threshold` in the flood tests' configurations); how many were sent.
    pub fn flood(&self, src: std::net::IpAddr) -> u64 {
        crate::traffic::udp_flood(
            &self.topo.client,
            src,
            (crate::topology::EDGE_V4, 7001).into(),
            2000,
            Duration::from_secs(2),
        )
    }

    /// Datagrams delivered out of `n` sent from `src` to the edge's UDP port 7000.
    pub fn delivered(&self, src: std::net::IpAddr, n: usize) -> usize {
        let to = (crate::topology::EDGE_V4, 7000).into();
        let sink = crate::traffic::UdpSink::bind(&self.topo.edge, to);
        crate::traffic::udp_send(&self.topo.client, src, to, n, 16);
        sink.drain(Duration::from_millis(300))
            .get(&src)
            .copied()
            .unwrap_or(0)
    }
}
