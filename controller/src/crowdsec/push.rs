//! The watcher side (optional, `crowdsec.push`): ipwarden's own velocity and IPASIS decisions
//! go to the LAPI as alerts carrying decisions (scenarios `ipwarden/velocity` and
//! `ipwarden/ipasis`, the score and its factors in the alert's meta), so CrowdSec's other
//! bouncers and its console see them. A decision that came from CrowdSec is never pushed back.
//! The engine hands decisions over through a bounded channel ([`Pusher`] is an engine sink) and
//! never waits; a full channel drops the push and counts it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    config::CrowdsecConfig,
    decision::{Action, Decision, Ended, Origin, now_unix_ms},
    engine::Sink,
    sources::StatusCell,
    wire::CrowdsecView,
};

/// The link's shared view.
type Link = StatusCell<CrowdsecView>;

/// Alerts waiting to be pushed, at most.
const QUEUE: usize = 4096;

/// The engine's side.
pub struct Pusher {
    tx: mpsc::Sender<Decision>,
    dropped: Arc<AtomicU64>,
}

impl Sink for Pusher {
    fn changed(&mut self, put: &[&Decision], _ended: &[Ended]) {
        for d in put
            .iter()
            .filter(|d| matches!(d.origin, Origin::Velocity | Origin::Ipasis))
        {
            if self.tx.try_send((*d).clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts the pushing task; its sink goes to the engine.
pub fn start(
    cfg: &CrowdsecConfig,
    http: reqwest::Client,
    password: String,
    link: Arc<Link>,
) -> (Pusher, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(run(cfg.clone(), http, password, link, rx, dropped.clone()));
    (Pusher { tx, dropped }, task)
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The alert for one decision, with every field LAPI 1.4.6 requires.
pub fn alert(d: &Decision, now_ms: u64) -> Value {
    let scenario = format!("ipwarden/{}", d.origin);
    let (scope, value) = match d.prefix {
        p if (p.addr().is_ipv4() && p.prefix_len() == 32) => ("Ip", p.addr().to_string()),
        p => ("Range", p.to_string()),
    };
    let left = d
        .remaining(now_ms)
        .unwrap_or(Duration::from_secs(365 * 86400));
    let factors: Vec<String> = d
        .factors
        .iter()
        .map(|f| format!("{} {:+}", f.name, f.weight))
        .collect();
    let mut source = json!({ "scope": scope, "value": value });
    if scope == "Ip" {
        source["ip"] = json!(value);
    } else {
        source["range"] = json!(value);
    }
    json!({
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": env!("CARGO_PKG_VERSION"),
        "message": format!("ipwarden {}: {}", d.origin, d.reason),
        "events_count": 1,
        "events": [],
        "start_at": rfc3339(d.created_unix_ms),
        "stop_at": rfc3339(now_ms),
        "capacity": 0,
        "leakspeed": "0s",
        "simulated": false,
        "source": source,
        "meta": [
            { "key": "score", "value": d.score.map(|s| s.to_string()).unwrap_or_default() },
            { "key": "factors", "value": factors.join(", ") },
        ],
        "decisions": [{
            "duration": format!("{}s", left.as_secs().max(1)),
            // Origin `crowdsec`: plain `cscli decisions list` shows only those.
            "origin": "crowdsec",
            "scenario": scenario,
            "scope": scope,
            // Only velocity and IPASIS decisions are pushed (see `Pusher`): never a pass.
            "type": match d.action { Action::Block => "ban", Action::Challenge | Action::Pass => "captcha" },
            "value": value,
        }],
    })
}

async fn run(
    cfg: CrowdsecConfig,
    http: reqwest::Client,
    password: String,
    link: Arc<Link>,
    mut rx: mpsc::Receiver<Decision>,
    dropped: Arc<AtomicU64>,
) {
    let base = cfg.lapi_url.base().to_owned();
    let mut token: Option<String> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 100
            && let Ok(d) = rx.try_recv()
        {
            batch.push(d);
        }
        let now = now_unix_ms();
        let alerts: Vec<Value> = batch.iter().map(|d| alert(d, now)).collect();
        for attempt in 0..3 {
            if token.is_none() {
                token = login(&http, &base, &cfg.login, &password).await;
            }
            let Some(t) = &token else {
                push_failed(
                    &link,
                    "logging in as a watcher failed (crowdsec.login, crowdsec.password_file)",
                );
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                continue;
            };
            let r = http
                .post(format!("{base}/v1/alerts"))
                .bearer_auth(t)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&alerts).expect("alerts serialize"))
                .send()
                .await;
            match r.map(|r| r.status().as_u16()) {
                Ok(200..=299) => {
                    pushed(&link, alerts.len() as u64, dropped.load(Ordering::Relaxed));
                    break;
                }
                // The token expired: log in again.
                Ok(401) => token = None,
                Ok(s) => {
                    push_failed(&link, &format!("the LAPI refused the alerts ({s})"));
                    break;
                }
                Err(e) => {
                    push_failed(&link, &format!("pushing alerts: {}", e.without_url()));
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
    }
}

/// `POST /v1/watchers/login`: a JWT, or `None`.
async fn login(
    http: &reqwest::Client,
    base: &str,
    machine: &str,
    password: &str,
) -> Option<String> {
    let r = http
        .post(format!("{base}/v1/watchers/login"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(
            serde_json::to_vec(
                &json!({ "machine_id": machine, "password": password, "scenarios": [] }),
            )
            .expect("serializes"),
        )
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    // A token is a few hundred bytes: a larger answer is not read past 64 KiB.
    let body = crate::http::body(r, 64 << 10).await.ok()?;
    let v: Value = serde_json::from_slice(&body).ok()?;
    v.get("token")?.as_str().map(str::to_owned)
}

/// Counts pushed alerts and clears the last push error.
fn pushed(link: &Link, n: u64, dropped: u64) {
    link.update(|v| {
        v.pushed += n;
        v.push_dropped = dropped;
        v.push_error = None;
    });
}

/// Records a failed push, logged when it differs from the last one.
fn push_failed(link: &Link, why: &str) {
    link.update(|v| {
        if v.push_error.as_deref() != Some(why) {
            tracing::error!(error = why, "CrowdSec: pushing alerts failed");
        }
        v.push_error = Some(why.to_owned());
    });
}
