//! Host ids are unique in a fleet: two hosts whose ids map to the same key would ignore and
//! delete each other's decisions. Each host holds its id in the `<prefix>-hosts` bucket, with
//! its machine id, refreshed every [`REFRESH`]; the bucket forgets an id [`HOLD`] after its
//! last refresh. A host that finds its id held by another machine refuses to publish or apply
//! anything, says so in `status`, and tries again later.

use std::time::Duration;

use async_nats::jetstream::kv::Store;
use serde::{Deserialize, Serialize};

use super::{
    buckets::{HOST_HOLD as HOLD, OP_TIMEOUT},
    keys,
};

/// How often a host refreshes its id.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Who holds a host id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub machine: String,
}

/// This machine's id (`/etc/machine-id`; the host name where there is none).
pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-machine".to_owned())
}

/// Another machine holds the id.
#[derive(Debug, thiserror::Error)]
#[error(
    "the host id `{id}` is held by machine {machine}: two hosts with one id would ignore and delete each other's decisions; give this host another fleet.host_id (the id is free {hold}s after its holder stops)",
    hold = HOLD.as_secs()
)]
pub struct Held {
    pub id: String,
    pub machine: String,
}

/// Takes (or keeps) `me`'s id: `Ok(Err(Held))` when another machine holds it, `Err` when
/// NATS did not answer.
pub async fn claim(hosts: &Store, me: &Holder) -> Result<Result<(), Held>, async_nats::Error> {
    let key = keys::token(&me.host);
    let held = tokio::time::timeout(OP_TIMEOUT, hosts.get(&key)).await??;
    if let Some(bytes) = held {
        match serde_json::from_slice::<Holder>(&bytes) {
            Ok(h) if h == *me => {}
            Ok(h) => {
                return Ok(Err(Held {
                    id: me.host.clone(),
                    machine: h.machine,
                }));
            }
            // Unreadable: taken over (it is not a host's).
            Err(_) => {}
        }
    }
    let value = serde_json::to_vec(me).expect("serializes");
    tokio::time::timeout(OP_TIMEOUT, hosts.put(&key, value.into())).await??;
    Ok(Ok(()))
}

/// Keeps `me`'s id held while the link is up; ends with an error if another machine took it
/// or NATS stopped answering.
pub async fn keep(hosts: &Store, me: &Holder) -> Result<(), async_nats::Error> {
    loop {
        tokio::time::sleep(REFRESH).await;
        claim(hosts, me).await??;
    }
}
