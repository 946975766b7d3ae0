//! The daemon's core, synchronous and single-owner: the decision book, the allowlist, the
//! store and their projection into every enforcement point. It speaks no protocol: typed
//! methods and typed errors; requests and views are the daemon's edge.
//!
//! Decisions come from sources (an operator, velocity and IPASIS through the policy, feeds,
//! CrowdSec, the fleet) through one interface ([`Engine::propose`], [`Engine::replace`],
//! [`Engine::apply`]): a source proposes and withdraws decisions under its holder; the engine
//! checks, stores, projects and logs, once.
//!
//! Modules: `state` (the engine and its one commit path), `bulk` (a large commit, the store
//! writing beside the book and the planes), `book` (decisions by prefix and
//! holder), `planes` (the enforcement trait and the every-interface wrapper), `memory` (an
//! in-memory enforcer for tests), `events` (what sources send), `propose` (the rule set),
//! `allow` (runtime allowlist changes), `sink` (where committed changes go besides planes),
//! `hits` (what the kernel dropped, credited to decisions), `holders` (one prefix's decisions),
//! `shed` (bulk moves that do not double memory), `due` (the earliest expiries, so a poll
//! need not read every decision).

mod allow;
mod book;
pub mod bounds;
mod bulk;
mod due;
mod error;
mod events;
mod hits;
mod holders;
pub mod memory;
mod peers;
pub mod planes;
mod projection;
mod propose;
mod reasons;
mod refusals;
mod room;
mod shed;
mod sink;
mod state;
#[cfg(test)]
mod tests;

pub use book::Book;
pub use error::EngineError;
pub use events::{Applied, BlockRequest, CHUNK, Lift, Replacement, Scope, SourceEvent};
pub use memory::MemoryEnforcer;
pub use planes::{AttachKind, Enforcer, Plane, PlaneFailure, Planes, error_chain};
pub use projection::{BlockMap, MapFill};
pub use propose::Proposed;
pub use shed::shed;
pub use sink::Sink;
pub use state::{Engine, Restored};
