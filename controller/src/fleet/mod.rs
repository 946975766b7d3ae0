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
pub mod keys;
pub mod link;
mod publish;
mod watch;
pub mod wire;

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use async_nats::{ConnectOptions, jetstream};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use link::Link;
pub use publish::Outbox;

use crate::{config::FleetConfig, decision::Decision, engine::SourceEvent};

/// How long one NATS operation may take before it counts as a failure.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// The store key holding the last applied revision of `bucket`.
pub fn checkpoint_key(bucket: &str) -> String {
    format!("fleet-revision:{bucket}")
}

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

/// A request from the fleet task to the daemon: the local decisions to publish.
pub struct SnapshotRequest(pub oneshot::Sender<Vec<Decision>>);

/// Reads a credentials file, refusing one that others can read.
fn private_file(path: &std::path::Path) -> Result<String, FleetError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|source| FleetError::Credentials {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
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
    if let Some(ca) = &cfg.ca_file {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(o)
}

/// Starts the fleet task. `applied` is the revision stored by the last run (`None` for a host
/// joining with an empty store: it takes the bucket's current contents first). Peers' decisions
/// go to `sources`; the task asks the daemon for local decisions through `snapshots`.
pub async fn start(
    cfg: &FleetConfig,
    host: String,
    cache_ttl: Duration,
    applied: Option<u64>,
    sources: mpsc::Sender<SourceEvent>,
    snapshots: mpsc::Sender<SnapshotRequest>,
) -> Result<Fleet, FleetError> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let options = options(cfg, &host, events_tx).await?;
    let bucket = format!("{}-decisions", cfg.bucket_prefix);
    let link = Arc::new(Link::new(crate::wire::FleetView {
        host_id: host.clone(),
        servers: cfg.url.clone(),
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
        ))
    });
    // With retry_on_initial_connect this returns at once; the link comes up in the background.
    let client = options
        .connect(cfg.url.as_slice())
        .await
        .map_err(|e| FleetError::Servers(std::io::Error::other(e)))?;
    let task = tokio::spawn(run(Task {
        cfg: cfg.clone(),
        host,
        cache_ttl,
        client,
        events,
        link: link.clone(),
        changes,
        overflow: outbox.overflow(),
        sources,
        snapshots,
        answers: answers.clone(),
        applied,
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
    host: String,
    cache_ttl: Duration,
    client: async_nats::Client,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    link: Arc<Link>,
    changes: mpsc::Receiver<publish::Change>,
    overflow: Arc<AtomicBool>,
    sources: mpsc::Sender<SourceEvent>,
    snapshots: mpsc::Sender<SnapshotRequest>,
    answers: Option<Arc<answers::SharedAnswers>>,
    applied: Option<u64>,
}

/// Creates a bucket, or opens it when it exists (another host may have made it with another
/// `cache_ttl`: the first one's settings stand).
///
/// The stream is created by hand with the KV conventions (`KV_<bucket>`, subjects
/// `$KV.<bucket>.>`, one message per subject, rollups allowed, deletes denied, direct gets):
/// async-nats' `create_key_value` first reads the account's info, whose shape in NATS 2.9
/// lacks fields the client requires, so it fails against Debian's 2.9.10.
async fn bucket(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
) -> Result<jetstream::kv::Store, async_nats::Error> {
    let config = jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        max_message_size: wire::MAX_VALUE as i32,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    let created = match tokio::time::timeout(OP_TIMEOUT, js.get_or_create_stream(config)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_owned()),
    };
    match tokio::time::timeout(OP_TIMEOUT, js.get_key_value(name.clone())).await {
        Ok(Ok(kv)) => Ok(kv),
        Ok(Err(e)) => Err(format!(
            "opening bucket {name}: {e}{}",
            created
                .map(|c| format!(" (creating it: {c})"))
                .unwrap_or_default()
        )
        .into()),
        Err(_) => Err(format!("opening bucket {name}: timed out").into()),
    }
}

/// The fleet's three buckets.
pub struct Buckets {
    pub decisions: jetstream::kv::Store,
    pub answers: jetstream::kv::Store,
    pub claims: jetstream::kv::Store,
}

async fn buckets(
    js: &jetstream::Context,
    cfg: &FleetConfig,
    cache_ttl: Duration,
) -> Result<Buckets, async_nats::Error> {
    let p = &cfg.bucket_prefix;
    Ok(Buckets {
        decisions: bucket(js, format!("{p}-decisions"), Duration::ZERO).await?,
        answers: bucket(js, format!("{p}-enrich"), cache_ttl).await?,
        // Per-message TTLs need NATS 2.11: claims get a bucket whose age limit is the claim's.
        claims: bucket(js, format!("{p}-claims"), cfg.claim_ttl).await?,
    })
}

/// The task: keeps the buckets open, publishes and watches, and starts both again after the
/// link comes back (an ordered consumer does not survive every reconnect).
async fn run(mut t: Task) {
    let js = jetstream::new(t.client.clone());
    let mut publisher = publish::Publisher::new(t.host.clone(), t.link.clone());
    let mut delay = Duration::from_millis(200);
    loop {
        let b = match buckets(&js, &t.cfg, t.cache_ttl).await {
            Ok(b) => Arc::new(b),
            Err(e) => {
                t.link.failed("opening the buckets", e.as_ref());
                t.link.update(|v| v.connected = false);
                // Keep collecting local changes while waiting.
                publisher.absorb(&mut t.changes);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        delay = Duration::from_millis(200);
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
            r = watch::run(&b.decisions, &t.host, &t.link, &t.sources, &mut t.applied, t.cfg.apply) => r,
            r = publisher.run(&b.decisions, &mut t.changes, &t.overflow, &t.snapshots) => r,
            _ = link_lost(&mut t.events) => Err("the link to NATS was lost".into()),
        };
        if let Some(a) = &t.answers {
            a.set_buckets(None);
        }
        t.link.update(|v| v.connected = false);
        if let Err(e) = outcome {
            t.link.failed("fleet link", e.as_ref());
        }
        publisher.absorb(&mut t.changes);
        // Wait for the client to reconnect (bounded), then start over.
        let _ = tokio::time::timeout(Duration::from_secs(2), connected(&mut t.events)).await;
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
