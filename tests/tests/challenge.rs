//! The verdict endpoint behind a real nginx (`auth_request`), with ipwarden attached to the
//! edge: clean, VPN, challenged and blocked sources as an application sees them, the challenge
//! solved by a real browser (headless Chromium) that then gets the page and its XDP rate limit
//! lifted, and passes that cannot be replayed from elsewhere or after they expire.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use ipwarden_common::{Action, Reason};
use ipwarden_tests::{
    Daemon, DaemonEnv, browser, eventually,
    ipasis_stub::{self, IpasisStub, Reply, answers},
    nginx::{self, Nginx},
    topology::{CLIENT_V4, EDGE_V4},
};
use sha2::{Digest as _, Sha256};

const CLEAN: &str = "203.0.113.7";
const VPN: &str = "203.0.113.8";
const BLOCKED: &str = "203.0.113.9";
const CHALLENGED: &str = "203.0.113.10";
const CHALLENGED_TOO: &str = "203.0.113.11";

struct Env {
    env: DaemonEnv,
    stub: IpasisStub,
    _daemon: Daemon,
    nginx: Nginx,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Env {
    fn new(pass_ttl: &str) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let key = ipasis_stub::key_file(keys.path());
        // Sources of the test; the stand-in API is started in the edge namespace below, so
        // its URL is filled in once the namespaces exist.
        let env = DaemonEnv::new(
            "",
            &[CLEAN, VPN, BLOCKED, CHALLENGED, CHALLENGED_TOO].map(ip),
        );
        let stub = IpasisStub::start_in(&env.topo.edge);
        stub.set_fallback(Reply::json(answers::RESIDENTIAL));
        stub.set(VPN, Reply::json(answers::VPN));
        let key_copy = env.home.config().with_file_name("ipasis.key");
        std::fs::copy(&key, &key_copy).unwrap();
        std::fs::write(
            env.home.config(),
            format!(
                r#"
[detection]
pps_threshold = 1000000
hard_pps_limit = 10000000

[ipasis]
base_url = "{}"
key_file = "{}"

[metrics]
listen = "127.0.0.1:9720"

[verdict]
difficulty = 12
pass_ttl = "{pass_ttl}"
"#,
                stub.base_url(),
                key_copy.display()
            ),
        )
        .unwrap();
        let daemon = env.start();
        let nginx = Nginx::start(&env.topo.edge, &EDGE_V4.to_string(), "127.0.0.1:9721");
        Self {
            env,
            stub,
            _daemon: daemon,
            nginx,
        }
    }

    /// `curl` from `src` in the client namespace: the status and the body (headers first with
    /// `-D -` among `extra`). Status 0: no connection.
    fn curl(&self, src: &str, path: &str, extra: &[&str]) -> (u16, String) {
        let url = format!("http://{EDGE_V4}:{}{path}", nginx::PORT);
        let mut args = vec![
            "-s",
            "--max-time",
            "5",
            "--interface",
            src,
            "-w",
            "\n%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = self.env.topo.client.exec_output("curl", &args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    fn context(&self) -> String {
        format!(
            "--- nginx ---\n{}\n--- daemon ---\n{}",
            self.nginx.log(),
            self.env.home.log_text()
        )
    }
}

/// The challenge in a served page, solved as the page's script does.
fn solve(page: &str) -> (String, String) {
    let challenge = page
        .split("CHALLENGE=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a challenge in the page")
        .to_owned();
    let bits: u32 = page
        .split("BITS=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|b| b.parse().ok())
        .expect("the difficulty in the page");
    let nonce = (0u64..1 << 24)
        .find(|n| {
            let d = Sha256::digest(format!("{challenge}:{n}").as_bytes());
            u32::from_be_bytes([d[0], d[1], d[2], d[3]]) >> (32 - bits) == 0
        })
        .expect("a solution");
    (challenge, nonce.to_string())
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn nginx_asks_ipwarden_and_a_browser_solves_its_way_back_to_full_speed() {
    let env = Env::new("1h");
    let home = &env.env.home;
    let client = CLIENT_V4.to_string();
    home.cli(&["block", BLOCKED]);
    home.cli(&["block", &client, "--challenge", "50", "--burst", "50"]);

    // A clean source gets the application, which sees the verdict.
    let (code, body) = env.curl(CLEAN, "/app", &[]);
    assert_eq!(code, 200, "{body}\n{}", env.context());
    assert!(body.contains("upstream: action=allow"), "{body}");

    // A VPN: once its lookup (queued by the first request, never waited for) is in, the
    // application sees the label.
    eventually(
        "the VPN label reaches the application",
        Duration::from_secs(10),
        || {
            let (code, body) = env.curl(VPN, "/app", &[]);
            code == 200 && body.contains("labels=vpn")
        },
    );
    assert_eq!(env.stub.count(VPN), 1, "one lookup, queued by the verdict");

    // A blocked source never completes a handshake: XDP drops its SYNs.
    let (code, _) = env.curl(BLOCKED, "/app", &["--connect-timeout", "2"]);
    assert_eq!(code, 0, "no connection from a blocked source");

    // A challenged client without JavaScript gets the page and its explanation, whatever
    // address it claims to be.
    let (code, body) = env.curl(
        &client,
        "/app",
        &["-H", &format!("X-Forwarded-For: {CLEAN}")],
    );
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("<noscript>") && body.contains("CHALLENGE="),
        "{body}"
    );

    // Before the pass, XDP holds the client to 50 pps with bursts of 50.
    let before = env.env.delivered(CLIENT_V4.into(), 400);
    assert!(before <= 120, "challenged: {before} of 400 delivered");

    // A real browser runs the page, solves it and lands on the application.
    let url = format!("http://{EDGE_V4}:{}/app", nginx::PORT);
    let started = Instant::now();
    let out = browser::dump_dom(&env.env.topo.client, &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("upstream: action=allow"),
        "the browser did not reach the application ({:?}):\n{dom}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        env.context()
    );
    eprintln!(
        "the browser solved the challenge in {:?}",
        started.elapsed()
    );

    // Its XDP rate limit is lifted: a pass of its own origin, visible and enforced.
    eventually(
        "the pass reaches the kernel",
        Duration::from_secs(5),
        || {
            env.env.enforced(&format!("{client}/32"))
                == Some((Action::PASS, Reason::CHALLENGE_PASS))
        },
    );
    let list = home.json(&["list", "--origin", "challenge-pass"]);
    assert_eq!(list["decisions"][0]["action"], "pass", "{list}");
    let explain = home.json(&["explain", &client]);
    assert_eq!(explain["verdict"], "passed", "{explain}");
    let after = env.env.delivered(CLIENT_V4.into(), 400);
    eprintln!("delivered of 400 back to back: {before} challenged, {after} with the pass");
    assert!(after >= 390, "passed: {after} of 400 delivered");

    // `status` counts what the endpoint answered.
    let status = home.json(&["status"]);
    let v = &status["verdict"];
    assert_eq!(v["listen"], "127.0.0.1:9721", "{status}");
    assert_eq!(v["passes"], 1, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert!(v["challenged"].as_u64() >= Some(2), "{v}");
    assert!(v["allowed"].as_u64() >= Some(3), "{v}");
    assert!(home.cli(&["status"]).contains("1 passes"));
    let scrape = env.env.topo.edge.exec(
        "curl",
        &["-s", "--max-time", "5", "http://127.0.0.1:9720/metrics"],
    );
    assert!(
        scrape.contains("ipwarden_challenge_solutions_total{result=\"passed\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("ipwarden_verdicts_total{action=\"challenge\"}"),
        "{scrape}"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_pass_is_bound_to_its_address_and_expires() {
    let env = Env::new("4s");
    let home = &env.env.home;
    home.cli(&[
        "block",
        "203.0.113.0/28",
        "--challenge",
        "50",
        "--burst",
        "50",
    ]);
    let (code, page) = env.curl(CHALLENGED, "/app", &[]);
    assert_eq!(code, 401, "{page}\n{}", env.context());
    let (challenge, nonce) = solve(&page);

    // A solution sent from another address is not that address's.
    let solve_path = format!("/.ipwarden/solve?challenge={challenge}&nonce={nonce}&return=%2Fapp");
    let (code, _) = env.curl(CHALLENGED_TOO, &solve_path, &[]);
    assert_eq!(code, 403);

    let (code, head) = env.curl(CHALLENGED, &solve_path, &["-D", "-"]);
    assert_eq!(code, 303, "{head}");
    assert!(head.contains("Location: /app"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a pass cookie")
        .to_owned();
    let with_cookie = ["-H", &format!("Cookie: {cookie}")];
    let (code, body) = env.curl(CHALLENGED, "/app", &with_cookie);
    assert_eq!((code, body.contains("action=allow")), (200, true), "{body}");
    // Spent: the same solution buys no second pass.
    assert_eq!(env.curl(CHALLENGED, &solve_path, &[]).0, 403);
    // Replayed from another address: challenged.
    assert_eq!(env.curl(CHALLENGED_TOO, "/app", &with_cookie).0, 401);
    // Expired: challenged again, and the kernel's pass lapses with it.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(env.curl(CHALLENGED, "/app", &with_cookie).0, 401);
    eventually(
        "the expired pass leaves the kernel",
        Duration::from_secs(5),
        || env.env.enforced(&format!("{CHALLENGED}/32")).is_none(),
    );
}
