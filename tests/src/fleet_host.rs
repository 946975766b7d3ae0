//! One host's end of a fleet link, driven without a daemon: what the daemon would receive, and
//! the local decisions it answers snapshot requests with. For tests against a real nats-server
//! that need no root.

use std::time::Duration;

use ipwarden::{
    config::FleetConfig,
    decision::Decision,
    engine::SourceEvent,
    fleet::{self, Fleet},
    sources::SnapshotRequest,
};
use tokio::sync::mpsc;

/// A started link.
pub struct Host {
    pub fleet: Fleet,
    pub events: mpsc::Receiver<SourceEvent>,
    _snapshots: tokio::task::JoinHandle<()>,
}

/// What a test host brings: its id on a test machine, an hour's answers, a week's decisions.
pub fn local(host: &str) -> fleet::Local {
    fleet::Local {
        host: host.to_owned(),
        machine: "machine-of-test".to_owned(),
        cache_ttl: Duration::from_secs(3600),
        max_ttl: Duration::from_secs(7 * 86400),
    }
}

/// Starts `here`'s link, resuming after `applied`; snapshots answer `held`.
pub async fn start(
    cfg: &FleetConfig,
    here: fleet::Local,
    applied: Option<u64>,
    held: Vec<Decision>,
) -> Host {
    let (sources, events) = mpsc::channel(64);
    let (snap_tx, mut snap_rx) = mpsc::channel::<SnapshotRequest>(4);
    let fleet = fleet::start(cfg, here, applied, sources, snap_tx)
        .await
        .expect("starting the fleet link");
    let snapshots = tokio::spawn(async move {
        while let Some(SnapshotRequest { reply, .. }) = snap_rx.recv().await {
            let _ = reply.send(held.clone());
        }
    });
    Host {
        fleet,
        events,
        _snapshots: snapshots,
    }
}

impl Host {
    /// The next event, within 10 s.
    pub async fn event(&mut self) -> SourceEvent {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("no event from the fleet within 10 s")
            .expect("the link task ended")
    }

    /// The next event other than a checkpoint, within 10 s.
    pub async fn next(&mut self) -> SourceEvent {
        loop {
            let e = self.event().await;
            if !matches!(e, SourceEvent::Checkpoint { .. }) {
                return e;
            }
        }
    }

    /// Waits for the next checkpoint's revision.
    pub async fn checkpoint(&mut self) -> u64 {
        loop {
            if let SourceEvent::Checkpoint { value, .. } = self.event().await {
                return value;
            }
        }
    }

    /// Waits until the link reports itself connected (bounded).
    pub async fn connected(&self) {
        for _ in 0..200 {
            if self.fleet.link.view().connected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not connected within 10 s: {:?}", self.fleet.link.view());
    }
}
