//! Just enough HTTP/1.1 for forward-auth subrequests: requests without bodies on keep-alive
//! connections, every head bounded in size and time.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Largest request head: a proxy's subrequest with cookies is a few KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may stay idle between requests.
pub const IDLE: Duration = Duration::from_secs(60);
/// How long a request head may take to arrive once started, and an answer to be written.
pub const IO: Duration = Duration::from_secs(5);

/// One request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub keep_alive: bool,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter (`%XX` and `+` decoded).
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(v))
        })
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers("cookie")
            .flat_map(|h| h.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then_some(v)
            })
    }
}

/// Why a head was not a request.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    Malformed,
    /// A body this endpoint does not read.
    Body,
}

/// Parses a complete head (up to and excluding the blank line).
pub fn parse(head: &[u8]) -> Result<Request, HeadError> {
    let head = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = head.split("\r\n");
    let line = lines.next().ok_or(HeadError::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HeadError::Malformed),
    };
    if method.is_empty() || !target.starts_with('/') {
        return Err(HeadError::Malformed);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for l in lines {
        let (name, value) = l.split_once(':').ok_or(HeadError::Malformed)?;
        if name.is_empty() || name.contains(' ') {
            return Err(HeadError::Malformed);
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let req = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        keep_alive: false,
        headers,
    };
    if req.header("transfer-encoding").is_some()
        || req
            .header("content-length")
            .is_some_and(|v| !v.is_empty() && v != "0")
    {
        return Err(HeadError::Body);
    }
    let connection = req.header("connection").map(str::to_ascii_lowercase);
    let keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => http11,
    };
    Ok(Request { keep_alive, ..req })
}

/// Reads heads from one connection. Bytes after a head stay for the next (pipelining).
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(2048),
        }
    }

    /// The next request; `None` at a clean end (the peer closed or stayed idle too long).
    pub async fn next(&mut self) -> Option<Result<Request, HeadError>> {
        let mut deadline = tokio::time::Instant::now() + IDLE;
        loop {
            if let Some(end) = find_end(&self.buf) {
                let req = parse(&self.buf[..end]);
                self.buf.drain(..end + 4);
                return Some(req);
            }
            if self.buf.len() > MAX_HEAD {
                return Some(Err(HeadError::TooLarge));
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => n,
            };
            if self.buf.is_empty() {
                deadline = tokio::time::Instant::now() + IO;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes one response.
    pub async fn send(&mut self, r: &Response, keep_alive: bool) -> std::io::Result<()> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
        for (k, v) in &r.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
        if !keep_alive {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&r.body);
        match tokio::time::timeout(IO, self.stream.write_all(&bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// An answer.
#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn text(self, body: &str) -> Self {
        let mut r = self.header("Content-Type", "text/plain; charset=utf-8");
        r.body = body.as_bytes().to_vec();
        r
    }

    pub fn html(self, body: String) -> Self {
        let mut r = self.header("Content-Type", "text/html; charset=utf-8");
        r.body = body.into_bytes();
        r
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Header Fields Too Large",
        429 => "Too Many Requests",
        _ => "Status",
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_auth_subrequest() {
        let r = parse(
            b"GET /verdict HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\nCookie: a=1; ipwarden_pass=ab.cd\r\nCookie: b=2",
        )
        .unwrap();
        assert_eq!(r.path, "/verdict");
        assert!(r.keep_alive);
        assert_eq!(r.header("x-forwarded-for"), Some("1.2.3.4, 5.6.7.8"));
        assert_eq!(r.cookie("ipwarden_pass"), Some("ab.cd"));
        assert_eq!(r.cookie("b"), Some("2"));
        assert_eq!(r.cookie("c"), None);
    }

    #[test]
    fn queries_decode_and_bad_heads_are_refused() {
        let r = parse(b"GET /s?seed=a.b&nonce=12&return=%2Fx%3Fy%3D1+2 HTTP/1.0").unwrap();
        assert_eq!(r.param("return").as_deref(), Some("/x?y=1 2"));
        assert_eq!(r.param("nonce").as_deref(), Some("12"));
        assert!(!r.keep_alive, "HTTP/1.0 closes by default");
        assert_eq!(r.param("x"), None);
        assert_eq!(
            parse(b"GET /s?a=%4 HTTP/1.1")
                .unwrap()
                .param("a")
                .as_deref(),
            Some("%4")
        );
        for bad in [
            &b"GET / HTTP/2"[..],
            b"GET http://x/ HTTP/1.1",
            b"GET / HTTP/1.1\r\nno colon",
            b"\xff / HTTP/1.1",
            b"GET /  HTTP/1.1",
        ] {
            assert_eq!(parse(bad), Err(HeadError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5"),
            Err(HeadError::Body)
        );
        assert!(parse(b"GET / HTTP/1.1\r\nContent-Length: 0").is_ok());
        assert!(
            !parse(b"GET / HTTP/1.1\r\nConnection: close")
                .unwrap()
                .keep_alive
        );
    }
}
