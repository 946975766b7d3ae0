//! SYN fingerprints in the engine: classifying what the data plane kept for a source, and the
//! `residential_proxy_suspect` factor of its score.

use ipnet::IpNet;
use ipwarden_common::fingerprint::SigEntry;

use super::state::{BySource, Policy};
use crate::wire::FingerprintView;
use crate::{
    decision::Factor,
    engine::Engine,
    enrich::Record,
    fingerprint::{self, Rules},
};

/// The factor's name, as `explain` and the decision's reason show it.
pub const RESIDENTIAL_PROXY_SUSPECT: &str = "residential_proxy_suspect";

impl Policy {
    /// Runs `f` on the signatures by source as read at this poll.
    fn with_signatures<T>(
        &self,
        engine: &Engine,
        f: impl FnOnce(&foldhash::HashMap<IpNet, Vec<SigEntry>>) -> T,
    ) -> T {
        let mut index = self.sig_index.0.borrow_mut();
        if index.as_ref().is_none_or(|(polls, _)| *polls != self.polls) {
            let mut by = BySource::default();
            if let Some(plane) = engine.planes().first() {
                for (source, e) in plane.enforcer.signatures() {
                    by.entry(source).or_default().push(e);
                }
            }
            *index = Some((self.polls, by));
        }
        f(&index.as_ref().expect("filled above").1)
    }

    /// Replaces the fingerprint rules (at start and on reload).
    pub fn set_fingerprint_rules(&mut self, rules: Rules) {
        self.fingerprint_rules = rules;
    }

    /// Every SYN signature the data plane kept for `source`, classified.
    pub fn fingerprints_of(&self, engine: &Engine, source: IpNet) -> Vec<FingerprintView> {
        self.with_signatures(engine, |by| {
            by.get(&source)
                .into_iter()
                .flatten()
                .map(|e| fingerprint::view(&self.fingerprint_rules, &e.signature(), ip_of(e)))
                .collect()
        })
    }

    /// The OS guess of each of these sources.
    pub fn os_guesses(&self, engine: &Engine, sources: &[IpNet]) -> Vec<Option<String>> {
        self.with_signatures(engine, |by| {
            sources
                .iter()
                .map(|src| {
                    let mut oses: Vec<String> = by
                        .get(src)
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            self.fingerprint_rules
                                .classify(&e.signature())
                                .map_or_else(|| "unknown".to_owned(), |r| r.os.clone())
                        })
                        .collect();
                    oses.sort();
                    oses.dedup();
                    (!oses.is_empty()).then(|| oses.join("+"))
                })
                .collect()
        })
    }

    /// `residential_proxy_suspect`: IPASIS says a residential or mobile line (neither hosting,
    /// crawler nor VPN), yet the source's SYNs show a server's stack or come from too far.
    pub(super) fn proxy_factor(
        &self,
        engine: &Engine,
        source: IpNet,
        answer: &Record,
    ) -> Option<Factor> {
        let yes = |f: Option<bool>| f == Some(true);
        if yes(answer.hosting) || yes(answer.crawler) || yes(answer.vpn) {
            return None;
        }
        let why = fingerprint::proxy_suspicion(&self.fingerprints_of(engine, source))?;
        Some(Factor {
            name: format!("{RESIDENTIAL_PROXY_SUSPECT}: {why}"),
            weight: self.cfg.scoring.residential_proxy_suspect,
        })
    }
}

fn ip_of(e: &ipwarden_common::fingerprint::SigEntry) -> std::net::IpAddr {
    if e.version == 4 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&e.last_addr[..4]);
        a.into()
    } else {
        e.last_addr.into()
    }
}
