//! `block` and `unblock`.

use std::time::Duration;

use ipnet::IpNet;

use super::reply::{engine_error, error};
use crate::daemon::state::State;
use crate::{
    decision::Holder,
    engine::{BlockRequest, Lift},
    wire::{ErrorKind, Response},
};

pub fn block(
    state: &mut State,
    prefix: IpNet,
    ttl_secs: Option<u64>,
    permanent: bool,
    reason: Option<String>,
    holder: Holder,
) -> Response {
    let req = BlockRequest {
        prefix,
        ttl: ttl_secs.map(Duration::from_secs),
        permanent,
        reason,
    };
    match state.engine.block(req, holder) {
        Ok(decision) => Response::Blocked { decision },
        Err(e) => engine_error(&e),
    }
}

pub fn unblock(state: &mut State, prefix: IpNet, holder: Holder, all: bool) -> Response {
    let what = if all { Lift::All } else { Lift::Holder(holder) };
    match state.engine.unblock(prefix, what) {
        Ok((lifted, still)) => match lifted.first() {
            Some(first) => Response::Unblocked {
                decision: first.clone(),
                lifted,
                still,
            },
            None => error(
                ErrorKind::NotFound,
                format!("{} is not blocked", prefix.trunc()),
            ),
        },
        Err(e) => engine_error(&e),
    }
}
