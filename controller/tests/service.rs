//! The systemd unit: `systemd-analyze verify` accepts it without a single warning, and its
//! offline security exposure stays low. (systemd is not PID 1 on the test machines, so the unit
//! is checked, not started; the daemon's sd_notify behaviour has its own privileged test.)

use std::process::Command;

/// The unit with ExecStart pointing at the binary under test (verify checks it exists), and
/// without its Documentation= line (verify runs `man`, and the page is only installed by the
/// package: the package test verifies the installed unit with it).
fn unit_under_test() -> (tempfile::TempDir, std::path::PathBuf) {
    let text = include_str!("../dist/ipwarden.service")
        .replace("/usr/bin/ipwarden", env!("CARGO_BIN_EXE_ipwarden"))
        .replace("Documentation=man:ipwarden(8)\n", "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipwarden.service");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze").args(args).output().expect(
        "systemd-analyze is needed (Debian package systemd; `cargo xtask setup` installs it)",
    )
}

#[test]
fn the_unit_verifies_cleanly() {
    let (_dir, path) = unit_under_test();
    let out = systemd_analyze(&["verify", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze complains:\n{stderr}"
    );
}

#[test]
fn the_unit_is_hardened() {
    let (_dir, path) = unit_under_test();
    let out = systemd_analyze(&["security", "--offline=yes", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for ipwarden.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    assert!(score <= 2.5, "exposure {score} > 2.5:\n{text}");
    let unit = include_str!("../dist/ipwarden.service");
    assert!(unit.contains("CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN\n"));
    assert!(unit.contains("Type=notify"));
    assert!(unit.contains("WatchdogSec="));
    assert!(unit.contains("ExecReload=/usr/bin/ipwarden reload\n"));
    assert!(unit.contains("Before=network-pre.target\n"));
}
