//! Listening to the program's loud-source hints (see `ipwarden_common::loud`): a hinted source
//! is measured over `detection.fast_window` from its exact counters and, when it ran at or above
//! a threshold, handed to the main loop to be judged at once rather than at the next poll.
//!
//! Bounded everywhere: at most [`MAX_MEASURING`] sources are measured at a time (more hints are
//! counted as dropped), a source measured in the last poll interval is not measured again, and
//! the set remembering those is pruned at [`MAX_RECENT`]. What is not measured here is still
//! found by the poll.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use ipnet::IpNet;
use ipwarden_common::loud::LoudLevels;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use crate::{
    clock,
    config::DetectionConfig,
    dataplane::{Counted, Loud},
    detect::{
        Rates, Snapshot,
        rates::{Sample, rates},
    },
};

/// Sources measured at once, per interface.
const MAX_MEASURING: usize = 1024;
/// Sources remembered as measured recently, per interface.
const MAX_RECENT: usize = 65_536;

/// What the hints are held against: `None` turns them off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hearing {
    pub window: Duration,
    pub pps: u64,
    pub syn_pps: u64,
    /// Measured sources are not measured again for this long.
    pub quiet: Duration,
}

impl Hearing {
    pub fn from_config(cfg: &DetectionConfig) -> Option<Self> {
        (!cfg.fast_window.is_zero()).then_some(Self {
            window: cfg.fast_window,
            pps: cfg.pps_threshold,
            syn_pps: cfg.syn_pps_threshold,
            quiet: cfg.poll_interval,
        })
    }

    /// The program's levels: a source's share on one CPU at the thresholds.
    fn levels(this: Option<Self>) -> LoudLevels {
        // The CPUs traffic can land on: online ones (possible ones may be many more).
        let cpus = aya::util::online_cpus().map_or(1, |c| c.len().max(1) as u32);
        this.map_or(LoudLevels::default(), |h| {
            LoudLevels::per_cpu(h.pps, h.syn_pps, cpus)
        })
    }
}

/// A hinted source found at or above a threshold.
#[derive(Debug)]
pub struct Measured {
    pub source: IpNet,
    pub snapshot: Snapshot,
    pub rates: Rates,
    pub now_ns: u64,
}

/// What the listeners did, for `status`.
#[derive(Debug, Default)]
pub struct HintStats {
    pub received: AtomicU64,
    pub measured: AtomicU64,
    pub loud: AtomicU64,
    /// Loud sources that started an episode (the others already had one).
    pub decided: AtomicU64,
    /// Hints for a source being measured or measured recently.
    pub repeated: AtomicU64,
    /// Hints dropped because [`MAX_MEASURING`] sources were being measured.
    pub dropped: AtomicU64,
    /// Reads that failed (the last error is logged).
    pub failed: AtomicU64,
}

/// One source being measured: its first reading, and when to take the second.
struct Measuring {
    due: Instant,
    source: IpNet,
    first: Sample,
}

/// What one listener keeps: the sources being measured (due in order: every measurement lasts
/// the same window), and those measured lately.
struct Ears {
    iface: String,
    stats: Arc<HintStats>,
    measuring: VecDeque<Measuring>,
    in_hand: foldhash::HashSet<IpNet>,
    recent: foldhash::HashMap<IpNet, Instant>,
}

impl Ears {
    /// Takes every hint in the ring: a source neither being measured nor measured lately gets
    /// its first reading. Off (`None`), the ring is emptied and nothing is measured.
    fn drain(&mut self, loud: &mut Loud, hearing: Option<Hearing>) {
        while let Some(hint) = loud.next_hint() {
            self.stats.received.fetch_add(1, Relaxed);
            let (Some(h), Some(source)) = (hearing, hint) else {
                continue;
            };
            let now = Instant::now();
            if self.in_hand.contains(&source)
                || self
                    .recent
                    .get(&source)
                    .is_some_and(|t| now.duration_since(*t) < h.quiet)
            {
                self.stats.repeated.fetch_add(1, Relaxed);
                continue;
            }
            if self.measuring.len() >= MAX_MEASURING {
                self.stats.dropped.fetch_add(1, Relaxed);
                continue;
            }
            let Some((first, _)) = read(loud, &source, &self.stats, &self.iface) else {
                continue;
            };
            self.in_hand.insert(source);
            self.measuring.push_back(Measuring {
                due: now + h.window,
                source,
                first,
            });
        }
    }

    /// Takes the second reading of every measurement now due; the sources found at or above a
    /// threshold.
    fn due(&mut self, loud: &Loud, hearing: Option<Hearing>) -> Vec<Measured> {
        let now = Instant::now();
        let mut found = Vec::new();
        while self.measuring.front().is_some_and(|m| m.due <= now) {
            let Some(m) = self.measuring.pop_front() else {
                break;
            };
            self.in_hand.remove(&m.source);
            if self.recent.len() >= MAX_RECENT {
                let quiet = hearing.map_or(Duration::ZERO, |h| h.quiet);
                self.recent.retain(|_, t| now.duration_since(*t) < quiet);
            }
            self.recent.insert(m.source, now);
            let Some(h) = hearing else { continue };
            let Some((second, counted)) = read(loud, &m.source, &self.stats, &self.iface) else {
                continue;
            };
            self.stats.measured.fetch_add(1, Relaxed);
            let r = rates(&m.first, &second);
            if r.pps < h.pps as f64 && r.syn_pps < h.syn_pps as f64 {
                continue;
            }
            self.stats.loud.fetch_add(1, Relaxed);
            found.push(Measured {
                source: m.source,
                snapshot: super::poll::reading(&m.source, counted.addr, &counted.stats, second.t)
                    .snapshot(),
                rates: r,
                now_ns: second.t,
            });
        }
        found
    }
}

/// Listens to one interface's hints until the task is aborted.
pub async fn listen(
    loud: Loud,
    mut hearing: watch::Receiver<Option<Hearing>>,
    out: mpsc::Sender<Measured>,
    stats: Arc<HintStats>,
) {
    let iface = loud.iface().to_owned();
    let mut loud = loud;
    let mut now_hearing = *hearing.borrow_and_update();
    set_levels(&mut loud, now_hearing, &iface);
    // SAFETY: the ring's fd is owned by `loud`, which the `AsyncFd` owns: it stays open and the
    // same for the `AsyncFd`'s whole life.
    let registered =
        unsafe { AsyncFd::register_with_interest(loud, tokio::io::Interest::READABLE) };
    let mut ring = match registered {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(iface, error = %e, "cannot wait on the loud-source ring: sources are found by polls only");
            return;
        }
    };
    let mut ears = Ears {
        iface: iface.clone(),
        stats,
        measuring: VecDeque::new(),
        in_hand: Default::default(),
        recent: Default::default(),
    };
    loop {
        let next = ears.measuring.front().map(|m| m.due);
        tokio::select! {
            guard = ring.readable_mut() => {
                let Ok(mut guard) = guard else { return };
                ears.drain(guard.get_inner_mut(), now_hearing);
                // The ring wakes its reader only when it was caught up: a hint put in after the
                // drain and before the readiness is cleared would wake no one. Drain again.
                guard.clear_ready();
                ears.drain(guard.get_inner_mut(), now_hearing);
            }
            _ = async { tokio::time::sleep_until(next.unwrap_or_else(Instant::now).into()).await }, if next.is_some() => {
                for measured in ears.due(ring.get_ref(), now_hearing) {
                    if out.send(measured).await.is_err() {
                        return;
                    }
                }
            }
            changed = hearing.changed() => {
                if changed.is_err() {
                    return;
                }
                now_hearing = *hearing.borrow_and_update();
                set_levels(ring.get_mut(), now_hearing, &iface);
                if now_hearing.is_none() {
                    ears.measuring.clear();
                    ears.in_hand.clear();
                }
            }
        }
    }
}

fn set_levels(l: &mut Loud, hearing: Option<Hearing>, iface: &str) {
    let levels = Hearing::levels(hearing);
    match l.set_levels(levels) {
        Ok(()) => tracing::debug!(iface, ?levels, "loud-source levels set"),
        Err(e) => {
            tracing::warn!(iface, error = %e, "setting the loud-source levels: sources are found by polls only")
        }
    }
}

/// One reading of `source`'s counters, as a sample on the kernel clock.
fn read(loud: &Loud, source: &IpNet, stats: &HintStats, iface: &str) -> Option<(Sample, Counted)> {
    let t = clock::monotonic_ns();
    match loud.count(source) {
        Ok(Some(c)) => Some((
            Sample {
                t,
                packets: c.stats.packets,
                syn: c.stats.syn,
            },
            c,
        )),
        Ok(None) => None,
        Err(e) => {
            if stats.failed.fetch_add(1, Relaxed) == 0 {
                tracing::warn!(iface, %source, error = %e, "reading a hinted source's counters");
            }
            None
        }
    }
}
