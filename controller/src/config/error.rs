//! A configuration that cannot be used: the message names the file and the key.

use std::path::PathBuf;

use thiserror::Error;

/// A configuration that cannot be used. Messages name the file and the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type (the message has line and column).
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// A value of the right type but out of range.
    #[error("{origin}: `{key}` {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}
