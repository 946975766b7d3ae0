//! What every handler shares: errors as answers, and the holder a request names.

use crate::{
    decision::{Holder, Origin},
    wire::Response,
};

/// A failure as the answer.
pub fn error(e: impl std::fmt::Display) -> Response {
    Response::Error {
        message: e.to_string(),
    }
}

/// The holder a request names (`manual` unless it says otherwise).
pub fn holder(origin: Option<Origin>, source: Option<String>) -> Holder {
    Holder {
        origin: origin.unwrap_or(Origin::Manual),
        source,
    }
}
