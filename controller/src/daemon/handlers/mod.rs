//! The control socket's requests, one file each: every handler calls the engine's and the
//! policy's typed methods and fills the wire's views. Nothing below the daemon knows the
//! protocol. Handlers never panic on bad input: every failure is a `Response::Error`.

mod allow;
mod block;
mod explain;
mod import;
mod list;
mod lookup;
mod reload;
mod reply;
mod stats;
mod status;
mod top;

pub use lookup::lookup_view;
pub use stats::stats;
pub use status::status;

use reply::{error, holder};

use super::state::State;
use crate::wire::{ErrorKind, Request, Response};

/// Answers one request.
pub fn handle(state: &mut State, request: Request) -> Response {
    match request {
        Request::Status => Response::Status(status(state)),
        Request::Block {
            prefix,
            ttl_secs,
            permanent,
            replace,
            reason,
            origin,
            source,
            challenge_pps,
            challenge_burst,
        } => {
            let scoring = &state.engine.config().scoring;
            let req = crate::engine::BlockRequest {
                prefix,
                ttl: ttl_secs.map(std::time::Duration::from_secs),
                permanent,
                reason,
                replace,
                challenge: challenge_pps.map(|pps| crate::decision::ChallengeRate {
                    pps,
                    burst: challenge_burst.unwrap_or(scoring.challenge_burst),
                }),
            };
            block::block(state, req, holder(origin, source))
        }
        Request::Unblock {
            prefix,
            origin,
            source,
            all_origins,
        } => block::unblock(state, prefix, holder(origin, source), all_origins),
        Request::UnblockWhere {
            range,
            origin,
            source,
        } => block::unblock_where(state, range, origin, source),
        Request::List {
            origin,
            after,
            limit,
        } => list::list(state, origin, after, limit),
        Request::Import {
            decisions,
            origin,
            source,
            ttl_secs,
        } => import::import(state, decisions, holder(origin, source), ttl_secs),
        Request::History { prefix, limit } => list::history(state, prefix, limit),
        Request::AllowAdd { prefix } => allow::add(state, prefix),
        Request::AllowRm { prefix } => allow::remove(state, prefix),
        Request::AllowList => allow::list(state),
        Request::Top { n } => top::top(state, n),
        Request::Stats => match stats(state) {
            Ok(interfaces) => Response::Stats { interfaces },
            Err(e) => error(ErrorKind::Internal, e),
        },
        Request::Explain { addr } => Response::Explain(explain::explain(state, addr)),
        Request::Reload => reload::reload(state),
        Request::ConfigShow => reload::show(state),
        Request::Lookup { addr, .. } => match lookup_view(state, addr) {
            // The daemon answers fresh lookups itself, outside the lock; here only the cache
            // is consulted.
            Some(v) => Response::Lookup(v),
            None => error(
                ErrorKind::NotFound,
                format!("no cached IPASIS answer for {addr}"),
            ),
        },
    }
}
