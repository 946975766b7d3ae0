//! Enrichment: what IP intelligence (IPASIS) says about a heavy hitter.
//!
//! `crate::record` reads answers, `key` holds the API key, `client` talks HTTP with timeouts,
//! retries and the vendor's status codes, `limits` keeps us inside rate and quota, `queue`
//! orders waiting candidates. The daemon's enrichment stage wires them together.

pub mod client;
pub mod key;
pub mod limits;
pub mod pipeline;
pub mod queue;

pub use crate::record::{self, Record};
pub use client::{EnrichError, IpasisClient};
pub use key::{ApiKey, KeyError};
pub use pipeline::Pipeline;
