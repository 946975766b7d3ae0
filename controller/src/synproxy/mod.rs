//! The synproxy's daemon side (`[synproxy]`): what the program's SYN-ACKs advertise, when it
//! answers SYNs (`always`, or `under_attack` from the SYN rate to the protected ports), and the
//! nftables table that completes proven handshakes (see `nft`).
//!
//! The program only answers while the table is known to be in place: a SYN-ACK whose ACK no
//! SYNPROXY rule takes would leave the client with a reset. So a table that cannot be installed,
//! or disappears (a firewall reload that flushes the ruleset), turns answering off, is reinstalled
//! and is reported in the log and `status`.

mod kernel;
pub mod nft;

use std::time::{Duration, Instant};

use ipwarden_common::synproxy::SynproxyConfig as Program;

use crate::{
    config::{SynproxySection, SynproxyWhen},
    wire::{SynproxyCountsView, SynproxyView},
};

pub use kernel::has_cookie_helpers;

/// How often the table's presence is checked.
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// What the daemon keeps of the synproxy.
#[derive(Debug)]
pub struct Guard {
    section: SynproxySection,
    program: Program,
    /// The table's last install or check: `Err` holds why it is not in place.
    table: Result<(), String>,
    checked: Option<Instant>,
    /// Under attack now (always true with `when = always`).
    attack: bool,
    /// The last time the SYN rate was at or above `syn_pps`.
    high: Option<Instant>,
    last: Option<(Instant, u64)>,
    syn_pps: f64,
    entered: u64,
    left: u64,
    counts: crate::dataplane::SynproxyCounts,
}

impl Guard {
    /// The guard for `section` on `ifaces`, its table installed (blocking: runs `nft`).
    pub fn start(section: SynproxySection, ifaces: &[String]) -> Self {
        let mtu = kernel::smallest_mtu(ifaces);
        let mss_v4 = if section.mss != 0 {
            section.mss
        } else {
            mtu.saturating_sub(40).clamp(536, u16::MAX as u32) as u16
        };
        let program = Program {
            flags: 0,
            mss_v4,
            mss_v6: mss_v4.saturating_sub(20).max(536),
            wscale: section.wscale.unwrap_or_else(kernel::listener_wscale),
            ttl: kernel::default_ttl(),
            _pad: [0; 6],
        };
        let mut g = Self {
            attack: section.when == SynproxyWhen::Always,
            section,
            program,
            table: Err("not installed yet".into()),
            checked: None,
            high: None,
            last: None,
            syn_pps: 0.0,
            entered: 0,
            left: 0,
            counts: Default::default(),
        };
        g.install();
        if g.attack && g.table.is_ok() {
            g.entered = 1;
        }
        g
    }

    fn install(&mut self) {
        self.table = kernel::has_cookie_helpers().and_then(|()| {
            nft::install(
                &self.section.ports,
                self.program.mss_v4,
                self.program.wscale,
            )
        });
        self.checked = Some(Instant::now());
        match &self.table {
            Ok(()) => tracing::info!(
                ports = ?self.section.ports,
                mss = self.program.mss_v4,
                wscale = self.program.wscale,
                "synproxy: nftables table {} in place", nft::TABLE
            ),
            Err(e) => tracing::error!("synproxy: SYNs are not answered: {e}"),
        }
    }

    /// Checks (at most every [`CHECK_EVERY`]) that the table is still there, reinstalling it if
    /// not. Blocking (runs `nft`). A message for the warnings when it had gone.
    pub fn check_table(&mut self, now: Instant) -> Option<String> {
        if self
            .checked
            .is_some_and(|t| now.duration_since(t) < CHECK_EVERY)
        {
            return None;
        }
        self.checked = Some(now);
        if self.table.is_ok() && nft::present() {
            return None;
        }
        let was_ok = self.table.is_ok();
        self.install();
        match (&self.table, was_ok) {
            (Ok(()), true) => Some(format!(
                "synproxy: the nftables table {} had gone (a firewall reload?): reinstalled; handshakes answered meanwhile were reset",
                nft::TABLE
            )),
            (Err(e), _) => Some(format!("synproxy: SYNs are not answered: {e}")),
            (Ok(()), false) => None,
        }
    }

    /// Takes the program's counters (all interfaces summed) at `now`: updates the SYN rate and,
    /// with `under_attack`, whether SYNs are answered. Whether answering changed.
    pub fn observe(&mut self, now: Instant, counts: crate::dataplane::SynproxyCounts) -> bool {
        let was = self.answering();
        if let Some((t, syns)) = self.last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt > 0.0 && counts.syns >= syns {
                self.syn_pps = (counts.syns - syns) as f64 / dt;
            }
        }
        self.last = Some((now, counts.syns));
        self.counts = counts;
        if self.section.when == SynproxyWhen::UnderAttack {
            if self.syn_pps >= self.section.syn_pps as f64 {
                self.high = Some(now);
                self.attack = true;
            } else if self.attack
                && self
                    .high
                    .is_none_or(|h| now.duration_since(h) >= self.section.calm)
            {
                self.attack = false;
            }
        }
        let is = self.answering();
        if is != was {
            if is {
                self.entered += 1;
                tracing::warn!(syn_pps = self.syn_pps.round(), ports = ?self.section.ports, "synproxy: answering SYNs with cookies");
            } else {
                self.left += 1;
                tracing::info!(
                    syn_pps = self.syn_pps.round(),
                    "synproxy: SYN flood over, SYNs go to the listeners again"
                );
            }
        }
        is != was
    }

    /// Whether SYNs are answered now: under attack (or always) and the table in place.
    pub fn answering(&self) -> bool {
        self.attack && self.table.is_ok()
    }

    /// What to write to the program, and the protected ports.
    pub fn program(&self) -> (Program, &[u16]) {
        let mut p = self.program;
        p.flags = Program::COUNT | if self.answering() { Program::ANSWER } else { 0 };
        (p, &self.section.ports)
    }

    pub fn view(&self) -> SynproxyView {
        SynproxyView {
            ports: self.section.ports.clone(),
            when: match self.section.when {
                SynproxyWhen::Always => "always",
                SynproxyWhen::UnderAttack => "under_attack",
            }
            .into(),
            answering: self.answering(),
            syn_pps: self.syn_pps,
            entered: self.entered,
            left: self.left,
            mss_v4: self.program.mss_v4,
            mss_v6: self.program.mss_v6,
            wscale: self.program.wscale,
            problem: self.table.as_ref().err().cloned(),
            counts: SynproxyCountsView {
                syns: self.counts.syns,
                answered: self.counts.answered,
                existing: self.counts.existing,
                no_listener: self.counts.no_listener,
                accepted: self.counts.accepted,
                refused: self.counts.refused,
                unfit: self.counts.unfit,
            },
        }
    }
}

#[cfg(test)]
mod tests;
