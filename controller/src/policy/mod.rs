//! Judgement: what detection, enrichment, aggregates and SYN fingerprints find, turned into
//! proposals to the engine (velocity blocks, IPASIS verdicts, heavy networks). The engine does
//! not know the policy exists; the policy calls the engine's typed methods.
//!
//! Modules: `state` (the policy and what it keeps), `detection` (poll ticks and velocity),
//! `enrichment` (IPASIS answers and feed tags to verdicts), `votes` (heavy aggregates judged by
//! their busiest members), `fingerprints` (SYN signatures in scoring), `tags` (feed tags).

mod detection;
mod enrichment;
mod fingerprints;
mod state;
mod tags;
mod votes;

pub use fingerprints::RESIDENTIAL_PROXY_SUSPECT;
pub use state::{EnrichmentState, Policy};
