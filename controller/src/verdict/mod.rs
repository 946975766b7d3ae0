//! The verdict endpoint: a proxy's forward-auth subrequest in, ipwarden's verdict on the client
//! out (2xx let through, 401 challenge, 403 block, with `X-Ipwarden-*` headers for the
//! application), the proof-of-work page for challenged clients, and the pass that lets a client
//! who solved it through, at L7 (a cookie) and in XDP (a `challenge-pass` decision).
//!
//! It never waits for the engine or IPASIS: it reads a mirror of the decisions ([`Table`]) and
//! the store's cached answers, and queues unknown clients for a lookup.
//!
//! Routes, also under `/.ipwarden/` so that a proxy can pass that whole path through:
//! `/verdict` (the subrequest), `/challenge` (the page), `/solve` (the page's answer).

pub mod client;
pub mod http;
mod judge;
mod page;
mod passes;
mod table;
pub mod token;

use std::{net::SocketAddr, sync::Arc, time::Duration};

pub use judge::{Endpoint, Parts};
pub use table::{Covered, Held, Table};
use thiserror::Error;
pub use token::{Key, KeyError, TokenError};
use tokio::{net::TcpListener, sync::Semaphore};

/// Connections served at once; more wait in the listen backlog. A proxy keeps a few alive.
const CONNECTIONS: usize = 512;

/// Why the endpoint could not start.
#[derive(Debug, Error)]
pub enum VerdictError {
    #[error("listening for verdicts on {addr} ([verdict] listen)")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Binds the endpoint; the returned future serves until dropped or aborted.
pub async fn serve(endpoint: Arc<Endpoint>) -> Result<impl Future<Output = ()>, VerdictError> {
    let addr = endpoint.listen();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| VerdictError::Listen { addr, source })?;
    Ok(async move {
        let slots = Arc::new(Semaphore::new(CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "verdict: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                connection(http::Conn::new(stream), peer, &endpoint).await;
                drop(permit);
            });
        }
    })
}

/// Answers the requests of one keep-alive connection.
async fn connection(mut conn: http::Conn, peer: SocketAddr, endpoint: &Endpoint) {
    while let Some(req) = conn.next().await {
        let (response, keep_alive) = match req {
            Ok(req) => (endpoint.answer(peer.ip(), &req), req.keep_alive),
            Err(e) => {
                let status = if e == http::HeadError::TooLarge {
                    413
                } else {
                    400
                };
                (http::Response::new(status).text("bad request\n"), false)
            }
        };
        if conn.send(&response, keep_alive).await.is_err() || !keep_alive {
            return;
        }
    }
}
