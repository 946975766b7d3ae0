//! The command line, declared with clap derive: doc comments are the help text.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::{
    config::DEFAULT_SOCKET, dataplane::DEFAULT_BPFFS, decision::Origin, net::parse_prefix,
};

/// `ipwarden --version`: the release, and the data plane build and layout this binary attaches.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ndata plane build ",
    env!("IPWARDEN_DATAPLANE_BUILD"),
    ", layout 1"
);

/// Protects a Linux edge host from malicious traffic.
///
/// An XDP program drops packets whose source is in the block set (exact /32 and IPv6 /64
/// entries, and other prefixes), passes allowlisted sources even when a block entry matches, and
/// counts packets, bytes and TCP SYNs per source (IPv4 /32, IPv6 /64). The daemon (`ipwarden
/// run`) finds heavy hitters in those counters, keeps decisions with their reasons and TTLs in
/// a durable store, and serves the other commands over its control socket.
///
/// The program and its maps are pinned under <BPFFS>/ipwarden/<IFACE>/: the program stays
/// attached, and keeps enforcing, when the daemon stops or restarts.
#[derive(Debug, Parser)]
#[command(name = "ipwarden", version, long_version = LONG_VERSION, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info`, `debug`, `ipwarden=trace`.
    #[arg(long, global = true, env = "IPWARDEN_LOG", default_value = "info")]
    pub log: String,

    /// Log format: `auto` writes to journald when started by systemd (JOURNAL_STREAM set) and
    /// plain lines otherwise; `json` writes one JSON object per line to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// Where and how logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Plain,
    Json,
    Journald,
}

/// A refresh interval in seconds (fractions allowed), 0.1 s to 1 h.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err("the interval must be between 0.1 and 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Which attachment a command acts on.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Network interface the program is (to be) attached to.
    #[arg(long, short = 'i', value_name = "IFACE")]
    pub iface: String,

    /// Mount point of the BPF filesystem holding the pins (mounted there if it is not).
    #[arg(long, value_name = "DIR", env = "IPWARDEN_BPFFS", default_value = DEFAULT_BPFFS)]
    pub bpffs: PathBuf,
}

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct Format {
    /// Print JSON (stable schema, see docs/json.md) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How to reach the daemon.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", env = "IPWARDEN_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: attach, restore decisions, detect heavy hitters, serve the CLI.
    ///
    /// Attaches to every interface (or adopts an attachment left pinned by a previous run, with
    /// no gap in protection), restores the stored decisions and allowlist into the maps, then
    /// polls the per-source counters every detection.poll_interval. A source above
    /// detection.pps_threshold or detection.syn_pps_threshold is a heavy hitter; one above
    /// detection.hard_pps_limit for detection.hard_for is blocked for detection.hard_ttl.
    /// SIGHUP reloads the configuration; SIGTERM stops and leaves the program attached.
    Run(RunArgs),
    /// Show the daemon's state: interfaces, decisions, detection, warnings.
    Status {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        format: Format,
    },
    /// Block a source address or prefix on every interface.
    ///
    /// A bare IPv4 address blocks its /32; a bare IPv6 address blocks its /64 (IPv6 hosts rotate
    /// addresses inside their /64). Give a prefix length to block anything else. Without --ttl
    /// the block lasts decisions.default_ttl; --permanent makes it last until `unblock`. A block
    /// overlapping an allowlisted prefix is refused. The decision is stored durably before the
    /// command returns.
    Block(BlockArgs),
    /// Lift the manual decision on exactly this address or prefix.
    ///
    /// Several origins may hold decisions on one prefix (manual, velocity, ipasis, a feed,
    /// CrowdSec, the fleet); lifting one never lifts another's, and the command says what still
    /// holds. --origin lifts another origin's decision, --all-origins every one (logged).
    Unblock(UnblockArgs),
    /// List decisions: prefix, action, origin, expiry and reason (every holder of a prefix).
    ///
    /// `list --action challenge --json` is the set an L7 proxy or application should serve a
    /// CAPTCHA or MFA step to.
    List {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        format: Format,
        /// Only decisions with this action.
        #[arg(long, value_enum)]
        action: Option<ActionArg>,
        /// Only decisions of this origin.
        #[arg(long, value_enum)]
        origin: Option<Origin>,
        /// At most this many decisions.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Load many decisions in one durable transaction.
    ///
    /// Reads plain prefix lines (`#` comments), CSV (the first column holding an address or
    /// prefix), `cscli decisions list -o json` output, or what `ipwarden export --json` wrote.
    /// Bad lines are reported with their number and skipped. A bare IPv6 address means its /64;
    /// IPv4-mapped addresses are IPv4.
    Import(ImportArgs),
    /// Write every decision as JSON, in the shape `import` reads.
    Export {
        #[command(flatten)]
        conn: Conn,
        /// JSON (the only format; the flag says so explicitly).
        #[arg(long)]
        json: bool,
        /// Only decisions of this origin.
        #[arg(long, value_enum)]
        origin: Option<Origin>,
    },
    /// Show expired and lifted decisions (kept for decisions.history_retention), newest last.
    History {
        /// Only this exact prefix (a bare IPv4 address means its /32, IPv6 its /64).
        #[arg(value_parser = parse_prefix_arg)]
        prefix: Option<IpNet>,
        /// At most this many entries (the newest).
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        format: Format,
    },
    /// Show what IPASIS says about an address (the cached answer, or a fresh lookup).
    Lookup {
        /// The address (IPv6 answers are cached per /64).
        addr: IpAddr,
        /// Ask the API even when a cached answer exists.
        #[arg(long)]
        fresh: bool,
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        format: Format,
    },
    /// Manage the allowlist: allowlisted sources are never blocked.
    Allow {
        #[command(subcommand)]
        action: AllowAction,
    },
    /// Show the busiest sources now: rates over detection.window, totals and decision.
    Top {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        format: Format,
        /// How many sources.
        #[arg(short = 'n', long, default_value_t = 20)]
        n: usize,
        /// Refresh every SECS seconds (default 2) until interrupted: in place on a terminal,
        /// as successive timestamped tables otherwise.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2", value_parser = parse_interval)]
        watch: Option<Duration>,
        /// With --watch: stop after this many refreshes.
        #[arg(long, value_name = "N", requires = "watch")]
        iterations: Option<u64>,
    },
    /// Show the data plane's global counters per interface.
    Stats {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        format: Format,
    },
    /// Explain what ipwarden does with an address and why.
    Explain {
        /// The address (IPv6 addresses are judged by their /64).
        addr: IpAddr,
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        format: Format,
    },
    /// Make the daemon re-read its configuration file (as SIGHUP does).
    Reload {
        #[command(flatten)]
        conn: Conn,
    },
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Load the XDP program, attach it to an interface and pin it (without the daemon).
    ///
    /// Native (driver) mode is tried first; if the driver lacks XDP support ipwarden warns and
    /// falls back to generic (skb) mode. Map sizes apply when the maps are created (a daemon started with
    /// other sizes resizes them without a gap).
    Attach(AttachArgs),
    /// Detach the program from an interface and remove its pins (block set included).
    Detach {
        #[command(flatten)]
        target: Target,
    },
    /// Direct access to one attachment's maps, bypassing the daemon (debugging, break-glass).
    ///
    /// Entries made here are not stored: a starting daemon makes the maps equal to its store
    /// and removes them.
    Map {
        #[command(subcommand)]
        action: MapAction,
    },
    /// Write the man pages (ipwarden.8 and one per subcommand) and shell completions (bash,
    /// zsh, fish) into a directory: what the Debian package ships.
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write `man/` and `completions/`.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file [default: /etc/ipwarden/ipwarden.toml, built-in defaults if absent].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to protect (repeatable); overrides daemon.ifaces.
    #[arg(long = "iface", short = 'i', value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// Control socket; overrides daemon.socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// State directory; overrides daemon.state_dir.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// bpffs mount; overrides daemon.bpffs.
    #[arg(long, value_name = "DIR", env = "IPWARDEN_BPFFS")]
    pub bpffs: Option<PathBuf>,
    /// The state database is unreadable: move it aside and rebuild decisions and the runtime
    /// allowlist from the pinned maps (reasons and scores are lost; expiry times are kept).
    #[arg(long)]
    pub rebuild_store: bool,
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    /// Address or CIDR prefix, e.g. 203.0.113.7, 198.51.100.0/24, 2001:db8:2::/48.
    #[arg(value_parser = parse_prefix_arg)]
    pub prefix: IpNet,
    #[command(flatten)]
    pub conn: Conn,
    /// How long the block lasts (`90s`, `10m`, `24h`) [default: decisions.default_ttl].
    #[arg(long, value_parser = parse_ttl, conflicts_with = "permanent")]
    pub ttl: Option<Duration>,
    /// Never expire.
    #[arg(long)]
    pub permanent: bool,
    /// Set this TTL even when it shortens an existing block of the same holder (without it, a
    /// block again keeps the later expiry).
    #[arg(long)]
    pub replace: bool,
    /// Why, recorded with the decision and shown by `list` and `explain`.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Hold the decision as this origin: `manual` (default) or `feed` with --name (a list the
    /// operator loads by hand); lifted with `unblock --origin feed --name NAME`.
    #[arg(long, value_enum, hide = true, default_value_t = Origin::Manual)]
    pub origin: Origin,
    /// The source within the origin (a feed's name).
    #[arg(long, value_name = "NAME", hide = true)]
    pub name: Option<String>,
    /// Challenge instead of block: each covered source (IPv4 address, IPv6 /64) may send this
    /// many packets a second; a proxy asking the verdict endpoint serves it the challenge page.
    #[arg(long, value_name = "PPS")]
    pub challenge: Option<u32>,
    /// With --challenge: packets allowed back to back [default: scoring.challenge_burst].
    #[arg(long, value_name = "PACKETS", requires = "challenge")]
    pub burst: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file, or `-` for standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub conn: Conn,
    /// Hold the decisions as this origin: `manual` (default) or `feed` with --name.
    #[arg(long, value_enum, default_value_t = Origin::Manual)]
    pub origin: Origin,
    /// The source within the origin (a feed's name; required with `--origin feed`).
    #[arg(long, value_name = "NAME", required_if_eq("origin", "feed"))]
    pub name: Option<String>,
    /// TTL of entries that carry none [default: decisions.default_ttl].
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct UnblockArgs {
    /// Address or prefix, as given to `block` (a bare IPv6 address means its /64).
    #[arg(value_parser = parse_prefix_arg, required_unless_present_any = ["range", "all"], conflicts_with_all = ["range", "all"])]
    pub prefix: Option<IpNet>,
    #[command(flatten)]
    pub conn: Conn,
    /// Lift this origin's decision instead of the manual one (with --all or --range: only
    /// this origin's decisions).
    #[arg(long, value_enum, conflicts_with = "all_origins")]
    pub origin: Option<Origin>,
    /// The source within the origin (a feed's name, a fleet host).
    #[arg(long, value_name = "NAME", requires = "origin")]
    pub name: Option<String>,
    /// Lift every origin's decision on the prefix.
    #[arg(long)]
    pub all_origins: bool,
    /// Bulk: lift every decision inside this prefix (of every origin, unless --origin), in
    /// one transaction.
    #[arg(long, value_name = "CIDR", value_parser = parse_prefix_arg, conflicts_with = "all_origins")]
    pub range: Option<IpNet>,
    /// Bulk: lift every decision of --origin (and --name), in one transaction.
    #[arg(long, requires = "origin", conflicts_with = "all_origins")]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum AllowAction {
    /// Allowlist an address or prefix (a bare IPv6 address means its /64).
    Add {
        #[arg(value_parser = parse_prefix_arg)]
        prefix: IpNet,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove exactly this runtime entry from the allowlist.
    Rm {
        #[arg(value_parser = parse_prefix_arg)]
        prefix: IpNet,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the allowlist with each entry's origin (builtin, config, runtime).
    List {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate a configuration file; prints the first error with its line, exits 1 on error.
    Check {
        /// The file to check.
        file: PathBuf,
        /// Missing interfaces (and no interface at all) are errors, not warnings: for checking
        /// on the host that runs the daemon.
        #[arg(long)]
        strict: bool,
    },
    /// Print the fully commented default configuration.
    Example,
    /// Print the running daemon's configuration: defaults filled in, command-line overrides
    /// applied, as TOML `config check` accepts (secrets live in files it only names).
    Show {
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Subcommand)]
pub enum MapAction {
    /// Add a block entry directly to the maps.
    Block(MapBlockArgs),
    /// Remove the block entry for exactly this address or prefix.
    Unblock {
        #[arg(value_parser = parse_prefix_arg)]
        prefix: IpNet,
        #[command(flatten)]
        target: Target,
    },
    /// List the block entries in the maps.
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        format: Format,
    },
    /// Manage the allowlist entries in the maps.
    Allow {
        #[command(subcommand)]
        action: MapAllowAction,
    },
    /// Switch monitor (dry-run) mode: would-be drops are counted as `monitored` and passed.
    Monitor {
        /// `on` or `off`.
        state: Switch,
        #[command(flatten)]
        target: Target,
    },
    /// Show global counters and the busiest sources, from the maps.
    Stats(StatsArgs),
}

#[derive(Debug, Subcommand)]
pub enum MapAllowAction {
    /// Add an allowlist entry.
    Add {
        #[arg(value_parser = parse_prefix_arg)]
        prefix: IpNet,
        #[command(flatten)]
        target: Target,
    },
    /// Remove exactly this allowlist entry.
    Rm {
        #[arg(value_parser = parse_prefix_arg)]
        prefix: IpNet,
        #[command(flatten)]
        target: Target,
    },
    /// List allowlist entries.
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub target: Target,
    /// Attach in generic (skb) mode only.
    #[arg(long, conflicts_with = "driver")]
    pub skb: bool,
    /// Attach in native (driver) mode only; fail instead of falling back.
    #[arg(long)]
    pub driver: bool,
    /// Start in monitor (dry-run) mode.
    #[arg(long)]
    pub monitor: bool,
    /// Capacity of each per-source counter map (IPv4 sources, IPv6 /64s).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub sources: Option<u32>,
    /// Capacity of each exact block map (IPv4 /32s, IPv6 /64s).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub blocks: Option<u32>,
}

#[derive(Debug, Args)]
pub struct MapBlockArgs {
    /// Address or CIDR prefix, e.g. 203.0.113.7, 198.51.100.0/24, 2001:db8:2::/48.
    #[arg(value_parser = parse_prefix_arg)]
    pub prefix: IpNet,
    #[command(flatten)]
    pub target: Target,
    /// How long the block lasts (`90s`, `10m`, `24h`); permanent when omitted.
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
    /// Why, recorded with the entry.
    #[arg(long, value_enum, default_value_t = Origin::Manual)]
    pub reason: Origin,
    /// Rate-limit each covered source to this many packets per second instead of dropping all.
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u32).range(1..))]
    pub challenge: Option<u32>,
    /// With --challenge: packets allowed back to back.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "challenge", value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: u32,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub format: Format,
    /// How many of the busiest sources to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// Decision actions, for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    Block,
    Challenge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

fn parse_prefix_arg(s: &str) -> Result<IpNet, String> {
    parse_prefix(s).map_err(|e| e.to_string())
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); examples: 90s, 10m, 24h"))?;
    if ttl.is_zero() {
        return Err("a TTL of zero would expire at once; use --permanent for a block that lasts until `unblock` (without --ttl a block lasts decisions.default_ttl)".into());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("soon").unwrap_err().contains("`soon`"));
    }
}

#[cfg(test)]
mod version_tests {
    #[test]
    fn the_long_version_names_this_builds_layout() {
        let layout = format!("layout {}", ipwarden_common::LAYOUT_VERSION);
        assert!(
            super::LONG_VERSION.ends_with(&layout),
            "{}",
            super::LONG_VERSION
        );
    }
}
