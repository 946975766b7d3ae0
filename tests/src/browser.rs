//! Debian's headless Chromium (installed by `cargo xtask setup`) in a namespace: it runs a
//! page's JavaScript, follows its navigations and prints the final DOM.

use std::process::{Command, Output};

use crate::netns::NetNs;

/// Whether `chromium-headless-shell` is on the PATH.
pub fn installed() -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join("chromium-headless-shell").is_file())
    })
}

/// Loads `url` from `ns` with a fresh profile (at most 60 s); the output holds the final DOM.
pub fn dump_dom(ns: &NetNs, url: &str) -> Output {
    let profile = tempfile::tempdir().expect("a profile directory");
    Command::new("timeout")
        .args([
            "60",
            "ip",
            "netns",
            "exec",
            ns.name(),
            "chromium-headless-shell",
        ])
        .args([
            "--no-sandbox",
            "--headless",
            "--disable-gpu",
            "--virtual-time-budget=30000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .env("HOME", profile.path())
        .output()
        .expect("running chromium-headless-shell")
}
