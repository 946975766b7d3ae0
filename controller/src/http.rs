//! The one HTTP client builder (IPASIS, CrowdSec, feeds): ipwarden's user agent, bounded
//! connect and total times, a redirect policy, and the process-wide TLS provider installed
//! once.

use std::{sync::Once, time::Duration};

/// Where a client may be redirected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirects {
    /// Never: an API answers where it is asked.
    None,
    /// At most this many hops, and never from `https` to `http` (a downgrade would hand the
    /// body to whoever sits on the path).
    Follow(usize),
}

/// How a client is bounded.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub connect_timeout: Duration,
    /// The whole request, body included; `None` when the caller bounds it itself.
    pub timeout: Option<Duration>,
    pub redirects: Redirects,
}

/// A client with ipwarden's defaults.
pub fn client(opts: Options) -> Result<reqwest::Client, reqwest::Error> {
    static PROVIDER: Once = Once::new();
    // rustls needs a process-wide crypto provider; installed once for every client.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let redirect = match opts.redirects {
        Redirects::None => reqwest::redirect::Policy::none(),
        Redirects::Follow(max) => reqwest::redirect::Policy::custom(move |attempt| {
            let downgrade = attempt.url().scheme() == "http"
                && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade {
                attempt.error("refusing a redirect from https to http")
            } else if attempt.previous().len() > max {
                attempt.error(format!("more than {max} redirects"))
            } else {
                attempt.follow()
            }
        }),
    };
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("ipwarden/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(opts.connect_timeout)
        .redirect(redirect);
    if let Some(t) = opts.timeout {
        b = b.timeout(t);
    }
    b.build()
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Over the limit: reading stopped there (the rest is never held).
    TooLarge,
    Transport(reqwest::Error),
}

/// A response's body, read chunk by chunk up to `max` bytes: anything from outside is bounded
/// before it is held, whatever its declared length.
pub async fn body(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A one-shot server answering with `len` bytes of body, its length declared or not.
    async fn serve(len: usize, declared: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            let head = if declared {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n")
            } else {
                "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_owned()
            };
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&vec![b'x'; len]).await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn bodies_are_bounded_whatever_their_declared_length() {
        let c = client(Options {
            connect_timeout: Duration::from_secs(2),
            timeout: Some(Duration::from_secs(5)),
            redirects: Redirects::None,
        })
        .unwrap();
        for declared in [true, false] {
            let url = serve(100, declared).await;
            let r = c.get(&url).send().await.unwrap();
            assert_eq!(body(r, 100).await.unwrap().len(), 100);
            let url = serve(1 << 20, declared).await;
            let r = c.get(&url).send().await.unwrap();
            assert!(matches!(body(r, 64 << 10).await, Err(BodyError::TooLarge)));
        }
    }
}
