//! `ipwarden config check|example`.

use anyhow::bail;
use ipwarden::{
    cli::ConfigAction,
    config::{Config, EXAMPLE},
};

pub fn run(action: ConfigAction) -> anyhow::Result<()> {
    match action {
        ConfigAction::Check { file } => {
            let cfg = Config::load(&file, true)?;
            println!(
                "{}: ok ({} interface(s), {} allowlisted prefix(es))",
                file.display(),
                cfg.daemon.ifaces.len(),
                cfg.allow_prefixes().len()
            );
            check_memory(&cfg)?;
        }
        ConfigAction::Example => print!("{EXAMPLE}"),
    }
    Ok(())
}

/// The `[dataplane]` sizes against the memory this host has: maps that cannot be allocated
/// fail the attach, and maps that take most of the memory starve everything else.
fn check_memory(cfg: &Config) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let per_iface = cfg.dataplane.capacities().estimated_bytes(cpus);
    let total = per_iface * cfg.daemon.ifaces.len().max(1) as u64;
    let mib = |b: u64| b >> 20;
    println!(
        "maps: about {} MiB of kernel memory when full ({} MiB per interface, {cpus} CPUs)",
        mib(total),
        mib(per_iface)
    );
    let Some(available) = mem_available() else {
        println!("maps: /proc/meminfo has no MemAvailable; the sizes were not checked against it");
        return Ok(());
    };
    if total > available {
        bail!(
            "the [dataplane] map sizes need about {} MiB but {} MiB is available: lower dataplane.max_blocks, max_block_prefixes, max_sources or max_allow",
            mib(total),
            mib(available)
        );
    }
    if total > available / 4 {
        println!(
            "warning: the maps would take more than a quarter of the {} MiB available",
            mib(available)
        );
    }
    Ok(())
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
