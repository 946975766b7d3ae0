//! Idempotent machine setup. Every step checks first and says what it found or did.
//!
//! bpf-linker 0.13.0 is built against the nightly toolchain's own libLLVM (there is no LLVM 22
//! package to link against): `LLVM_PREFIX` points at a directory whose `lib/libLLVM.so` links
//! to `$(rustc +nightly --print sysroot)/lib/libLLVM.so.22.1-*`. At run time bpf-linker finds
//! that library because rustc, started through `rustup run nightly`, puts the sysroot's `lib/`
//! on the library path.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::cmd;

const TOOLCHAIN: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The newest cargo-deb that builds with our stable toolchain (checked when it was chosen).
const CARGO_DEB_VERSION: &str = "3.8.0";
const APT_PACKAGES: [(&str, &str); 11] = [
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("mount", "mount"),
    ("systemd-analyze", "systemd"),
    // Fleet tests start their own JetStream server (the package's unit is not used).
    ("nats-server", "nats-server"),
    // The package test: lintian checks the .deb, man-db answers `man -w`.
    ("lintian", "lintian"),
    ("man", "man-db"),
    ("dpkg-shlibdeps", "dpkg-dev"),
    // The challenge test: a real browser runs the proof-of-work page.
    ("chromium-headless-shell", "chromium-headless-shell"),
    ("curl", "curl"),
    // The synproxy tests and demo: netfilter's SYNPROXY completes the handshakes XDP proves.
    ("nft", "nftables"),
];

pub fn run() -> anyhow::Result<()> {
    let sysroot = nightly_sysroot()?;
    rust_src(&sysroot)?;
    bpf_linker(&sysroot)?;
    apt_packages()?;
    CROWDSEC.ensure()?;
    PROMETHEUS.ensure()?;
    NGINX.ensure()?;
    cargo_deb()?;
    eprintln!("setup: ready");
    Ok(())
}

/// Debian packages unpacked (not installed) under `target/tools/<name>`, for the tests.
struct Unpacked {
    /// The Debian package.
    package: &'static str,
    /// Why it is unpacked rather than installed.
    why: &'static str,
    /// Files (relative to the root) that must exist once unpacked.
    files: &'static [&'static str],
}

/// Debian's crowdsec 1.4.6: its post-install registers with CrowdSec's central API and fails
/// offline. The tests run its LAPI alone (`crowdsec -no-cs`) with their own configuration
/// (`tests/src/crowdsec.rs` looks here).
const CROWDSEC: Unpacked = Unpacked {
    package: "crowdsec",
    why: "its post-install needs the internet",
    files: &["usr/bin/crowdsec", "usr/bin/cscli"],
};

/// Debian's prometheus, for `promtool check metrics` on a real scrape: installing it would
/// start a Prometheus server.
const PROMETHEUS: Unpacked = Unpacked {
    package: "prometheus",
    why: "installing it starts a server",
    files: &["usr/bin/promtool"],
};

/// Debian's nginx, for the verdict endpoint's test (`auth_request` in front of an upstream):
/// installing it would start a server on port 80.
const NGINX: Unpacked = Unpacked {
    package: "nginx",
    why: "installing it starts a server",
    files: &["usr/sbin/nginx"],
};

impl Unpacked {
    fn root(&self) -> PathBuf {
        cmd::workspace_root()
            .join("target/tools")
            .join(self.package)
    }

    fn is_ready(&self) -> bool {
        self.files.iter().all(|f| self.root().join(f).is_file())
    }

    fn ensure(&self) -> anyhow::Result<()> {
        let root = self.root();
        if self.is_ready() {
            eprintln!("setup: {}: unpacked at {}", self.package, root.display());
            return Ok(());
        }
        let cache = deb_cache();
        std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
        let prefix = format!("{}_", self.package);
        let cached = || -> anyhow::Result<Option<PathBuf>> {
            Ok(std::fs::read_dir(&cache)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
                }))
        };
        let deb = match cached()? {
            Some(d) => d,
            None => {
                if !cmd::is_root() {
                    bail!(
                        "{} is needed by the tests ({}, so it is unpacked): run `cargo xtask setup` as root",
                        self.package,
                        self.why
                    );
                }
                cmd::run(Command::new("apt-get").arg("update").arg("-q"))?;
                cmd::run(
                    Command::new("apt-get")
                        .args(["download", "-q", self.package])
                        .current_dir(&cache),
                )?;
                cached()?
                    .with_context(|| format!("apt-get download {} left no .deb", self.package))?
            }
        };
        std::fs::create_dir_all(&root)?;
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        if !self.is_ready() {
            bail!(
                "{} unpacked from {} lacks {:?}",
                self.package,
                deb.display(),
                self.files
            );
        }
        eprintln!(
            "setup: {}: unpacked {} at {}",
            self.package,
            deb.display(),
            root.display()
        );
        Ok(())
    }
}

/// Downloaded packages are kept here, across clones: CI's fresh checkouts do not fetch again.
fn deb_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"))
        .join("ipwarden/debs")
}

/// cargo-deb, which `cargo xtask deb` builds the package with.
fn cargo_deb() -> anyhow::Result<()> {
    if cargo_deb_version().is_some_and(|v| v.contains(CARGO_DEB_VERSION)) {
        eprintln!("setup: cargo-deb {CARGO_DEB_VERSION}: present");
        return Ok(());
    }
    cmd::run(Command::new("cargo").args([
        "install",
        "cargo-deb",
        "--locked",
        "--version",
        CARGO_DEB_VERSION,
    ]))
}

fn cargo_deb_version() -> Option<String> {
    let out = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether everything `setup` installs is present (cheap: no installs).
pub fn is_ready() -> bool {
    let Ok(sysroot) = nightly_sysroot() else {
        return false;
    };
    rust_src_dir(&sysroot).exists()
        && bpf_linker_version().is_some_and(|v| v.contains(BPF_LINKER_VERSION))
        && APT_PACKAGES.iter().all(|(bin, _)| cmd::on_path(bin))
        && CROWDSEC.is_ready()
        && PROMETHEUS.is_ready()
        && NGINX.is_ready()
        && cargo_deb_version().is_some_and(|v| v.contains(CARGO_DEB_VERSION))
}

/// Runs `setup` unless everything is already there.
pub fn ensure() -> anyhow::Result<()> {
    if is_ready() { Ok(()) } else { run() }
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out =
        cmd::output(Command::new("rustc").args([&format!("+{TOOLCHAIN}"), "--print", "sysroot"]))
            .context(
            "the nightly toolchain is needed to build the XDP program; install it with \
             `rustup toolchain install nightly --profile minimal`",
        )?;
    Ok(PathBuf::from(out.trim()))
}

fn rust_src_dir(sysroot: &std::path::Path) -> PathBuf {
    sysroot.join("lib/rustlib/src/rust/library/core")
}

fn rust_src(sysroot: &std::path::Path) -> anyhow::Result<()> {
    if rust_src_dir(sysroot).exists() {
        eprintln!("setup: rust-src for {TOOLCHAIN}: present");
        return Ok(());
    }
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        TOOLCHAIN,
    ]))
    .context("installing rust-src (needed for -Z build-std=core)")
}

fn bpf_linker_version() -> Option<String> {
    let out = Command::new("rustup")
        .args(["run", TOOLCHAIN, "bpf-linker", "--version"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn bpf_linker(sysroot: &std::path::Path) -> anyhow::Result<()> {
    if let Some(v) = bpf_linker_version().filter(|v| v.contains(BPF_LINKER_VERSION)) {
        eprintln!("setup: {v}: present");
        return Ok(());
    }
    let lib = sysroot.join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so"))
            })
        });
    let Some(llvm) = llvm else {
        bail!(
            "no libLLVM shared library in {}: this nightly does not ship one, so bpf-linker \
             cannot be built against it",
            lib.display()
        );
    };
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let prefix = home.join(".cache/ipwarden/llvm-prefix");
    let link = prefix.join("lib/libLLVM.so");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm, &link)
        .with_context(|| format!("linking {} -> {}", link.display(), llvm.display()))?;
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute)",
        llvm.display()
    );
    cmd::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--force",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", &prefix)
            .current_dir(&home),
    )
    .context("building bpf-linker; it needs the registry (crates.io) and a C compiler")?;
    match bpf_linker_version() {
        Some(v) => {
            eprintln!("setup: {v}: installed");
            Ok(())
        }
        None => bail!(
            "bpf-linker was installed but `rustup run {TOOLCHAIN} bpf-linker --version` fails"
        ),
    }
}

fn apt_packages() -> anyhow::Result<()> {
    apt(&APT_PACKAGES)
}

/// Installs the Debian packages providing the given programs, if any is missing.
pub fn apt(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(bin, _)| !cmd::on_path(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = packages.iter().map(|(_, p)| *p).collect();
        eprintln!("setup: {}: present", names.join(", "));
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "missing packages {missing:?}; install them (as root: apt-get install {})",
            missing.join(" ")
        );
    }
    cmd::run(Command::new("apt-get").arg("update").arg("-q"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
