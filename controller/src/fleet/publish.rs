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

use async_nats::jetstream::kv::{Operation, Store};
use futures_util::{StreamExt as _, TryStreamExt as _, stream::FuturesUnordered};
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use super::{buckets::OP_TIMEOUT, keys, link::Link, wire::Shared};
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
    fn changed(&mut self, put: &[Decision], ended: &[Ended]) {
        for d in put.iter().filter(|d| shared(&self.origins, d)) {
            self.send(Change::Put(d.clone()));
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
}

impl Publisher {
    pub fn new(host: String, origins: Vec<Origin>, link: Arc<Link>) -> Self {
        Self {
            host,
            origins,
            link,
            pending: BTreeMap::new(),
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
        match tokio::time::timeout(OP_TIMEOUT * 10, existing_keys(kv, &mine)).await {
            Ok(Ok(existing)) => {
                for k in existing {
                    if !wanted.contains(&k) {
                        self.pending.entry(k).or_insert(None);
                    }
                }
            }
            Ok(Err(e)) => super::link::failed(&self.link, "listing this host's keys", e.as_ref()),
            Err(_) => tracing::warn!("fleet: listing this host's keys timed out"),
        }
        let n = self.pending.len();
        self.link.update(|v| v.pending_publish = n);
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

/// This host's live keys (`mine` ends with `.`). Read through a consumer filtered to them and
/// ended by count: the stream's per-subject listing says how many there are (one message per
/// key), so neither the whole bucket is read (the client's `keys()` does) nor the end waits on
/// an idle heartbeat (which took 5 s right after a server restart).
async fn existing_keys(kv: &Store, mine: &str) -> Result<Vec<String>, async_nats::Error> {
    let mut subjects = kv
        .stream
        .info_with_subjects(format!("{}{mine}>", kv.prefix))
        .await?;
    let mut count = 0usize;
    while let Some((_, n)) = subjects.try_next().await? {
        count += n;
    }
    let mut out = Vec::new();
    if count == 0 {
        return Ok(out);
    }
    let mut entries = kv.watch_from_revision(format!("{mine}>"), 1).await?;
    for _ in 0..count {
        let Some(e) = entries.next().await else { break };
        let e = e?;
        if e.operation == Operation::Put {
            out.push(e.key);
        }
        if e.delta == 0 {
            break;
        }
    }
    Ok(out)
}
