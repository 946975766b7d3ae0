//! Fleet mode: hosts share decisions and IPASIS answers through NATS JetStream key-value
//! buckets, so that what one edge host learns protects all of them and the fleet asks IPASIS
//! once per address per cache period.
//!
//! One task per daemon ([`start`]) keeps the link: it publishes this host's decisions (of the
//! origins in `fleet.publish`) as keys of `<prefix>-decisions`, watches the bucket and hands
//! peers' decisions to the engine as a decision source (origin `fleet`, within the local
//! allowlist), remembers the last revision applied (in the store) to resume from it, and serves
//! shared answers (`answers`). The engine never waits for it: local changes go through a
//! bounded outbox and are coalesced per key while NATS is away.
//!
//! `keys` encodes keys, `wire` the shared value, `link` the state `status` shows, `publish`
//! and `watch` the two directions, `answers` shared enrichment.

pub mod answers;
mod buckets;
mod hosts;
pub mod keys;
pub mod link;
mod own;
mod publish;
mod watch;
pub mod wire;

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use async_nats::{ConnectOptions, jetstream};
use thiserror::Error;
use tokio::sync::mpsc;

pub use buckets::{Buckets, OP_TIMEOUT, checkpoint_key};
pub use link::Link;
pub use publish::Outbox;

use crate::{
    config::FleetConfig,
    decision::Origin,
    engine::SourceEvent,
    sources::{Context, Source, SourceError, SourceStatus, Start, Starting},
};

/// Why fleet mode could not start.
#[derive(Debug, Error)]
pub enum FleetError {
    #[error("reading the fleet credentials {path}")]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the fleet credentials file {path} is readable by other users (mode {mode:o}); chmod 600 it"
    )]
    Readable { path: std::path::PathBuf, mode: u32 },
    #[error("{path} does not hold an NKey user seed (one line starting with `SU`, 58 characters)")]
    NotASeed { path: std::path::PathBuf },
    #[error("the fleet server list is empty or invalid")]
    Servers(#[source] std::io::Error),
}

/// What the daemon keeps of a started fleet link.
pub struct Fleet {
    pub link: Arc<Link>,
    /// Where the engine puts its changes.
    pub outbox: Outbox,
    /// Shared IPASIS answers, when `fleet.share_enrichment` is on.
    pub answers: Option<Arc<answers::SharedAnswers>>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Reads a credentials file, refusing one that others can read.
fn private_file(path: &std::path::Path) -> Result<String, FleetError> {
    let meta = std::fs::metadata(path).map_err(|source| FleetError::Credentials {
        path: path.to_owned(),
        source,
    })?;
    if let Some(mode) = crate::secret::exposed_mode(&meta) {
        return Err(FleetError::Readable {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| FleetError::Credentials {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.trim().to_owned())
}

/// The connect options: credentials from files (never logged), a short reconnect delay, and a
/// channel of connection events.
async fn options(
    cfg: &FleetConfig,
    host: &str,
    events: mpsc::UnboundedSender<async_nats::Event>,
) -> Result<ConnectOptions, FleetError> {
    let mut o = ConnectOptions::new()
        .name(format!("ipwarden {host}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(OP_TIMEOUT))
        .ping_interval(Duration::from_secs(5))
        // async-nats' default grows to 4 s: a link that comes back is used within a second.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).clamp(100, 1000))
        })
        .event_callback(move |e| {
            let events = events.clone();
            async move {
                let _ = events.send(e);
            }
        });
    if let Some(path) = &cfg.token_file {
        o = o.token(private_file(path)?);
    }
    if let Some(path) = &cfg.creds_file {
        private_file(path)?;
        o = o
            .credentials_file(path)
            .await
            .map_err(|source| FleetError::Credentials {
                path: path.clone(),
                source,
            })?;
    }
    if let Some(path) = &cfg.nkey_file {
        let seed = private_file(path)?;
        // Checked here so that a wrong file is named at start (never echoed: it is a secret).
        let looks_right = seed.len() == 58
            && seed.starts_with("SU")
            && seed
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !looks_right {
            return Err(FleetError::NotASeed { path: path.clone() });
        }
        o = o.nkey(seed);
    }
    if let Some(ca) = &cfg.ca_file {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(o)
}

impl Start for FleetConfig {
    /// Fleet mode: peers' decisions come in as a decision source, local ones go out through a
    /// sink, IPASIS answers are shared.
    fn start<'a>(&'a self, ctx: &'a mut Context) -> Starting<'a> {
        Box::pin(async move {
            let host = self.host();
            let bucket = format!("{}-decisions", self.bucket_prefix);
            let applied = ctx.checkpoints.get(&checkpoint_key(&bucket)).copied();
            let local = Local {
                host: host.clone(),
                machine: hosts::machine_id(),
                cache_ttl: ctx.cfg.ipasis.cache_ttl,
                max_ttl: ctx.cfg.decisions.max_ttl,
            };
            let started = start(
                self,
                local,
                applied,
                ctx.events.clone(),
                ctx.snapshots.clone(),
            )
            .await
            .map_err(|e| SourceError::new("fleet mode", e))?;
            let origins = started.outbox.origins().to_vec();
            ctx.sinks.push(Box::new(started.outbox));
            if let (Some(shared), Some(p)) = (started.answers, &ctx.ipasis) {
                p.share_with(shared);
            }
            tracing::info!(host, servers = ?self.url, bucket, resume_after = ?applied, publish = ?origins, apply = self.apply, "fleet mode on");
            let link = started.link;
            Ok(Source::new(
                "fleet",
                vec![started.task],
                Arc::new(move || SourceStatus::Fleet(link.view())),
            ))
        })
    }
}

/// What this host brings to the link.
#[derive(Clone, Debug)]
pub struct Local {
    /// Its id in the fleet (`fleet.host_id`).
    pub host: String,
    /// The machine it runs on: an id held by another machine is refused (see `hosts`).
    pub machine: String,
    /// How long an IPASIS answer lives (`ipasis.cache_ttl`).
    pub cache_ttl: Duration,
    /// The longest a peer's decision lasts here (`decisions.max_ttl`).
    pub max_ttl: Duration,
}

/// Starts the fleet task. `applied` is the revision stored by the last run (`None` for a host
/// joining with an empty store: it takes the bucket's current contents first). Peers' decisions
/// go to `sources`; the task asks the daemon for local decisions through `snapshots`.
pub async fn start(
    cfg: &FleetConfig,
    local: Local,
    applied: Option<u64>,
    sources: mpsc::Sender<SourceEvent>,
    snapshots: mpsc::Sender<crate::sources::SnapshotRequest>,
) -> Result<Fleet, FleetError> {
    let host = local.host.clone();
    let (events_tx, events) = mpsc::unbounded_channel();
    let options = options(cfg, &host, events_tx).await?;
    let bucket = format!("{}-decisions", cfg.bucket_prefix);
    let link = Arc::new(Link::new(crate::wire::FleetView {
        host_id: host.clone(),
        servers: cfg.url.iter().map(ToString::to_string).collect(),
        bucket: bucket.clone(),
        applied_revision: applied.unwrap_or(0),
        ..crate::wire::FleetView::default()
    }));
    let (outbox, changes) = Outbox::new(cfg.publish.clone(), Arc::new(AtomicBool::new(false)));
    let answers = cfg.share_enrichment.then(|| {
        Arc::new(answers::SharedAnswers::new(
            host.clone(),
            link.clone(),
            cfg.claim_wait,
            local.cache_ttl,
        ))
    });
    // With retry_on_initial_connect this returns at once; the link comes up in the background.
    let client = options
        .connect(
            cfg.url
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .as_slice(),
        )
        .await
        .map_err(|e| FleetError::Servers(std::io::Error::other(e)))?;
    let task = tokio::spawn(run(Task {
        cfg: cfg.clone(),
        local,
        client,
        events,
        link: link.clone(),
        changes,
        overflow: outbox.overflow(),
        sources,
        snapshots,
        answers: answers.clone(),
        applied,
        origins: outbox.origins().to_vec(),
    }));
    Ok(Fleet {
        link,
        outbox,
        answers,
        task,
    })
}

struct Task {
    cfg: FleetConfig,
    local: Local,
    client: async_nats::Client,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    link: Arc<Link>,
    changes: mpsc::Receiver<publish::Change>,
    overflow: Arc<AtomicBool>,
    sources: mpsc::Sender<SourceEvent>,
    snapshots: mpsc::Sender<crate::sources::SnapshotRequest>,
    answers: Option<Arc<answers::SharedAnswers>>,
    applied: Option<u64>,
    /// The origins this host publishes.
    origins: Vec<Origin>,
}

/// The task: keeps the buckets open, publishes and watches, and starts both again after the
/// link comes back (an ordered consumer does not survive every reconnect).
async fn run(mut t: Task) {
    let js = jetstream::new(t.client.clone());
    let mut publisher = publish::Publisher::new(
        t.local.host.clone(),
        t.origins.clone(),
        t.link.clone(),
        t.local.max_ttl,
    );
    let mut delay = Duration::from_millis(200);
    loop {
        let b = match buckets::open(&js, &t.cfg, t.local.cache_ttl).await {
            Ok(b) => Arc::new(b),
            Err(e) => {
                link::failed(&t.link, "opening the buckets", e.as_ref());
                t.link.update(|v| v.connected = false);
                // Keep collecting local changes while waiting.
                publisher.absorb(&mut t.changes);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        // Nothing is published, applied or shared under an id another machine holds.
        let me = hosts::Holder {
            host: t.local.host.clone(),
            machine: t.local.machine.clone(),
        };
        let wait = match hosts::claim(&b.hosts, &me).await {
            Ok(Ok(())) => None,
            Ok(Err(held)) => {
                link::failed(&t.link, "fleet host id", &held);
                Some(hosts::REFRESH)
            }
            Err(e) => {
                link::failed(&t.link, "claiming the host id", e.as_ref());
                Some(delay)
            }
        };
        if let Some(wait) = wait {
            t.link.update(|v| v.connected = false);
            publisher.absorb(&mut t.changes);
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            continue;
        }
        delay = Duration::from_millis(200);
        link::heard(&t.link);
        t.link.update(|v| {
            v.connected = true;
            v.last_error = None;
        });
        tracing::info!(bucket = %t.link.view().bucket, "fleet link up");
        if let Some(a) = &t.answers {
            a.set_buckets(Some(b.clone()));
        }
        // Everything this host holds is published again: changes made while the link was
        // down (or before a restart) reach the others, stale keys of ours are deleted.
        publisher.reconcile(&b.decisions, &t.snapshots).await;
        let outcome = tokio::select! {
            r = link::heartbeat(&t.client, &t.link) => r,
            r = hosts::keep(&b.hosts, &me) => r,
            r = watch::run(&b.decisions, &t.local.host, &t.link, &t.sources, &mut t.applied, t.cfg.apply, t.local.max_ttl) => r,
            r = publisher.run(&b.decisions, &mut t.changes, &t.overflow, &t.snapshots) => r,
            _ = link_lost(&mut t.events) => Err("the link to NATS was lost".into()),
        };
        if let Some(a) = &t.answers {
            a.set_buckets(None);
        }
        t.link.update(|v| v.connected = false);
        if let Err(e) = outcome {
            link::failed(&t.link, "fleet link", e.as_ref());
        }
        publisher.absorb(&mut t.changes);
        // Wait for the client to reconnect (bounded), then start over.
        if t.client.connection_state() != async_nats::connection::State::Connected {
            let _ = tokio::time::timeout(Duration::from_secs(2), connected(&mut t.events)).await;
        }
    }
}

/// Resolves when the client reports a disconnection.
async fn link_lost(events: &mut mpsc::UnboundedReceiver<async_nats::Event>) {
    while let Some(e) = events.recv().await {
        if matches!(
            e,
            async_nats::Event::Disconnected | async_nats::Event::Closed
        ) {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Resolves when the client reports a connection.
async fn connected(events: &mut mpsc::UnboundedReceiver<async_nats::Event>) {
    while let Some(e) = events.recv().await {
        if matches!(e, async_nats::Event::Connected) {
            return;
        }
    }
}
