//! Who got passes lately: at most `passes_per_hour` per source unit, and each solved challenge
//! spent once. Both tables are bounded: an attacker spraying solves from many units fills them,
//! and then new passes are refused (and said) rather than memory grown.

use std::collections::{HashMap, VecDeque};

use ipnet::IpNet;

/// Units and spent challenges remembered at most.
pub const MAX_TRACKED: usize = 100_000;
const HOUR_MS: u64 = 3_600_000;

/// Why no pass was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// This challenge was already solved once.
    Spent,
    /// The unit had its passes for this hour.
    Limit,
    /// Too many units and challenges are tracked: none is given until some age out.
    Full,
}

#[derive(Default)]
pub struct Passes {
    /// Pass times (ms) within the last hour, by unit.
    given: HashMap<IpNet, VecDeque<u64>>,
    /// Solved challenges, with their expiry.
    spent: HashMap<String, u64>,
}

impl Passes {
    /// Records a pass for `unit` from `challenge` (expiring at `challenge_expires_ms`), if allowed.
    pub fn give(
        &mut self,
        unit: IpNet,
        challenge: &str,
        challenge_expires_ms: u64,
        per_hour: u32,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if self.spent.contains_key(challenge) {
            return Err(Refused::Spent);
        }
        if self.given.len() >= MAX_TRACKED || self.spent.len() >= MAX_TRACKED {
            self.prune(now_ms);
            if self.given.len() >= MAX_TRACKED || self.spent.len() >= MAX_TRACKED {
                return Err(Refused::Full);
            }
        }
        let times = self.given.entry(unit).or_default();
        while times
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= HOUR_MS)
        {
            times.pop_front();
        }
        if times.len() >= per_hour as usize {
            return Err(Refused::Limit);
        }
        times.push_back(now_ms);
        self.spent
            .insert(challenge.to_owned(), challenge_expires_ms);
        Ok(())
    }

    fn prune(&mut self, now_ms: u64) {
        self.spent.retain(|_, exp| *exp > now_ms);
        self.given.retain(|_, times| {
            times.retain(|t| now_ms.saturating_sub(*t) < HOUR_MS);
            !times.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_gets_its_passes_per_hour_and_a_challenge_is_spent_once() {
        let mut p = Passes::default();
        let unit: IpNet = "203.0.113.7/32".parse().unwrap();
        assert_eq!(p.give(unit, "c1", 10_000, 2, 0), Ok(()));
        assert_eq!(p.give(unit, "c1", 10_000, 2, 1), Err(Refused::Spent));
        assert_eq!(p.give(unit, "c2", 10_000, 2, 2), Ok(()));
        assert_eq!(p.give(unit, "c3", 10_000, 2, 3), Err(Refused::Limit));
        let other: IpNet = "203.0.113.8/32".parse().unwrap();
        assert_eq!(p.give(other, "c4", 10_000, 2, 3), Ok(()));
        // An hour after the first, one more.
        assert_eq!(p.give(unit, "c5", 10_000, 2, HOUR_MS), Ok(()));
        assert_eq!(
            p.give(unit, "c6", 10_000, 2, HOUR_MS + 1),
            Err(Refused::Limit)
        );
    }

    #[test]
    fn the_tables_stay_bounded() {
        let mut p = Passes::default();
        for i in 0..MAX_TRACKED as u32 {
            let unit = IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(i)));
            p.give(unit, &i.to_string(), 1_000, 1, 0).unwrap();
        }
        let late: IpNet = "2001:db8::/64".parse().unwrap();
        assert_eq!(p.give(late, "x", 1_000, 1, 10), Err(Refused::Full));
        // Once the hour and the challenges are past, room again.
        assert_eq!(p.give(late, "x", 2 * HOUR_MS, 1, HOUR_MS + 1), Ok(()));
    }
}
