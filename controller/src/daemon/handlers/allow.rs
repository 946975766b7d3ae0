//! `allow add`, `allow rm` and `allow list`.

use ipnet::IpNet;

use super::reply::engine_error;
use crate::daemon::state::State;
use crate::wire::{AllowView, Response};

pub fn add(state: &mut State, prefix: IpNet) -> Response {
    match state.engine.allow_add(prefix) {
        Ok(()) => Response::Done {
            message: format!("allowlisted {}", prefix.trunc()),
        },
        Err(e) => engine_error(&e),
    }
}

pub fn remove(state: &mut State, prefix: IpNet) -> Response {
    match state.engine.allow_rm(prefix) {
        Ok(()) => Response::Done {
            message: format!("removed {} from the allowlist", prefix.trunc()),
        },
        Err(e) => engine_error(&e),
    }
}

pub fn list(state: &State) -> Response {
    Response::Allow {
        allow: state
            .engine
            .allowlist()
            .entries()
            .into_iter()
            .map(|(prefix, origin)| AllowView { prefix, origin })
            .collect(),
    }
}
