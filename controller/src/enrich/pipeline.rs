//! The enrichment stage: heavy hitters wait in a bounded queue, a worker takes them
//! highest-rate-first within the rate, quota and concurrency limits, looks each up once (no
//! second request for a source in flight or waiting), and sends the answer on a channel.
//!
//! Lookups never block the data path or the control socket: the engine only queues, and the
//! daemon drains the channel into the engine (`Engine::on_enriched`), which calls
//! [`Pipeline::finished`] once the answer is cached. The stage never calls the engine: data
//! flows one way.

use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use thiserror::Error;
use tokio::sync::{Notify, Semaphore, mpsc};

use super::{
    EnrichError, IpasisClient, Record,
    limits::{Hold, Limits},
    queue::{Candidate, Queue},
};
use crate::config::IpasisConfig;
use crate::wire::{EnrichStats, PipelineView};

/// A lookup's outcome for a queued candidate, on its way to the engine.
#[derive(Debug)]
pub struct Enriched {
    pub candidate: Candidate,
    pub result: Result<Record, EnrichError>,
    /// Set when the answer is a fleet peer's, not this host's own.
    pub peer: Option<Peer>,
}

/// Where a peer's answer came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The host that asked IPASIS (as its value says).
    pub host: String,
    /// When it asked: the answer expires by this time, not by when it arrived here.
    pub fetched_unix_ms: u64,
}

/// What the fleet says before a lookup.
#[derive(Debug)]
pub enum Shared {
    /// Another host's answer, within `ipasis.cache_ttl` of its fetch (a peer's "IPASIS rejected
    /// the address" is never taken: this host asks itself).
    Answer(Record, Peer),
    /// Ask IPASIS (this host holds the claim, or the fleet is away or quiet).
    LookUp,
}

/// Answers other hosts got: asked before the API, told every answer this host gets. The stage
/// knows nothing else of the fleet.
pub trait SharedLookups: Send + Sync {
    fn before_lookup(
        &self,
        source: IpNet,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Shared> + Send + '_>>;
    fn after_lookup(
        &self,
        source: IpNet,
        record: Option<Record>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// Why `ipwarden lookup --fresh` got no answer.
#[derive(Debug, Error)]
pub enum LookupError {
    #[error("the daily quota (ipasis.daily_quota) is used up")]
    Quota,
    #[error("lookups are paused: {reason}")]
    Paused { reason: String },
    #[error("the request rate limit is reached; try again in a second")]
    RateLimit,
    #[error(transparent)]
    Api(#[from] EnrichError),
}

/// Shared state of the stage.
pub struct Pipeline {
    pub cfg: IpasisConfig,
    client: IpasisClient,
    queue: Mutex<Queue>,
    inflight: Mutex<HashSet<IpNet>>,
    limits: Mutex<Limits>,
    stats: Mutex<EnrichStats>,
    wake: Notify,
    shared: std::sync::OnceLock<Arc<dyn SharedLookups>>,
    /// Where request durations and outcomes are recorded (set once, with `[metrics]` on).
    instruments: std::sync::OnceLock<crate::instruments::Instruments>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    crate::sync::lock(m)
}

impl Pipeline {
    pub fn new(cfg: IpasisConfig, client: IpasisClient) -> Self {
        Self {
            queue: Mutex::new(Queue::new(cfg.queue_size)),
            inflight: Mutex::new(HashSet::new()),
            limits: Mutex::new(Limits::new(cfg.requests_per_second, cfg.daily_quota)),
            stats: Mutex::new(EnrichStats::default()),
            wake: Notify::new(),
            shared: std::sync::OnceLock::new(),
            instruments: std::sync::OnceLock::new(),
            client,
            cfg,
        }
    }

    /// Queues a heavy hitter unless it is already waiting or in flight.
    pub fn submit(&self, c: Candidate) -> bool {
        if lock(&self.inflight).contains(&c.source) {
            return false;
        }
        let queued = lock(&self.queue).push(c);
        if queued {
            self.wake.notify_one();
        }
        queued
    }

    /// Counts a decision taken from the cache.
    pub fn cache_hit(&self) {
        lock(&self.stats).cache_hits += 1;
    }

    pub fn view(&self) -> PipelineView {
        let now = Instant::now();
        let limits = lock(&self.limits);
        let queue = lock(&self.queue);
        let (used, quota) = limits.usage();
        PipelineView {
            queued: queue.len(),
            in_flight: lock(&self.inflight).len(),
            dropped: queue.dropped,
            requests_today: used,
            daily_quota: quota,
            paused_secs: limits.paused_for(now).map(|d| d.as_secs()),
            pause_reason: limits.pause_reason.clone(),
            stats: lock(&self.stats).clone(),
        }
    }

    /// Applies what a failure says about the API: pauses after 429, 401/403 and 402, logged
    /// once per pause.
    fn note(&self, result: &Result<Record, EnrichError>) {
        let mut stats = lock(&self.stats);
        match result {
            Ok(_) => stats.answers += 1,
            Err(e) => {
                stats.failures += 1;
                stats.last_error = Some(e.to_string());
                let pause = match e {
                    EnrichError::Unauthorized { .. } => Some(self.cfg.unauthorized_cooldown),
                    EnrichError::QuotaExhausted => Some(self.cfg.quota_cooldown),
                    EnrichError::RateLimited { retry_after } => Some(
                        retry_after
                            .unwrap_or(Duration::from_secs(30))
                            .min(self.cfg.quota_cooldown),
                    ),
                    _ => None,
                };
                if let Some(pause) = pause {
                    let mut limits = lock(&self.limits);
                    let now = Instant::now();
                    if limits.paused_for(now).is_none() {
                        tracing::error!(error = %e, pause = ?pause, "IPASIS unusable: pausing lookups");
                    }
                    limits.pause(now, pause, format!("{e}"));
                }
            }
        }
    }

    /// A lookup for `ipwarden lookup`, within the same limits.
    pub async fn lookup_now(&self, addr: IpAddr) -> Result<Record, LookupError> {
        match lock(&self.limits).acquire(Instant::now()) {
            Ok(()) => {}
            Err(Hold::Quota) => return Err(LookupError::Quota),
            Err(Hold::Until(_)) => {
                let reason = lock(&self.limits).pause_reason.clone();
                return Err(match reason {
                    Some(reason) => LookupError::Paused { reason },
                    None => LookupError::RateLimit,
                });
            }
        }
        lock(&self.stats).requests += 1;
        let result = self.request(addr).await;
        self.note(&result);
        Ok(result?)
    }

    /// Records request durations and outcomes in `instruments` (set once, before `run`).
    pub fn instrument(&self, instruments: crate::instruments::Instruments) {
        let _ = self.instruments.set(instruments);
    }

    /// One request to the API, timed and counted for the metrics.
    async fn request(&self, addr: IpAddr) -> Result<Record, EnrichError> {
        let start = Instant::now();
        let result = self.client.lookup(addr).await;
        if let Some(i) = self.instruments.get() {
            i.ipasis_duration.observe(start.elapsed().as_secs_f64());
            i.ipasis_requests
                .get_or_create(&crate::instruments::OutcomeLabel {
                    outcome: outcome(&result),
                })
                .inc();
        }
        result
    }

    /// Shares answers with the fleet (set once, before `run`).
    pub fn share_with(&self, shared: Arc<dyn SharedLookups>) {
        let _ = self.shared.set(shared);
    }

    /// One lookup within the rate limit (waiting for it) and the quota; `None` when the quota is
    /// used up.
    async fn lookup_within_limits(&self, addr: IpAddr) -> Option<Result<Record, EnrichError>> {
        loop {
            let hold = lock(&self.limits).acquire(Instant::now());
            match hold {
                Ok(()) => break,
                Err(Hold::Until(until)) => tokio::time::sleep_until(until.into()).await,
                Err(Hold::Quota) => {
                    lock(&self.stats).last_error =
                        Some("daily quota (ipasis.daily_quota) reached".into());
                    return None;
                }
            }
        }
        lock(&self.stats).requests += 1;
        let result = self.request(addr).await;
        self.note(&result);
        Some(result)
    }

    /// A candidate's answer with the fleet in front: another host's answer, or this host's
    /// lookup shared with the others.
    async fn fleet_lookup(
        self: Arc<Self>,
        shared: Arc<dyn SharedLookups>,
        candidate: Candidate,
        answers: mpsc::Sender<Enriched>,
    ) {
        let source = candidate.source;
        let mut peer = None;
        let result = match shared.before_lookup(source).await {
            Shared::Answer(record, from) => {
                lock(&self.stats).fleet_answers += 1;
                peer = Some(from);
                Ok(record)
            }
            Shared::LookUp => match self.lookup_within_limits(candidate.addr).await {
                Some(result) => {
                    match &result {
                        Ok(r) => shared.after_lookup(source, Some(r.clone())).await,
                        Err(EnrichError::Invalid) => shared.after_lookup(source, None).await,
                        Err(_) => {}
                    }
                    result
                }
                None => {
                    // The quota is used up: try again later, without spinning.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    self.finished(&source);
                    lock(&self.queue).push(candidate);
                    return;
                }
            },
        };
        let enriched = Enriched {
            candidate,
            result,
            peer,
        };
        if answers.send(enriched).await.is_err() {
            self.finished(&source);
        }
    }

    /// The engine has cached the answer for `source`: it may be queued again.
    pub fn finished(&self, source: &IpNet) {
        lock(&self.inflight).remove(source);
    }

    /// The worker: runs until the task is aborted or the receiver is gone.
    pub async fn run(self: Arc<Self>, answers: mpsc::Sender<Enriched>) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency));
        loop {
            let next = lock(&self.queue).pop();
            let Some(candidate) = next else {
                let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
                continue;
            };
            if let Some(shared) = self.shared.get().cloned() {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                lock(&self.inflight).insert(candidate.source);
                let me = self.clone();
                let answers = answers.clone();
                tokio::spawn(async move {
                    me.fleet_lookup(shared, candidate, answers).await;
                    drop(permit);
                });
                continue;
            }
            let hold = lock(&self.limits).acquire(Instant::now());
            match hold {
                Ok(()) => {}
                Err(Hold::Until(until)) => {
                    lock(&self.queue).push(candidate);
                    tokio::time::sleep_until(until.into()).await;
                    continue;
                }
                Err(Hold::Quota) => {
                    lock(&self.queue).push(candidate);
                    lock(&self.stats).last_error =
                        Some("daily quota (ipasis.daily_quota) reached".into());
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            lock(&self.inflight).insert(candidate.source);
            lock(&self.stats).requests += 1;
            let me = self.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let result = me.request(candidate.addr).await;
                drop(permit);
                me.note(&result);
                let source = candidate.source;
                let enriched = Enriched {
                    candidate,
                    result,
                    peer: None,
                };
                if answers.send(enriched).await.is_err() {
                    // The daemon is stopping.
                    me.finished(&source);
                }
            });
        }
    }
}

/// The `outcome` label of one IPASIS request's result.
fn outcome<T>(result: &Result<T, crate::enrich::EnrichError>) -> &'static str {
    use crate::enrich::EnrichError as E;
    match result {
        Ok(_) => "answer",
        Err(E::Invalid) => "invalid",
        Err(E::RateLimited { .. }) => "rate_limited",
        Err(E::Unauthorized { .. }) => "unauthorized",
        Err(E::QuotaExhausted) => "quota",
        Err(E::Timeout(_)) => "timeout",
        Err(_) => "error",
    }
}
