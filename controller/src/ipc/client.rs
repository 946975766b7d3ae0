//! The CLI's side of the control socket: connect with checks that turn the usual failures into
//! actionable one-liners, send one request, read one response.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use crate::wire::{Envelope, MAX_FRAME, PROTOCOL_VERSION, Request, Response};

/// How long the CLI waits for the daemon's answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request did not get an answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing listens at the path.
    #[error(
        "the ipwarden daemon is not running (no control socket at {path}); start it with `systemctl start ipwarden` or `ipwarden run`, or point --socket / IPWARDEN_SOCKET at its socket"
    )]
    NotRunning { path: PathBuf },
    /// The socket exists but we may not use it.
    #[error(
        "permission denied on {path}: the control socket is for root (run the command as root)"
    )]
    PermissionDenied { path: PathBuf },
    /// Connected, but the exchange failed.
    #[error("talking to the daemon at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The daemon's answer is not a response we understand.
    #[error(
        "the daemon at {path} sent an unreadable answer (version mismatch between CLI and daemon?)"
    )]
    Protocol {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// Whether the daemon could not be reached at all (the CLI exits with 3 then).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::NotRunning { .. } | Self::PermissionDenied { .. }
        )
    }
}

/// Sends `request` to the daemon at `socket` and returns its response.
pub fn call(socket: &Path, request: Request) -> Result<Response, ClientError> {
    let path = socket.to_owned();
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning { path: path.clone() }
        }
        std::io::ErrorKind::PermissionDenied => {
            ClientError::PermissionDenied { path: path.clone() }
        }
        _ => ClientError::Io {
            path: path.clone(),
            source: e,
        },
    })?;
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_vec(&Envelope {
        version: PROTOCOL_VERSION,
        request,
    })
    .expect("requests serialize");
    line.push(b'\n');
    // A daemon refusing us may close early; its answer is still there to read.
    let written = (&stream).write_all(&line);
    let mut answer = String::new();
    BufReader::new((&stream).take(MAX_FRAME as u64))
        .read_line(&mut answer)
        .map_err(io)?;
    if answer.is_empty() {
        written.map_err(io)?;
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        )));
    }
    serde_json::from_str(&answer).map_err(|source| ClientError::Protocol { path, source })
}
