//! `cargo xtask test`: the unit tier (no privileges) and the privileged tier (root, network
//! namespaces, the real XDP object), with one summary at the end. The privileged tier fails, it
//! never skips, when it cannot run.

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use crate::{build, cmd, setup};

#[derive(Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    /// Both tiers.
    #[default]
    All,
    /// Host-only tests: parser, CLI, config, formatting.
    Unit,
    /// Tests that load the XDP program and send packets between namespaces (root).
    Privileged,
}

#[derive(Args, Default)]
pub struct Options {
    /// Which tier to run.
    #[arg(value_enum, default_value_t = Tier::All)]
    pub tier: Tier,
    /// Only tests whose name contains this.
    #[arg(long)]
    pub filter: Option<String>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    setup::ensure()?;
    let mut results = Vec::new();
    if opts.tier != Tier::Privileged {
        results.push(("unit", unit(opts)));
    }
    if opts.tier != Tier::Unit {
        results.push(("privileged", privileged(opts)));
    }
    println!("\n== summary");
    let mut total = Tally::default();
    let mut failed = false;
    for (tier, r) in &results {
        match r {
            Ok(t) => {
                println!("{tier}: {} passed, {} failed", t.passed, t.failed);
                total.add(t);
            }
            Err(e) => {
                failed = true;
                println!("{tier}: FAILED: {e:#}");
            }
        }
    }
    // The plain closing line CI reads; the unit tier's ignored (privileged) tests are not
    // counted, the privileged tier runs them.
    println!("total: {} passed, {} failed", total.passed, total.failed);
    if failed {
        bail!("some tests failed");
    }
    Ok(())
}

/// Test counts from cargo's `test result:` lines.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
    }

    /// Adds the counts of one `test result: ok. 3 passed; 0 failed; …` line.
    fn read(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test …`, echoing its output, and counts its results.
fn cargo_test(c: &mut Command) -> anyhow::Result<Tally> {
    use std::io::{BufRead as _, BufReader};
    let line = cmd::line(c);
    eprintln!("+ {line}");
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let mut tally = Tally::default();
    if let Some(out) = child.stdout.take() {
        for l in BufReader::new(out).lines() {
            let l = l?;
            println!("{l}");
            tally.read(&l);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`{line}` failed ({status}): {} passed, {} failed",
            tally.passed,
            tally.failed
        );
    }
    Ok(tally)
}

fn filter_args(c: &mut Command, opts: &Options) {
    if let Some(f) = &opts.filter {
        c.arg(f);
    }
}

fn unit(opts: &Options) -> anyhow::Result<Tally> {
    let mut c = cmd::cargo();
    c.args(["test", "--workspace", "--exclude", "ipwarden-ebpf", "--"]);
    filter_args(&mut c, opts);
    cargo_test(&mut c)
}

fn privileged(opts: &Options) -> anyhow::Result<Tally> {
    if !cmd::is_root() {
        bail!("the privileged tier loads XDP programs and creates network namespaces: run as root");
    }
    remove_stale_namespaces()?;
    build::run(&build::Options::default())?;
    // The package test installs this.
    let deb = crate::deb::run(&crate::deb::Options {
        dev: true,
        no_lintian: false,
    })?;
    let mut c = cmd::cargo();
    c.args([
        "test",
        "--package",
        "ipwarden-tests",
        "--",
        "--include-ignored",
        "--test-threads=1",
    ])
    .env("IPWARDEN_BIN", build::binary("ipwarden", false))
    .env("IPWARDEN_DEB", &deb);
    filter_args(&mut c, opts);
    cargo_test(&mut c)
}

/// Deletes `ipw-<pid>-…` namespaces whose creating process is gone (a crashed earlier run).
fn remove_stale_namespaces() -> anyhow::Result<()> {
    let list = cmd::output(Command::new("ip").args(["netns", "list"]))?;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name.strip_prefix("ipw-").and_then(|r| r.split('-').next()) else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            eprintln!("removing stale namespace {name}");
            cmd::run(Command::new("ip").args(["netns", "del", name]))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn reads_cargo_result_lines() {
        let mut t = Tally::default();
        t.read("test result: ok. 7 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 11.09s");
        t.read("test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        t.read("running 7 tests");
        assert_eq!((t.passed, t.failed), (10, 1));
    }
}
