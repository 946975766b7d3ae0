//! Asking the daemon: one request, one answer; an error answer becomes an error.

use ipwarden::{
    cli::Conn,
    ipc::client,
    wire::{ErrorKind, Request, Response},
};

/// Sends a request to the daemon; an error answer becomes an error.
pub fn call(conn: &Conn, request: Request) -> anyhow::Result<Response> {
    match client::call(&conn.socket, request)? {
        Response::Error { message, kind } => Err(Refused { message, kind }.into()),
        other => Ok(other),
    }
}

/// The daemon's error answer; `main` takes the exit code from its kind.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
    pub kind: ErrorKind,
}

/// Sends a request whose answer is a plain acknowledgement, and prints it.
pub fn done(conn: &Conn, request: Request) -> anyhow::Result<()> {
    match call(conn, request)? {
        Response::Done { message } => {
            println!("{message}");
            Ok(())
        }
        other => unexpected(&other),
    }
}

pub fn unexpected<T>(r: &Response) -> anyhow::Result<T> {
    anyhow::bail!("unexpected answer from the daemon: {r:?}")
}
