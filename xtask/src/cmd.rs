//! Running commands with the full command line in every error.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_owned()
}

/// `cargo` as invoked us (so `cargo +toolchain xtask` stays on that toolchain).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// A human-readable command line.
pub fn line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command, inheriting stdio; fails with its command line unless it succeeds.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let l = line(cmd);
    eprintln!("+ {l}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{l}`"))?;
    if !status.success() {
        bail!("`{l}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails with command line and stderr otherwise.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let l = line(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{l}`"))?;
    if !out.status.success() {
        bail!(
            "`{l}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Whether this process runs as root (from /proc, without libc).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
