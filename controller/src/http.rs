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
