//! CrowdSec as a decision source: ipwarden is the XDP bouncer CrowdSec does not have.
//!
//! One task pulls the local API's decision stream (`GET /v1/decisions/stream`, header
//! `X-Api-Key`): the whole set once (`startup=true`), then deltas every `poll_interval`, and the
//! whole set again every `resync_interval`, which heals deltas the LAPI lost (1.4.6 timestamps a
//! batch before saving it, so a delta request mid-batch misses part of it for good) and lifts
//! what was deleted while ipwarden was away. Decisions enter the engine as origin `crowdsec`,
//! held per CrowdSec decision type (a ban and a captcha on one value stay apart), with the
//! scenario as reason. Unreachable: what is known stays enforced and the task retries with
//! backoff; `status` shows the link.

pub mod lapi;
pub mod push;

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::{
    config::CrowdsecConfig,
    decision::{ChallengeRate, Decision, Holder, Origin, now_unix_ms},
    engine::SourceEvent,
    net::{V6_SOURCE_PREFIX, host_prefix},
    sources::{Context, Source, SourceError, SourceStatus, Start, Starting, StatusCell},
    wire::CrowdsecView,
};
use lapi::{LapiDecision, StreamAnswer};

/// Longest reason kept from a scenario name.
const MAX_REASON: usize = 256;

/// The shared view.
pub type Link = StatusCell<CrowdsecView>;

/// Why the link could not start.
#[derive(Debug, Error)]
pub enum CrowdsecError {
    #[error("the CrowdSec bouncer key {path}")]
    Key {
        path: std::path::PathBuf,
        #[source]
        source: crate::enrich::key::KeyError,
    },
    #[error("building the HTTP client")]
    Http(#[source] reqwest::Error),
    #[error("the CrowdSec watcher password {path}")]
    Password {
        path: std::path::PathBuf,
        #[source]
        source: crate::enrich::key::KeyError,
    },
}

/// Why a pull failed.
#[derive(Debug, Error)]
enum PullError {
    #[error(
        "the LAPI refused the bouncer key from {key_file} (403): check it with `cscli bouncers list`"
    )]
    Forbidden { key_file: String },
    #[error("the LAPI answered {0}")]
    Status(u16),
    #[error("cannot reach the LAPI: {0}")]
    Transport(String),
    #[error("the LAPI's answer is larger than {0} bytes (crowdsec.max_body)")]
    TooLarge(usize),
    #[error(transparent)]
    Body(#[from] lapi::LapiError),
}

/// The running link.
pub struct Crowdsec {
    pub link: Arc<Link>,
    pub task: tokio::task::JoinHandle<()>,
    /// With `push`: the engine's sink and the pushing task.
    pub push: Option<(push::Pusher, tokio::task::JoinHandle<()>)>,
}

impl Start for CrowdsecConfig {
    /// The bouncer (and, with `push`, the watcher that pushes velocity and IPASIS decisions
    /// as alerts).
    fn start<'a>(&'a self, ctx: &'a mut Context) -> Starting<'a> {
        Box::pin(async move {
            let rate = ChallengeRate {
                pps: ctx.cfg.scoring.challenge_pps,
                burst: ctx.cfg.scoring.challenge_burst,
            };
            let started = start(self, rate, ctx.events.clone())
                .map_err(|e| SourceError::new("the CrowdSec link", e))?;
            let mut tasks = vec![started.task];
            if let Some((sink, task)) = started.push {
                ctx.sinks.push(Box::new(sink));
                tasks.push(task);
                tracing::info!(login = %self.login, "CrowdSec watcher on: velocity and IPASIS decisions are pushed as alerts");
            }
            tracing::info!(lapi = %self.lapi_url, poll = ?self.poll_interval, resync = ?self.resync_interval, "CrowdSec bouncer on");
            let link = started.link;
            Ok(Source::new(
                "crowdsec",
                tasks,
                Arc::new(move || SourceStatus::Crowdsec(link.view())),
            ))
        })
    }
}

/// Starts the task. The key is read (and its mode checked) here, so a bad key file stops the
/// daemon at start; it is sent only in the `X-Api-Key` header.
pub fn start(
    cfg: &CrowdsecConfig,
    challenge: ChallengeRate,
    sources: mpsc::Sender<SourceEvent>,
) -> Result<Crowdsec, CrowdsecError> {
    let key = crate::enrich::ApiKey::from_file(&cfg.api_key_file).map_err(|source| {
        CrowdsecError::Key {
            path: cfg.api_key_file.clone(),
            source,
        }
    })?;
    let mut header =
        reqwest::header::HeaderValue::from_str(key.expose()).map_err(|_| CrowdsecError::Key {
            path: cfg.api_key_file.clone(),
            source: crate::enrich::key::KeyError::Malformed {
                origin: cfg.api_key_file.display().to_string(),
            },
        })?;
    header.set_sensitive(true);
    let http = crate::http::client(crate::http::Options {
        connect_timeout: Duration::from_secs(5),
        timeout: Some(cfg.timeout),
        redirects: crate::http::Redirects::None,
    })
    .map_err(CrowdsecError::Http)?;
    let link = Arc::new(Link::new(CrowdsecView {
        lapi_url: cfg.lapi_url.to_string(),
        ..CrowdsecView::default()
    }));
    let push = match (&cfg.push, &cfg.password_file) {
        (true, Some(path)) => {
            let password = crate::enrich::ApiKey::from_file(path).map_err(|source| {
                CrowdsecError::Password {
                    path: path.clone(),
                    source,
                }
            })?;
            Some(push::start(
                cfg,
                http.clone(),
                password.expose().to_owned(),
                link.clone(),
            ))
        }
        _ => None,
    };
    let task = tokio::spawn(
        Puller {
            cfg: cfg.clone(),
            http,
            key: header,
            challenge,
            link: link.clone(),
            sources,
            held: HashMap::new(),
        }
        .run(),
    );
    Ok(Crowdsec { link, task, push })
}

struct Puller {
    cfg: CrowdsecConfig,
    http: reqwest::Client,
    key: reqwest::header::HeaderValue,
    challenge: ChallengeRate,
    link: Arc<Link>,
    sources: mpsc::Sender<SourceEvent>,
    /// What this source holds in the engine: (prefix, type) → expiry, to measure resyncs.
    held: HashMap<(IpNet, String), Option<u64>>,
}

impl Puller {
    async fn run(mut self) {
        let mut full_due = Instant::now();
        let mut backoff = Duration::from_secs(1);
        loop {
            let full = Instant::now() >= full_due;
            match self.pull(full).await {
                Ok(answer) => {
                    backoff = Duration::from_secs(1);
                    self.link.update(|v| {
                        v.connected = true;
                        v.last_error = None;
                        v.last_pull_unix_ms = Some(now_unix_ms());
                    });
                    let applied = if full {
                        self.apply_full(answer).await
                    } else {
                        self.apply_delta(answer).await
                    };
                    if applied.is_err() {
                        return; // the daemon is stopping
                    }
                    if full {
                        full_due = Instant::now() + self.cfg.resync_interval;
                    }
                    tokio::time::sleep(self.cfg.poll_interval).await;
                }
                Err(e) => {
                    let message = e.to_string();
                    self.link.update(|v| {
                        if v.last_error.as_deref() != Some(message.as_str()) {
                            tracing::error!(error = %message, lapi = %self.cfg.lapi_url, "CrowdSec: pulling decisions failed; what is known stays enforced");
                        }
                        v.connected = false;
                        v.last_error = Some(message);
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    async fn pull(&self, startup: bool) -> Result<StreamAnswer, PullError> {
        let url = format!(
            "{}/v1/decisions/stream?startup={startup}",
            self.cfg.lapi_url.base()
        );
        let transport = |e: reqwest::Error| PullError::Transport(e.without_url().to_string());
        let response = self
            .http
            .get(url)
            .header("X-Api-Key", self.key.clone())
            .send()
            .await
            .map_err(transport)?;
        match response.status().as_u16() {
            200 => {}
            403 => {
                return Err(PullError::Forbidden {
                    key_file: self.cfg.api_key_file.display().to_string(),
                });
            }
            s => return Err(PullError::Status(s)),
        }
        let body = crate::http::body(response, self.cfg.max_body)
            .await
            .map_err(|e| match e {
                crate::http::BodyError::TooLarge => PullError::TooLarge(self.cfg.max_body),
                crate::http::BodyError::Transport(e) => transport(e),
            })?;
        Ok(StreamAnswer::parse(&body)?)
    }

    /// One LAPI decision as a decision here, or why it is not enforced.
    fn decision(&self, d: &LapiDecision, now_ms: u64) -> Result<Decision, Ignored> {
        let (prefix, kind) = self.key_of(d)?;
        let action = self.cfg.types[&kind];
        let Some(ttl) = lapi::go_duration(&d.duration).map_err(|_| Ignored::Duration)? else {
            return Err(Ignored::Expired);
        };
        let mut reason = if d.scenario.is_empty() {
            format!("crowdsec {kind}")
        } else {
            d.scenario.clone()
        };
        if reason.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Ok(Decision::new(
            prefix,
            action,
            Holder::named(Origin::Crowdsec, kind),
            reason,
            now_ms,
            Some(ttl),
        )
        .with_rate(self.challenge))
    }

    /// The prefix and type a LAPI decision is held under, or why it is ignored.
    fn key_of(&self, d: &LapiDecision) -> Result<(IpNet, String), Ignored> {
        if !self
            .cfg
            .scopes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&d.scope))
        {
            return Err(Ignored::Scope(short(&d.scope)));
        }
        if !self.cfg.origins.is_empty() && !self.cfg.origins.iter().any(|o| o == &d.origin) {
            return Err(Ignored::Origin(short(&d.origin)));
        }
        let kind = d.kind.to_ascii_lowercase();
        if !self.cfg.types.contains_key(&kind) {
            return Err(Ignored::Type(short(&d.kind)));
        }
        let prefix = lapi::value_prefix(&d.value).map_err(|_| Ignored::Value)?;
        // CrowdSec's /128s per /64 (the unit sources are judged by), unless told otherwise: a
        // /128 each would fill the LPM trie.
        let prefix = match prefix {
            IpNet::V6(n) if !self.cfg.v6_exact && n.prefix_len() > V6_SOURCE_PREFIX => {
                host_prefix(IpAddr::V6(n.addr()))
            }
            p => p,
        };
        Ok((prefix, kind))
    }

    fn ignored(&self, why: Ignored) {
        self.link
            .update(|v| *v.ignored.entry(why.to_string()).or_default() += 1);
    }

    async fn apply_full(&mut self, answer: StreamAnswer) -> Result<(), Stopping> {
        let now = now_unix_ms();
        let mut decisions = Vec::new();
        let mut held = HashMap::new();
        for d in answer.new.unwrap_or_default() {
            match self.decision(&d, now) {
                Ok(x) => {
                    held.insert((x.prefix, d.kind.to_ascii_lowercase()), x.expires_unix_ms);
                    decisions.push(x);
                }
                Err(why) => self.ignored(why),
            }
        }
        let missing = held.keys().filter(|k| !self.held.contains_key(*k)).count() as u64;
        let stale = self.held.keys().filter(|k| !held.contains_key(*k)).count() as u64;
        let first = self.link.view().resyncs == 0;
        if !first && missing + stale > 0 {
            tracing::warn!(
                missing,
                stale,
                "CrowdSec: the full resync found what deltas had not said; healed"
            );
        }
        tracing::info!(decisions = decisions.len(), "CrowdSec: full decision set");
        self.held = held;
        let n = self.held.len();
        self.link.update(|v| {
            v.resyncs += 1;
            v.last_resync_unix_ms = Some(now);
            if !first {
                v.last_resync_missing = missing;
                v.last_resync_stale = stale;
            }
            v.held = n;
        });
        self.sources
            .send(SourceEvent::ReplaceOrigin {
                origin: Origin::Crowdsec,
                decisions,
            })
            .await
            .map_err(|_| Stopping)
    }

    async fn apply_delta(&mut self, answer: StreamAnswer) -> Result<(), Stopping> {
        let now = now_unix_ms();
        let mut gone: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
        for d in answer.deleted.unwrap_or_default() {
            // The LAPI repeats recent deletions for a while: deleting what is not held is a
            // no-op in the engine.
            if let Ok((prefix, kind)) = self.key_of(&d)
                && self.held.remove(&(prefix, kind.clone())).is_some()
            {
                gone.entry(kind).or_default().push(prefix);
            }
        }
        let mut new = Vec::new();
        for d in answer.new.unwrap_or_default() {
            match self.decision(&d, now) {
                Ok(x) => {
                    self.held
                        .insert((x.prefix, d.kind.to_ascii_lowercase()), x.expires_unix_ms);
                    new.push(x);
                }
                Err(why) => self.ignored(why),
            }
        }
        for (kind, prefixes) in gone {
            self.sources
                .send(SourceEvent::Withdraw {
                    holder: Holder::named(Origin::Crowdsec, kind),
                    prefixes,
                })
                .await
                .map_err(|_| Stopping)?;
        }
        if !new.is_empty() {
            self.sources
                .send(SourceEvent::Propose(new))
                .await
                .map_err(|_| Stopping)?;
        }
        // Expired entries leave the engine by themselves; forget them here too.
        self.held.retain(|_, e| e.is_none_or(|e| e > now));
        let n = self.held.len();
        self.link.update(|v| v.held = n);
        Ok(())
    }
}

/// Why a LAPI decision is not enforced (counted in `status` by this text).
#[derive(Debug, Error)]
enum Ignored {
    #[error("scope {0}")]
    Scope(String),
    #[error("origin {0}")]
    Origin(String),
    #[error("type {0}")]
    Type(String),
    #[error("value")]
    Value,
    #[error("duration")]
    Duration,
    #[error("expired")]
    Expired,
}

/// The engine's channel is closed: the daemon is stopping.
#[derive(Debug, Error)]
#[error("the daemon is stopping")]
pub struct Stopping;

fn short(s: &str) -> String {
    s.chars().take(32).collect()
}
