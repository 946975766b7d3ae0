//! Peers' decisions from the bucket into the engine. A host with a stored revision resumes
//! after it; one without takes the bucket's current contents first and replaces whatever fleet
//! decisions it held with them: streamed in parts of 1 000 (a replacement the engine ends when
//! the contents do), so a bucket of two million entries never sits in memory whole. Entries are handed over in batches (at most every 50 ms or 1 000
//! entries), each followed by a checkpoint of its last revision, stored once the batch is
//! applied: a crash in between applies the batch again, which changes nothing. A batch is
//! handed over at once when the server has nothing more pending for the watch and the engine
//! has taken everything handed over before.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_nats::jetstream::kv::{Operation, Store};
use futures_util::StreamExt as _;
use ipnet::IpNet;
use tokio::sync::mpsc;

use super::{
    buckets::{OP_TIMEOUT, checkpoint_key},
    keys,
    link::Link,
    wire::Shared,
};
use crate::{
    decision::{Decision, Holder, Origin},
    engine::{Scope, SourceEvent},
};

const BATCH: usize = 1_000;
const LINGER: Duration = Duration::from_millis(50);
/// How often the bucket's revision is asked for, and how long a watch may deliver nothing
/// while the bucket is ahead of it.
const STALL: Duration = Duration::from_secs(1);

/// A batch in the making.
#[derive(Default)]
struct Batch {
    put: BTreeMap<(IpNet, Holder), Decision>,
    gone: BTreeMap<(IpNet, Holder), ()>,
    last: Option<u64>,
}

impl Batch {
    fn len(&self) -> usize {
        self.put.len() + self.gone.len()
    }
}

/// Watches until the watch ends or fails. `applied` is updated as batches are handed over.
pub async fn run(
    kv: &Store,
    host: &str,
    link: &Arc<Link>,
    sources: &mpsc::Sender<SourceEvent>,
    applied: &mut Option<u64>,
    apply: bool,
    max_ttl: Duration,
) -> Result<(), async_nats::Error> {
    if !apply {
        return std::future::pending().await;
    }
    let me = keys::token(host);
    let status = tokio::time::timeout(OP_TIMEOUT, kv.status()).await??;
    let last = status.info.state.last_sequence;
    let mut initial = match *applied {
        // The server lost its data (or this is another bucket): start over.
        Some(rev) if rev > last => {
            tracing::warn!(
                stored = rev,
                bucket = last,
                "fleet: the bucket is behind this host's stored revision; taking its contents afresh"
            );
            None
        }
        other => other,
    }
    .is_none();
    // The bucket keeps one message per key (deletions as markers), so reading it from its
    // first revision is reading its current contents; the initial part ends at `last`.
    // (`watch_all`'s last-per-subject delivery sends nothing already stored on NATS 2.9.10.)
    let from = match *applied {
        Some(rev) if !initial => rev + 1,
        _ => 1,
    };
    let mut watch = kv.watch_all_from_revision(from).await?;
    // The initial contents end at the entry marked `seen_current`; an empty bucket sends none.
    let mut snapshot = Initial::default();
    if initial && status.info.state.messages == 0 {
        snapshot.end(sources, Some(last), &status.bucket).await?;
        *applied = Some(last);
        initial = false;
    }
    let mut batch = Batch::default();
    let mut ticker = tokio::time::interval(LINGER);
    let mut lag_at = tokio::time::Instant::now();
    let mut heard_at = tokio::time::Instant::now();
    // The revision this host was at when the bucket was last seen ahead of it.
    let mut behind_at: Option<u64> = None;
    loop {
        tokio::select! {
            entry = watch.next() => {
                let Some(entry) = entry else { return Err("the watch ended".into()) };
                let entry = entry?;
                heard_at = tokio::time::Instant::now();
                let rev = entry.revision;
                batch.last = Some(rev);
                let ours = entry.key.split('.').next() == Some(me.as_str());
                if !ours {
                    read(&entry, link, &mut batch, max_ttl);
                }
                if initial {
                    // The contents hold no deletions to apply: a deleted key is simply absent.
                    batch.gone.clear();
                    if rev >= last {
                        snapshot.take(&mut batch);
                        snapshot.end(sources, Some(rev), &entry.bucket).await?;
                        *applied = Some(rev);
                        initial = false;
                    } else if batch.put.len() >= BATCH {
                        snapshot.take(&mut batch);
                        snapshot.stream(sources).await?;
                    }
                } else if batch.len() >= BATCH
                    || (entry.delta == 0 && sources.capacity() == sources.max_capacity())
                {
                    // A full batch; or nothing more waiting on the server while the engine has
                    // applied everything handed over: no need to linger. Under a burst the
                    // engine is busy, so batches grow (one durable transaction each).
                    hand_over(sources, &mut batch, &entry.bucket, applied, link).await?;
                }
            }
            _ = ticker.tick() => {
                if !initial && batch.last.is_some() {
                    hand_over(sources, &mut batch, kv_bucket(&status), applied, link).await?;
                }
                if lag_at.elapsed() >= STALL {
                    lag_at = tokio::time::Instant::now();
                    if let Ok(Ok(s)) = tokio::time::timeout(OP_TIMEOUT, kv.status()).await {
                        let last = s.info.state.last_sequence;
                        let done = applied.unwrap_or(0);
                        link.update(|v| {
                            v.bucket_revision = Some(last);
                            v.lag = Some(last.saturating_sub(done));
                        });
                        // A consumer made just after a server restart can sit idle until
                        // its heartbeat notices (5 s): the bucket ahead at two checks in a
                        // row with nothing arriving between ends the watch, and the link
                        // starts a new one.
                        let behind = !initial && last > done && batch.last.is_none();
                        if behind && behind_at == Some(done) && heard_at.elapsed() >= STALL {
                            return Err(format!(
                                "the watch stopped delivering (the bucket is at revision {last}, this host at {done}); watching again"
                            )
                            .into());
                        }
                        behind_at = behind.then_some(done);
                    }
                }
            }
        }
    }
}

fn kv_bucket(status: &async_nats::jetstream::kv::bucket::Status) -> &str {
    &status.bucket
}

/// Adds one entry to the batch; unreadable values are counted and logged, never applied.
fn read(
    entry: &async_nats::jetstream::kv::Entry,
    link: &Link,
    batch: &mut Batch,
    max_ttl: Duration,
) {
    let Some((host, origin, prefix)) = keys::parse_decision_key(&entry.key) else {
        unreadable(link, &entry.key, "not a decision key");
        return;
    };
    if matches!(origin, Origin::Fleet | Origin::Crowdsec) {
        unreadable(link, &entry.key, "a relayed origin");
        return;
    }
    let holder = Shared::holder(host, origin);
    match entry.operation {
        Operation::Put => match Shared::parse(&entry.value) {
            Ok(s) if s.prefix.trunc() == prefix.trunc() && keys::token(&s.host) == host => {
                let d = s.into_decision(max_ttl, crate::decision::now_unix_ms());
                batch.gone.remove(&(prefix, holder.clone()));
                batch.put.insert((prefix, holder), d);
            }
            Ok(_) => unreadable(link, &entry.key, "the value does not match its key"),
            Err(e) => unreadable(link, &entry.key, &e.to_string()),
        },
        Operation::Delete | Operation::Purge => {
            batch.put.remove(&(prefix, holder.clone()));
            batch.gone.insert((prefix, holder), ());
        }
    }
}

fn unreadable(link: &Link, key: &str, why: &str) {
    let mut first = false;
    link.update(|v| {
        first = v.unreadable == 0;
        v.unreadable += 1;
    });
    if first {
        tracing::warn!(
            key,
            why,
            "fleet: ignoring a value from the bucket (further ones are only counted)"
        );
    }
}

/// Hands a batch to the engine, then its checkpoint.
async fn hand_over(
    sources: &mpsc::Sender<SourceEvent>,
    batch: &mut Batch,
    bucket: &str,
    applied: &mut Option<u64>,
    link: &Link,
) -> Result<(), async_nats::Error> {
    let b = std::mem::take(batch);
    let n = b.len() as u64;
    if !b.put.is_empty() {
        send(sources, SourceEvent::Propose(b.put.into_values().collect())).await?;
    }
    let mut gone: BTreeMap<Holder, Vec<IpNet>> = BTreeMap::new();
    for (prefix, holder) in b.gone.into_keys() {
        gone.entry(holder).or_default().push(prefix);
    }
    for (holder, prefixes) in gone {
        send(sources, SourceEvent::Withdraw { holder, prefixes }).await?;
    }
    if let Some(rev) = b.last {
        *applied = Some(rev);
        link.update(|v| {
            v.applied_revision = rev;
            v.applied += n;
        });
        send(
            sources,
            SourceEvent::Checkpoint {
                key: checkpoint_key(bucket),
                value: rev,
            },
        )
        .await?;
    }
    Ok(())
}

/// The bucket's contents on their way to the engine: one `ReplaceOrigin` when they fit in a
/// batch, otherwise a replacement in parts (`ReplaceBegin`, proposals, `ReplaceEnd`: what no
/// part kept is withdrawn at the end, nothing if a part failed).
#[derive(Default)]
struct Initial {
    waiting: Vec<Decision>,
    /// Whether the replacement has begun (a part was handed over).
    begun: bool,
    sent: usize,
}

impl Initial {
    fn take(&mut self, batch: &mut Batch) {
        self.waiting
            .extend(std::mem::take(&mut batch.put).into_values());
    }

    /// Hands what is waiting over as one part of the replacement.
    async fn stream(
        &mut self,
        sources: &mpsc::Sender<SourceEvent>,
    ) -> Result<(), async_nats::Error> {
        if !self.begun {
            let scope = Scope::Origin(Origin::Fleet);
            send(sources, SourceEvent::ReplaceBegin { scope }).await?;
            self.begun = true;
        }
        self.sent += self.waiting.len();
        send(
            sources,
            SourceEvent::Propose(std::mem::take(&mut self.waiting)),
        )
        .await
    }

    /// The end of the contents: the replacement ends, then the checkpoint.
    async fn end(
        &mut self,
        sources: &mpsc::Sender<SourceEvent>,
        rev: Option<u64>,
        bucket: &str,
    ) -> Result<(), async_nats::Error> {
        if self.begun {
            self.stream(sources).await?;
            let scope = Scope::Origin(Origin::Fleet);
            send(sources, SourceEvent::ReplaceEnd { scope }).await?;
        } else {
            self.sent = self.waiting.len();
            let decisions = std::mem::take(&mut self.waiting);
            send(
                sources,
                SourceEvent::ReplaceOrigin {
                    origin: Origin::Fleet,
                    decisions,
                },
            )
            .await?;
        }
        tracing::info!(
            decisions = self.sent,
            "fleet: the bucket's current contents"
        );
        if let Some(value) = rev {
            send(
                sources,
                SourceEvent::Checkpoint {
                    key: checkpoint_key(bucket),
                    value,
                },
            )
            .await?;
        }
        Ok(())
    }
}

async fn send(
    sources: &mpsc::Sender<SourceEvent>,
    e: SourceEvent,
) -> Result<(), async_nats::Error> {
    sources
        .send(e)
        .await
        .map_err(|_| "the daemon is stopping".into())
}
