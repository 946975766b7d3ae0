//! Driving the real `ipwarden` binary, and opening its pins in-process.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use ipwarden::dataplane::{Dataplane, PinDir};

use crate::{bpffs::BpfFs, netns::NetNs, topology::EDGE_IF};

/// The `ipwarden` binary under test: `$IPWARDEN_BIN`, else `target/debug/ipwarden`.
pub fn binary() -> PathBuf {
    let path = match std::env::var_os("IPWARDEN_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug/ipwarden")
        }
    };
    assert!(
        path.is_file(),
        "ipwarden binary not found at {}: build it (`cargo xtask test` does) or set IPWARDEN_BIN",
        path.display()
    );
    path
}

/// The binary bound to one private bpffs.
pub struct Ipwarden {
    bin: PathBuf,
    bpffs: PathBuf,
}

impl Ipwarden {
    /// Commands will pin under `bpffs`.
    pub fn new(bpffs: &BpfFs) -> Self {
        Self {
            bin: binary(),
            bpffs: bpffs.path().to_owned(),
        }
    }

    /// Runs `ipwarden args…`, inside `ns` when given, and returns its output.
    pub fn output(&self, ns: Option<&NetNs>, args: &[&str]) -> Output {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name()]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(args)
            .env("IPWARDEN_BPFFS", &self.bpffs)
            .env("IPWARDEN_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("running ipwarden {}: {e}", args.join(" ")))
    }

    /// Runs `ipwarden args…` and returns stdout, panicking with stderr on failure.
    pub fn ok(&self, ns: Option<&NetNs>, args: &[&str]) -> String {
        let out = self.output(ns, args);
        assert!(
            out.status.success(),
            "`ipwarden {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Attaches to the edge interface of `edge` with extra `attach` flags.
    pub fn attach(&self, edge: &NetNs, extra: &[&str]) -> String {
        let mut args = vec!["attach", "--iface", EDGE_IF];
        args.extend_from_slice(extra);
        self.ok(Some(edge), &args)
    }

    /// The pin directory of the edge interface.
    pub fn pins(&self) -> PinDir {
        PinDir::new(&self.bpffs, EDGE_IF)
    }

    /// Opens the pinned maps in this process, as the daemon would.
    pub fn dataplane(&self) -> Dataplane {
        Dataplane::open(&self.pins()).expect("opening pinned maps")
    }
}
