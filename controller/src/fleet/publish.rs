//! This host's decisions into the bucket. The engine hands every change to the [`Outbox`]
//! without waiting (a bounded channel; when it is full a flag asks for a full reconcile
//! instead); the publisher coalesces changes per key, so a link that is down for an hour costs
//! one entry per decision, not one per change, and publishes them concurrently when it can.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::kv::Store;
use futures_util::{StreamExt as _, stream::FuturesUnordered};
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use super::{buckets::OP_TIMEOUT, keys, link::Link, own, wire::Shared};

/// How often an idle publisher lists this host's keys for old deletion markers.
const TIDY: Duration = Duration::from_secs(3600);
use crate::{
    decision::{Decision, Ended, Holder, Origin},
    engine::Sink,
    sources::SnapshotRequest,
};

/// How many changes the engine may queue before it falls back to a full reconcile.
const OUTBOX: usize = 65_536;

/// Puts in flight at once.
const IN_FLIGHT: usize = 256;

/// One local change.
#[derive(Debug)]
pub enum Change {
    Put(Decision),
    Gone { prefix: IpNet, holder: Holder },
}

/// The engine's side: never blocks.
pub struct Outbox {
    tx: mpsc::Sender<Change>,
    origins: Vec<Origin>,
    overflow: Arc<AtomicBool>,
}

impl Outbox {
    pub fn new(origins: Vec<Origin>, overflow: Arc<AtomicBool>) -> (Self, mpsc::Receiver<Change>) {
        let (tx, rx) = mpsc::channel(OUTBOX);
        let origins = origins
            .into_iter()
            .filter(|o| !matches!(o, Origin::Fleet | Origin::Crowdsec))
            .collect();
        (
            Self {
                tx,
                origins,
                overflow,
            },
            rx,
        )
    }

    pub fn overflow(&self) -> Arc<AtomicBool> {
        self.overflow.clone()
    }

    /// The origins this host shares.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    fn send(&self, change: Change) {
        if self.tx.try_send(change).is_err() {
            self.overflow.store(true, Ordering::Relaxed);
        }
    }
}

impl Sink for Outbox {
    fn changed(&mut self, put: &[&Decision], ended: &[Ended]) {
        for d in put.iter().filter(|d| shared(&self.origins, d)) {
            self.send(Change::Put((*d).clone()));
        }
        for e in ended
            .iter()
            .filter(|e| self.origins.contains(&e.decision.origin))
        {
            self.send(Change::Gone {
                prefix: e.decision.prefix,
                holder: e.decision.holder(),
            });
        }
    }
}

/// Whether `d` is this host's to share: an origin it publishes, and not resting on a peer's
/// IPASIS answer (a peer's word is never re-published as this host's own).
fn shared(origins: &[Origin], d: &Decision) -> bool {
    origins.contains(&d.origin) && d.answer_from.is_none()
}

/// The task's side.
pub struct Publisher {
    host: String,
    /// The origins this host shares (what a snapshot holds).
    origins: Vec<Origin>,
    link: Arc<Link>,
    /// Key → value to put (`None`: delete).
    pending: BTreeMap<String, Option<Vec<u8>>>,
    /// `decisions.max_ttl`: how long a deletion marker of ours can matter to a peer.
    max_ttl: Duration,
    /// Old deletion markers of ours found by the last listing, to purge.
    markers: Vec<String>,
    /// When this host's keys were last listed.
    listed_at: tokio::time::Instant,
}

impl Publisher {
    pub fn new(host: String, origins: Vec<Origin>, link: Arc<Link>, max_ttl: Duration) -> Self {
        Self {
            host,
            origins,
            link,
            pending: BTreeMap::new(),
            max_ttl,
            markers: Vec::new(),
            listed_at: tokio::time::Instant::now(),
        }
    }

    fn note(&mut self, change: Change) {
        match change {
            Change::Put(d) => {
                let key = keys::decision_key(&self.host, &d.holder(), &d.prefix);
                let value = serde_json::to_vec(&Shared::of(&self.host, &d)).expect("serializes");
                self.pending.insert(key, Some(value));
            }
            Change::Gone { prefix, holder } => {
                let key = keys::decision_key(&self.host, &holder, &prefix);
                self.pending.insert(key, None);
            }
        }
    }

    /// Takes what the engine queued, without waiting.
    pub fn absorb(&mut self, rx: &mut mpsc::Receiver<Change>) {
        while let Ok(c) = rx.try_recv() {
            self.note(c);
        }
        let n = self.pending.len();
        self.link.update(|v| v.pending_publish = n);
    }

    /// Makes this host's keys equal to its decisions: every one put again, keys of ours it no
    /// longer holds deleted.
    pub async fn reconcile(&mut self, kv: &Store, snapshots: &mpsc::Sender<SnapshotRequest>) {
        let (reply, rx) = oneshot::channel();
        let request = SnapshotRequest {
            origins: self.origins.clone(),
            reply,
        };
        if snapshots.send(request).await.is_err() {
            return;
        }
        let Ok(Ok(decisions)) = tokio::time::timeout(Duration::from_secs(30), rx).await else {
            tracing::warn!("fleet: no snapshot of local decisions to publish");
            return;
        };
        let mut wanted = std::collections::BTreeSet::new();
        let origins = self.origins.clone();
        for d in decisions.into_iter().filter(|d| shared(&origins, d)) {
            wanted.insert(keys::decision_key(&self.host, &d.holder(), &d.prefix));
            self.note(Change::Put(d));
        }
        let mine = format!("{}.", keys::token(&self.host));
        self.listed_at = tokio::time::Instant::now();
        match tokio::time::timeout(OP_TIMEOUT * 10, own::list(kv, &mine, self.max_ttl)).await {
            Ok(Ok(own)) => {
                for k in own.live {
                    if !wanted.contains(&k) {
                        self.pending.entry(k).or_insert(None);
                    }
                }
                self.markers = own.old_markers;
            }
            Ok(Err(e)) => super::link::failed(&self.link, "listing this host's keys", e.as_ref()),
            Err(_) => tracing::warn!("fleet: listing this host's keys timed out"),
        }
        let n = self.pending.len();
        self.link.update(|v| v.pending_publish = n);
    }

    /// When idle: purges old deletion markers of ours, and lists our keys again every
    /// [`TIDY`] to find more. Whether it did anything. A failure is logged and tried again at
    /// the next listing: it is housekeeping (a server whose permissions deny this host purges
    /// refuses it), never a reason to drop the link.
    async fn tidy(&mut self, kv: &Store) -> bool {
        match self.try_tidy(kv).await {
            Ok(did) => did,
            Err(e) => {
                self.markers.clear();
                tracing::warn!(
                    error = %crate::engine::error_chain(e.as_ref()),
                    "fleet: purging old deletion markers failed; trying again in an hour"
                );
                false
            }
        }
    }

    async fn try_tidy(&mut self, kv: &Store) -> Result<bool, async_nats::Error> {
        if self.markers.is_empty() {
            if self.listed_at.elapsed() < TIDY {
                return Ok(false);
            }
            self.listed_at = tokio::time::Instant::now();
            let mine = format!("{}.", keys::token(&self.host));
            let own = tokio::time::timeout(OP_TIMEOUT * 10, own::list(kv, &mine, self.max_ttl))
                .await
                .map_err(|_| "listing this host's keys timed out")??;
            self.markers = own.old_markers;
            return Ok(!self.markers.is_empty());
        }
        let n = own::purge(kv, &self.markers).await?;
        self.markers.clear();
        tracing::info!(
            markers = n,
            "fleet: purged deletion markers older than decisions.max_ttl"
        );
        Ok(true)
    }

    /// Publishes until the link fails (then returns the error, keeping what was not published).
    pub async fn run(
        &mut self,
        kv: &Store,
        rx: &mut mpsc::Receiver<Change>,
        overflow: &AtomicBool,
        snapshots: &mpsc::Sender<SnapshotRequest>,
    ) -> Result<(), async_nats::Error> {
        loop {
            if overflow.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    "fleet: the outbox overflowed; publishing every local decision again"
                );
                self.reconcile(kv, snapshots).await;
            }
            self.absorb(rx);
            if self.pending.is_empty() && self.tidy(kv).await {
                continue;
            }
            if self.pending.is_empty() {
                tokio::select! {
                    c = rx.recv() => match c {
                        Some(c) => self.note(c),
                        None => return Ok(()),
                    },
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let batch: Vec<(String, Option<Vec<u8>>)> = (0..IN_FLIGHT)
                .map_while(|_| self.pending.pop_first())
                .collect();
            let mut inflight: FuturesUnordered<_> = batch
                .into_iter()
                .map(|(key, value)| async move {
                    let r = match &value {
                        Some(v) => tokio::time::timeout(OP_TIMEOUT, kv.put(&key, v.clone().into()))
                            .await
                            .map(|r| r.map(drop).map_err(async_nats::Error::from)),
                        None => tokio::time::timeout(OP_TIMEOUT, kv.delete(&key))
                            .await
                            .map(|r| r.map_err(async_nats::Error::from)),
                    };
                    (key, value, r)
                })
                .collect();
            let mut failure = None;
            let mut done = 0u64;
            while let Some((key, value, r)) = inflight.next().await {
                match r {
                    Ok(Ok(())) => done += 1,
                    Ok(Err(e)) => {
                        // A newer change to the key wins over the failed one.
                        self.pending.entry(key).or_insert(value);
                        failure = Some(e);
                    }
                    Err(_) => {
                        self.pending.entry(key).or_insert(value);
                        failure = Some("publishing timed out".into());
                    }
                }
            }
            let n = self.pending.len();
            self.link.update(|v| {
                v.published += done;
                v.pending_publish = n;
            });
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }
}
