//! The command line, declared with clap derive: doc comments are the help text.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::{dataplane::DEFAULT_BPFFS, net::parse_prefix};

/// Protects a Linux edge host from malicious traffic.
///
/// ipwarden attaches an XDP program to a network interface. The program drops packets whose
/// source is in the block set (exact /32 and IPv6 /64 entries, and wider prefixes), passes
/// allowlisted sources even when a block entry matches, and counts packets, bytes and TCP SYNs
/// per source (IPv4 /32, IPv6 /64) so heavy hitters can be found.
///
/// The program and its maps are pinned under <BPFFS>/ipwarden/<IFACE>/: the program stays
/// attached, and keeps enforcing, when ipwarden exits. Commands below act on those pins.
#[derive(Debug, Parser)]
#[command(name = "ipwarden", version, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info`, `debug`, `ipwarden=trace`.
    #[arg(long, global = true, env = "IPWARDEN_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
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
    /// Print JSON (stable schema, see README) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the XDP program, attach it to an interface and pin it.
    ///
    /// Native (driver) mode is tried first; if the driver lacks XDP support ipwarden warns and
    /// falls back to generic (skb) mode. Map sizes apply when the maps are created.
    Attach(AttachArgs),
    /// Detach the program from an interface and remove its pins (block set included).
    Detach {
        #[command(flatten)]
        target: Target,
    },
    /// Block a source address or prefix.
    ///
    /// A bare IPv4 address blocks its /32; a bare IPv6 address blocks its /64 (IPv6 hosts rotate
    /// addresses inside their /64). Give a prefix length to block anything else.
    Block(BlockArgs),
    /// Remove the block entry for exactly this address or prefix.
    Unblock {
        /// Address or prefix, as given to `block`.
        #[arg(value_parser = parse_prefix_arg)]
        prefix: IpNet,
        #[command(flatten)]
        target: Target,
    },
    /// List block entries with their reason and remaining time.
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        format: Format,
    },
    /// Manage the allowlist: allowlisted sources pass even when a block entry matches.
    Allow {
        #[command(subcommand)]
        action: AllowAction,
    },
    /// Switch monitor (dry-run) mode: would-be drops are counted as `monitored` and passed.
    Monitor {
        /// `on` or `off`.
        state: Switch,
        #[command(flatten)]
        target: Target,
    },
    /// Show global counters and the busiest sources.
    Stats(StatsArgs),
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
pub struct BlockArgs {
    /// Address or CIDR prefix, e.g. 203.0.113.7, 198.51.100.0/24, 2001:db8:2::/48.
    #[arg(value_parser = parse_prefix_arg)]
    pub prefix: IpNet,
    #[command(flatten)]
    pub target: Target,
    /// How long the block lasts (`90s`, `10m`, `24h`); permanent when omitted.
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
    /// Why, recorded with the entry.
    #[arg(long, value_enum, default_value_t = ReasonArg::Manual)]
    pub reason: ReasonArg,
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

#[derive(Debug, Subcommand)]
pub enum AllowAction {
    /// Allowlist an address or prefix (a bare IPv6 address means its /64).
    Add {
        #[arg(value_parser = parse_prefix_arg)]
        prefix: IpNet,
        #[command(flatten)]
        target: Target,
    },
    /// Remove exactly this prefix from the allowlist.
    Rm {
        #[arg(value_parser = parse_prefix_arg)]
        prefix: IpNet,
        #[command(flatten)]
        target: Target,
    },
    /// List allowlisted prefixes.
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Reasons an operator may give on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReasonArg {
    Manual,
    Velocity,
    Ipasis,
    Feed,
}

impl ReasonArg {
    /// The kernel's reason code.
    pub fn code(self) -> u32 {
        use ipwarden_common::Reason;
        match self {
            Self::Manual => Reason::MANUAL,
            Self::Velocity => Reason::VELOCITY,
            Self::Ipasis => Reason::IPASIS,
            Self::Feed => Reason::FEED,
        }
    }
}

fn parse_prefix_arg(s: &str) -> Result<IpNet, String> {
    parse_prefix(s).map_err(|e| e.to_string())
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); examples: 90s, 10m, 24h"))?;
    if ttl.is_zero() {
        return Err("a TTL of zero would expire at once; omit --ttl for a permanent block".into());
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
