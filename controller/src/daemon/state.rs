//! What the daemon keeps behind its one lock: the engine (the decision core), the policy
//! (detection and enrichment), the views of the running sources, and what `status` says of the
//! process. The poll loop, the control socket, SIGHUP and metrics all go through it.

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use thiserror::Error;

use crate::{
    config::{Config, ConfigError, DEFAULT_PATH},
    decision::Origin,
    detect::{Event, Reading},
    engine::{Applied, Engine, EngineError, Plane, SourceEvent},
    enrich::{Record, pipeline::Enriched},
    fingerprint::{RuleError, Rules},
    policy::Policy,
    sources::Sources,
    store::{CachedAnswer, Store},
};

/// Why a reload changed nothing.
#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("configuration not reloaded, the old one stays: {0}")]
    Config(#[from] ConfigError),
    #[error("configuration not reloaded, the old one stays: {0}")]
    Fingerprints(#[from] RuleError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub struct State {
    pub engine: Engine,
    pub policy: Policy,
    /// The running decision sources.
    pub sources: Sources,
    /// The `[[notify]]` hooks.
    pub hooks: Vec<crate::hooks::Running>,
    /// The verdict endpoint, when `[verdict]` is configured.
    pub verdict: Option<std::sync::Arc<crate::verdict::Endpoint>>,
    /// `[daemon]` as the file said at start (before command-line overrides): what a reload's
    /// file is compared with, since the running section holds the overrides.
    pub daemon_in_file: Option<crate::config::DaemonConfig>,
    /// Where feeds started by a reload send their sets (see `feeds`).
    pub(super) feed_events: Option<tokio::sync::mpsc::Sender<SourceEvent>>,
    /// Feeds a reload stopped (until one of the name starts again): a set one sent just
    /// before it stopped is dropped.
    pub(super) removed_feeds: std::collections::BTreeSet<String>,
    /// What the loud-source listeners hold hints against (see `loud`); `None` before they start.
    pub(super) hearing: Option<tokio::sync::watch::Sender<Option<super::loud::Hearing>>>,
    /// What the loud-source listeners did.
    pub hints: std::sync::Arc<super::loud::HintStats>,
    /// The synproxy at the last poll, when `[synproxy]` is configured.
    pub synproxy: Option<crate::wire::SynproxyView>,
    /// Sources already reported as stopped.
    stopped: std::collections::BTreeSet<String>,
    started: Instant,
    pub(super) config_path: Option<PathBuf>,
}

impl State {
    pub fn new(
        cfg: Config,
        config_path: Option<PathBuf>,
        store: Store,
        planes: Vec<Plane>,
    ) -> Self {
        Self {
            policy: Policy::new(cfg.clone()),
            engine: Engine::new(cfg, store, planes),
            sources: Sources::default(),
            verdict: None,
            hooks: Vec::new(),
            daemon_in_file: None,
            feed_events: None,
            removed_feeds: Default::default(),
            hearing: None,
            hints: Default::default(),
            synproxy: None,
            stopped: Default::default(),
            started: Instant::now(),
            config_path,
        }
    }

    /// How long the daemon has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The path the configuration was loaded from.
    pub fn config_path(&self) -> Option<&PathBuf> {
        self.config_path.as_ref()
    }

    /// One poll's worth of work (see [`Policy::tick`]).
    pub fn tick(&mut self, now_ns: u64, readings: Vec<Reading>, took: Duration) -> Vec<Event> {
        self.policy.tick(&mut self.engine, now_ns, readings, took)
    }

    /// Judges the networks of this poll's active sources (after [`State::tick`]).
    pub fn judge_aggregates(
        &mut self,
        now_ns: u64,
        cells: Vec<ipwarden_common::AggCell>,
        pending: Vec<(IpNet, u64, u64)>,
    ) {
        self.policy
            .judge_aggregates(&mut self.engine, now_ns, cells, pending);
    }

    /// Records how long a whole poll took (a late one is counted and warned about).
    pub fn note_poll_time(&mut self, spent: Duration, interval: Duration) {
        self.policy
            .note_poll_time(&mut self.engine, spent, interval);
    }

    /// The current poll period (reloadable).
    pub fn poll_interval(&self) -> Duration {
        self.policy.poll_interval()
    }

    /// A hinted source measured at or above a threshold: judged now (see `loud`).
    pub fn on_loud(&mut self, m: super::loud::Measured) {
        if self
            .policy
            .loud(&mut self.engine, m.source, m.snapshot, m.rates, m.now_ns)
        {
            self.hints
                .decided
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// An IPASIS answer (or failure) for a queued candidate.
    pub fn on_enriched(&mut self, enriched: Enriched) {
        self.policy.on_enriched(&mut self.engine, enriched);
    }

    /// Applies what a decision source sent: feed tags to the policy, the rest to the engine.
    pub fn apply(&mut self, event: SourceEvent) -> Result<Applied, EngineError> {
        // A feed a reload removed may have sent its set just before it stopped: dropped, so
        // that what the reload lifted stays lifted.
        let feed = match &event {
            SourceEvent::Tags { feed, .. } => Some(feed.as_str()),
            SourceEvent::Replace { holder, .. } if holder.origin == Origin::Feed => {
                holder.source.as_deref()
            }
            _ => None,
        };
        if let Some(feed) = feed
            && self.removed_feeds.contains(feed)
        {
            tracing::info!(feed, "dropped a set sent by a feed no longer configured");
            return Ok(Applied::default());
        }
        match event {
            SourceEvent::Tags {
                feed,
                tag,
                prefixes,
            } => {
                let n = prefixes.len();
                self.policy.set_tags(feed, tag, prefixes);
                Ok(Applied {
                    enacted: n,
                    ..Applied::default()
                })
            }
            other => self.engine.apply(other),
        }
    }

    /// Caches an IPASIS answer (from `ipwarden lookup`).
    pub fn store_answer(
        &self,
        source: IpNet,
        record: Option<Record>,
    ) -> Result<CachedAnswer, EngineError> {
        Policy::store_answer(&self.engine, source, record, None)
    }

    /// The cached answer of an address's source unit whatever its age.
    pub fn cached_answer(&self, addr: IpAddr) -> Option<CachedAnswer> {
        self.engine
            .answer(crate::net::host_prefix(addr))
            .ok()
            .flatten()
    }

    /// Says (once, in `status` and the log) that a source's task ended: a source runs as long
    /// as the daemon, so one that ended panicked or gave up, and what it would have decided is
    /// missing until the daemon restarts.
    pub fn check_sources(&mut self) {
        let ended: Vec<String> = self
            .sources
            .iter()
            .filter(|s| s.stopped() && !self.stopped.contains(&s.name))
            .map(|s| s.name.clone())
            .collect();
        for name in ended {
            self.engine.warn_standing(format!(
                "the {name} source stopped (see the log); its decisions stay, nothing new comes from it until the daemon restarts"
            ));
            self.stopped.insert(name);
        }
    }

    /// One line for the service manager's `STATUS=` (shown by `systemctl status`).
    pub fn summary(&self) -> String {
        let warnings = self.engine.warnings().count();
        let (tracked, heavy) = self.policy.detector().counts();
        format!(
            "{} decisions, {tracked} sources tracked, {heavy} heavy hitters{}",
            self.engine.book().len(),
            if warnings == 0 {
                String::new()
            } else {
                format!(", {warnings} warnings (ipwarden status)")
            }
        )
    }

    /// Applies a new configuration; returns what it applied beyond the engine's settings (feeds
    /// started or stopped) and what applies only at the next start.
    pub fn reload(&mut self, cfg: Config) -> Result<Vec<String>, ReloadError> {
        // Checked before anything changes: a bad rule file refuses the whole reload.
        let rules = Rules::load(cfg.fingerprints.rules.as_deref())?;
        let old = self.engine.config();
        let mut notes = Vec::new();
        if cfg.daemon != old.daemon {
            notes.push("[daemon] changes apply at the next start".to_owned());
        }
        if cfg.metrics != old.metrics {
            notes.push("[metrics] changes apply at the next start".to_owned());
        }
        let feeds_changed = old.feeds != cfg.feeds;
        let old_feeds = old.feeds.clone();
        if cfg.fleet != old.fleet {
            notes.push("[fleet] changes apply at the next start".to_owned());
        }
        if cfg.crowdsec != old.crowdsec {
            notes.push("[crowdsec] changes apply at the next start".to_owned());
        }
        if cfg.notify != old.notify {
            notes.push("[[notify]] changes apply at the next start".to_owned());
        }
        if cfg.synproxy != old.synproxy {
            notes.push("[synproxy] changes apply at the next start".to_owned());
        }
        if cfg.verdict != old.verdict {
            notes.push("[verdict] changes apply at the next start".to_owned());
        }
        let mut new_dp = cfg.dataplane.clone();
        new_dp.monitor = old.dataplane.monitor;
        if new_dp != old.dataplane {
            notes.push("[dataplane] sizes and attach mode apply at the next start (maps are resized without a gap; the attach mode needs a detach)".to_owned());
        }
        if cfg.ipasis != old.ipasis {
            notes.push("[ipasis] changes apply at the next start".to_owned());
        }
        let new_feeds = cfg.feeds.clone();
        if let Some(h) = &self.hearing {
            h.send_replace(super::loud::Hearing::from_config(&cfg.detection));
        }
        self.policy.reconfigure(cfg.clone(), rules);
        self.engine.reconfigure(cfg)?;
        tracing::info!("configuration reloaded");
        let mut applied = Vec::new();
        if feeds_changed {
            match self.reload_feeds(&old_feeds, &new_feeds) {
                Ok(done) => applied.extend(done),
                Err(why) => {
                    let changes = feed_changes(&old_feeds, &new_feeds).unwrap_or_default();
                    notes.push(format!(
                        "[[feeds]] changes ({changes}) apply at the next start ({why})"
                    ));
                }
            }
        }
        for n in &notes {
            // Said where an operator looks: the reload's answer, the log and `status`.
            tracing::warn!("reload: {n}: restart the daemon (systemctl restart ipwarden) to apply");
            self.engine
                .warn(format!("reload: {n}: restart the daemon to apply"));
        }
        for a in &applied {
            tracing::info!("reload: {a}");
        }
        // What was applied beyond the engine's own settings is said in the answer too.
        Ok(applied.into_iter().chain(notes).collect())
    }

    /// Reloads the file the configuration came from (or the default path); the message the
    /// operator sees.
    pub fn reload_from_file(&mut self) -> Result<String, ReloadError> {
        let path = self
            .config_path
            .clone()
            .unwrap_or_else(|| DEFAULT_PATH.into());
        let explicit = self.config_path.is_some();
        let mut cfg = Config::load(&path, explicit)?;
        // Command-line overrides given at start stay in force; a change of the file's own
        // `[daemon]` section is named (it applies at the next start).
        let daemon_changed = self
            .daemon_in_file
            .as_ref()
            .is_some_and(|start| *start != cfg.daemon);
        cfg.daemon = self.engine.config().daemon.clone();
        let mut notes = self.reload(cfg)?;
        if daemon_changed {
            let n = "[daemon] changes (interfaces, socket, state or bpffs directory) apply at the next start";
            tracing::warn!("reload: {n}: restart the daemon (systemctl restart ipwarden) to apply");
            self.engine
                .warn(format!("reload: {n}: restart the daemon to apply"));
            notes.insert(0, n.to_owned());
        }
        Ok(if notes.is_empty() {
            format!("reloaded {}", path.display())
        } else {
            format!("reloaded {} ({})", path.display(), notes.join("; "))
        })
    }
}

/// What changed between two `[[feeds]]` lists, by name; `None` when nothing did.
fn feed_changes(
    old: &[crate::config::FeedConfig],
    new: &[crate::config::FeedConfig],
) -> Option<String> {
    let mut parts = Vec::new();
    let named = |list: &[crate::config::FeedConfig], name: &str| {
        list.iter().find(|f| f.name == name).cloned()
    };
    let added: Vec<&str> = new
        .iter()
        .filter(|f| named(old, &f.name).is_none())
        .map(|f| f.name.as_str())
        .collect();
    let removed: Vec<&str> = old
        .iter()
        .filter(|f| named(new, &f.name).is_none())
        .map(|f| f.name.as_str())
        .collect();
    let changed: Vec<&str> = new
        .iter()
        .filter(|f| named(old, &f.name).is_some_and(|o| o != **f))
        .map(|f| f.name.as_str())
        .collect();
    for (what, names) in [("added", added), ("removed", removed), ("changed", changed)] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
