use super::*;
use crate::{
    config::VerdictConfig,
    store::{CachedAnswer, Store},
    verdict::http::parse,
};

struct Fx {
    endpoint: Endpoint,
    events: mpsc::Receiver<SourceEvent>,
    _dir: tempfile::TempDir,
}

fn fx(decisions: &[Decision], answers: &[(&str, Record)]) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (unit, record) in answers {
        store
            .put_answer(
                unit.parse().unwrap(),
                &CachedAnswer {
                    record: Some(record.clone()),
                    fetched_unix_ms: now_unix_ms(),
                    host: None,
                },
            )
            .unwrap();
    }
    let (tx, events) = mpsc::channel(8);
    let cfg = Config {
        verdict: Some(VerdictConfig {
            difficulty: 8,
            ..VerdictConfig::default()
        }),
        ..Config::default()
    };
    let parts = Parts {
        table: Table::seeded(decisions.iter(), vec!["192.0.2.0/28".parse().unwrap()]),
        answers: store.answers(),
        pipeline: None,
        events: tx,
        key: Key::from_bytes([7; 32]),
    };
    Fx {
        endpoint: Endpoint::new(&cfg, parts),
        events,
        _dir: dir,
    }
}

fn get(fx: &Fx, peer: &str, target: &str, headers: &str) -> Response {
    let head = format!("GET {target} HTTP/1.1\r\nHost: site{headers}");
    fx.endpoint
        .answer(peer.parse().unwrap(), &parse(head.as_bytes()).unwrap())
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn xff(addr: &str) -> String {
    format!("\r\nX-Forwarded-For: {addr}")
}

fn challenged(prefix: &str) -> Decision {
    Decision::new(
        prefix.parse().unwrap(),
        Action::Challenge,
        Holder::of(Origin::Ipasis),
        "t",
        now_unix_ms(),
        None,
    )
}

#[test]
fn clean_vpn_scored_and_decided_clients() {
    let vpn = Record {
        vpn: Some(true),
        ..Record::default()
    };
    let bad = Record {
        hosting: Some(true),
        proxy: Some(true),
        ..Record::default()
    };
    let block = Decision::block(
        "198.51.100.0/24".parse().unwrap(),
        Holder::of(Origin::Manual),
        "t",
        now_unix_ms(),
        None,
    );
    let fx = fx(
        &[block, challenged("203.0.113.0/24")],
        &[("2001:db8:1::/64", vpn), ("192.0.2.99/32", bad)],
    );
    let clean = get(&fx, "127.0.0.1", "/verdict", &xff("192.0.2.77"));
    assert_eq!(clean.status, 200);
    assert_eq!(header(&clean, "X-Ipwarden-Action"), Some("allow"));
    assert_eq!(header(&clean, "X-Ipwarden-Client"), Some("192.0.2.77"));
    assert_eq!(header(&clean, "X-Ipwarden-Enrichment"), Some("off"));

    let v = get(
        &fx,
        "127.0.0.1",
        "/.ipwarden/verdict",
        &xff("2001:db8:1::5"),
    );
    assert_eq!(header(&v, "X-Ipwarden-Labels"), Some("vpn"));
    assert_eq!(header(&v, "X-Ipwarden-Enrichment"), Some("cached"));
    assert!(
        header(&v, "X-Ipwarden-Factors")
            .unwrap()
            .starts_with("vpn=")
    );

    let scored = get(&fx, "127.0.0.1", "/verdict", &xff("192.0.2.99"));
    assert_eq!(scored.status, 403, "hosting and proxy score 80");
    assert_eq!(header(&scored, "X-Ipwarden-Origin"), Some("score"));
    assert_eq!(header(&scored, "X-Ipwarden-Labels"), Some("proxy,hosting"));

    let blocked = get(&fx, "127.0.0.1", "/verdict", &xff("198.51.100.3"));
    assert_eq!(blocked.status, 403);
    assert_eq!(header(&blocked, "X-Ipwarden-Origin"), Some("manual"));
    let ch = get(
        &fx,
        "127.0.0.1",
        "/verdict",
        &format!("{}\r\nX-Forwarded-Uri: /shop", xff("203.0.113.9")),
    );
    assert_eq!(ch.status, 401);
    // The page rides along, for proxies that hand the refusal to the client as it is.
    let page = String::from_utf8(ch.body).unwrap();
    assert!(
        page.contains("CHALLENGE=") && page.contains(r#"BACK="/shop""#),
        "{page}"
    );
    assert_eq!(
        String::from_utf8(blocked.body.clone()).unwrap(),
        "blocked\n"
    );
    // The allowlist beats the score.
    let allowed = get(&fx, "127.0.0.1", "/verdict", &xff("192.0.2.9"));
    assert_eq!(
        (allowed.status, header(&allowed, "X-Ipwarden-Origin")),
        (200, Some("allowlist"))
    );
}

#[test]
fn a_forged_header_from_an_untrusted_peer_is_ignored() {
    let fx = fx(&[challenged("203.0.113.0/24")], &[]);
    let r = get(&fx, "203.0.113.9", "/verdict", &xff("192.0.2.1"));
    assert_eq!(r.status, 401);
    assert_eq!(header(&r, "X-Ipwarden-Client"), Some("203.0.113.9"));
}

/// The page's challenge, solved as the browser would.
fn solve(fx: &Fx, peer: &str, client: &str) -> (String, String) {
    let page = get(
        fx,
        peer,
        "/.ipwarden/challenge",
        &format!("{}\r\nX-Original-URI: /login?next=1", xff(client)),
    );
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body).unwrap();
    let challenge = html
        .split("CHALLENGE=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    assert!(html.contains(r#"BACK="/login?next=1""#), "{html}");
    let nonce = (0u64..)
        .map(|n| n.to_string())
        .find(|n| crate::verdict::token::solves(&challenge, n, 8))
        .unwrap();
    (challenge, nonce)
}

#[test]
fn a_solved_challenge_earns_a_pass_bound_to_the_unit() {
    let mut fx = fx(&[challenged("2001:db8::/32")], &[]);
    let client = "2001:db8:7:7::1";
    let (challenge, nonce) = solve(&fx, "127.0.0.1", client);
    let wrong = get(
        &fx,
        "127.0.0.1",
        &format!("/.ipwarden/solve?challenge={challenge}&nonce=x&return=%2F"),
        &xff(client),
    );
    assert_eq!(wrong.status, 403);
    // Solved from another /64: the challenge is not theirs.
    let elsewhere = get(
        &fx,
        "127.0.0.1",
        &format!("/.ipwarden/solve?challenge={challenge}&nonce={nonce}&return=%2F"),
        &xff("2001:db8:7:8::1"),
    );
    assert_eq!(elsewhere.status, 403);
    let ok = get(
        &fx,
        "127.0.0.1",
        &format!("/.ipwarden/solve?challenge={challenge}&nonce={nonce}&return=%2Flogin%3Fnext%3D1"),
        &xff(client),
    );
    assert_eq!(ok.status, 303);
    assert_eq!(header(&ok, "Location"), Some("/login?next=1"));
    let cookie = header(&ok, "Set-Cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Max-Age=3600"),
        "{cookie}"
    );
    let pass = cookie
        .strip_prefix("ipwarden_pass=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    // The engine is told: a pass for the /64, of its own origin.
    match fx.events.try_recv().unwrap() {
        SourceEvent::Propose(d) => {
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].prefix.to_string(), "2001:db8:7:7::/64");
            assert_eq!(
                (d[0].action, d[0].origin),
                (Action::Pass, Origin::ChallengePass)
            );
            assert!(d[0].expires_unix_ms.is_some());
        }
        other => panic!("{other:?}"),
    }
    // Spent: the same solution buys nothing twice.
    let again = get(
        &fx,
        "127.0.0.1",
        &format!("/.ipwarden/solve?challenge={challenge}&nonce={nonce}"),
        &xff(client),
    );
    assert_eq!(again.status, 403);

    let with = |addr: &str| {
        get(
            &fx,
            "127.0.0.1",
            "/verdict",
            &format!("{}\r\nCookie: a=b; {COOKIE}={pass}", xff(addr)),
        )
    };
    let r = with("2001:db8:7:7::99");
    assert_eq!(
        (r.status, header(&r, "X-Ipwarden-Pass")),
        (200, Some("valid"))
    );
    assert_eq!(
        with("2001:db8:7:8::1").status,
        401,
        "replayed from another /64"
    );
    assert_eq!(
        get(&fx, "127.0.0.1", "/verdict", &xff(client)).status,
        401,
        "no cookie, no pass"
    );
}

#[test]
fn passes_per_hour_are_bounded() {
    let fx = fx(&[challenged("203.0.113.0/24")], &[]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (c, n) = solve(&fx, "127.0.0.1", "203.0.113.5");
        statuses.push(
            get(
                &fx,
                "127.0.0.1",
                &format!("/.ipwarden/solve?challenge={c}&nonce={n}"),
                &xff("203.0.113.5"),
            )
            .status,
        );
    }
    assert_eq!(statuses, [303, 303, 303, 429]);
}

#[test]
fn returns_stay_on_the_site() {
    for bad in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil",
        "x",
        "/a\r\nSet-Cookie: x",
    ] {
        assert_eq!(safe_return(bad), "/", "{bad}");
    }
    assert_eq!(safe_return("/a/b?c=d"), "/a/b?c=d");
}

#[test]
fn other_methods_and_paths() {
    let fx = fx(&[], &[]);
    let head = parse(b"POST /verdict HTTP/1.1\r\nHost: x").unwrap();
    assert_eq!(
        fx.endpoint
            .answer("127.0.0.1".parse().unwrap(), &head)
            .status,
        405
    );
    assert_eq!(get(&fx, "127.0.0.1", "/nope", "").status, 404);
}
