//! `block` and `unblock`.

use ipnet::IpNet;

use super::reply::{engine_error, error};
use crate::daemon::state::State;
use crate::{
    decision::Holder,
    engine::{BlockRequest, EngineError, Lift},
    wire::{ErrorKind, Response},
};

pub fn block(state: &mut State, req: BlockRequest, holder: Holder) -> Response {
    match state.engine.block(req, holder) {
        Ok((decision, kept_longer)) => Response::Blocked {
            decision,
            kept_longer,
        },
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
            None => error(ErrorKind::NotFound, not_blocked(state, prefix.trunc())),
        },
        Err(EngineError::NotBlocked { prefix }) => {
            error(ErrorKind::NotFound, not_blocked(state, prefix))
        }
        Err(e) => engine_error(&e),
    }
}

/// Why `unblock PREFIX` lifted nothing: no decision at all, or a wider one that covers it (which
/// `explain` shows as blocking), named with the command that lifts it.
fn not_blocked(state: &State, prefix: IpNet) -> String {
    let wider = state
        .engine
        .book()
        .covering(prefix.network())
        .into_iter()
        .find(|d| d.prefix != prefix && d.prefix.contains(&prefix));
    let Some(d) = wider else {
        return format!("{prefix} is not blocked (see `ipwarden list`)");
    };
    let mut lift = format!("ipwarden unblock {}", d.prefix);
    if d.origin != crate::decision::Origin::Manual {
        lift.push_str(&format!(" --origin {}", d.origin));
        if let Some(name) = &d.source {
            lift.push_str(&format!(" --name {name}"));
        }
    }
    format!(
        "{prefix} has no decision of its own, but {} covers it ({} {}, {}); `{lift}` lifts that",
        d.prefix,
        d.holder(),
        d.action.name(),
        d.reason
    )
}

/// A bulk `unblock`: refuses a filter that names nothing (or the whole address space without
/// an origin), so that no typo lifts every decision.
pub fn unblock_where(
    state: &mut State,
    range: Option<IpNet>,
    origin: Option<crate::decision::Origin>,
    source: Option<String>,
) -> Response {
    let invalid = |message: &str| error(ErrorKind::Invalid, message);
    if source.is_some() && origin.is_none() {
        return invalid("--name needs --origin");
    }
    match (range, origin) {
        (None, None) => {
            return invalid(
                "name what to lift: --range CIDR (every decision inside it), --origin O --all (every decision of an origin), or both",
            );
        }
        (Some(r), None) if r.prefix_len() == 0 => {
            return invalid(
                "--range of the whole address space lifts everything: name an origin too (--origin O)",
            );
        }
        _ => {}
    }
    match state.engine.lift_where(range, origin, source.as_deref()) {
        Ok(lifted) => Response::LiftedMany { lifted },
        Err(e) => engine_error(&e),
    }
}
