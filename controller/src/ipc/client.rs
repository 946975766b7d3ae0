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

/// How long it waits for an import's: a million decisions take seconds on a fast host, and the
/// store, the maps and the index are written before the answer.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// Connected and asked, but no answer came in time.
    #[error(
        "the daemon at {path} did not answer within {secs} s; it may still be working on the request (see `ipwarden status` and its log)"
    )]
    TimedOut { path: PathBuf, secs: u64 },
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
    let timeout = match request {
        Request::Import { .. } => IMPORT_TIMEOUT,
        _ => TIMEOUT,
    };
    call_within(socket, request, timeout)
}

/// As [`call`], waiting at most `timeout` for each read and write.
pub fn call_within(
    socket: &Path,
    request: Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
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
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
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
        .map_err(|e| match e.kind() {
            // A read timeout shows as EAGAIN ("Resource temporarily unavailable").
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                ClientError::TimedOut {
                    path: path.clone(),
                    secs: timeout.as_secs().max(1),
                }
            }
            _ => io(e),
        })?;
    if answer.is_empty() {
        written.map_err(io)?;
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        )));
    }
    serde_json::from_str(&answer).map_err(|source| ClientError::Protocol { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_does_not_answer_in_time_is_said_to_be_slow_not_broken() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        // Accepts, reads the request, never answers.
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&mut s).read_line(&mut line).unwrap();
            std::thread::sleep(Duration::from_millis(800));
        });
        let err = call_within(&socket, Request::Status, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, ClientError::TimedOut { .. }), "{err:?}");
        let said = err.to_string();
        assert!(said.contains("did not answer within 1 s"), "{said}");
        assert!(!said.contains("temporarily unavailable"), "{said}");
        server.join().unwrap();
    }
}
