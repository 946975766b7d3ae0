//! The control socket's handler: every request is answered under the state's lock by
//! `handlers`, except a fresh IPASIS lookup, which waits for the API without holding it. A
//! panic while answering is reported to the main loop, which stops the daemon.

use std::panic::AssertUnwindSafe;

use tokio::sync::mpsc;

use super::{handlers, shared::Shared};
use crate::{
    enrich::{EnrichError, Pipeline, pipeline::LookupError},
    wire::{ErrorKind, LookupView, Request, Response},
};

/// Answers one request (on a blocking thread).
pub fn answer(
    shared: &Shared,
    pipeline: Option<&Pipeline>,
    request: Request,
    panics: &mpsc::UnboundedSender<String>,
) -> Response {
    let what = format!("{request:?}");
    match std::panic::catch_unwind(AssertUnwindSafe(|| handle(shared, pipeline, request))) {
        Ok(r) => r,
        Err(p) => {
            let message = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let _ = panics.send(format!("answering {what}: {message}"));
            Response::Error {
                message: format!("internal error: {message}; the daemon restarts"),
                kind: ErrorKind::Internal,
            }
        }
    }
}

fn handle(shared: &Shared, pipeline: Option<&Pipeline>, req: Request) -> Response {
    let (addr, fresh) = match req {
        Request::Lookup { addr, fresh } => (addr, fresh),
        other => return handlers::handle(&mut crate::sync::lock(shared), other),
    };
    if !fresh {
        // The cached answer, as the handler gives it; without one, a fresh lookup.
        let cached = handlers::handle(
            &mut crate::sync::lock(shared),
            Request::Lookup { addr, fresh },
        );
        if !matches!(
            cached,
            Response::Error {
                kind: ErrorKind::NotFound,
                ..
            }
        ) {
            return cached;
        }
    }
    let Some(pipeline) = pipeline else {
        return Response::Error {
            message: "enrichment is off (no IPASIS API key, or [ipasis] enabled = false)".into(),
            kind: ErrorKind::Unavailable,
        };
    };
    let result = tokio::runtime::Handle::current().block_on(pipeline.lookup_now(addr));
    let source = crate::net::host_prefix(addr);
    let record = match result {
        Ok(r) => Some(r),
        // The API rejected the address: that answer is cached too.
        Err(LookupError::Api(EnrichError::Invalid)) => None,
        Err(e) => {
            return Response::Error {
                message: format!("lookup failed: {e}"),
                kind: ErrorKind::Unavailable,
            };
        }
    };
    match crate::sync::lock(shared).store_answer(source, record.clone()) {
        Ok(_) => Response::Lookup(LookupView {
            addr,
            source,
            cached: false,
            age_secs: 0,
            record,
        }),
        Err(e) => Response::Error {
            message: e.to_string(),
            kind: ErrorKind::Internal,
        },
    }
}
