//! A decision: what one holder (an origin, and a source name where the origin has several) has
//! decided about a prefix, why, and until when. Decisions are the daemon's source of truth;
//! the block maps are their projection into the kernel (the strongest live holder per prefix,
//! see [`Decision::stronger_than`]).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ipnet::IpNet;
use ipwarden_common::{BlockEntry, Reason};
use serde::{Deserialize, Serialize};

/// Text many decisions share: a feed's million decisions carry one source name and one reason,
/// so each holds a pointer to them, not a copy (a million copies were 64 MB), and naming a
/// decision's holder costs no allocation.
pub type Text = Arc<str>;

/// What the data plane does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Step-up: rate-limit each covered source (see `rate`); an L7 proxy serves it a CAPTCHA
    /// or MFA step.
    Challenge,
    /// Full speed for a source that solved a challenge (see `verdict`): it outranks any
    /// challenge, so a wider challenge never shadows it, and never a block, which always
    /// shadows it. Only the verdict endpoint makes it, for one source unit (/32, /64).
    Pass,
    /// Drop every packet. Ordered last: the action that takes precedence compares greater.
    Block,
}

impl Action {
    /// Stable lower-case name (its serde name).
    pub fn name(self) -> &'static str {
        crate::names::of(&self)
    }
}

/// The rate a challenged source may keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRate {
    pub pps: u32,
    pub burst: u32,
}

impl ChallengeRate {
    /// The one home of the default (`scoring.challenge_pps`, `scoring.challenge_burst`): what a
    /// challenge without a stated rate keeps.
    pub const DEFAULT: Self = Self { pps: 50, burst: 20 };

    /// The highest rate the kernel's token bucket can express (one packet a nanosecond).
    pub const MAX_PPS: u32 = 1_000_000_000;

    /// Whether the kernel can enforce it: 1 to [`ChallengeRate::MAX_PPS`], a burst of 1 or more.
    pub fn is_valid(self) -> bool {
        (1..=Self::MAX_PPS).contains(&self.pps) && self.burst >= 1
    }
}

/// Where a decision came from. Each origin holds its own decision on a prefix: lifting or
/// expiring one never lifts another's.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// An operator, through the CLI.
    Manual,
    /// The daemon's velocity rules.
    Velocity,
    /// IP intelligence.
    Ipasis,
    /// An external feed (named by the feed).
    Feed,
    /// A CrowdSec local API.
    Crowdsec,
    /// Another host of the fleet (named by the host).
    Fleet,
    /// A challenge solved at the verdict endpoint: a pass for one source unit.
    #[serde(rename = "challenge-pass")]
    ChallengePass,
}

impl Origin {
    /// Every origin, in display order.
    pub const ALL: [Self; 7] = [
        Self::Manual,
        Self::Velocity,
        Self::Ipasis,
        Self::Feed,
        Self::Crowdsec,
        Self::Fleet,
        Self::ChallengePass,
    ];

    /// The kernel's reason code, carried in the block entry.
    pub fn reason_code(self) -> u32 {
        match self {
            Self::Manual => Reason::MANUAL,
            Self::Velocity => Reason::VELOCITY,
            Self::Ipasis => Reason::IPASIS,
            Self::Feed => Reason::FEED,
            Self::Crowdsec => Reason::CROWDSEC,
            Self::Fleet => Reason::FLEET,
            Self::ChallengePass => Reason::CHALLENGE_PASS,
        }
    }

    /// The origin a kernel reason code stands for.
    pub fn from_reason_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.reason_code() == code)
    }

    /// Stable lower-case name (its serde name).
    pub fn name(self) -> &'static str {
        crate::names::of(&self)
    }

    /// Whether it comes from outside this host's own judgement and its operator's hand: a
    /// feed, CrowdSec, a fleet peer (bounded by `decisions.remote_widest_*`).
    pub fn is_remote(self) -> bool {
        matches!(self, Self::Feed | Self::Crowdsec | Self::Fleet)
    }

    /// Whether repeat offences under this origin lengthen the TTL (`decisions.recidive_*`):
    /// the daemon's own judgements, not what operators or outside sources decide.
    pub fn is_recidive_tracked(self) -> bool {
        matches!(self, Self::Velocity | Self::Ipasis)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who holds a decision on a prefix: at most one decision per holder and prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Holder {
    pub origin: Origin,
    /// A feed's name, a fleet host; `None` for origins with one source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Text>,
}

impl Holder {
    /// The holder of an origin with one source.
    pub const fn of(origin: Origin) -> Self {
        Self {
            origin,
            source: None,
        }
    }

    /// A named source of an origin.
    pub fn named(origin: Origin, source: impl Into<Text>) -> Self {
        Self {
            origin,
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}:{s}", self.origin),
            None => write!(f, "{}", self.origin),
        }
    }
}

/// Why a repeat offender's TTL is longer than its base TTL, for `explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recidive {
    /// Earlier blocks of the prefix by velocity or enrichment within `decisions.recidive_window`.
    pub earlier: u32,
    pub base_ttl_secs: u64,
    pub factor: u32,
    /// Whether `decisions.max_ttl` cut the multiplied TTL.
    pub capped: bool,
}

/// One decision, as stored and as shown by `list --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub prefix: IpNet,
    pub action: Action,
    pub origin: Origin,
    /// The source within the origin (a feed's name, a fleet host), if it has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Text>,
    /// Human-readable reason, e.g. "heavy hitter: 4200 pps".
    pub reason: Text,
    /// Risk score when the scorer made the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i32>,
    /// The score's contributions, for `explain`. A boxed slice: most decisions have none, and
    /// a million decisions are held in memory (see [`Decision`]'s size test).
    #[serde(default, skip_serializing_if = "no_factors")]
    pub factors: Box<[Factor]>,
    /// For `challenge`: the rate each covered source keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<ChallengeRate>,
    /// Wall-clock creation time, Unix milliseconds.
    pub created_unix_ms: u64,
    /// Wall-clock expiry, Unix milliseconds; `None` for a permanent decision.
    pub expires_unix_ms: Option<u64>,
    /// Set when the TTL was lengthened for a repeat offender (rare: boxed, one pointer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recidive: Option<Box<Recidive>>,
    /// The fleet host whose shared IPASIS answer this decision rests on (this host did not
    /// ask IPASIS itself): such a decision is never published as this host's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_from: Option<Text>,
}

fn no_factors(f: &[Factor]) -> bool {
    f.is_empty()
}

/// Wall-clock now in Unix milliseconds.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `now + ttl` in Unix milliseconds, saturating.
pub fn deadline_ms(now_ms: u64, ttl: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

impl Decision {
    /// The peer a fleet decision came from (its source is `host/origin`); `None` for others.
    pub fn peer(&self) -> Option<&str> {
        if self.origin != Origin::Fleet {
            return None;
        }
        self.source.as_deref()?.split('/').next()
    }

    /// A decision made now (`now_ms`) lasting `ttl` (`None`: permanent). The prefix is
    /// truncated to its network; the other fields start empty (see the `with_*` builders).
    pub fn new(
        prefix: IpNet,
        action: Action,
        holder: Holder,
        reason: impl Into<Text>,
        now_ms: u64,
        ttl: Option<Duration>,
    ) -> Self {
        Self {
            prefix: prefix.trunc(),
            action,
            origin: holder.origin,
            source: holder.source,
            reason: reason.into(),
            score: None,
            factors: Box::default(),
            rate: match action {
                Action::Challenge => Some(ChallengeRate::DEFAULT),
                Action::Block | Action::Pass => None,
            },
            created_unix_ms: now_ms,
            expires_unix_ms: ttl.map(|t| deadline_ms(now_ms, t)),
            recidive: None,
            answer_from: None,
        }
    }

    /// A block lasting `ttl`.
    pub fn block(
        prefix: IpNet,
        holder: Holder,
        reason: impl Into<Text>,
        now_ms: u64,
        ttl: Option<Duration>,
    ) -> Self {
        Self::new(prefix, Action::Block, holder, reason, now_ms, ttl)
    }

    /// The score that made the decision, with its factors.
    pub fn with_score(mut self, score: i32, factors: Vec<Factor>) -> Self {
        self.score = Some(score);
        self.factors = factors.into_boxed_slice();
        self
    }

    /// The rate a challenged source keeps (ignored for blocks).
    pub fn with_rate(mut self, rate: ChallengeRate) -> Self {
        if self.action == Action::Challenge {
            self.rate = Some(rate);
        }
        self
    }

    /// Who holds it.
    pub fn holder(&self) -> Holder {
        Holder {
            origin: self.origin,
            source: self.source.clone(),
        }
    }

    /// Whether `holder` holds it (without building a [`Holder`]).
    pub fn held_by(&self, holder: &Holder) -> bool {
        self.origin == holder.origin && self.source == holder.source
    }

    /// The TTL it was made with; `None` when permanent.
    pub fn ttl(&self) -> Option<Duration> {
        self.expires_unix_ms
            .map(|e| Duration::from_millis(e.saturating_sub(self.created_unix_ms)))
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_unix_ms.is_some_and(|e| e <= now_ms)
    }

    /// Time left at `now_ms`; `None` when permanent.
    pub fn remaining(&self, now_ms: u64) -> Option<Duration> {
        self.expires_unix_ms
            .map(|e| Duration::from_millis(e.saturating_sub(now_ms)))
    }

    /// How much it enforces, whatever its prefix or expiry: a block more than any challenge,
    /// a challenge with a lower rate (then a smaller burst) more than one with a higher.
    pub fn strength(&self) -> (Action, std::cmp::Reverse<(u32, u32)>) {
        let rate = match self.action {
            Action::Block | Action::Pass => (0, 0),
            Action::Challenge => {
                let r = self.rate.unwrap_or(ChallengeRate::DEFAULT);
                (r.pps, r.burst)
            }
        };
        (self.action, std::cmp::Reverse(rate))
    }

    /// Whether it enforces more than `other` (see [`Decision::strength`]): a wider decision that
    /// does keeps a narrower `other` out of the kernel, whose longest match would weaken it.
    pub fn enforces_more_than(&self, other: &Self) -> bool {
        self.strength() > other.strength()
    }

    /// Whether the data plane should enforce this decision rather than `other` on the same
    /// prefix: the one that enforces more ([`Decision::strength`]); of equal strength, the later
    /// expiry (permanent is latest); then the holder, so that the choice is deterministic.
    pub fn stronger_than(&self, other: &Self) -> bool {
        let rank = |d: &Self| (d.strength(), d.expires_unix_ms.unwrap_or(u64::MAX));
        match rank(self).cmp(&rank(other)) {
            std::cmp::Ordering::Equal => {
                (self.origin, &self.source) < (other.origin, &other.source)
            }
            o => o.is_gt(),
        }
    }

    /// The kernel entry: the wall-clock expiry re-expressed on the kernel's monotonic clock.
    /// Done at every (re)insertion, so decisions restored after a reboot get correct deadlines.
    /// `now_ms` is the wall clock and `now_ns` the monotonic one, both read once for a batch.
    pub fn kernel_entry(&self, now_ms: u64, now_ns: u64) -> BlockEntry {
        let deadline = crate::clock::deadline_from(now_ns, self.remaining(now_ms));
        match self.action {
            Action::Block => BlockEntry::block(self.origin.reason_code(), deadline),
            Action::Pass => BlockEntry::pass(self.origin.reason_code(), deadline),
            Action::Challenge => {
                let rate = self.rate.unwrap_or(ChallengeRate::DEFAULT);
                BlockEntry::challenge(self.origin.reason_code(), deadline, rate.pps, rate.burst)
            }
        }
    }
}

/// One contribution to a score, shown by `explain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    pub name: String,
    pub weight: i32,
}

/// How a decision ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    /// Its TTL ran out.
    Expired,
    /// Its holder (or an operator) withdrew it.
    Lifted,
}

impl End {
    pub fn name(self) -> &'static str {
        crate::names::of(&self)
    }
}

/// An ended decision, as `ipwarden history` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ended {
    pub decision: Decision,
    pub end: End,
    pub ended_unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(expires: Option<u64>) -> Decision {
        let mut d = Decision::block(
            "203.0.113.7/32".parse().unwrap(),
            Holder::of(Origin::Manual),
            "test",
            1000,
            None,
        );
        d.expires_unix_ms = expires;
        d
    }

    #[test]
    fn expiry_and_remaining_time() {
        assert!(!d(None).expired(u64::MAX));
        assert!(d(Some(2000)).expired(2000));
        assert!(!d(Some(2000)).expired(1999));
        assert_eq!(d(Some(5000)).remaining(2000), Some(Duration::from_secs(3)));
        assert_eq!(d(Some(5000)).remaining(9000), Some(Duration::ZERO));
        assert_eq!(d(Some(5000)).ttl(), Some(Duration::from_secs(4)));
    }

    #[test]
    fn kernel_entries_carry_reason_and_a_monotonic_deadline() {
        let now = now_unix_ms();
        let e = d(Some(now + 60_000)).kernel_entry(now, crate::clock::monotonic_ns());
        assert_eq!(e.reason, Reason::MANUAL);
        let left = crate::clock::remaining(e.expires_at_ns).unwrap();
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
        assert_eq!(
            d(None)
                .kernel_entry(now, crate::clock::monotonic_ns())
                .expires_at_ns,
            BlockEntry::NEVER
        );
    }

    /// A daemon holds every decision in memory (a million after a feed's bulk load): each byte
    /// here is a megabyte there. Rare parts are boxed.
    #[test]
    fn a_decision_stays_small() {
        assert!(
            std::mem::size_of::<Decision>() <= 136,
            "{}",
            std::mem::size_of::<Decision>()
        );
    }

    #[test]
    fn json_round_trip_and_the_old_shape_still_reads() {
        let x = d(Some(5));
        let s = serde_json::to_string(&x).unwrap();
        assert!(s.contains("\"origin\":\"manual\""), "{s}");
        assert!(!s.contains("source"), "no source name is not written: {s}");
        assert_eq!(serde_json::from_str::<Decision>(&s).unwrap(), x);
        // What the previous release stored and printed.
        let old = r#"{"prefix":"203.0.113.7/32","action":"block","origin":"velocity","reason":"r","created_unix_ms":1,"expires_unix_ms":null}"#;
        let o: Decision = serde_json::from_str(old).unwrap();
        assert_eq!(
            (o.origin, o.source, o.recidive),
            (Origin::Velocity, None, None)
        );
    }

    #[test]
    fn block_beats_challenge_then_the_later_expiry_wins() {
        let net: IpNet = "203.0.113.0/24".parse().unwrap();
        let block = |h: Holder, ttl| Decision::block(net, h, "b", 0, ttl);
        let challenge = Decision::new(
            net,
            Action::Challenge,
            Holder::of(Origin::Ipasis),
            "c",
            0,
            None,
        );
        let short = block(Holder::of(Origin::Velocity), Some(Duration::from_secs(60)));
        let long = block(
            Holder::named(Origin::Feed, "drop"),
            Some(Duration::from_secs(600)),
        );
        let forever = block(Holder::of(Origin::Manual), None);
        assert!(
            short.stronger_than(&challenge),
            "any block beats a permanent challenge"
        );
        assert!(!challenge.stronger_than(&short));
        assert!(long.stronger_than(&short) && !short.stronger_than(&long));
        assert!(forever.stronger_than(&long));
        // Equal rank: decided by the holder, one way only.
        let twin = block(Holder::of(Origin::Ipasis), Some(Duration::from_secs(60)));
        assert!(short.stronger_than(&twin) != twin.stronger_than(&short));
    }

    #[test]
    fn reason_codes_round_trip() {
        for o in Origin::ALL {
            assert_eq!(Origin::from_reason_code(o.reason_code()), Some(o));
        }
        assert_eq!(Origin::from_reason_code(Reason::UNSPECIFIED), None);
    }
}
