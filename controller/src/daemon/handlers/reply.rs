//! What every handler shares: errors as answers (with their kind), and the holder a request
//! names.

use crate::{
    decision::{Holder, Origin},
    engine::EngineError,
    wire::{ErrorKind, Response},
};

/// A failure as the answer.
pub fn error(kind: ErrorKind, e: impl std::fmt::Display) -> Response {
    Response::Error {
        message: e.to_string(),
        kind,
    }
}

/// An engine failure as the answer.
pub fn engine_error(e: &EngineError) -> Response {
    error(kind_of(e), e)
}

/// What a program can tell from an engine failure.
pub fn kind_of(e: &EngineError) -> ErrorKind {
    match e {
        EngineError::AllowlistConflict { .. }
        | EngineError::Everything { .. }
        | EngineError::TooWide { .. }
        | EngineError::BadRate { .. }
        | EngineError::NotOperatorOrigin { .. }
        | EngineError::ConfiguredAllow { .. } => ErrorKind::Refused,
        EngineError::NotBlocked { .. }
        | EngineError::NotHeld { .. }
        | EngineError::NotAllowed { .. } => ErrorKind::NotFound,
        EngineError::Full { .. } | EngineError::MapFull { .. } | EngineError::PeerFull { .. } => {
            ErrorKind::Full
        }
        EngineError::Store(_)
        | EngineError::Dataplane { .. }
        | EngineError::OutOfSync { .. }
        | EngineError::ReplacementAborted { .. } => ErrorKind::Internal,
    }
}

/// The holder a request names (`manual` unless it says otherwise).
pub fn holder(origin: Option<Origin>, source: Option<String>) -> Holder {
    Holder {
        origin: origin.unwrap_or(Origin::Manual),
        source: source.map(Into::into),
    }
}
