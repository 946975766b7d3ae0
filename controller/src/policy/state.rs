//! The policy's state: what detection, enrichment, aggregates and fingerprints keep between
//! polls, and the small types they share.

use std::{cell::RefCell, collections::HashMap, sync::Arc, time::Duration};

use ipnet::IpNet;
use ipwarden_common::fingerprint::SigEntry;

use super::tags::Tags;
pub use crate::wire::EnrichmentState;
use crate::{
    config::Config,
    detect::aggregate::Aggregates,
    detect::{Detector, Rates},
    enrich::Pipeline,
    fingerprint::Rules,
    score::Verdict,
};

/// Turns what detection and enrichment find into proposals to the engine. It owns detection
/// (the detector, aggregates), enrichment (the IPASIS stage's answers, feed tags, SYN
/// fingerprints) and scoring; the engine does not know it exists.
pub struct Policy {
    pub(super) cfg: Config,
    pub(super) detector: Detector,
    /// Networks judged as a whole (`[detection.aggregate]`).
    pub(super) aggregates: Aggregates,
    /// Heavy aggregates waiting for their busiest members' IPASIS verdicts.
    pub(super) votes: HashMap<IpNet, Vote>,
    /// SYN fingerprint rules (shipped, after the operator's).
    pub(super) fingerprint_rules: Rules,
    /// The data plane's SYN signatures, read at most once per poll.
    pub(super) sig_index: SigIndex,
    pub(super) polls: u64,
    pub(super) last_poll: Duration,
    /// Polls that took longer than the interval, and when that was last warned about.
    pub(super) late_polls: u64,
    pub(super) last_late_warning_ms: u64,
    pub(super) enrich: Option<Arc<Pipeline>>,
    pub(super) enrichment_state: EnrichmentState,
    /// Sources whose failed enrichment is retried (their episode reset) at this Unix ms. Keyed
    /// by attacker-chosen addresses: std's seeded hasher.
    pub(super) retry_at: HashMap<IpNet, u64>,
    /// Feed tags (`hosting`, `tor`, `proxy`) by prefix.
    pub(super) tags: Tags,
    /// Aggregate cells whose members the program admits (see `detect::admission`).
    pub(super) admit_flags: crate::detect::admission::CellFlags,
    /// The CPUs traffic can land on (online ones), which the admission level is split over.
    pub(super) cpus: u32,
}

impl Policy {
    pub fn new(cfg: Config) -> Self {
        Self {
            detector: Detector::new(cfg.detection.clone()),
            aggregates: Aggregates::new(cfg.detection.aggregate.clone(), cfg.detection.window),
            votes: HashMap::new(),
            fingerprint_rules: Rules::load(None)
                .expect("the shipped fingerprint rules parse (a unit test checks them)"),
            sig_index: SigIndex::default(),
            polls: 0,
            last_poll: Duration::ZERO,
            late_polls: 0,
            last_late_warning_ms: 0,
            enrich: None,
            enrichment_state: EnrichmentState::VelocityOnly,
            retry_at: HashMap::new(),
            tags: Tags::default(),
            admit_flags: Default::default(),
            cpus: aya::util::online_cpus().map_or(1, |c| c.len().max(1) as u32),
            cfg,
        }
    }

    /// Applies a new configuration (`rules`: the fingerprint rules it names, already loaded).
    pub fn reconfigure(&mut self, cfg: Config, rules: Rules) {
        self.detector.reconfigure(cfg.detection.clone());
        self.aggregates
            .reconfigure(cfg.detection.aggregate.clone(), cfg.detection.window);
        self.fingerprint_rules = rules;
        if cfg.detection.aggregate.levels().is_empty() {
            // No more aggregate polls to update them.
            self.admit_flags.clear();
        }
        self.cfg = cfg;
    }

    /// What the program admits into its per-source tables: the level, and the aggregate cells
    /// whose members it admits whatever their rate (see `detect::admission`).
    pub fn admission(&self) -> (ipwarden_common::admit::AdmitLevel, &[u64]) {
        (
            crate::detect::admission::level(&self.cfg.detection, self.cpus),
            self.admit_flags.flags(),
        )
    }

    /// Aggregate cells flagged for admission.
    pub fn admission_flags(&self) -> u32 {
        self.admit_flags.count()
    }

    /// The current poll period (reloadable).
    pub fn poll_interval(&self) -> Duration {
        self.cfg.detection.poll_interval
    }

    /// The detector (`top`, `explain`, `status`).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The aggregates (`explain`, `status`).
    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// Polls so far, late polls, and how long the last one took.
    pub fn polls(&self) -> (u64, u64, Duration) {
        (self.polls, self.late_polls, self.last_poll)
    }

    /// Replaces a feed's tagged set (`SourceEvent::Tags`).
    pub fn set_tags(&mut self, feed: String, tag: crate::config::Tag, prefixes: Vec<IpNet>) {
        self.tags.set(feed, tag, prefixes);
    }
}

/// How long a network waits for its members' answers before the vote is dropped.
pub(super) const VOTE_TTL_MS: u64 = 10 * 60 * 1000;

/// A heavy network waiting for its busiest members' verdicts.
#[derive(Debug)]
pub(super) struct Vote {
    pub(super) members: Vec<IpNet>,
    pub(super) verdicts: HashMap<IpNet, (Verdict, Option<String>)>,
    pub(super) count: usize,
    pub(super) rates: Rates,
    pub(super) since_ms: u64,
}

/// The data plane's signatures by source, read at most once per poll: scoring the sources of a
/// spread flood would otherwise read the whole map (up to 65 536 entries) once per source.
#[derive(Debug, Default)]
pub(super) struct SigIndex(pub(super) RefCell<Option<(u64, BySource)>>);

/// Signatures by source (seeded hasher: the sources are chosen by senders).
pub(super) type BySource = foldhash::HashMap<IpNet, Vec<SigEntry>>;
