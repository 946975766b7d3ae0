//! `reload`: the configuration file read again.

use super::reply::error;
use crate::daemon::state::State;
use crate::wire::Response;

pub fn reload(state: &mut State) -> Response {
    match state.reload_from_file() {
        Ok(message) => Response::Done { message },
        Err(e) => error(e),
    }
}
