//! The daemon's side of the control socket.
//!
//! Peers are checked with `SO_PEERCRED`: only root and the daemon's own user are served (the
//! socket file is also mode 0600). Every read is bounded in size and time and every write in
//! time, so garbage, oversized requests and clients that never read cannot hold the daemon.

use std::{
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::wire::{
    Envelope, ErrorKind, IMPORT_START, MAX_IMPORT, MAX_REQUEST, PROTOCOL_VERSION, Request, Response,
};

/// How long a connection may stay silent between requests.
const IDLE: Duration = Duration::from_secs(30);
/// How long writing one response may take before the client is dropped.
const WRITE: Duration = Duration::from_secs(10);

/// Why the control socket could not be set up.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A live daemon already answers on the path.
    #[error(
        "another ipwarden daemon is already listening on {path}; stop it first (`systemctl stop ipwarden`) or use another --socket"
    )]
    InUse { path: PathBuf },
    /// Creating, binding or securing the socket failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Something that answers requests. It runs on a blocking thread: it may fsync.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Binds the control socket at `path`, replacing a stale one, with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let err = |op, source| ServerError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("creating the directory of", e))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse {
                path: path.to_owned(),
            });
        }
        // Nobody answers: a previous daemon died without cleaning up.
        std::fs::remove_file(path).map_err(|e| err("removing stale socket", e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| err("binding", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("setting mode 0600 on", e))?;
    Ok(listener)
}

/// Accepts connections until the task is aborted.
pub async fn serve(listener: UnixListener, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, handler.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting on the control socket");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn allowed(stream: &UnixStream) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(format!(
            "permission denied: uid {} may not use the control socket (root only)",
            cred.uid()
        ))
    }
}

async fn send(stream: &mut (impl tokio::io::AsyncWrite + Unpin), response: &Response) -> bool {
    let mut line = serde_json::to_vec(response).expect("responses serialize");
    line.push(b'\n');
    matches!(
        tokio::time::timeout(WRITE, stream.write_all(&line)).await,
        Ok(Ok(()))
    )
}

async fn connection(stream: UnixStream, handler: Handler) {
    let refused = allowed(&stream).err();
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    if let Some(message) = refused {
        tracing::warn!(%message, "refused a control socket peer");
        // Read (bounded) what the peer sent before answering, so it gets our answer instead
        // of a broken pipe; nothing it sent is acted on.
        let mut line = Vec::new();
        let mut limited = (&mut reader).take(MAX_REQUEST as u64);
        let _ = tokio::time::timeout(Duration::from_secs(1), limited.read_until(b'\n', &mut line))
            .await;
        let kind = ErrorKind::Refused;
        send(&mut w, &Response::Error { message, kind }).await;
        return;
    }
    loop {
        let mut line = Vec::new();
        let mut limited = (&mut reader).take(MAX_REQUEST as u64 + 1);
        let read = limited.read_until(b'\n', &mut line);
        match tokio::time::timeout(IDLE, read).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        // Only an import may be larger: read on, within its own bound.
        let mut limit = MAX_REQUEST;
        if line.len() > MAX_REQUEST && line.starts_with(IMPORT_START) && !line.ends_with(b"\n") {
            limit = MAX_IMPORT;
            let mut rest = (&mut reader).take((MAX_IMPORT - line.len()) as u64 + 1);
            let read = rest.read_until(b'\n', &mut line);
            if !matches!(tokio::time::timeout(IDLE * 4, read).await, Ok(Ok(_))) {
                return;
            }
        }
        if line.len() > limit {
            let message = format!("request larger than {limit} bytes");
            let kind = ErrorKind::Invalid;
            send(&mut w, &Response::Error { message, kind }).await;
            return;
        }
        let parsed = Envelope::parse(&line);
        // An import's line (tens of megabytes) is not kept while it is answered.
        drop(line);
        let response = match parsed {
            Ok(env) if env.version == PROTOCOL_VERSION => {
                let h = handler.clone();
                match tokio::task::spawn_blocking(move || h(env.request)).await {
                    Ok(r) => r,
                    Err(e) => Response::Error {
                        message: format!("internal error: {e}"),
                        kind: ErrorKind::Internal,
                    },
                }
            }
            Ok(env) => Response::Error {
                message: format!(
                    "protocol version {} is not supported (daemon speaks {PROTOCOL_VERSION}): use the ipwarden CLI of the same release",
                    env.version
                ),
                kind: ErrorKind::Invalid,
            },
            Err(e) => Response::Error {
                message: format!("malformed request: {e}"),
                kind: ErrorKind::Invalid,
            },
        };
        if !send(&mut w, &response).await {
            return;
        }
    }
}
