//! The IPASIS client against the stand-in on 127.0.0.1: answers, the key's place, and every
//! failure mode the vendor documents. Unprivileged: runs in the unit tier.

use std::{net::IpAddr, time::Duration};

use ipwarden::{
    config::IpasisConfig,
    enrich::{ApiKey, EnrichError, IpasisClient},
};
use ipwarden_tests::ipasis_stub::{IpasisStub, Reply, answers};

const KEY: &str = "ipasis_0123456789abcdef0123";

fn client(stub: &IpasisStub, tweak: impl FnOnce(&mut IpasisConfig)) -> IpasisClient {
    let mut cfg = IpasisConfig {
        base_url: ipwarden::config::Url::parse(&stub.base_url()).expect("the stub URL parses"),
        timeout: Duration::from_millis(500),
        backoff: Duration::from_millis(20),
        ..IpasisConfig::default()
    };
    tweak(&mut cfg);
    IpasisClient::new(&cfg, &ApiKey::new(KEY, "test").unwrap()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn answers_are_parsed_and_the_key_travels_only_in_the_header() {
    let stub = IpasisStub::start();
    stub.set("203.0.113.7", Reply::json(answers::TOR));
    let c = client(&stub, |_| {});
    let r = c.lookup(ip("203.0.113.7")).await.unwrap();
    assert_eq!(r.tor, Some(true));
    assert_eq!(r.operator.as_deref(), Some("Tor Exit Operator"));
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/v1/lookup?ip=203.0.113.7");
    assert_eq!(
        seen[0].headers.get("x-api-key").map(String::as_str),
        Some(KEY)
    );
    assert!(!seen[0].target.contains(KEY));
    assert!(!format!("{c:?}").contains(KEY));
}

#[tokio::test]
async fn the_articles_endpoint_works_by_configuration() {
    let stub = IpasisStub::start();
    stub.set("2001:db8:2::1", Reply::json(answers::HOSTING_PROXY));
    let c = client(&stub, |cfg| {
        cfg.path = "/json/{ip}".into();
        cfg.auth_header = "X-Key".into();
    });
    let r = c.lookup(ip("2001:db8:2::1")).await.unwrap();
    assert_eq!(
        (r.hosting, r.proxy, r.asn),
        (Some(true), Some(true), Some(64502))
    );
    let seen = stub.seen();
    assert_eq!(seen[0].target, "/json/2001:db8:2::1");
    assert_eq!(seen[0].headers.get("x-key").map(String::as_str), Some(KEY));
    assert!(!seen[0].headers.contains_key("x-api-key"));
}

#[tokio::test]
async fn status_codes_map_to_errors() {
    let stub = IpasisStub::start();
    let c = client(&stub, |cfg| cfg.retries = 0);
    for (status, expected) in [
        (400, EnrichError::Invalid),
        (401, EnrichError::Unauthorized { status: 401 }),
        (403, EnrichError::Unauthorized { status: 403 }),
        (402, EnrichError::QuotaExhausted),
        (404, EnrichError::Status { status: 404 }),
        (503, EnrichError::Server { status: 503 }),
    ] {
        stub.set("192.0.2.1", Reply::status(status, "<html>no</html>"));
        assert_eq!(
            c.lookup(ip("192.0.2.1")).await.unwrap_err(),
            expected,
            "{status}"
        );
    }
    stub.set("192.0.2.1", Reply::status(429, "").retry_after(7));
    assert_eq!(
        c.lookup(ip("192.0.2.1")).await.unwrap_err(),
        EnrichError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let stub = IpasisStub::start();
    stub.set("192.0.2.2", Reply::status(500, "oops"));
    let c = client(&stub, |cfg| cfg.retries = 2);
    assert_eq!(
        c.lookup(ip("192.0.2.2")).await.unwrap_err(),
        EnrichError::Server { status: 500 }
    );
    assert_eq!(stub.count("192.0.2.2"), 3, "one try and two retries");
    // 400 is permanent: never retried.
    stub.set("192.0.2.3", Reply::status(400, ""));
    let _ = c.lookup(ip("192.0.2.3")).await;
    assert_eq!(stub.count("192.0.2.3"), 1);
}

#[tokio::test]
async fn slow_malformed_and_oversized_answers_are_errors() {
    let stub = IpasisStub::start();
    let c = client(&stub, |cfg| {
        cfg.retries = 0;
        cfg.max_body = 1024;
    });
    stub.set(
        "192.0.2.4",
        Reply::json(answers::TOR).delayed(Duration::from_secs(2)),
    );
    assert!(matches!(
        c.lookup(ip("192.0.2.4")).await,
        Err(EnrichError::Timeout(_))
    ));
    stub.set("192.0.2.5", Reply::json("{\"privacy\": {\"Tor\": tr"));
    assert!(matches!(
        c.lookup(ip("192.0.2.5")).await,
        Err(EnrichError::Body(_))
    ));
    stub.set(
        "192.0.2.6",
        Reply::json("<html><h1>Bad Gateway</h1></html>"),
    );
    assert!(matches!(
        c.lookup(ip("192.0.2.6")).await,
        Err(EnrichError::Body(_))
    ));
    stub.set(
        "192.0.2.7",
        Reply::json(&format!("{{\"pad\":\"{}\"}}", "x".repeat(10_000))),
    );
    assert_eq!(
        c.lookup(ip("192.0.2.7")).await.unwrap_err(),
        EnrichError::TooLarge { limit: 1024 }
    );
    let mut slow = Reply::json(answers::TOR);
    slow.trickle = Some(8);
    stub.set("192.0.2.8", slow);
    assert!(
        matches!(
            c.lookup(ip("192.0.2.8")).await,
            Err(EnrichError::Timeout(_))
        ),
        "slowloris body"
    );
}

#[tokio::test]
async fn connection_refused_is_a_transient_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = IpasisConfig {
        base_url: ipwarden::config::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        retries: 1,
        backoff: Duration::from_millis(10),
        ..IpasisConfig::default()
    };
    let c = IpasisClient::new(&cfg, &ApiKey::new(KEY, "test").unwrap()).unwrap();
    let e = c.lookup(ip("192.0.2.9")).await.unwrap_err();
    assert!(matches!(e, EnrichError::Connect(_)), "{e:?}");
    assert!(!e.to_string().contains(KEY));
}
