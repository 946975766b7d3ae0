//! `reload`: the configuration file read again.

use super::reply::{error, kind_of};
use crate::daemon::state::State;
use crate::{
    daemon::state::ReloadError,
    wire::{ErrorKind, Response},
};

pub fn reload(state: &mut State) -> Response {
    match state.reload_from_file() {
        Ok(message) => Response::Done { message },
        Err(e) => {
            let kind = match &e {
                ReloadError::Engine(e) => kind_of(e),
                // A file that does not load: the request was fine, the file is refused.
                ReloadError::Config(_) | ReloadError::Fingerprints(_) => ErrorKind::Refused,
            };
            tracing::error!("reload: {e}");
            error(kind, e)
        }
    }
}

/// The configuration in force (command-line overrides included, every default filled in). It
/// holds no secret: keys and credentials are read from files it names.
pub fn show(state: &State) -> Response {
    match toml::to_string(state.engine.config()) {
        Ok(toml) => Response::Config { toml },
        Err(e) => error(
            ErrorKind::Internal,
            format!("the configuration does not serialize: {e}"),
        ),
    }
}
