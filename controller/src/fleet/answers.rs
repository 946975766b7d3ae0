//! Shared IPASIS answers: before a lookup, a host reads `<prefix>-enrich` (whose age limit is
//! `ipasis.cache_ttl`); when the answer is not there it claims the lookup by creating the
//! source's key in `<prefix>-claims` (a short-lived bucket: claims vanish with it). The claimer
//! looks up and publishes the answer; the others wait for it, up to `fleet.claim_wait`, then
//! look up themselves (a claimer that went quiet costs one more request, never a missed
//! decision). NATS being away means a local lookup, as without a fleet.
//!
//! A peer's answer is taken only within bounds: it expires by the time its host fetched it
//! (never by when it arrived), a fetch time in the future is refused, and a peer's "IPASIS
//! rejected the address" is not taken (this host asks itself: a peer could otherwise keep a
//! source from ever being judged). What a peer's answer may decide here is
//! `fleet.peer_answers`, applied by the scorer.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::Duration,
};

use ipnet::IpNet;

use super::{
    buckets::{Buckets, OP_TIMEOUT},
    keys,
    link::Link,
};
use crate::{
    decision::now_unix_ms,
    enrich::{
        Record,
        pipeline::{Peer, Shared, SharedLookups},
    },
    store::CachedAnswer,
};

/// How far ahead of this host's clock a peer's fetch time may be (clock skew).
const SKEW_MS: u64 = 60_000;

/// Longest host name kept from a peer's answer.
const MAX_HOST: usize = 64;

/// The fleet's side of shared enrichment.
pub struct SharedAnswers {
    host: String,
    link: Arc<Link>,
    claim_wait: Duration,
    /// `ipasis.cache_ttl`: how long an answer is good for, from its fetch.
    cache_ttl: Duration,
    buckets: RwLock<Option<Arc<Buckets>>>,
}

impl SharedAnswers {
    pub fn new(host: String, link: Arc<Link>, claim_wait: Duration, cache_ttl: Duration) -> Self {
        Self {
            host,
            link,
            claim_wait,
            cache_ttl,
            buckets: RwLock::new(None),
        }
    }

    /// The buckets while the link is up.
    pub fn set_buckets(&self, b: Option<Arc<Buckets>>) {
        *crate::sync::write(&self.buckets) = b;
    }

    fn buckets(&self) -> Option<Arc<Buckets>> {
        crate::sync::read(&self.buckets).clone()
    }

    /// The answer in the bucket, if any, readable and within bounds.
    async fn cached(&self, b: &Buckets, key: &str) -> Option<(Record, Peer)> {
        let bytes = tokio::time::timeout(OP_TIMEOUT, b.answers.get(key))
            .await
            .ok()?
            .ok()??;
        match accept(&bytes, self.cache_ttl, now_unix_ms()) {
            Ok(taken) => Some(taken),
            Err(NotTaken::Stale(why)) => {
                tracing::debug!(key, why, "fleet: a shared answer not taken");
                None
            }
            Err(NotTaken::Bad(why)) => {
                tracing::info!(key, why, "fleet: a peer's shared answer refused");
                self.link.update(|v| v.unreadable += 1);
                None
            }
        }
    }

    async fn before(&self, source: IpNet) -> Shared {
        let Some(b) = self.buckets() else {
            return Shared::LookUp;
        };
        let key = keys::answer_key(&source);
        if let Some((record, peer)) = self.cached(&b, &key).await {
            self.link.update(|v| v.shared_answers += 1);
            return Shared::Answer(record, peer);
        }
        let claim = tokio::time::timeout(
            OP_TIMEOUT,
            b.claims.create(&key, self.host.clone().into_bytes().into()),
        )
        .await;
        match claim {
            Ok(Ok(_)) => {
                self.link.update(|v| v.claims_won += 1);
                Shared::LookUp
            }
            Ok(Err(e)) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                // Another host is asking: wait for its answer.
                let deadline = tokio::time::Instant::now() + self.claim_wait;
                while tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Some((record, peer)) = self.cached(&b, &key).await {
                        self.link.update(|v| v.shared_answers += 1);
                        return Shared::Answer(record, peer);
                    }
                }
                tracing::info!(%source, "fleet: the host that claimed this lookup went quiet; asking IPASIS here");
                Shared::LookUp
            }
            _ => Shared::LookUp,
        }
    }

    async fn after(&self, source: IpNet, record: Option<Record>) {
        let Some(b) = self.buckets() else {
            return;
        };
        let answer = CachedAnswer {
            record,
            fetched_unix_ms: now_unix_ms(),
            host: Some(self.host.clone()),
        };
        let bytes = serde_json::to_vec(&answer).expect("answers serialize");
        let key = keys::answer_key(&source);
        if let Ok(Err(e)) =
            tokio::time::timeout(OP_TIMEOUT, b.answers.put(&key, bytes.into())).await
        {
            super::link::failed(&self.link, "sharing an IPASIS answer", &e);
        }
    }
}

impl SharedLookups for SharedAnswers {
    fn before_lookup(&self, source: IpNet) -> Pin<Box<dyn Future<Output = Shared> + Send + '_>> {
        Box::pin(self.before(source))
    }

    fn after_lookup(
        &self,
        source: IpNet,
        record: Option<Record>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.after(source, record))
    }
}

/// Why a peer's answer is not taken.
#[derive(Debug)]
enum NotTaken {
    /// Normal: expired, or a rejection this host checks itself.
    Stale(&'static str),
    /// A value no honest peer writes (counted as unreadable).
    Bad(&'static str),
}

/// A peer's value as an answer this host may take, or why not.
fn accept(bytes: &[u8], cache_ttl: Duration, now_ms: u64) -> Result<(Record, Peer), NotTaken> {
    if bytes.len() > super::wire::MAX_VALUE {
        return Err(NotTaken::Bad("too large"));
    }
    let a: CachedAnswer = serde_json::from_slice(bytes).map_err(|_| NotTaken::Bad("unreadable"))?;
    let record = a.record.ok_or(NotTaken::Stale(
        "a rejected address (this host asks itself)",
    ))?;
    if a.fetched_unix_ms > now_ms.saturating_add(SKEW_MS) {
        return Err(NotTaken::Bad("fetched in the future"));
    }
    if now_ms.saturating_sub(a.fetched_unix_ms) >= cache_ttl.as_millis() as u64 {
        return Err(NotTaken::Stale("older than ipasis.cache_ttl"));
    }
    let mut host = a.host.unwrap_or_else(|| "an unnamed peer".to_owned());
    if host.len() > MAX_HOST {
        host = keys::token(&host.chars().take(MAX_HOST).collect::<String>());
    }
    Ok((
        record,
        Peer {
            host,
            fetched_unix_ms: a.fetched_unix_ms.min(now_ms),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn value(record: Option<Record>, fetched: u64, host: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&CachedAnswer {
            record,
            fetched_unix_ms: fetched,
            host: host.map(str::to_owned),
        })
        .unwrap()
    }

    #[test]
    fn a_peers_answer_is_taken_only_within_its_time_and_never_as_a_rejection() {
        let now = 100 * 3_600_000;
        let tor = Record {
            tor: Some(true),
            ..Record::default()
        };
        let (r, p) = accept(
            &value(Some(tor.clone()), now - 1000, Some("edge-b")),
            HOUR,
            now,
        )
        .unwrap();
        assert_eq!(r, tor);
        assert_eq!(p.host, "edge-b");
        assert_eq!(p.fetched_unix_ms, now - 1000);
        // `{"record": null}` would keep the source from ever being judged.
        assert!(accept(br#"{"record":null,"fetched_unix_ms":0}"#, HOUR, now).is_err());
        assert!(accept(&value(None, now, Some("edge-b")), HOUR, now).is_err());
        // Expired by its own fetch time, or claiming to be fetched in the future.
        assert!(accept(&value(Some(tor.clone()), now - 3_600_000, None), HOUR, now).is_err());
        assert!(accept(&value(Some(tor.clone()), u64::MAX, None), HOUR, now).is_err());
        assert!(accept(b"junk", HOUR, now).is_err());
        let long = "x".repeat(1000);
        let (_, p) = accept(&value(Some(tor), now, Some(&long)), HOUR, now).unwrap();
        assert!(p.host.len() <= MAX_HOST);
    }
}
