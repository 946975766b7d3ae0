//! The `/metrics` endpoint: a deliberately small HTTP/1.1 server (one GET, then close), bounded
//! in request size, time and concurrent connections, so that a scraper or a stray client can
//! never hold the daemon.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// Largest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request, and to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen backlog.
const CONNECTIONS: usize = 8;
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the endpoint could not start.
#[derive(Debug, Error)]
#[error("listening for metrics on {addr} ([metrics] listen)")]
pub struct MetricsError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr`; the returned future serves until it is dropped or aborted.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
) -> Result<impl Future<Output = ()>, MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError { addr, source })?;
    let registry = Arc::new(registry);
    Ok(async move {
        let slots = Arc::new(Semaphore::new(CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, registry).await {
                    tracing::debug!(error = %e, "metrics: connection ended");
                }
                drop(permit);
            });
        }
    })
}

/// Whether the client asked for OpenMetrics (Prometheus does, in its `Accept` header); others
/// (promtool, curl, older scrapers) get the classic text format.
fn wants_openmetrics(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.lines()
        .any(|l| l.starts_with("accept:") && l.contains("application/openmetrics-text"))
}

/// The classic Prometheus text format (0.0.4) from OpenMetrics text: a counter family is named
/// with its `_total` in HELP and TYPE, and there are no UNIT or EOF lines. Parsers of the classic
/// format (promtool among them) otherwise take a counter's samples for another, undocumented
/// metric.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let rest = line.strip_prefix("# HELP ").map(|r| ("# HELP ", r));
        let rest = rest.or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match rest {
            Some((tag, r)) => {
                let (name, tail) = r.split_once(' ').unwrap_or((r, ""));
                out.push_str(tag);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            // `name{} 1`: the classic format writes no empty label set.
            None => out.push_str(&line.replacen("{} ", " ", 1)),
        }
        out.push('\n');
    }
    out
}

/// What a request asks for, from its request line.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    NotAllowed,
    Bad,
}

fn route(head: &[u8]) -> Route {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with(b"HTTP/1.") {
        return Route::Bad;
    }
    if method != b"GET" {
        return Route::NotAllowed;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    if path == b"/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// Reads until the end of the request head (or the limit), within [`IO_TIMEOUT`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_HEAD {
                return Ok(());
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
    Ok(head)
}

async fn answer(mut stream: TcpStream, registry: Arc<Registry>) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let openmetrics = wants_openmetrics(&head);
    let (status, content_type, body) = match route(&head) {
        Route::Metrics => {
            // Reading the state takes the engine lock: not on a runtime thread.
            let text = tokio::task::spawn_blocking(move || {
                let mut out = String::with_capacity(16 * 1024);
                prometheus_client::encoding::text::encode(&mut out, &registry).map(|()| out)
            })
            .await
            .map_err(std::io::Error::other)?;
            match text {
                Ok(t) if openmetrics => ("200 OK", OPENMETRICS, t),
                Ok(t) => ("200 OK", PROMETHEUS_TEXT, to_prometheus_text(&t)),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        }
        Route::NotFound => ("404 Not Found", "text/plain", "try /metrics\n".into()),
        Route::NotAllowed => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
        Route::Bad => ("400 Bad Request", "text/plain", "bad request\n".into()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::time::timeout(IO_TIMEOUT, stream.write_all(reply.as_bytes()))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "writing"))??;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_with_their_total() {
        let om = "# HELP a_packets Frames.\n# TYPE a_packets counter\na_packets_total{iface=\"e\"} 3\n# HELP a_polls Polls.\n# TYPE a_polls counter\na_polls_total{} 1\n# HELP a_d Time.\n# TYPE a_d_seconds histogram\n# UNIT a_d_seconds seconds\na_d_seconds_count 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_packets_total Frames.\n# TYPE a_packets_total counter\na_packets_total{iface=\"e\"} 3\n# HELP a_polls_total Polls.\n# TYPE a_polls_total counter\na_polls_total 1\n# HELP a_d Time.\n# TYPE a_d_seconds histogram\na_d_seconds_count 1\n"
        );
    }

    #[test]
    fn routes_only_get_metrics() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(route(b"garbage"), Route::Bad);
        assert_eq!(route(b""), Route::Bad);
        assert_eq!(route(b"GET /metrics SMTP\r\n\r\n"), Route::Bad);
    }

    #[tokio::test]
    async fn serves_a_scrape_and_refuses_the_rest() {
        let instruments = super::super::Instruments::default();
        instruments.poll_duration.observe(0.002);
        instruments
            .ipasis_requests
            .get_or_create(&super::super::OutcomeLabel { outcome: "answer" })
            .inc();
        let registry = super::super::registry(&instruments, Arc::new(|| None));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let server = tokio::spawn(serve(addr, registry).await.unwrap());
        let get = |req: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get(
            "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"), "{ok}");
        assert!(ok.contains("ipwarden_build_info{"), "{ok}");
        assert!(
            ok.contains("ipwarden_poll_duration_seconds_count 1"),
            "{ok}"
        );
        assert!(ok.trim_end().ends_with("# EOF"), "{ok}");
        let classic = get("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert!(classic.contains("text/plain; version=0.0.4"), "{classic}");
        assert!(
            classic.contains("# TYPE ipwarden_ipasis_requests_total counter"),
            "{classic}"
        );
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
        assert!(
            get("GET /x HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get("DELETE /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        // A client that sends an endless head is cut at the limit and answered.
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD * 2));
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(big.as_bytes()).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        server.abort();
    }
}
