//! A CrowdSec local API (Debian's crowdsec 1.4.6, LAPI only), started by the test that needs it.
//!
//! The package cannot be installed here (its post-install registers with CrowdSec's central API
//! and fails offline), so `cargo xtask setup` downloads it (`apt-get download`, cached) and
//! unpacks it under `target/tools/crowdsec`. Each server gets its own temporary directory, a
//! config without `online_client`, a free port on the namespace's loopback, and `cscli` wired to
//! it; it is stopped on drop.

use std::{
    net::{IpAddr, Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::netns::NetNs;

/// Where `cargo xtask setup` unpacks the package.
pub fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target/tools/crowdsec");
    assert!(
        root.join("usr/bin/crowdsec").is_file(),
        "CrowdSec is not unpacked at {}: run `cargo xtask setup`",
        root.display()
    );
    root
}

/// A running LAPI.
pub struct Lapi {
    child: Option<Child>,
    dir: TempDir,
    ns: Option<String>,
    pub port: u16,
}

impl Lapi {
    /// A LAPI on 127.0.0.1 of `ns` (or of this process's namespace).
    pub fn start(ns: Option<&NetNs>) -> Self {
        let root = root();
        let dir = tempfile::Builder::new()
            .prefix("ipw-crowdsec-")
            .tempdir()
            .expect("a directory");
        let d = dir.path();
        for sub in ["data", "hub", "notifications", "plugins"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        for f in ["profiles.yaml", "simulation.yaml"] {
            std::fs::copy(root.join("etc/crowdsec").join(f), d.join(f)).expect("copying config");
        }
        std::fs::write(d.join("acquis.yaml"), "").expect("acquis");
        let port = match ns {
            Some(ns) => ns.run(free_port),
            None => free_port(),
        };
        let p = |s: &str| d.join(s).display().to_string();
        let config = format!(
            "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  working_dir: .\nconfig_paths:\n  config_dir: {dir}/\n  data_dir: {data}/\n  simulation_path: {sim}\n  hub_dir: {hub}/\n  index_path: {hub}/.index.json\n  notification_dir: {notif}/\n  plugin_dir: {plugins}/\ncrowdsec_service:\n  acquisition_path: {acquis}\ndb_config:\n  type: sqlite\n  db_path: {data}/crowdsec.db\n  use_wal: true\napi:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {creds}\n  server:\n    log_level: info\n    listen_uri: 127.0.0.1:{port}\n    profiles_path: {profiles}\n    trusted_ips:\n      - 127.0.0.1\nprometheus:\n  enabled: false\n",
            dir = d.display(),
            data = p("data"),
            sim = p("simulation.yaml"),
            hub = p("hub"),
            notif = p("notifications"),
            plugins = p("plugins"),
            acquis = p("acquis.yaml"),
            creds = p("local_api_credentials.yaml"),
            profiles = p("profiles.yaml"),
        );
        std::fs::write(d.join("config.yaml"), config).expect("writing the config");
        let mut lapi = Self {
            child: None,
            dir,
            ns: ns.map(|n| n.name().to_owned()),
            port,
        };
        lapi.restart();
        // cscli's own credentials, so that it can add decisions.
        lapi.cscli(&["machines", "add", "ipwarden-test", "--auto", "--force"]);
        lapi
    }

    fn command(&self, program: &Path) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Starts (again) and waits (bounded) for `/health`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::File::create(self.dir.path().join("lapi.log")).expect("log");
        let child = self
            .command(&root().join("usr/bin/crowdsec"))
            .arg("-c")
            .arg(self.dir.path().join("config.yaml"))
            .arg("-no-cs")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("starting crowdsec");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.healthy() {
            assert!(
                Instant::now() < deadline,
                "the LAPI did not answer /health within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn healthy(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '\"up\"' <&3",
            self.port
        );
        let _ = url;
        self.command(Path::new("/bin/bash"))
            .args(["-c", &script])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops it (as an outage would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `http://127.0.0.1:PORT` (inside its namespace).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `cscli -c CONFIG args…`; panics with its output on failure.
    pub fn cscli(&self, args: &[&str]) -> String {
        let out = self.cscli_output(args);
        assert!(
            out.status.success(),
            "cscli {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cscli_output(&self, args: &[&str]) -> Output {
        self.command(&root().join("usr/bin/cscli"))
            .arg("-c")
            .arg(self.dir.path().join("config.yaml"))
            .args(args)
            .output()
            .expect("running cscli")
    }

    /// A bouncer key, written to `path` with mode 0600.
    pub fn bouncer_key(&self, name: &str, path: &Path) {
        let key = self.cscli(&["bouncers", "add", name, "-o", "raw"]);
        std::fs::write(path, key.trim()).expect("writing the key");
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    }

    /// Watcher credentials: a machine `name` whose password is written to `path` (mode 0600).
    pub fn machine(&self, name: &str, path: &Path) {
        let password = format!("pw-{}-{}", std::process::id(), name);
        let out = self.dir.path().join(format!("{name}.credentials.yaml"));
        self.cscli(&[
            "machines",
            "add",
            name,
            "--password",
            &password,
            "--force",
            "-f",
            out.to_str().expect("utf-8"),
        ]);
        std::fs::write(path, &password).expect("writing the password");
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lapi.log")).unwrap_or_default()
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}
