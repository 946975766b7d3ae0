//! The endpoint's answers: the verdict on a client, the challenge page, and passes.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::sync::mpsc;

use super::{
    client::client,
    http::{Request, Response},
    page,
    passes::{Passes, Refused},
    table::{Covered, Table},
    token::Key,
};
use crate::{
    config::{Config, ScoringConfig, VerdictConfig},
    decision::{Action, Decision, Factor, Holder, Origin, now_unix_ms},
    engine::SourceEvent,
    enrich::{Pipeline, Record, queue::Candidate},
    net::host_prefix,
    score::{self, Verdict},
    store::Answers,
};

/// The pass cookie's name.
pub const COOKIE: &str = "ipwarden_pass";

/// What the endpoint is built from.
pub struct Parts {
    pub table: Table,
    pub answers: Answers,
    pub pipeline: Option<Arc<Pipeline>>,
    /// Where pass decisions go (the engine's source channel).
    pub events: mpsc::Sender<SourceEvent>,
    pub key: Key,
}

/// Counts, for the log and tests.
#[derive(Default)]
pub struct Counts {
    pub allowed: AtomicU64,
    pub challenged: AtomicU64,
    pub blocked: AtomicU64,
    pub pages: AtomicU64,
    pub passes: AtomicU64,
    pub refused: AtomicU64,
    pub lost: AtomicU64,
}

/// The endpoint: configuration (read at start), the mirror and the cache it reads.
pub struct Endpoint {
    cfg: VerdictConfig,
    scoring: ScoringConfig,
    velocity_pps: u64,
    cache_ttl: Duration,
    parts: Parts,
    passes: Mutex<Passes>,
    pub counts: Counts,
}

/// A verdict, before it becomes a response.
#[derive(Debug, PartialEq)]
struct Judgement {
    action: Verdict,
    origin: Option<String>,
    score: Option<i32>,
    factors: Vec<Factor>,
    labels: Vec<&'static str>,
    enrichment: &'static str,
    pass: bool,
}

impl Endpoint {
    /// `cfg.verdict` must be set.
    pub fn new(cfg: &Config, parts: Parts) -> Self {
        Self {
            cfg: cfg.verdict.clone().unwrap_or_default(),
            scoring: cfg.scoring.clone(),
            velocity_pps: cfg.velocity_pps(),
            cache_ttl: cfg.ipasis.cache_ttl,
            parts,
            passes: Mutex::default(),
            counts: Counts::default(),
        }
    }

    pub fn listen(&self) -> SocketAddr {
        self.cfg.listen
    }

    /// What `status` shows.
    pub fn view(&self) -> crate::wire::VerdictView {
        let c = &self.counts;
        crate::wire::VerdictView {
            listen: self.cfg.listen.to_string(),
            allowed: c.allowed.load(Relaxed),
            challenged: c.challenged.load(Relaxed),
            blocked: c.blocked.load(Relaxed),
            pages: c.pages.load(Relaxed),
            passes: c.passes.load(Relaxed),
            refused: c.refused.load(Relaxed),
            lost: c.lost.load(Relaxed),
        }
    }

    /// Answers one request from `peer`.
    pub fn answer(&self, peer: IpAddr, req: &Request) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return Response::new(405).header("Allow", "GET, HEAD");
        }
        let route = req.path.strip_prefix("/.ipwarden").unwrap_or(&req.path);
        let who = client(peer, req, &self.cfg.trusted_proxies);
        let now = now_unix_ms();
        let r = match route {
            "/verdict" | "/" => self.verdict(who, req, now),
            "/challenge" => {
                self.counts.pages.fetch_add(1, Relaxed);
                self.page(who, req, now)
            }
            "/solve" => self.solve(who, req, now),
            _ => Response::new(404).text("not found\n"),
        };
        if req.method == "HEAD" {
            return Response {
                body: Vec::new(),
                ..r
            };
        }
        r
    }

    fn verdict(&self, who: IpAddr, req: &Request, now: u64) -> Response {
        let j = self.judge(who, req.cookie(COOKIE), now);
        let (status, counter) = match j.action {
            Verdict::Allow => (200, &self.counts.allowed),
            Verdict::Challenge => (401, &self.counts.challenged),
            Verdict::Block => (403, &self.counts.blocked),
        };
        counter.fetch_add(1, Relaxed);
        let mut r = Response::new(status)
            .header("X-Ipwarden-Action", crate::names::of(&j.action))
            .header("X-Ipwarden-Client", who.to_string())
            .header("X-Ipwarden-Enrichment", j.enrichment)
            .header("Cache-Control", "no-store");
        if let Some(o) = j.origin {
            r = r.header("X-Ipwarden-Origin", o);
        }
        if let Some(s) = j.score {
            r = r.header("X-Ipwarden-Score", s.to_string());
        }
        let factors: Vec<String> = j
            .factors
            .iter()
            .map(|f| format!("{}={}", f.name.replace([',', '='], " "), f.weight))
            .collect();
        r = r
            .header("X-Ipwarden-Factors", factors.join(","))
            .header("X-Ipwarden-Labels", j.labels.join(","));
        if j.pass {
            r = r.header("X-Ipwarden-Pass", "valid");
        }
        // Caddy's forward_auth and Traefik's ForwardAuth hand a refusal to the client as it
        // is: a challenge carries its page, a block says so (nginx drops both bodies and
        // serves its error_page instead).
        match j.action {
            Verdict::Challenge => {
                let page = self.page(who, req, now);
                r.headers.extend(
                    page.headers
                        .into_iter()
                        .filter(|(n, _)| *n == "Content-Type"),
                );
                Response {
                    body: page.body,
                    ..r
                }
            }
            Verdict::Block => r.text("blocked\n"),
            Verdict::Allow => r,
        }
    }

    /// The verdict on `who`: the allowlist, then the decision that takes precedence, then the
    /// score of a fresh cached answer; a valid pass turns a challenge into allow.
    fn judge(&self, who: IpAddr, cookie: Option<&str>, now: u64) -> Judgement {
        let unit = host_prefix(who);
        let cached = match self.parts.answers.get(unit) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%unit, error = %e, "verdict: reading the cached answer");
                None
            }
        };
        let fresh = cached.as_ref().filter(|a| a.is_fresh(now, self.cache_ttl));
        let record = fresh.and_then(|a| a.record.as_ref());
        let scored = record.map(|r| score::score(r, 0.0, self.velocity_pps, &self.scoring));
        let score_verdict = scored.as_ref().map(|s| s.verdict);
        let mut labels = record.map(labels).unwrap_or_default();
        let enrichment = match (fresh, &cached, &self.parts.pipeline) {
            (Some(_), _, _) => "cached",
            (None, _, None) => "off",
            (None, Some(_), Some(_)) => "stale",
            (None, None, Some(_)) => "pending",
        };
        if fresh.is_none()
            && let Some(p) = &self.parts.pipeline
        {
            p.submit(Candidate {
                source: unit,
                addr: who,
                pps: 0.0,
            });
        }
        let mut j = Judgement {
            action: Verdict::Allow,
            origin: None,
            score: scored.as_ref().map(|s| s.value),
            factors: scored.map(|s| s.factors).unwrap_or_default(),
            labels: Vec::new(),
            enrichment,
            pass: false,
        };
        match self.parts.table.covering(who, now) {
            Covered::Allowed(_) => j.origin = Some("allowlist".to_owned()),
            Covered::Decided(h) => {
                j.action = match h.action {
                    Action::Block => Verdict::Block,
                    Action::Challenge | Action::Pass => Verdict::Challenge,
                };
                j.origin = Some(h.origin.name().to_owned());
                if h.score.is_some() {
                    j.score = h.score;
                    j.factors = h.factors;
                }
            }
            Covered::Nothing => {
                if let Some(v) = score_verdict {
                    j.action = v;
                    j.origin = Some("score".to_owned());
                }
            }
        }
        for f in &j.factors {
            if f.name.starts_with(crate::policy::RESIDENTIAL_PROXY_SUSPECT)
                && !labels.contains(&crate::policy::RESIDENTIAL_PROXY_SUSPECT)
            {
                labels.push(crate::policy::RESIDENTIAL_PROXY_SUSPECT);
            }
        }
        j.labels = labels;
        if j.action == Verdict::Challenge
            && cookie.is_some_and(|c| self.parts.key.check(c, 'p', unit, now).is_ok())
        {
            j.action = Verdict::Allow;
            j.pass = true;
        }
        j
    }

    /// The challenge page, for the client's own unit.
    fn page(&self, who: IpAddr, req: &Request, now: u64) -> Response {
        let unit = host_prefix(who);
        let expires = now + self.cfg.challenge_ttl.as_millis() as u64;
        let challenge = self.parts.key.challenge(unit, expires);
        let back = safe_return(
            req.header("x-original-uri")
                .or_else(|| req.header("x-forwarded-uri"))
                .unwrap_or("/"),
        );
        Response::new(200)
            .header("Cache-Control", "no-store")
            .html(page::render(&challenge, self.cfg.difficulty, back))
    }

    /// The page's answer: a valid, unspent solution from the client's own unit earns a pass.
    fn solve(&self, who: IpAddr, req: &Request, now: u64) -> Response {
        let unit = host_prefix(who);
        let back = req.param("return");
        let back = safe_return(back.as_deref().unwrap_or("/"));
        let refuse = |status: u16, why: &str| {
            self.counts.refused.fetch_add(1, Relaxed);
            tracing::info!(%unit, why, "verdict: no pass");
            Response::new(status)
                .header("Cache-Control", "no-store")
                .text(&format!("{why}: go back and try again\n"))
        };
        let (Some(challenge), Some(nonce)) = (req.param("challenge"), req.param("nonce")) else {
            return refuse(400, "no solution given");
        };
        let expires = match self.parts.key.check(&challenge, 'c', unit, now) {
            Ok(e) => e,
            Err(e) => return refuse(403, &format!("this check is {e}")),
        };
        if !super::token::solves(&challenge, &nonce, self.cfg.difficulty) {
            return refuse(403, "the solution is wrong");
        }
        let given = crate::sync::lock(&self.passes).give(
            unit,
            &challenge,
            expires,
            self.cfg.passes_per_hour,
            now,
        );
        match given {
            Ok(()) => {}
            Err(Refused::Spent) => return refuse(403, "this check was already used"),
            Err(Refused::Limit) => {
                return refuse(429, "too many checks from your network this hour");
            }
            Err(Refused::Full) => {
                tracing::warn!(
                    "verdict: {} units hold passes: no new pass until some age out",
                    super::passes::MAX_TRACKED
                );
                return refuse(429, "too many checks right now");
            }
        }
        self.counts.passes.fetch_add(1, Relaxed);
        let ttl = self.cfg.pass_ttl;
        let pass = self.parts.key.pass(unit, now + ttl.as_millis() as u64);
        let decision = Decision::new(
            unit,
            Action::Pass,
            Holder::of(Origin::ChallengePass),
            "solved a challenge",
            now,
            Some(ttl),
        );
        if let Err(e) = self
            .parts
            .events
            .try_send(SourceEvent::Propose(vec![decision]))
        {
            // The cookie still works; the kernel's rate limit stays (counted in `status`).
            self.counts.lost.fetch_add(1, Relaxed);
            tracing::warn!(%unit, error = %e, "verdict: the pass could not reach the engine: XDP keeps rate-limiting it");
        }
        tracing::info!(%unit, ttl = %humantime::format_duration(ttl), "challenge solved: pass given");
        Response::new(303)
            .header("Location", back)
            .header(
                "Set-Cookie",
                format!(
                    "{COOKIE}={pass}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
                    ttl.as_secs()
                ),
            )
            .header("Cache-Control", "no-store")
            .text("solved\n")
    }
}

/// The labels of an answer an application may act on.
fn labels(r: &Record) -> Vec<&'static str> {
    [
        ("tor", r.tor),
        ("vpn", r.vpn),
        ("proxy", r.proxy),
        ("hosting", r.hosting),
        ("crawler", r.crawler),
        ("relay", r.relay),
        ("abuse", r.abuse),
    ]
    .into_iter()
    .filter(|(_, f)| *f == Some(true))
    .map(|(n, _)| n)
    .collect()
}

/// A path on this site to return to, or `/`: never another host (`//x`, `/\x`, a scheme), never
/// a header break.
fn safe_return(back: &str) -> &str {
    let ok = back.starts_with('/')
        && !back.starts_with("//")
        && !back.starts_with("/\\")
        && back.len() <= 2048
        && back.bytes().all(|b| b.is_ascii_graphic());
    if ok { back } else { "/" }
}

#[cfg(test)]
mod tests;
