//! A decision's stored value. Most decisions are plain: an action, a reason and two times (a
//! feed's million are all plain). As JSON each repeated what its key already holds (prefix,
//! origin, source) in about 170 bytes, and a bulk load of a million spent a third of its store
//! time writing them. A plain decision is stored in a tagged binary form of 11–27 bytes plus its
//! reason, completed from its key when read; any other decision stays JSON, which schema 3 and
//! earlier wrote for all of them and which is read as before.
//!
//! The plain form: [`PLAIN`], the action ([`action_code`]), `created_unix_ms` (8 bytes, little
//! endian), a flags byte, `expires_unix_ms` (8 bytes) if [`EXPIRES`] is set (a permanent
//! decision has none), a challenge's pps and burst (4 bytes each) if [`RATE`] is, then the
//! reason's UTF-8 to the end. Integers are little endian.

use super::base::StoreError;

use crate::decision::{Action, ChallengeRate, Decision, Holder, Text};

/// The first byte of the plain form. JSON values begin with `{`, so the two cannot be confused.
const PLAIN: u8 = 1;
/// Flag: an expiry follows.
const EXPIRES: u8 = 1;
/// Flag: a challenge rate follows.
const RATE: u8 = 2;

/// Whether `d` is stored in the plain form: nothing beyond what the form and the key hold. A
/// source of `""` is not, since the key writes no source as `""` too.
fn is_plain(d: &Decision) -> bool {
    d.score.is_none()
        && d.factors.is_empty()
        && d.recidive.is_none()
        && d.answer_from.is_none()
        && d.source.as_deref() != Some("")
}

fn action_code(a: Action) -> u8 {
    match a {
        Action::Challenge => 0,
        Action::Pass => 1,
        Action::Block => 2,
    }
}

fn action_of(code: u8) -> Option<Action> {
    [Action::Challenge, Action::Pass, Action::Block]
        .into_iter()
        .find(|&a| action_code(a) == code)
}

/// Appends `d`'s stored value to `out`.
pub(super) fn encode(d: &Decision, out: &mut Vec<u8>) {
    if !is_plain(d) {
        serde_json::to_writer(out, d).expect("decisions serialize");
        return;
    }
    out.push(PLAIN);
    out.push(action_code(d.action));
    out.extend_from_slice(&d.created_unix_ms.to_le_bytes());
    let flags = if d.expires_unix_ms.is_some() {
        EXPIRES
    } else {
        0
    } | if d.rate.is_some() { RATE } else { 0 };
    out.push(flags);
    if let Some(ms) = d.expires_unix_ms {
        out.extend_from_slice(&ms.to_le_bytes());
    }
    if let Some(r) = d.rate {
        out.extend_from_slice(&r.pps.to_le_bytes());
        out.extend_from_slice(&r.burst.to_le_bytes());
    }
    out.extend_from_slice(d.reason.as_bytes());
}

/// The decision stored under `key` (see [`super::decision_key`]) as `bytes`.
pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<Decision, StoreError> {
    match bytes.split_first() {
        Some((&PLAIN, rest)) => plain(key, rest).map_err(|why| StoreError::Malformed {
            table: "decision",
            key: key.to_owned(),
            why,
        }),
        _ => super::base::decode("decision", key, bytes),
    }
}

fn plain(key: &str, b: &[u8]) -> Result<Decision, &'static str> {
    let (prefix, Holder { origin, source }) = super::keys::key_parts(key)?;
    let (&action, b) = b.split_first().ok_or("it ends before its action")?;
    let action = action_of(action).ok_or("its action is unknown")?;
    let (created, b) = u64_at(b).ok_or("it ends before its creation time")?;
    let (&flags, mut b) = b.split_first().ok_or("it ends before its flags")?;
    if flags & !(EXPIRES | RATE) != 0 {
        return Err("it has unknown flags");
    }
    let mut expires = None;
    if flags & EXPIRES != 0 {
        let (ms, rest) = u64_at(b).ok_or("it ends before its expiry")?;
        (expires, b) = (Some(ms), rest);
    }
    let mut rate = None;
    if flags & RATE != 0 {
        let (pps, rest) = u32_at(b).ok_or("it ends before its rate")?;
        let (burst, rest) = u32_at(rest).ok_or("it ends before its rate")?;
        (rate, b) = (Some(ChallengeRate { pps, burst }), rest);
    }
    let reason = std::str::from_utf8(b).map_err(|_| "its reason is not UTF-8")?;
    Ok(Decision {
        prefix,
        action,
        origin,
        source,
        reason: Text::from(reason),
        score: None,
        factors: Box::default(),
        rate,
        created_unix_ms: created,
        expires_unix_ms: expires,
        recidive: None,
        answer_from: None,
    })
}

fn u64_at(b: &[u8]) -> Option<(u64, &[u8])> {
    let (n, rest) = b.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*n), rest))
}

fn u32_at(b: &[u8]) -> Option<(u32, &[u8])> {
    let (n, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*n), rest))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        decision::{Origin, Recidive},
        store::decision_key,
    };

    fn round_trip(d: &Decision) -> (Decision, usize) {
        let mut bytes = Vec::new();
        encode(d, &mut bytes);
        let back = decode(&decision_key(&d.prefix, &d.holder()), &bytes).unwrap();
        (back, bytes.len())
    }

    #[test]
    fn plain_decisions_are_small_and_come_back_whole() {
        let feed = Decision::block(
            "2001:db8:7::/48".parse().unwrap(),
            Holder::named(Origin::Feed, "spamhaus|drop"),
            "feed block",
            1_796_643_814_618,
            Some(Duration::from_secs(86_400)),
        );
        let manual = Decision::block(
            "198.51.100.7/32".parse().unwrap(),
            Holder::of(Origin::Manual),
            "ticket 42: scraping",
            5,
            None,
        );
        let challenge = Decision::new(
            "203.0.113.0/24".parse().unwrap(),
            Action::Challenge,
            Holder::of(Origin::Velocity),
            "heavy",
            7,
            None,
        );
        let rated = Decision::new(
            "2001:db8::/32".parse().unwrap(),
            Action::Challenge,
            Holder::of(Origin::Manual),
            "slow down",
            9,
            Some(Duration::from_secs(1)),
        )
        .with_rate(ChallengeRate { pps: 3, burst: 4 });
        for d in [&feed, &manual, &challenge, &rated] {
            let (back, len) = round_trip(d);
            assert_eq!(&back, d);
            assert!(len <= 27 + d.reason.len(), "{len} bytes for {d:?}");
        }
    }

    #[test]
    fn every_other_decision_stays_json_and_comes_back_whole() {
        let base = Decision::block(
            "203.0.113.9/32".parse().unwrap(),
            Holder::of(Origin::Ipasis),
            "hosting",
            9,
            Some(Duration::from_secs(60)),
        );
        let mut scored = base.clone();
        scored.score = Some(80);
        let mut recidive = base.clone();
        recidive.recidive = Some(Box::new(Recidive {
            earlier: 2,
            base_ttl_secs: 60,
            factor: 2,
            capped: false,
        }));
        let mut shared = base.clone();
        shared.answer_from = Some("edge-2".into());
        let mut empty_source = base;
        empty_source.source = Some("".into());
        for d in [scored, recidive, shared, empty_source] {
            let mut bytes = Vec::new();
            encode(&d, &mut bytes);
            assert_eq!(bytes[0], b'{', "{d:?}");
            assert_eq!(round_trip(&d).0, d);
        }
    }

    #[test]
    fn a_truncated_or_unknown_value_is_a_clear_error() {
        let d = Decision::block(
            "203.0.113.9/32".parse().unwrap(),
            Holder::of(Origin::Manual),
            "x",
            9,
            Some(Duration::from_secs(60)),
        );
        let key = decision_key(&d.prefix, &d.holder());
        let mut bytes = Vec::new();
        encode(&d, &mut bytes);
        for cut in 1..19 {
            let err = decode(&key, &bytes[..cut]).unwrap_err();
            assert!(matches!(err, StoreError::Malformed { .. }), "{cut}: {err}");
        }
        let mut bad = bytes.clone();
        bad[1] = 9;
        assert!(
            decode(&key, &bad)
                .unwrap_err()
                .to_string()
                .contains("action")
        );
        assert!(
            decode("nonsense|manual|", &bytes)
                .unwrap_err()
                .to_string()
                .contains("prefix")
        );
        assert!(
            decode("203.0.113.9/32|martian|", &bytes)
                .unwrap_err()
                .to_string()
                .contains("origin")
        );
    }
}
