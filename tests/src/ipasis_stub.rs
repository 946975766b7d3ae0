//! A stand-in for the IPASIS API: a small HTTP/1.1 server on a loopback address (of this host,
//! or of a test namespace) with per-address fixtures and injectable faults. It records every
//! request (target and headers) so tests can check what the daemon sent.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::netns::NetNs;

/// How the stand-in answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub retry_after: Option<u64>,
    /// Send the body this slowly (bytes per 100 ms), like a slowloris server.
    pub trickle: Option<usize>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: &str) -> Self {
        Self::status(200, body)
    }

    /// Any status with a body.
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            retry_after: None,
            trickle: None,
        }
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

/// Canned answers in the vendor's shapes.
pub mod answers {
    pub const TOR: &str = r#"{"ip":"x","country":"DE","asn":{"ASN":"AS64501","Name":"TOR-EXIT-NET"},"company":{"Name":"Tor Exit Operator"},"privacy":{"VPN":false,"Proxy":false,"Tor":true,"Relay":false,"Hosting":false,"Abuse":false,"Crawler":false}}"#;
    pub const HOSTING_PROXY: &str = r#"{"ip":"x","is_tor":false,"is_vpn":false,"is_proxy":true,"is_hosting":true,"asn":{"number":64502,"name":"BIGCLOUD"},"company":{"name":"Big Cloud Hosting"}}"#;
    pub const HOSTING: &str = r#"{"ip":"x","country":"US","asn":{"ASN":"AS64503","Name":"RACKS"},"company":{"Name":"Racks Hosting"},"privacy":{"VPN":false,"Proxy":false,"Tor":false,"Relay":false,"Hosting":true,"Abuse":false,"Crawler":false}}"#;
    pub const RESIDENTIAL: &str = r#"{"ip":"x","country":"FR","asn":{"ASN":"AS64504","Name":"HOME-ISP"},"company":{"Name":"Home ISP"},"privacy":{"VPN":false,"Proxy":false,"Tor":false,"Relay":false,"Hosting":false,"Abuse":false,"Crawler":false}}"#;
    pub const VPN: &str = r#"{"ip":"x","country":"NL","asn":{"ASN":"AS64505","Name":"VPN-CO"},"company":{"Name":"Private VPN Co"},"privacy":{"VPN":true,"Proxy":false,"Tor":false,"Relay":false,"Hosting":false,"Abuse":false,"Crawler":false}}"#;
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Request target: path and query.
    pub target: String,
    /// The address asked about (from `?ip=` or the last path segment).
    pub ip: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The body (as `Content-Length` gave it, at most 64 KiB), lossily as text.
    pub body: String,
}

#[derive(Default)]
struct State {
    fixtures: HashMap<String, Reply>,
    fallback: Option<Reply>,
    seen: Vec<Seen>,
}

/// The running stand-in; stops on drop.
pub struct IpasisStub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Longest a stand-in serves, whatever the test does.
const LIFETIME: Duration = Duration::from_secs(300);

impl IpasisStub {
    /// Listens on 127.0.0.1 of this process's namespace.
    pub fn start() -> Self {
        Self::serve(TcpListener::bind("127.0.0.1:0").expect("binding the stand-in"))
    }

    /// Listens on 127.0.0.1 inside `ns` (where a daemon under test runs).
    pub fn start_in(ns: &NetNs) -> Self {
        Self::serve(ns.run(|| TcpListener::bind("127.0.0.1:0").expect("binding the stand-in")))
    }

    /// Listens on `ip` inside `ns` (reachable from other namespaces linked to it).
    pub fn start_on(ns: &NetNs, ip: std::net::IpAddr) -> Self {
        Self::serve(ns.run(move || TcpListener::bind((ip, 0)).expect("binding the stand-in")))
    }

    fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("local address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let state = Arc::new(Mutex::new(State {
            fallback: Some(Reply::json(answers::RESIDENTIAL)),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let born = Instant::now();
                while !stop.load(Ordering::Relaxed) && born.elapsed() < LIFETIME {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (state, stop) = (state.clone(), stop.clone());
                            std::thread::spawn(move || connection(stream, &state, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How requests for `ip` are answered.
    pub fn set(&self, ip: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .fixtures
            .insert(ip.to_owned(), reply);
    }

    /// How requests for addresses without a fixture are answered (default: residential).
    pub fn set_fallback(&self, reply: Reply) {
        self.state.lock().unwrap().fallback = Some(reply);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests for one address.
    pub fn count(&self, ip: &str) -> usize {
        self.seen().iter().filter(|s| s.ip == ip).count()
    }
}

impl Drop for IpasisStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connection(mut stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nonblocking(false);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let mut body = head.split_off(end);
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let method = request_line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let ip = target
        .split_once("ip=")
        .map(|(_, v)| v.split('&').next().unwrap_or("").to_owned())
        .unwrap_or_else(|| target.rsplit('/').next().unwrap_or("").to_owned());
    let reply = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            target: target.clone(),
            ip: ip.clone(),
            headers,
            method,
            body,
        });
        s.fixtures.get(&ip).cloned().or_else(|| s.fallback.clone())
    };
    let Some(reply) = reply else {
        return;
    };
    // Bounded sleeps that end early when the stand-in stops.
    let until = Instant::now() + reply.delay;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut head = format!(
        "HTTP/1.1 {} Stand-in\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    if let Some(s) = reply.retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    match reply.trickle {
        None => {
            let _ = stream.write_all(&reply.body);
        }
        Some(n) => {
            for chunk in reply.body.chunks(n.max(1)) {
                if stop.load(Ordering::Relaxed) || stream.write_all(chunk).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Writes the stub's API key to `dir/ipasis.key` (mode 0600, as the daemon requires) and
/// returns the path.
pub fn key_file(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let key = dir.join("ipasis.key");
    std::fs::write(&key, "ipasis_test_key").expect("writing the key file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .expect("making the key file private");
    key
}
