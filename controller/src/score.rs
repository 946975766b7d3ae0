//! The weighted risk model: an enrichment answer and a rate in, a score with its factors and a
//! verdict out. Pure arithmetic, every weight configurable; the defaults are those of the
//! article ipwarden grew from.

use serde::{Deserialize, Serialize};

use crate::{config::ScoringConfig, decision::Factor, enrich::Record};

/// What the score says to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Block,
    Challenge,
    Allow,
}

/// A scored answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    pub value: i32,
    pub factors: Vec<Factor>,
    pub verdict: Verdict,
    /// Why the verdict, in one phrase (e.g. "tor exit" or "score 80 >= 80").
    pub because: String,
}

fn listed(operator: Option<&str>, list: &[String]) -> bool {
    let Some(op) = operator else { return false };
    let op = op.to_lowercase();
    list.iter()
        .any(|l| !l.is_empty() && op.contains(&l.to_lowercase()))
}

/// Scores an answer for a source sending `pps`; `velocity_pps` is where the velocity weight
/// starts.
pub fn score(r: &Record, pps: f64, velocity_pps: u64, cfg: &ScoringConfig) -> Score {
    score_with(r, pps, velocity_pps, Vec::new(), cfg)
}

/// As [`score`], with factors found elsewhere (the SYN fingerprint) counted in.
pub fn score_with(
    r: &Record,
    pps: f64,
    velocity_pps: u64,
    extra: Vec<Factor>,
    cfg: &ScoringConfig,
) -> Score {
    let yes = |f: Option<bool>| f == Some(true);
    let mut factors = extra;
    let mut add = |name: &str, weight: i32| {
        factors.push(Factor {
            name: name.to_owned(),
            weight,
        })
    };
    if yes(r.hosting) || yes(r.crawler) {
        add(
            if yes(r.hosting) { "hosting" } else { "crawler" },
            cfg.hosting_or_crawler,
        );
    }
    if yes(r.proxy) || yes(r.tor) {
        add(if yes(r.tor) { "tor" } else { "proxy" }, cfg.proxy_or_tor);
    }
    if yes(r.vpn) {
        if listed(r.operator.as_deref(), &cfg.abusive_vpn_operators) {
            add("vpn (abusive provider)", cfg.abusive_vpn);
        } else {
            add("vpn", cfg.vpn);
        }
    }
    if listed(r.operator.as_deref(), &cfg.high_risk_operators)
        || r.asn.is_some_and(|a| cfg.high_risk_asns.contains(&a))
    {
        add("high-risk operator", cfg.high_risk_operator);
    }
    if pps >= velocity_pps as f64 {
        add("velocity", cfg.velocity);
    }
    let value: i32 = factors.iter().map(|f| f.weight).sum();
    let (verdict, because) = if yes(r.tor) && cfg.tor_always_block {
        (Verdict::Block, "tor exit".to_owned())
    } else if value >= cfg.block_at {
        (Verdict::Block, format!("score {value} >= {}", cfg.block_at))
    } else if value >= cfg.challenge_at {
        (
            Verdict::Challenge,
            format!("score {value} >= {}", cfg.challenge_at),
        )
    } else {
        (
            Verdict::Allow,
            format!("score {value} < {}", cfg.challenge_at),
        )
    };
    Score {
        value,
        factors,
        verdict,
        because,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(f: impl FnOnce(&mut Record)) -> Record {
        let mut r = Record::default();
        f(&mut r);
        r
    }

    fn s(r: &Record, pps: f64) -> Score {
        score(r, pps, 5000, &ScoringConfig::default())
    }

    #[test]
    fn the_articles_defaults() {
        let hosting_proxy = rec(|r| {
            r.hosting = Some(true);
            r.proxy = Some(true);
        });
        assert_eq!(
            (s(&hosting_proxy, 0.0).value, s(&hosting_proxy, 0.0).verdict),
            (80, Verdict::Block)
        );
        let hosting = rec(|r| r.hosting = Some(true));
        assert_eq!(
            (s(&hosting, 0.0).value, s(&hosting, 0.0).verdict),
            (50, Verdict::Challenge)
        );
        let crawler = rec(|r| r.crawler = Some(true));
        assert_eq!(s(&crawler, 0.0).value, 50);
        let both = rec(|r| {
            r.hosting = Some(true);
            r.crawler = Some(true);
        });
        assert_eq!(s(&both, 0.0).value, 50, "hosting or crawler counts once");
        let residential = Record::default();
        assert_eq!(s(&residential, 0.0).verdict, Verdict::Allow);
    }

    #[test]
    fn tor_is_blocked_whatever_the_score_unless_configured_otherwise() {
        let tor = rec(|r| r.tor = Some(true));
        let sc = s(&tor, 0.0);
        assert_eq!(
            (sc.value, sc.verdict, sc.because.as_str()),
            (30, Verdict::Block, "tor exit")
        );
        let cfg = ScoringConfig {
            tor_always_block: false,
            ..Default::default()
        };
        assert_eq!(score(&tor, 0.0, 5000, &cfg).verdict, Verdict::Allow);
    }

    #[test]
    fn vpn_is_neutral_unless_the_provider_is_abusive() {
        let vpn = rec(|r| {
            r.vpn = Some(true);
            r.operator = Some("Friendly VPN Inc".into());
        });
        let sc = s(&vpn, 0.0);
        assert_eq!((sc.value, sc.verdict), (0, Verdict::Allow));
        assert_eq!(sc.factors[0].name, "vpn");
        let cfg = ScoringConfig {
            abusive_vpn_operators: vec!["friendly vpn".into()],
            ..Default::default()
        };
        assert_eq!(score(&vpn, 0.0, 5000, &cfg).value, 30);
    }

    #[test]
    fn high_risk_operators_and_asns_and_velocity_add_up() {
        let cfg = ScoringConfig {
            high_risk_operators: vec!["BadHost".into()],
            high_risk_asns: vec![64500],
            ..Default::default()
        };
        let by_name = rec(|r| {
            r.hosting = Some(true);
            r.operator = Some("badhost gmbh".into());
        });
        assert_eq!(score(&by_name, 0.0, 5000, &cfg).value, 70);
        let by_asn = rec(|r| r.asn = Some(64500));
        assert_eq!(score(&by_asn, 0.0, 5000, &cfg).value, 20);
        // Velocity: hosting + fast = 70, a challenge; hosting + proxy + fast = 100.
        let hosting = rec(|r| r.hosting = Some(true));
        let fast = score(&hosting, 6000.0, 5000, &cfg);
        assert_eq!((fast.value, fast.verdict), (70, Verdict::Challenge));
        assert!(
            fast.factors
                .iter()
                .any(|f| f.name == "velocity" && f.weight == 20)
        );
        assert_eq!(score(&hosting, 4999.0, 5000, &cfg).value, 50);
    }

    #[test]
    fn unknown_flags_count_as_nothing() {
        let r = rec(|r| {
            r.hosting = None;
            r.tor = Some(false);
        });
        assert!(s(&r, 0.0).factors.is_empty());
    }
}
