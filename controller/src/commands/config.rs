//! `ipwarden config check|example`.

use anyhow::bail;
use ipwarden::{
    cli::ConfigAction,
    config::{Config, EXAMPLE},
};

pub fn run(action: ConfigAction) -> anyhow::Result<()> {
    match action {
        ConfigAction::Check { file, strict } => {
            let cfg = Config::load(&file, true)?;
            check_files(&cfg)?;
            check_interfaces(&cfg, strict)?;
            check_synproxy(&cfg)?;
            println!(
                "{}: ok ({} interface(s), {} allowlisted prefix(es))",
                file.display(),
                cfg.daemon.ifaces.len(),
                cfg.allow_prefixes().len()
            );
            check_memory(&cfg)?;
        }
        ConfigAction::Example => print!("{EXAMPLE}"),
        ConfigAction::Show { conn } => {
            match crate::commands::ask::call(&conn, ipwarden::wire::Request::ConfigShow)? {
                ipwarden::wire::Response::Config { toml } => print!("{toml}"),
                other => return crate::commands::ask::unexpected(&other),
            }
        }
    }
    Ok(())
}

/// The files `run` reads before attaching: key and credential files (present, readable, not
/// readable by group or others) and the fingerprint rules. Their contents are never printed.
fn check_files(cfg: &Config) -> anyhow::Result<()> {
    use ipwarden::enrich::ApiKey;
    if cfg.ipasis.enabled
        && let Some(path) = &cfg.ipasis.key_file
    {
        ApiKey::from_file(path).map_err(|e| anyhow::anyhow!("ipasis.key_file: {e}"))?;
    }
    if let Some(c) = &cfg.crowdsec {
        ApiKey::from_file(&c.api_key_file)
            .map_err(|e| anyhow::anyhow!("crowdsec.api_key_file: {e}"))?;
    }
    if let Some(f) = &cfg.fleet {
        for (key, path) in [
            ("fleet.token_file", &f.token_file),
            ("fleet.creds_file", &f.creds_file),
            ("fleet.nkey_file", &f.nkey_file),
        ] {
            if let Some(path) = path {
                private(key, path)?;
            }
        }
        if let Some(ca) = &f.ca_file {
            std::fs::metadata(ca)
                .map_err(|e| anyhow::anyhow!("fleet.ca_file {}: {e}", ca.display()))?;
        }
    }
    if let Some(v) = &cfg.verdict {
        // Made at the first start when absent; an existing one must be private.
        let path = v.key_path(&cfg.daemon.state_dir);
        if path.exists() {
            private("verdict.key_file", &path)?;
        }
    }
    ipwarden::fingerprint::Rules::load(cfg.fingerprints.rules.as_deref())
        .map_err(|e| anyhow::anyhow!("fingerprints.rules: {e}"))?;
    Ok(())
}

/// A secret file: readable, and by nobody but its owner.
fn private(key: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{key} {}: {e}", path.display()))?;
    if let Some(mode) = ipwarden::secret::exposed_mode(&meta) {
        bail!(
            "{key} {} is readable by group or others (mode {mode:o}): chmod 600 it",
            path.display()
        );
    }
    std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{key} {}: {e}", path.display()))?;
    Ok(())
}

/// The interfaces `run` attaches to: none at all, or one this host does not have, is a warning
/// (the file may be checked on another host), an error with `--strict`.
fn check_interfaces(cfg: &Config, strict: bool) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if cfg.daemon.ifaces.is_empty() {
        problems.push("daemon.ifaces is empty: `ipwarden run` then needs --iface".to_owned());
    }
    for iface in &cfg.daemon.ifaces {
        if !std::path::Path::new("/sys/class/net").join(iface).exists() {
            problems.push(format!(
                "daemon.ifaces: this host has no interface `{iface}` (`ip link` lists them)"
            ));
        }
    }
    if strict && !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    for p in problems {
        println!("warning: {p}");
    }
    Ok(())
}

/// What `[synproxy]` needs of this host: the kernel's cookie helpers and `nft`. Without them
/// the program would answer no SYN (and the daemon would only say so once running).
fn check_synproxy(cfg: &Config) -> anyhow::Result<()> {
    if cfg.synproxy.is_none() {
        return Ok(());
    }
    ipwarden::synproxy::has_cookie_helpers().map_err(|e| anyhow::anyhow!("[synproxy]: {e}"))?;
    match std::process::Command::new("nft")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "[synproxy]: `nft` cannot be run: install nftables (the daemon installs an nftables table whose synproxy rule completes the handshakes)"
        ),
    }
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
