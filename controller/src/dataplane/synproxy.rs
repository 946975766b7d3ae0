//! The synproxy's maps (see `ipwarden_common::synproxy`): what SYN-ACKs advertise and whether
//! SYNs are answered, the protected ports, and what the program did with SYNs and handshake
//! ACKs.

use ipwarden_common::{
    names,
    synproxy::{
        ACCEPTED, ANSWERED, EXISTING, NO_LISTENER, PORT_WORDS, REFUSED, SYNS, SynproxyConfig, UNFIT,
    },
};

use super::{Dataplane, DataplaneError};

/// The program's synproxy counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SynproxyCounts {
    /// SYNs to protected ports, answered or not.
    pub syns: u64,
    /// SYNs answered with a cookie SYN-ACK.
    pub answered: u64,
    /// SYNs passed on: a connection held their 4-tuple.
    pub existing: u64,
    /// SYNs passed on: nothing listened on their port.
    pub no_listener: u64,
    /// Handshake ACKs whose cookie checked out.
    pub accepted: u64,
    /// ACKs with no connection and no valid cookie: dropped.
    pub refused: u64,
    /// SYNs passed on unanswered (IPv4 options, IPv6 extension headers, a helper's refusal).
    pub unfit: u64,
}

impl SynproxyCounts {
    /// Each counter with its name in `stats` (`synproxy_` and the field's name).
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("synproxy_syns", self.syns),
            ("synproxy_answered", self.answered),
            ("synproxy_existing", self.existing),
            ("synproxy_no_listener", self.no_listener),
            ("synproxy_accepted", self.accepted),
            ("synproxy_refused", self.refused),
            ("synproxy_unfit", self.unfit),
        ]
    }

    /// Adds another interface's counters.
    pub fn add(&mut self, o: &Self) {
        self.syns += o.syns;
        self.answered += o.answered;
        self.existing += o.existing;
        self.no_listener += o.no_listener;
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.unfit += o.unfit;
    }
}

impl Dataplane {
    /// Whether the program has the synproxy (a build before it has not).
    pub fn has_synproxy(&self) -> bool {
        self.synproxy.is_some()
    }

    /// Sets what SYN-ACKs advertise and whether SYNs are answered, and the protected ports.
    /// The ports are written before the switch, so the program never answers on a half-written
    /// set. Without the maps, nothing is done.
    pub fn set_synproxy(
        &mut self,
        cfg: SynproxyConfig,
        ports: &[u16],
    ) -> Result<(), DataplaneError> {
        let Some(m) = &mut self.synproxy else {
            return Ok(());
        };
        let mut words = vec![0u64; PORT_WORDS as usize];
        for p in ports {
            words[*p as usize / 64] |= 1 << (p % 64);
        }
        for (i, w) in words.into_iter().enumerate() {
            let old = m
                .ports
                .get(&(i as u32), 0)
                .map_err(|e| DataplaneError::map("reading", names::SYNPROXY_PORTS, e))?;
            if old != w {
                m.ports
                    .set(i as u32, w, 0)
                    .map_err(|e| DataplaneError::map("writing", names::SYNPROXY_PORTS, e))?;
            }
        }
        m.config
            .set(0, cfg, 0)
            .map_err(|e| DataplaneError::map("writing", names::SYNPROXY_CONFIG, e))
    }

    /// What the program answers with now (off when the maps are missing).
    pub fn synproxy_config(&self) -> Result<SynproxyConfig, DataplaneError> {
        let Some(m) = &self.synproxy else {
            return Ok(SynproxyConfig::default());
        };
        m.config
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::SYNPROXY_CONFIG, e))
    }

    /// The counters so far; `None` for pins of a build before the synproxy.
    pub fn synproxy_counts(&self) -> Result<Option<SynproxyCounts>, DataplaneError> {
        let Some(m) = &self.synproxy else {
            return Ok(None);
        };
        let sum = |slot: u32| -> Result<u64, DataplaneError> {
            Ok(m.stats
                .get(&slot, 0)
                .map_err(|e| DataplaneError::map("reading", names::SYNPROXY_STATS, e))?
                .iter()
                .sum())
        };
        Ok(Some(SynproxyCounts {
            syns: sum(SYNS)?,
            answered: sum(ANSWERED)?,
            existing: sum(EXISTING)?,
            no_listener: sum(NO_LISTENER)?,
            accepted: sum(ACCEPTED)?,
            refused: sum(REFUSED)?,
            unfit: sum(UNFIT)?,
        }))
    }
}
