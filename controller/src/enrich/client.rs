//! The HTTP client for IPASIS: URL from a configurable template, the key in a configurable
//! header (never the URL), a timeout per request, bounded retries with jittered exponential
//! backoff on timeouts, connection errors and 5xx, and a mapping of every status the vendor
//! documents. Error messages never contain the key or the response body.

use std::{net::IpAddr, time::Duration};

use reqwest::header::{HeaderName, HeaderValue};
use thiserror::Error;

use super::ApiKey;
use crate::config::IpasisConfig;
use crate::record::{Record, RecordError};

/// A lookup that produced no answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnrichError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to the API ({0})")]
    Connect(String),
    #[error("the API answered {status} (server error)")]
    Server { status: u16 },
    #[error("rate limited by the API (429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("the API rejected the address (400)")]
    Invalid,
    #[error("the API refused the key ({status}): check ipasis key and account")]
    Unauthorized { status: u16 },
    #[error("the API quota is exhausted (402)")]
    QuotaExhausted,
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("unreadable answer: {0}")]
    Body(RecordError),
    #[error("the API answered {status}")]
    Status { status: u16 },
}

impl EnrichError {
    /// Worth retrying within the same lookup.
    pub fn transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_) | Self::Connect(_) | Self::Server { .. }
        )
    }
}

/// Why a client could not be built from the configuration.
#[derive(Debug, Error)]
pub enum ClientBuildError {
    #[error("ipasis.auth_header is not a valid header name")]
    Header,
    #[error("the API key cannot be sent in a header")]
    Key,
    #[error("building the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// Talks to IPASIS.
#[derive(Clone)]
pub struct IpasisClient {
    http: reqwest::Client,
    base_url: String,
    path: String,
    header: HeaderName,
    key: HeaderValue,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    max_body: usize,
}

impl std::fmt::Debug for IpasisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpasisClient")
            .field("base_url", &self.base_url)
            .field("path", &self.path)
            .field("header", &self.header)
            .field("key", &"***")
            .finish()
    }
}

fn jitter(d: Duration) -> Duration {
    // Up to +50 %, from the clock's low bits: spreading retries needs no cryptographic quality.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64((nanos % 1000) as f64 / 2000.0)
}

impl IpasisClient {
    pub fn new(cfg: &IpasisConfig, key: &ApiKey) -> Result<Self, ClientBuildError> {
        // rustls needs a process-wide crypto provider; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut key = HeaderValue::from_str(key.expose()).map_err(|_| ClientBuildError::Key)?;
        key.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("ipwarden/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ClientBuildError::Http)?;
        Ok(Self {
            http,
            base_url: cfg.base_url.base().to_owned(),
            path: cfg.path.clone(),
            header: HeaderName::from_bytes(cfg.auth_header.as_bytes())
                .map_err(|_| ClientBuildError::Header)?,
            key,
            timeout: cfg.timeout,
            retries: cfg.retries,
            backoff: cfg.backoff,
            max_body: cfg.max_body,
        })
    }

    /// The URL for an address (no key in it, by construction).
    pub fn url(&self, addr: IpAddr) -> String {
        format!(
            "{}{}",
            self.base_url,
            self.path.replace("{ip}", &addr.to_string())
        )
    }

    /// Looks `addr` up, retrying transient failures.
    pub async fn lookup(&self, addr: IpAddr) -> Result<Record, EnrichError> {
        let mut attempt = 0;
        loop {
            match self.once(addr).await {
                Err(e) if e.transient() && attempt < self.retries => {
                    let wait = jitter(self.backoff * 2u32.saturating_pow(attempt));
                    tracing::debug!(%addr, error = %e, ?wait, "retrying lookup");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn once(&self, addr: IpAddr) -> Result<Record, EnrichError> {
        let request = self
            .http
            .get(self.url(addr))
            .header(self.header.clone(), self.key.clone())
            .timeout(self.timeout);
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            400 => return Err(EnrichError::Invalid),
            401 | 403 => return Err(EnrichError::Unauthorized { status }),
            402 => return Err(EnrichError::QuotaExhausted),
            429 => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                return Err(EnrichError::RateLimited { retry_after });
            }
            500..=599 => return Err(EnrichError::Server { status }),
            _ => return Err(EnrichError::Status { status }),
        }
        let body = crate::http::body(response, self.max_body)
            .await
            .map_err(|e| match e {
                crate::http::BodyError::TooLarge => EnrichError::TooLarge {
                    limit: self.max_body,
                },
                crate::http::BodyError::Transport(e) => self.transport(&e),
            })?;
        Record::parse(&body).map_err(EnrichError::Body)
    }

    fn transport(&self, e: &reqwest::Error) -> EnrichError {
        if e.is_timeout() {
            EnrichError::Timeout(self.timeout)
        } else if e.is_connect() {
            EnrichError::Connect("connection failed".into())
        } else if e.is_body() || e.is_decode() {
            EnrichError::Connect("the answer was cut off".into())
        } else {
            EnrichError::Connect("transport error".into())
        }
    }
}
