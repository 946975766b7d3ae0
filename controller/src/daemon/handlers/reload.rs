//! `reload`: the configuration file read again.

use super::{super::state::State, error};
use crate::wire::Response;

pub fn reload(state: &mut State) -> Response {
    match state.reload_from_file() {
        Ok(message) => Response::Done { message },
        Err(e) => error(e),
    }
}
