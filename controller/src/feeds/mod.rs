//! Threat feeds as decision sources: Tor exit lists, Spamhaus DROP, cloud providers' ranges,
//! any CIDR list. Each `[[feeds]]` entry is fetched every `refresh` (conditional requests for
//! HTTP, a file read for `file:`), parsed (`formats`), and either blocked (the feed's whole set,
//! held as `feed:<name>`, renewed at each refresh; a prefix that leaves the feed is lifted) or
//! kept as tags (`hosting`, `tor`, `proxy`) the scorer uses with no API call.
//!
//! The last good copy is kept in `<state_dir>/feeds/`: a failed fetch keeps it in force (and
//! `status` shows its age), a restart starts from it. A feed that shrinks by more than
//! `max_shrink` at once is held: the old set stays in force until the same shrink is seen at
//! `SHRINK_CONFIRMATIONS` refreshes in a row (logged each time), so a truncated download never
//! unblocks the world.

pub mod formats;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use crate::config::Format;

use crate::{
    config::{FeedConfig, FeedUse},
    decision::{Decision, Holder, Origin, now_unix_ms},
    engine::SourceEvent,
    sources::{Context, Source, SourceError, SourceStatus, Start, Starting, StatusCell},
    wire::FeedView,
};

/// How many refreshes in a row must show a shrink beyond `max_shrink` before it applies.
pub const SHRINK_CONFIRMATIONS: u32 = 3;

/// The last good copy's metadata, beside its body.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Meta {
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_unix_ms: u64,
}

impl Start for FeedConfig {
    /// One feed: a task that fetches it every `refresh` and replaces its set.
    fn start<'a>(&'a self, ctx: &'a mut Context) -> Starting<'a> {
        Box::pin(async move { self.spawn(&ctx.cfg.daemon.state_dir, ctx.events.clone()) })
    }
}

impl FeedConfig {
    /// Starts the feed's task (inside a tokio runtime): what [`Start::start`] does, and what a
    /// reload that adds or changes the feed does.
    pub fn spawn(
        &self,
        state_dir: &Path,
        events: mpsc::Sender<SourceEvent>,
    ) -> Result<Source, SourceError> {
        let view = Arc::new(StatusCell::new(FeedView {
            name: self.name.clone(),
            url: self.url.to_string(),
            use_: match self.use_ {
                FeedUse::Block => "block".into(),
                FeedUse::Tag => self.tag.map(|t| t.name()).unwrap_or("tag").into(),
            },
            ..FeedView::default()
        }));
        let client = crate::http::client(crate::http::Options {
            connect_timeout: self.timeout,
            timeout: Some(self.timeout),
            redirects: crate::http::Redirects::Follow(MAX_REDIRECTS),
        })
        .map_err(|e| SourceError::new(source_name(&self.name), e))?;
        let task = tokio::spawn(
            Feed {
                cfg: self.clone(),
                dir: copies(state_dir),
                view: view.clone(),
                client,
                sources: events,
                in_force: None,
                shrinks: 0,
            }
            .run(),
        );
        Ok(Source::new(
            source_name(&self.name),
            vec![task],
            Arc::new(move || SourceStatus::Feed(view.view())),
        ))
    }
}

/// The running source's name of feed `name`.
pub fn source_name(name: &str) -> String {
    format!("feed {name}")
}

/// Where the last good copies live.
fn copies(state_dir: &Path) -> PathBuf {
    state_dir.join("feeds")
}

/// The last good copy of feed `name` in `dir`: its body and its metadata.
fn copy_files(dir: &Path, name: &str) -> [PathBuf; 2] {
    [
        dir.join(format!("{name}.body")),
        dir.join(format!("{name}.meta.json")),
    ]
}

/// Removes feed `name`'s last good copy: a feed whose URL or format changed must not start from
/// (or send the validators of) another list.
pub fn forget_copy(state_dir: &Path, name: &str) {
    for path in copy_files(&copies(state_dir), name) {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(feed = name, path = %path.display(), error = %e, "removing the feed's old copy");
        }
    }
}

/// Redirects a feed may take (never from https to http).
const MAX_REDIRECTS: usize = 5;

/// The engine's channel is closed: the daemon is stopping.
#[derive(Debug, thiserror::Error)]
#[error("the daemon is stopping")]
struct Stopping;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("reading {0}: {1}")]
    File(String, std::io::Error),
    #[error("{0}")]
    Http(String),
    #[error("the feed answered {0}")]
    Status(u16),
    #[error("the feed is larger than {0} bytes (max_body)")]
    TooLarge(usize),
    #[error("the feed is not UTF-8 text")]
    Text,
}

enum Fetched {
    New(String, Meta),
    Unchanged,
}

struct Feed {
    cfg: FeedConfig,
    dir: PathBuf,
    view: Arc<StatusCell<FeedView>>,
    client: reqwest::Client,
    sources: mpsc::Sender<SourceEvent>,
    /// The set in force (what the engine holds or tags).
    in_force: Option<Vec<IpNet>>,
    shrinks: u32,
}

impl Feed {
    fn body_path(&self) -> PathBuf {
        copy_files(&self.dir, &self.cfg.name)[0].clone()
    }

    fn meta_path(&self) -> PathBuf {
        copy_files(&self.dir, &self.cfg.name)[1].clone()
    }

    fn stored(&self) -> Option<(String, Meta)> {
        let body = std::fs::read_to_string(self.body_path()).ok()?;
        let meta = std::fs::read(self.meta_path())
            .ok()
            .and_then(|m| serde_json::from_slice(&m).ok())
            .unwrap_or_default();
        Some((body, meta))
    }

    fn store(&self, body: &str, meta: &Meta) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.body_path().with_extension("body.tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, self.body_path())?;
        std::fs::write(
            self.meta_path(),
            serde_json::to_vec(meta).expect("meta serializes"),
        )
    }

    async fn run(mut self) {
        // A restart starts from the last good copy.
        if let Some((body, meta)) = self.stored()
            && self.apply(&body, meta.fetched_unix_ms, true).await.is_err()
        {
            return;
        }
        loop {
            let now = now_unix_ms();
            self.view.update(|v| v.last_attempt_unix_ms = Some(now));
            let meta = self.stored().map(|(_, m)| m).unwrap_or_default();
            match self.fetch(&meta).await {
                Ok(Fetched::New(body, meta)) => {
                    match self.apply(&body, meta.fetched_unix_ms, false).await {
                        Err(Stopping) => return,
                        // In force: it is the last good copy now. A held shrink is not, so the
                        // next fetch sees it again (and counts a confirmation).
                        Ok(true) => {
                            if let Err(e) = self.store(&body, &meta) {
                                tracing::warn!(feed = self.cfg.name, error = %e, "keeping the feed's copy on disk failed");
                            }
                        }
                        Ok(false) => {}
                    }
                    self.view.update(|v| v.last_error = None);
                }
                Ok(Fetched::Unchanged) => {
                    // Renew the TTLs of what is in force.
                    if let Some(set) = self.in_force.clone()
                        && self.send(set).await.is_err()
                    {
                        return;
                    }
                    self.view.update(|v| v.last_error = None);
                }
                Err(e) => {
                    let message = e.to_string();
                    let age = meta.fetched_unix_ms;
                    self.view.update(|v| {
                        if v.last_error.as_deref() != Some(message.as_str()) {
                            tracing::warn!(feed = self.cfg.name, error = %message, last_good_unix_ms = age, "feed fetch failed; the last good copy stays in force");
                        }
                        v.last_error = Some(message);
                    });
                }
            }
            tokio::time::sleep(self.cfg.refresh).await;
        }
    }

    async fn fetch(&self, meta: &Meta) -> Result<Fetched, FetchError> {
        let url = &self.cfg.url;
        if url.scheme() == "file" {
            let path = url.url().path();
            use std::io::Read as _;
            let mut body = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(self.cfg.max_body as u64 + 1).read_to_end(&mut body))
                .map_err(|e| FetchError::File(path.to_owned(), e))?;
            if body.len() > self.cfg.max_body {
                return Err(FetchError::TooLarge(self.cfg.max_body));
            }
            let body = String::from_utf8(body).map_err(|_| FetchError::Text)?;
            if self.stored().is_some_and(|(old, _)| old == body) {
                return Ok(Fetched::Unchanged);
            }
            return Ok(Fetched::New(
                body,
                Meta {
                    fetched_unix_ms: now_unix_ms(),
                    ..Meta::default()
                },
            ));
        }
        let mut req = self.client.get(url.url().clone());
        if let Some(etag) = &meta.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &meta.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
        match resp.status().as_u16() {
            304 => return Ok(Fetched::Unchanged),
            200 => {}
            s => return Err(FetchError::Status(s)),
        }
        let header = |h| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let meta = Meta {
            etag: header(reqwest::header::ETAG),
            last_modified: header(reqwest::header::LAST_MODIFIED),
            fetched_unix_ms: now_unix_ms(),
        };
        let body = crate::http::body(resp, self.cfg.max_body)
            .await
            .map_err(|e| match e {
                crate::http::BodyError::TooLarge => FetchError::TooLarge(self.cfg.max_body),
                crate::http::BodyError::Transport(e) => {
                    FetchError::Http(e.without_url().to_string())
                }
            })?;
        let body = String::from_utf8(body).map_err(|_| FetchError::Text)?;
        Ok(Fetched::New(body, meta))
    }

    /// Parses a body and puts it in force, unless it shrinks too much at once: whether it is in
    /// force (`Err`: the daemon is stopping).
    async fn apply(&mut self, body: &str, fetched: u64, restored: bool) -> Result<bool, Stopping> {
        let parsed = formats::parse(self.cfg.format, body);
        for b in &parsed.bad {
            tracing::warn!(feed = self.cfg.name, line = b.line, "skipped: {}", b.why);
        }
        if parsed.bad_count > parsed.bad.len() {
            tracing::warn!(
                feed = self.cfg.name,
                more = parsed.bad_count - parsed.bad.len(),
                "more lines skipped"
            );
        }
        let new = parsed.prefixes;
        if let Some(old) = &self.in_force
            && !restored
            && (new.len() as f64) < old.len() as f64 * (1.0 - self.cfg.max_shrink)
        {
            self.shrinks += 1;
            let why = format!(
                "shrank from {} to {} prefixes ({} of {SHRINK_CONFIRMATIONS} refreshes); the old set stays in force",
                old.len(),
                new.len(),
                self.shrinks
            );
            tracing::warn!(feed = self.cfg.name, "{why}");
            if self.shrinks < SHRINK_CONFIRMATIONS {
                self.view.update(|v| v.held = Some(why));
                return self.send(old.clone()).await.map(|()| false);
            }
            tracing::warn!(feed = self.cfg.name, "the shrink is confirmed; applying it");
        }
        self.shrinks = 0;
        let (n, bad) = (new.len(), parsed.bad_count);
        self.view.update(|v| {
            v.prefixes = n;
            v.bad_lines = bad;
            v.fetched_unix_ms = Some(fetched);
            v.held = None;
        });
        tracing::info!(
            feed = self.cfg.name,
            prefixes = n,
            skipped = bad,
            "feed in force"
        );
        self.in_force = Some(new.clone());
        self.send(new).await.map(|()| true)
    }

    async fn send(&self, set: Vec<IpNet>) -> Result<(), Stopping> {
        let holder = Holder::named(Origin::Feed, self.cfg.name.clone());
        let event = match (self.cfg.use_, self.cfg.tag) {
            (FeedUse::Tag, Some(tag)) => SourceEvent::Tags {
                feed: self.cfg.name.clone(),
                tag,
                prefixes: set,
            },
            _ => {
                let now = now_unix_ms();
                let reason = format!("feed {}", self.cfg.name);
                SourceEvent::Replace {
                    holder: holder.clone(),
                    decisions: set
                        .into_iter()
                        .map(|p| {
                            Decision::block(
                                p,
                                holder.clone(),
                                reason.clone(),
                                now,
                                Some(self.cfg.ttl()),
                            )
                        })
                        .collect(),
                }
            }
        };
        self.sources.send(event).await.map_err(|_| Stopping)
    }
}
