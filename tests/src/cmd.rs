//! Running external commands (iproute2, ping) with the full command line in every failure.

use std::process::{Command, Output};

/// Runs `program args…`, panicking with the command line and its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = output(program, args);
    if !out.status.success() {
        panic!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args…` and returns its output whatever the exit status.
pub fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program} {}`: {e}", args.join(" ")))
}

/// `ip args…`.
pub fn ip(args: &[&str]) -> String {
    run("ip", args)
}
