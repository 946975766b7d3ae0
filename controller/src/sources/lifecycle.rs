//! The lifecycle: a configured source starts ([`Start`]) into a running [`Source`] with a
//! status and tasks to stop.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc};

use thiserror::Error;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    config::Config,
    decision::{Decision, Origin},
    engine::{Sink, SourceEvent},
    enrich::{Pipeline, pipeline::Enriched},
    wire::{CrowdsecView, FeedView, FleetView, PipelineView},
};

/// A source's start, running.
pub type Starting<'a> = Pin<Box<dyn Future<Output = Result<Source, SourceError>> + Send + 'a>>;

/// A configured source that can start.
pub trait Start: Sync {
    /// Starts its tasks: what it decides goes to `ctx.events`, a sink it adds to `ctx.sinks`.
    /// A source that cannot work (a bad key file, an unreadable credential) fails here, and the
    /// daemon does not start.
    fn start<'a>(&'a self, ctx: &'a mut Context) -> Starting<'a>;
}

/// Why a source could not start.
#[derive(Debug, Error)]
#[error("{name}")]
pub struct SourceError {
    pub name: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SourceError {
    pub fn new(
        name: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            name: name.into(),
            source: source.into(),
        }
    }
}

/// A source that publishes asks for what the engine holds of some origins (the fleet, after
/// its link comes back).
pub struct SnapshotRequest {
    pub origins: Vec<Origin>,
    pub reply: oneshot::Sender<Vec<Decision>>,
}

/// What `status` shows of one source.
#[derive(Clone, Debug)]
pub enum SourceStatus {
    Fleet(FleetView),
    Crowdsec(CrowdsecView),
    Feed(FeedView),
    Ipasis(PipelineView),
}

/// How a running source shows its state.
pub type StatusFn = Arc<dyn Fn() -> SourceStatus + Send + Sync>;

/// A started source: its name, its tasks and its status.
pub struct Source {
    pub name: String,
    tasks: Vec<JoinHandle<()>>,
    status: StatusFn,
}

impl Source {
    pub fn new(name: impl Into<String>, tasks: Vec<JoinHandle<()>>, status: StatusFn) -> Self {
        Self {
            name: name.into(),
            tasks,
            status,
        }
    }

    /// What `status` shows of it.
    pub fn status(&self) -> SourceStatus {
        (self.status)()
    }

    /// Whether one of its tasks ended (a source never ends on its own while the daemon runs).
    pub fn stopped(&self) -> bool {
        self.tasks.iter().any(JoinHandle::is_finished)
    }

    /// Stops its tasks.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What a source is given when it starts.
pub struct Context {
    /// The configuration in force.
    pub cfg: Config,
    /// Where its decisions go.
    pub events: mpsc::Sender<SourceEvent>,
    /// Where IPASIS answers go (the IPASIS stage's).
    pub answers: mpsc::Sender<Enriched>,
    /// Where a source asks for the engine's decisions.
    pub snapshots: mpsc::Sender<SnapshotRequest>,
    /// The checkpoints sources stored (how far each got), by key.
    pub checkpoints: BTreeMap<String, u64>,
    /// The IPASIS stage, when on (the fleet shares its answers).
    pub ipasis: Option<Arc<Pipeline>>,
    /// Places committed changes go (a source that publishes adds one).
    pub sinks: Vec<Box<dyn Sink>>,
}

/// Every running source.
#[derive(Default)]
pub struct Sources(Vec<Source>);

impl Sources {
    pub fn push(&mut self, source: Source) {
        self.0.push(source);
    }

    /// Stops and forgets the source named `name`; whether there was one.
    pub fn stop_one(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|s| {
            let this = s.name == name;
            if this {
                s.stop();
            }
            !this
        });
        self.0.len() != before
    }

    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.0.iter()
    }

    /// Every source's status.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.0.iter().map(Source::status).collect()
    }

    /// Stops every source.
    pub fn stop_all(&mut self) {
        for s in self.0.drain(..) {
            s.stop();
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.stop_all();
    }
}
