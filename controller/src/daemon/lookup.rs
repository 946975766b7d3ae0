//! The control socket's handler: every request is answered under the state's lock by
//! `handlers`, except a fresh IPASIS lookup, which waits for the API without holding it. A
//! panic while answering is reported to the main loop, which stops the daemon.

use std::{fmt::Write as _, panic::AssertUnwindSafe};

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
    let what = describe(&request);
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

/// At most this many bytes of a request are kept to name it if answering it panics. An import
/// carries up to a million entries: formatted whole before every answer, 134 MB.
const DESCRIBED: usize = 256;

/// A string that takes at most [`DESCRIBED`] bytes, then refuses more (which ends the
/// formatting: the rest is never formatted).
struct Bounded(String);

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = DESCRIBED.saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&s[..end]);
        self.0.push('…');
        Err(std::fmt::Error)
    }
}

/// The request's debug form, cut at [`DESCRIBED`] bytes.
fn describe(request: &Request) -> String {
    let mut b = Bounded(String::new());
    let _ = write!(b, "{request:?}");
    b.0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ImportEntry;

    #[test]
    fn a_large_request_is_named_by_its_first_bytes() {
        let entry = ImportEntry {
            prefix: "2001:db8:1:2::/64".parse().unwrap(),
            action: None,
            ttl_secs: None,
            reason: Some("é".repeat(40)),
        };
        let request = Request::Import {
            decisions: vec![entry; 100_000],
            origin: None,
            source: None,
            ttl_secs: None,
        };
        let what = describe(&request);
        assert!(what.starts_with("Import { decisions: ["), "{what}");
        assert!(what.ends_with('…') && what.len() <= DESCRIBED + '…'.len_utf8());
        assert_eq!(describe(&Request::Status), format!("{:?}", Request::Status));
    }
}
