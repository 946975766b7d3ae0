//! The views the daemon answers with: plain data, filled by the features they describe. Their
//! JSON is the documented schema (`--json`), pinned by the golden tests.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    allowlist::AllowOrigin,
    attach::AttachKind,
    decision::{Action, Decision, Origin},
    record::Record,
};

/// An IPASIS answer and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LookupView {
    pub addr: IpAddr,
    /// The unit answers are cached and decisions made for.
    pub source: IpNet,
    pub cached: bool,
    pub age_secs: u64,
    /// `null` when IPASIS rejected the address (400).
    pub record: Option<Record>,
}

/// `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub config: Option<String>,
    pub state_db: String,
    pub interfaces: Vec<InterfaceView>,
    pub decisions: usize,
    /// Decisions per origin (`manual`, `velocity`, `ipasis`, `feed`, `crowdsec`, `fleet`), in
    /// the order of their names.
    pub decisions_by_origin: OriginCounts,
    pub allow: usize,
    pub tracked_sources: usize,
    pub heavy_hitters: usize,
    pub polls: u64,
    pub last_poll_ms: f64,
    /// Polls that took longer than `detection.poll_interval` (the next started late).
    #[serde(default)]
    pub late_polls: u64,
    /// Aggregates (networks) tracked, and how many are heavy now.
    #[serde(default)]
    pub aggregates_tracked: usize,
    #[serde(default)]
    pub heavy_aggregates: usize,
    /// `on`, or `off` with the reason (no API key, disabled).
    pub enrichment: EnrichmentState,
    /// The enrichment stage, when on.
    pub ipasis: Option<PipelineView>,
    /// Problems worth an operator's attention, newest last.
    pub warnings: Vec<String>,
    /// Each block map's fill: what the kernel holds, can hold, and what did not fit.
    #[serde(default)]
    pub maps: Vec<MapView>,
    /// Decisions refused since the start, by origin and why (`allowlisted`, `everything`,
    /// `too_wide`, `bad_rate`, `map_full`, `peer_share`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<RefusalView>,
    /// The fleet link, when `[fleet]` is configured (boxed: most hosts have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Box<FleetView>>,
    /// The CrowdSec link, when `[crowdsec]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<Box<CrowdsecView>>,
    /// Every `[[feeds]]` entry's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<FeedView>,
    /// Every `[[notify]]` hook's counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookView>,
    /// The verdict endpoint, when `[verdict]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Box<VerdictView>>,
    /// The thresholds and policy in force (what a reload changed can be confirmed here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Box<PolicyView>>,
    /// Loud-source hints: sources the program saw above a threshold between polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hints: Option<Box<HintsView>>,
    /// Admission into the per-source tables (see `ipwarden_common::admit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<Box<AdmissionView>>,
    /// SYN cookies in XDP, when `[synproxy]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synproxy: Option<Box<super::synproxy::SynproxyView>>,
}

/// Admission in `status`: the level, and what the program admitted and held in its sketch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdmissionView {
    /// `detection.admission`; 0 when every source is tracked.
    pub fraction: f64,
    /// The level: packets a source sends on one CPU in one epoch (about 1.07 s) before it is
    /// tracked exactly; 0 when off.
    pub level_packets_per_cpu: u32,
    /// The rate that level stands for, over all CPUs: `fraction` of the lowest threshold.
    pub level_pps: u64,
    /// Front-table flushes that admitted a source, and flushes held in the sketch (summed over
    /// interfaces).
    pub admitted: u64,
    pub held: u64,
    /// Aggregate cells loud enough that their members are admitted whatever their rate.
    pub flagged_cells: u32,
    /// Interfaces whose program does not admit (a build before admission: it tracks every
    /// source until the daemon upgrades it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<String>,
}

/// Loud-source hints in `status`: what the program sent, what the daemon measured and judged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintsView {
    /// `detection.fast_window`; 0 when hints are off.
    pub fast_window_ms: u64,
    /// Hints the program sent, and lost because the ring was full (summed over interfaces).
    pub sent: u64,
    pub lost: u64,
    /// Hints the daemon read.
    pub received: u64,
    /// Sources measured over the fast window, found at or above a threshold, and of those the
    /// ones that started an episode (the others had one already).
    pub measured: u64,
    pub loud: u64,
    pub decided: u64,
    /// Hints for a source being measured or measured in the last poll interval.
    pub repeated: u64,
    /// Hints dropped because too many sources were being measured.
    pub dropped: u64,
    /// Counter reads that failed (the first is logged).
    pub failed: u64,
}

/// The detection and scoring settings in force, in `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    pub poll_interval_ms: u64,
    pub window_ms: u64,
    pub pps_threshold: u64,
    pub syn_pps_threshold: u64,
    pub hard_pps_limit: u64,
    /// What the velocity-only policy does with a heavy hitter: `block` or `observe`.
    pub on_heavy_hitter: String,
    pub block_at: i32,
    pub challenge_at: i32,
    pub default_ttl_secs: u64,
    /// Whether the data plane only counts what it would drop.
    pub monitor: bool,
}

/// The verdict endpoint in `status`: what it answered since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictView {
    pub listen: String,
    pub allowed: u64,
    pub challenged: u64,
    pub blocked: u64,
    /// Challenge pages served.
    pub pages: u64,
    /// Passes given (challenges solved).
    pub passes: u64,
    /// Solutions refused (wrong, expired, spent, another address's, over the hourly limit).
    pub refused: u64,
    /// Passes whose XDP lift could not reach the engine (its queue was full): their cookie
    /// works, their rate limit stays.
    pub lost: u64,
}

/// Refused decisions of one origin for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalView {
    pub origin: Origin,
    pub why: String,
    pub count: u64,
}

/// One block map in `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapView {
    /// The kernel map (`BLOCK_V4`, `BLOCK_NET_V4`, ...).
    pub map: String,
    /// Entries it holds.
    pub entries: usize,
    pub capacity: usize,
    /// The setting that sizes it.
    pub setting: String,
    /// Decisions refused because it was full, since the daemon started.
    pub refused: u64,
    /// Decisions held but not in it because it is full.
    pub left_out: usize,
    /// Decisions held but not in it because a wider decision enforces more.
    pub shadowed: usize,
}

/// One attachment in `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceView {
    pub iface: String,
    /// `driver`, `skb`, or `adopted` when the daemon reused an existing attachment.
    pub attach: AttachKind,
    pub monitor: bool,
    /// Why the interface's maps differ from the store, until the next poll rebuilds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_sync: Option<String>,
    /// The attached program: which build and layout stamped the pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramView>,
}

/// The XDP program attached to an interface, from its pins' stamp and its link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramView {
    /// The ipwarden version that attached (or last upgraded) it; empty when unstamped.
    pub version: String,
    /// The data plane build id (16 hex digits); `unstamped` for pins of a release before stamps.
    pub build: String,
    pub layout: u32,
    /// The kernel's program id (`bpftool prog show id N`); 0 if the link could not be read.
    pub program_id: u32,
    /// Whether it is this binary's build.
    pub current: bool,
}

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct AllowView {
    pub prefix: IpNet,
    /// `builtin` (loopback, link-local), `protected` (default gateways, the API's addresses),
    /// `config` (`allow.prefixes`) or `runtime` (`allow add`).
    pub origin: AllowOrigin,
}

/// One row of `top`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopRow {
    pub source: IpNet,
    pub pps: f64,
    pub syn_pps: f64,
    pub packets: u64,
    pub bytes: u64,
    pub heavy: bool,
    /// The action of the decision covering the source, if any.
    pub decision: Option<Action>,
    /// The OS family its TCP SYNs look like (several joined with `+`), if it sent any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// Global counters of one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStats {
    pub iface: String,
    /// Every `GlobalCounter` by name, and [`UNRECORDED_SIGNATURES`].
    pub counters: BTreeMap<String, u64>,
    /// Dropped (blocked or over a challenge's rate) packets and bytes by the origin of the
    /// entry that dropped them; origins without drops are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_by_origin: Vec<OriginDrops>,
}

/// The `stats` counter of new SYN signatures the program left unrecorded because its per-CPU
/// budget was spent (a SYN flood from new sources).
pub const UNRECORDED_SIGNATURES: &str = "syn_signatures_unrecorded";

/// Drops of one origin on one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginDrops {
    /// The origin (`manual`, `feed`, …), or `unspecified` for entries written without one.
    pub origin: String,
    pub packets: u64,
    pub bytes: u64,
}

/// `explain`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainView {
    pub addr: IpAddr,
    /// The unit the address is counted and judged as: its /32 or /64.
    pub source: IpNet,
    /// `allowed`, `blocked`, `challenged` or `no decision`.
    pub verdict: Verdict,
    pub allow: Vec<AllowView>,
    /// Every holder's decision on the prefixes covering the address: most specific prefix
    /// first, the enforced one first within a prefix.
    pub decisions: Vec<Decision>,
    pub rates: Option<TopRow>,
    /// The cached IPASIS answer for the source, if any.
    pub enrichment: Option<LookupView>,
    /// The networks holding the address that detection tracks as aggregates, narrowest first.
    #[serde(default)]
    pub aggregates: Vec<AggregateView>,
    /// The TCP SYN signatures its source sent, classified.
    #[serde(default)]
    pub fingerprints: Vec<FingerprintView>,
    /// Prefixes above whose decision the kernel does not hold, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_enforced: Vec<NotEnforced>,
    /// What the kernel dropped from the source itself (its /32 or /64) and under each covering
    /// decision (all its sources), where anything was dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hits: Vec<Hits>,
    /// For a source without an exact counter (not admitted, see `ipwarden_common::admit`):
    /// what the admission sketch says of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untracked: Option<UntrackedView>,
}

/// A source the program does not track exactly: its sketch estimate, an upper bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UntrackedView {
    /// At most this many packets in the current epoch (summed over CPUs and interfaces)...
    pub packets_at_most: u64,
    /// ...which began this long ago (an epoch lasts about 1 074 ms)...
    pub epoch_elapsed_ms: u64,
    /// ...so at most this rate over it (0 within the epoch's first millisecond).
    pub pps_at_most: u64,
    /// The level at which the source would be tracked, packets per CPU and epoch.
    pub level_packets_per_cpu: u32,
}

/// Packets the kernel dropped under a prefix: estimated from one dropped frame in
/// [`ipwarden_common::stats::HIT_SAMPLE`] (a multiple of it), counted since each source's first
/// sampled drop while the source stays in the hit tables (the 16 384 most recently sampled
/// sources per family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hits {
    pub prefix: IpNet,
    pub packets: u64,
}

/// A held decision the kernel does not enforce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotEnforced {
    pub prefix: IpNet,
    pub why: String,
}

/// What `status` says about the fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    pub host_id: String,
    /// The servers, as configured (credentials never appear in a URL here: they come from
    /// files).
    pub servers: Vec<String>,
    pub bucket: String,
    pub connected: bool,
    /// The last revision of the decisions bucket applied here (stored, resumed after a
    /// restart).
    pub applied_revision: u64,
    /// The bucket's last revision when last asked; `lag` = it - `applied_revision`.
    pub bucket_revision: Option<u64>,
    pub lag: Option<u64>,
    /// Local changes waiting to be published (NATS unreachable, or a burst in flight).
    pub pending_publish: usize,
    pub published: u64,
    /// Peers' decisions and withdrawals applied here.
    pub applied: u64,
    /// Peers' values that could not be read (counted, logged once per kind).
    pub unreadable: u64,
    /// Peers' IPASIS answers used instead of a request.
    pub shared_answers: u64,
    /// Lookups this host made for the fleet (it held the claim).
    pub claims_won: u64,
    /// When the server last answered this host (a heartbeat every 2 s while the link is up):
    /// an old time with `connected` still true is a server that stopped answering.
    #[serde(default)]
    pub last_heard_unix_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// What `status` says about the CrowdSec link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CrowdsecView {
    pub lapi_url: String,
    pub connected: bool,
    /// Decisions held from CrowdSec.
    pub held: usize,
    pub last_pull_unix_ms: Option<u64>,
    pub resyncs: u64,
    pub last_resync_unix_ms: Option<u64>,
    /// What the last full resync found that deltas had not said: decisions missing here, and
    /// decisions held here that CrowdSec no longer has.
    pub last_resync_missing: u64,
    pub last_resync_stale: u64,
    /// Decisions not enforced, by why (`type captcha2`, `scope Country`, `origin CAPI`,
    /// `value`, `expired`).
    pub ignored: BTreeMap<String, u64>,
    pub last_error: Option<String>,
    /// Alerts pushed (watcher mode), pushes dropped because the queue was full, the last
    /// push error.
    #[serde(default)]
    pub pushed: u64,
    #[serde(default)]
    pub push_dropped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_error: Option<String>,
}

/// A `[[notify]]` hook, as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookView {
    pub name: String,
    /// The host it posts to (never the whole URL: its path may be a secret).
    pub host: String,
    /// Notifications delivered (a 2xx answer).
    pub sent: u64,
    /// Given up after every retry.
    pub failed: u64,
    /// Dropped because its queue was full.
    pub dropped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A feed's state, as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedView {
    pub name: String,
    pub url: String,
    /// `block`, or the tag.
    #[serde(rename = "use")]
    pub use_: String,
    pub prefixes: usize,
    /// When the copy in force was fetched.
    pub fetched_unix_ms: Option<u64>,
    pub last_attempt_unix_ms: Option<u64>,
    /// Lines skipped in the copy in force.
    pub bad_lines: usize,
    /// Set while a large shrink waits for confirmation.
    pub held: Option<String>,
    pub last_error: Option<String>,
}

/// Counters for `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnrichStats {
    /// Lookups sent (each may include retries).
    pub requests: u64,
    pub answers: u64,
    pub failures: u64,
    /// Heavy hitters decided from the cache, without a request.
    pub cache_hits: u64,
    /// Answers another host of the fleet got, used instead of a request.
    #[serde(default)]
    pub fleet_answers: u64,
    pub last_error: Option<String>,
}

/// The stage's state as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineView {
    pub queued: usize,
    pub in_flight: usize,
    /// Candidates dropped because the queue was full.
    pub dropped: u64,
    pub requests_today: u64,
    pub daily_quota: u64,
    /// Seconds until requests resume, when paused (429, bad key, quota).
    pub paused_secs: Option<u64>,
    pub pause_reason: Option<String>,
    #[serde(flatten)]
    pub stats: EnrichStats,
}

/// An aggregate's state as `explain` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct AggregateView {
    pub net: IpNet,
    pub pps: f64,
    pub syn_pps: f64,
    /// Distinct active members seen at the last poll.
    pub members: usize,
    pub heavy: bool,
}

/// One signature of a source as `explain` and `top` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FingerprintView {
    /// p0f-like: `4:64:df:64240:1460:7:mss,sok,ts,nop,ws`.
    pub signature: String,
    /// The OS family guess (`unknown` when no rule matched).
    pub os: String,
    pub class: Option<String>,
    pub rule: Option<String>,
    pub ttl: u8,
    pub hops: u8,
    /// The address that last sent it.
    pub addr: IpAddr,
}

/// What `explain` concludes for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allowed,
    Blocked,
    Challenged,
    /// A pass (a solved challenge) lets it through at full speed.
    Passed,
    #[serde(rename = "no decision")]
    NoDecision,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        crate::names::of(&self)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether heavy hitters are enriched, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrichmentState {
    #[serde(rename = "on")]
    On,
    /// `[ipasis] enabled = false`.
    #[serde(rename = "off: disabled in [ipasis]")]
    Disabled,
    /// No key in `ipasis.key_file`, the `ipasis.key` credential or `IPASIS_KEY`.
    #[serde(rename = "off: no API key (ipasis.key_file, credential ipasis.key or IPASIS_KEY)")]
    NoKey,
    /// Nothing said yet (no daemon around this engine): the velocity-only policy.
    #[serde(rename = "off: velocity-only policy")]
    VelocityOnly,
}

impl std::fmt::Display for EnrichmentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::names::of(self))
    }
}

/// Decisions by origin, written in the order of the origins' names (as when they were
/// strings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct OriginCounts(pub BTreeMap<Origin, usize>);

impl Serialize for OriginCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut sorted: Vec<(&Origin, &usize)> = self.0.iter().collect();
        sorted.sort_by_key(|(o, _)| o.name());
        let mut map = s.serialize_map(Some(sorted.len()))?;
        for (o, n) in sorted {
            map.serialize_entry(o.name(), n)?;
        }
        map.end()
    }
}

impl OriginCounts {
    /// Counts in the order of the origins' names.
    pub fn iter(&self) -> impl Iterator<Item = (Origin, usize)> + '_ {
        let mut sorted: Vec<(Origin, usize)> = self.0.iter().map(|(o, n)| (*o, *n)).collect();
        sorted.sort_by_key(|(o, _)| o.name());
        sorted.into_iter()
    }
}

/// `counts["manual"]`: an origin's count by its name (0 when none).
impl std::ops::Index<&str> for OriginCounts {
    type Output = usize;
    fn index(&self, name: &str) -> &usize {
        self.0
            .iter()
            .find(|(o, _)| o.name() == name)
            .map_or(&0, |(_, n)| n)
    }
}

/// The names of these enums compare with text (`attach == "memory"`).
macro_rules! compares_with_text {
    ($($t:ty),*) => {
        $(impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                crate::names::of(self) == *other
            }
        })*
    };
}
compares_with_text!(EnrichmentState, Verdict, AttachKind);
