//! `[[notify]]` hooks: each new decision of the chosen origins and actions is POSTed as JSON to
//! a URL, so that a chat or a ticket system hears of it. The engine hands decisions over
//! through a bounded queue ([`Hook`] is an engine sink) and never waits; a full queue drops the
//! notification and counts it. A failed post is retried with doubling waits, then counted and
//! logged (with the URL's host only: its path may be a secret of the receiver's).

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ipnet::IpNet;
use serde_json::json;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    config::NotifyConfig,
    decision::{Action, Decision, Ended, Origin},
    engine::Sink,
    enrich::ApiKey,
};

/// Decisions remembered as already told (so that a renewal is not told again), at most; past
/// it the memory starts afresh (a renewal may then be told once more).
const REMEMBERED: usize = 100_000;

/// First wait before a retry; doubled at each.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// What a hook has done, for `status`.
#[derive(Debug, Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// A running hook: its name, the host it posts to, its counts and its task.
pub struct Running {
    pub name: String,
    pub host: String,
    pub counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl Running {
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a hook cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("notify hook {name}: token_file")]
    Token {
        name: String,
        #[source]
        source: crate::enrich::KeyError,
    },
    #[error("notify hook {name}: HTTP client")]
    Client {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}

/// The engine's side.
pub struct Hook {
    origins: Vec<Origin>,
    actions: Vec<Action>,
    told: HashSet<(IpNet, Action, Origin, Option<crate::decision::Text>)>,
    tx: mpsc::Sender<Decision>,
    counts: Arc<Counts>,
}

impl Sink for Hook {
    fn changed(&mut self, put: &[&Decision], ended: &[Ended]) {
        for e in ended {
            let d = &e.decision;
            self.told
                .remove(&(d.prefix, d.action, d.origin, d.source.clone()));
        }
        for d in put {
            if !self.origins.contains(&d.origin) || !self.actions.contains(&d.action) {
                continue;
            }
            if self.told.len() >= REMEMBERED {
                self.told.clear();
            }
            if !self
                .told
                .insert((d.prefix, d.action, d.origin, d.source.clone()))
            {
                continue; // a renewal or an extension: told already
            }
            if self.tx.try_send((*d).clone()).is_err() {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts a hook's posting task (inside a tokio runtime); its sink goes to the engine.
pub fn start(cfg: &NotifyConfig, host_name: &str) -> Result<(Hook, Running), HookError> {
    let token = cfg
        .token_file
        .as_deref()
        .map(ApiKey::from_file)
        .transpose()
        .map_err(|source| HookError::Token {
            name: cfg.name.clone(),
            source,
        })?;
    let client = crate::http::client(crate::http::Options {
        connect_timeout: cfg.timeout,
        timeout: Some(cfg.timeout),
        redirects: crate::http::Redirects::None,
    })
    .map_err(|source| HookError::Client {
        name: cfg.name.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel(cfg.queue);
    let counts = Arc::new(Counts::default());
    let host = cfg.url.url().host_str().unwrap_or("").to_owned();
    let poster = Poster {
        cfg: cfg.clone(),
        host: host.clone(),
        host_name: host_name.to_owned(),
        token,
        client,
        counts: counts.clone(),
    };
    let task = tokio::spawn(poster.run(rx));
    Ok((
        Hook {
            origins: cfg.origins.clone(),
            actions: cfg.actions.clone(),
            told: HashSet::new(),
            tx,
            counts: counts.clone(),
        },
        Running {
            name: cfg.name.clone(),
            host,
            counts,
            task,
        },
    ))
}

/// The body posted for one decision: the decision as `list --json` shows it, with the event
/// and the host that decided.
pub fn body(d: &Decision, host_name: &str) -> serde_json::Value {
    json!({
        "event": "decision",
        "host": host_name,
        "decision": d,
    })
}

struct Poster {
    cfg: NotifyConfig,
    host: String,
    host_name: String,
    token: Option<ApiKey>,
    client: reqwest::Client,
    counts: Arc<Counts>,
}

impl Poster {
    async fn run(self, mut rx: mpsc::Receiver<Decision>) {
        while let Some(d) = rx.recv().await {
            let body = body(&d, &self.host_name);
            let mut wait = FIRST_RETRY;
            let mut attempt = 0;
            loop {
                match self.post(&body).await {
                    Ok(()) => {
                        self.counts.sent.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(why) if attempt < self.cfg.retries => {
                        tracing::debug!(
                            hook = self.cfg.name,
                            host = self.host,
                            error = why,
                            "notify post failed; retrying"
                        );
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(30));
                    }
                    Err(why) => {
                        self.counts.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            hook = self.cfg.name,
                            host = self.host,
                            prefix = %d.prefix,
                            error = why,
                            attempts = attempt + 1,
                            "notify hook failed; the notification is dropped"
                        );
                        *crate::sync::lock(&self.counts.last_error) = Some(why);
                        break;
                    }
                }
            }
        }
    }

    /// One post; the error names no part of the URL but its host.
    async fn post(&self, body: &serde_json::Value) -> Result<(), String> {
        let mut req = self
            .client
            .post(self.cfg.url.url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{} answered {}", self.host, r.status().as_u16())),
            // reqwest's errors carry the URL: not shown.
            Err(e) if e.is_timeout() => Err(format!("{} timed out", self.host)),
            Err(e) if e.is_connect() => Err(format!("cannot connect to {}", self.host)),
            Err(_) => Err(format!("posting to {} failed", self.host)),
        }
    }
}
