//! The IPASIS stage as a source: its worker looks up queued heavy hitters and sends the
//! answers back; the policy scores them.

use std::sync::Arc;

use super::lifecycle::{Context, Source, SourceStatus, Start, Starting};
use crate::enrich::Pipeline;

/// The stage, with the daemon's key and client.
pub struct Ipasis(pub Arc<Pipeline>);

impl Start for Ipasis {
    fn start<'a>(&'a self, ctx: &'a mut Context) -> Starting<'a> {
        Box::pin(async move {
            let worker = tokio::spawn(self.0.clone().run(ctx.answers.clone()));
            let pipeline = self.0.clone();
            tracing::info!(base_url = %pipeline.cfg.base_url, "IPASIS enrichment on");
            Ok(Source::new(
                "ipasis",
                vec![worker],
                Arc::new(move || SourceStatus::Ipasis(pipeline.view())),
            ))
        })
    }
}
