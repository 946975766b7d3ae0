//! This host's keys in the decisions bucket: which are live (to delete what the host no
//! longer holds), and which deletion markers are old enough to purge.
//!
//! The bucket keeps one message per key, and a deleted key keeps its marker: a host that
//! blocks a million addresses over a year would leave a million markers and reach the
//! bucket's message limit. A marker matters only to a peer that still holds the deleted
//! decision, and no peer holds one past `decisions.max_ttl` (a peer's decision expires within
//! it there): markers older than that, plus a margin (a 24th of it, at most an hour: clock
//! skew, a late expiry sweep), are purged.

use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store};
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::buckets::OP_TIMEOUT;

/// The age past which a marker is purged.
fn marker_age(max_ttl: Duration) -> Duration {
    max_ttl + (max_ttl / 24).min(Duration::from_secs(3600))
}

/// Markers purged at most per listing (the rest at the next one).
pub const PURGE_MAX: usize = 1_000;

/// What a listing found.
#[derive(Debug, Default)]
pub struct Own {
    /// Keys holding a value.
    pub live: Vec<String>,
    /// Keys whose deletion marker is older than `max_ttl` and a margin.
    pub old_markers: Vec<String>,
}

/// Lists this host's keys (`mine` ends with `.`). Read through a consumer filtered to them and
/// ended by count: the stream's per-subject listing says how many there are (one message per
/// key), so neither the whole bucket is read (the client's `keys()` does) nor the end waits on
/// an idle heartbeat (which took 5 s right after a server restart).
pub async fn list(kv: &Store, mine: &str, max_ttl: Duration) -> Result<Own, async_nats::Error> {
    let mut subjects = kv
        .stream
        .info_with_subjects(format!("{}{mine}>", kv.prefix))
        .await?;
    let mut count = 0usize;
    while let Some((_, n)) = subjects.try_next().await? {
        count += n;
    }
    let mut own = Own::default();
    if count == 0 {
        return Ok(own);
    }
    let now = async_nats::datetime::now();
    let old = |created| {
        async_nats::datetime::add_std_duration(created, marker_age(max_ttl)).is_ok_and(|t| t < now)
    };
    let mut entries = kv.watch_from_revision(format!("{mine}>"), 1).await?;
    for _ in 0..count {
        let Some(e) = entries.next().await else { break };
        let e = e?;
        match e.operation {
            Operation::Put => own.live.push(e.key),
            Operation::Delete | Operation::Purge
                if old(e.created) && own.old_markers.len() < PURGE_MAX =>
            {
                own.old_markers.push(e.key);
            }
            _ => {}
        }
        if e.delta == 0 {
            break;
        }
    }
    Ok(own)
}

/// Removes old markers entirely; how many.
pub async fn purge(kv: &Store, keys: &[String]) -> Result<usize, async_nats::Error> {
    let mut n = 0;
    for key in keys {
        let subject = format!("{}{key}", kv.prefix);
        tokio::time::timeout(OP_TIMEOUT, kv.stream.purge().filter(subject)).await??;
        n += 1;
    }
    Ok(n)
}
