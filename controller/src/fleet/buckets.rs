//! The fleet's buckets: how they are opened, and what the fleet's tasks share about them.

use std::time::Duration;

use super::wire;
use crate::config::FleetConfig;
use async_nats::jetstream;

/// How long one NATS operation may take before it counts as a failure.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a host id stays held after its holder's last refresh (the hosts bucket's age
/// limit; see `hosts`).
pub const HOST_HOLD: Duration = Duration::from_secs(120);

/// The store key holding the last applied revision of `bucket`.
pub fn checkpoint_key(bucket: &str) -> String {
    format!("fleet-revision:{bucket}")
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
    limits: Option<(i64, i64)>,
) -> Result<jetstream::kv::Store, async_nats::Error> {
    let (max_bytes, max_messages) = limits.unwrap_or((-1, -1));
    let config = jetstream::stream::Config {
        max_bytes,
        max_messages,
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

/// The fleet's buckets.
pub struct Buckets {
    pub decisions: jetstream::kv::Store,
    pub answers: jetstream::kv::Store,
    pub claims: jetstream::kv::Store,
    /// Which machine holds each host id (see `hosts`).
    pub hosts: jetstream::kv::Store,
}

pub(super) async fn open(
    js: &jetstream::Context,
    cfg: &FleetConfig,
    cache_ttl: Duration,
) -> Result<Buckets, async_nats::Error> {
    let p = &cfg.bucket_prefix;
    Ok(Buckets {
        decisions: bucket(
            js,
            format!("{p}-decisions"),
            Duration::ZERO,
            Some((cfg.bucket_max_bytes, cfg.bucket_max_msgs)),
        )
        .await?,
        answers: bucket(js, format!("{p}-enrich"), cache_ttl, None).await?,
        // Per-message TTLs need NATS 2.11: claims get a bucket whose age limit is the claim's.
        claims: bucket(js, format!("{p}-claims"), cfg.claim_ttl, None).await?,
        hosts: bucket(js, format!("{p}-hosts"), HOST_HOLD, None).await?,
    })
}
