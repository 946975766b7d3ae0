//! The Debian package, installed for real with dpkg: the binary, its man pages and unit work;
//! removal detaches the program and leaves no pins; purge removes the state.
//!
//! Privileged: run with `cargo xtask test`, which builds the package and passes its path in
//! `IPWARDEN_DEB`. This test changes the machine (it installs and removes the package).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use ipwarden_tests::{Topology, require_privileges, topology::EDGE_IF};

const UNIT: &str = "/lib/systemd/system/ipwarden.service";
const PINS: &str = "/sys/fs/bpf/ipwarden";

fn deb() -> PathBuf {
    let path = std::env::var_os("IPWARDEN_DEB")
        .map(PathBuf::from)
        .expect("IPWARDEN_DEB is not set: run the privileged tier with `cargo xtask test`, which builds the package");
    assert!(path.is_file(), "no package at {}", path.display());
    path
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", "ipwarden"])
        .stdout
        .starts_with(b"install ok installed")
}

/// Purges the package, detaches what it attached and unmounts a bpffs the test mounted, whatever
/// the test's outcome.
struct Cleanup {
    unmount: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if installed() {
            let _ = run("dpkg", &["--purge", "ipwarden"]);
        }
        let _ = std::fs::remove_dir_all(PINS);
        if self.unmount {
            let _ = run("umount", &["/sys/fs/bpf"]);
        }
    }
}

fn is_bpffs(path: &str) -> bool {
    run("stat", &["-f", "-c", "%T", path])
        .stdout
        .starts_with(b"bpf_fs")
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_package_installs_works_and_removes_its_pins() {
    require_privileges();
    let deb = deb();
    assert!(
        !installed() && !Path::new("/usr/bin/ipwarden").exists(),
        "ipwarden is already installed on this machine; this test installs and purges it, so it will not run over an installation"
    );
    assert!(!Path::new(PINS).exists(), "{PINS} exists before the test");
    let _cleanup = Cleanup {
        unmount: !is_bpffs("/sys/fs/bpf"),
    };

    ok("dpkg", &["-i", deb.to_str().unwrap()]);
    let version = ok("/usr/bin/ipwarden", &["--version"]);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")) && version.contains("data plane build"),
        "{version}"
    );
    let page = ok("man", &["-w", "ipwarden"]);
    assert!(page.trim().ends_with("man8/ipwarden.8.gz"), "{page}");
    ok("man", &["-w", "ipwarden-block"]);
    let page = ok("man", &["-w", "5", "ipwarden.toml"]);
    assert!(page.trim().ends_with("man5/ipwarden.toml.5.gz"), "{page}");
    assert!(Path::new("/usr/share/bash-completion/completions/ipwarden").is_file());
    assert!(Path::new("/usr/share/ipwarden/grafana-dashboard.json").is_file());
    // The conffile is the example configuration, which parses.
    ok(
        "/usr/bin/ipwarden",
        &["config", "check", "/etc/ipwarden/ipwarden.toml"],
    );
    // The unit: its syntax, its binary and its man page (Documentation=) check out, and its
    // sandbox stays at or below an exposure of 2.5.
    ok("systemd-analyze", &["verify", UNIT]);
    ok(
        "systemd-analyze",
        &["security", "--offline=true", "--threshold=25", UNIT],
    );
    // Installing enabled and started nothing.
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/ipwarden.service").exists());

    // Attached by the installed binary in the host's bpffs, as the unit would.
    let topo = Topology::two_hosts();
    let netns = format!("--net=/run/netns/{}", topo.edge.name());
    ok(
        "nsenter",
        &[
            &netns,
            "/usr/bin/ipwarden",
            "attach",
            "--iface",
            EDGE_IF,
            "--skb",
        ],
    );
    assert!(Path::new(PINS).join(EDGE_IF).join("link").exists());
    assert!(
        topo.edge
            .ip(&["link", "show", "dev", EDGE_IF])
            .contains("xdp")
    );

    ok("dpkg", &["-r", "ipwarden"]);
    assert!(!Path::new("/usr/bin/ipwarden").exists());
    assert!(
        !Path::new(PINS).exists(),
        "pins remain after removal: {:?}",
        std::fs::read_dir(PINS).map(|d| d.count())
    );
    let link = topo.edge.ip(&["link", "show", "dev", EDGE_IF]);
    assert!(
        !link.contains("xdp"),
        "still attached after removal: {link}"
    );
    // Removal keeps the configuration; purge takes it and the state.
    assert!(Path::new("/etc/ipwarden/ipwarden.toml").exists());
    ok("dpkg", &["--purge", "ipwarden"]);
    assert!(!Path::new("/etc/ipwarden").exists());
    assert!(!Path::new("/var/lib/ipwarden").exists());
}
