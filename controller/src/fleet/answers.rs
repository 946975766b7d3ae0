//! Shared IPASIS answers: before a lookup, a host reads `<prefix>-enrich` (whose age limit is
//! `ipasis.cache_ttl`); when the answer is not there it claims the lookup by creating the
//! source's key in `<prefix>-claims` (a short-lived bucket: claims vanish with it). The claimer
//! looks up and publishes the answer; the others wait for it, up to `fleet.claim_wait`, then
//! look up themselves (a claimer that went quiet costs one more request, never a missed
//! decision). NATS being away means a local lookup, as without a fleet.

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
    enrich::{Record, pipeline::Shared, pipeline::SharedLookups},
    store::CachedAnswer,
};

/// The fleet's side of shared enrichment.
pub struct SharedAnswers {
    host: String,
    link: Arc<Link>,
    claim_wait: Duration,
    buckets: RwLock<Option<Arc<Buckets>>>,
}

impl SharedAnswers {
    pub fn new(host: String, link: Arc<Link>, claim_wait: Duration) -> Self {
        Self {
            host,
            link,
            claim_wait,
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

    /// The answer in the bucket, if any and readable.
    async fn cached(b: &Buckets, key: &str) -> Option<Option<Record>> {
        let bytes = tokio::time::timeout(OP_TIMEOUT, b.answers.get(key))
            .await
            .ok()?
            .ok()??;
        if bytes.len() > super::wire::MAX_VALUE {
            return None;
        }
        serde_json::from_slice::<CachedAnswer>(&bytes)
            .ok()
            .map(|a| a.record)
    }

    async fn before(&self, source: IpNet) -> Shared {
        let Some(b) = self.buckets() else {
            return Shared::LookUp;
        };
        let key = keys::answer_key(&source);
        if let Some(record) = Self::cached(&b, &key).await {
            self.link.update(|v| v.shared_answers += 1);
            return Shared::Answer(record);
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
                    if let Some(record) = Self::cached(&b, &key).await {
                        self.link.update(|v| v.shared_answers += 1);
                        return Shared::Answer(record);
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
            fetched_unix_ms: crate::decision::now_unix_ms(),
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
