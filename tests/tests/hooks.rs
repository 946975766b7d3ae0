//! `[[notify]]` hooks against a local HTTP receiver: a new block is posted once as JSON with the
//! bearer token from its file; a renewal is not posted again; a receiver that fails is retried,
//! then counted in `status`, and neither the log nor `status` shows the URL's path or the token.
//!
//! Privileged: run with `cargo xtask test` (as root).

use std::{os::unix::fs::PermissionsExt as _, time::Duration};

use ipwarden_tests::{
    DaemonEnv, eventually,
    ipasis_stub::{IpasisStub, Reply, Seen},
};

const TOKEN: &str = "hook-token-0123456789";
const SECRET_PATH: &str = "hooks/T0SECRET/B0PATH";

fn posts(stub: &IpasisStub) -> Vec<Seen> {
    stub.seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_new_block_is_posted_once_with_its_token_and_a_failing_receiver_is_counted() {
    // The receiver listens in the daemon's namespace; the environment is made first so that its
    // directory holds the token file.
    let env = DaemonEnv::new("", &[]);
    let stub = IpasisStub::start_in(&env.topo.edge);
    stub.set_fallback(Reply::json("{}"));
    let dir = env.home.config().parent().unwrap().to_owned();
    let token = dir.join("hook.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = format!(
        r#"
[[notify]]
name = "chat"
url = "{}/{SECRET_PATH}"
token_file = "{}"
retries = 1
timeout = "2s"
"#,
        stub.base_url(),
        token.display()
    );
    std::fs::write(env.home.config(), config).unwrap();
    let _daemon = env.start();

    env.home.cli(&["block", "203.0.113.7", "--ttl", "1h"]);
    eventually("the block is posted", Duration::from_secs(5), || {
        !posts(&stub).is_empty()
    });
    let post = &posts(&stub)[0];
    assert_eq!(post.target, format!("/{SECRET_PATH}"));
    assert_eq!(
        post.headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let body: serde_json::Value = serde_json::from_str(&post.body).expect("a JSON body");
    assert_eq!(body["event"], "decision", "{body}");
    assert_eq!(body["decision"]["prefix"], "203.0.113.7/32", "{body}");
    assert_eq!(body["decision"]["action"], "block", "{body}");
    assert_eq!(body["decision"]["origin"], "manual", "{body}");

    // A longer block of the same address is an extension, not news.
    env.home.cli(&["block", "203.0.113.7", "--ttl", "2h"]);
    // A challenge is not an action this hook asked for.
    env.home.cli(&["block", "203.0.113.9", "--challenge", "20"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(posts(&stub).len(), 1, "told once: {:?}", posts(&stub));

    // The receiver fails: one try and one retry, then counted.
    stub.set_fallback(Reply::status(503, "down"));
    env.home.cli(&["block", "203.0.113.8", "--ttl", "1h"]);
    eventually("the failure is counted", Duration::from_secs(10), || {
        env.home.json(&["status"])["hooks"][0]["failed"] == 1
    });
    assert_eq!(
        posts(&stub).len(),
        3,
        "the first post, then a try and a retry"
    );
    let status = env.home.json(&["status"]);
    let hook = &status["hooks"][0];
    assert_eq!(hook["name"], "chat", "{status}");
    assert_eq!(hook["sent"], 1, "{status}");
    assert_eq!(hook["host"], "127.0.0.1", "{status}");
    assert!(
        hook["last_error"].as_str().unwrap().contains("503"),
        "{status}"
    );
    let said = format!("{status}{}", env.home.log_text());
    assert!(said.contains("notify hook failed"), "logged: {said}");
    for secret in ["T0SECRET", TOKEN] {
        assert!(!said.contains(secret), "{secret} leaked: {said}");
    }
}
