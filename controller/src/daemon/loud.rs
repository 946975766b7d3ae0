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
    os::fd::{AsRawFd, RawFd},
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
        let cpus = aya::util::nr_cpus().map_or(1, |n| n as u32);
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

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        use std::os::fd::AsFd as _;
        self.loud.as_fd().as_raw_fd()
    }
}

struct Listener {
    loud: Loud,
}

/// One source being measured: its first reading, and when to take the second.
struct Measuring {
    due: Instant,
    source: IpNet,
    first: Sample,
}

/// Listens to one interface's hints until the task is aborted.
pub async fn listen(
    loud: Loud,
    mut hearing: watch::Receiver<Option<Hearing>>,
    out: mpsc::Sender<Measured>,
    stats: Arc<HintStats>,
) {
    let iface = loud.iface().to_owned();
    let mut listener = Listener { loud };
    let mut now_hearing = *hearing.borrow_and_update();
    set_levels(&mut listener, now_hearing, &iface);
    // SAFETY: the ring's fd is owned by `listener`, which the `AsyncFd` owns: it stays open and
    // the same for the `AsyncFd`'s whole life.
    let registered =
        unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) };
    let mut ring = match registered {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(iface, error = %e, "cannot wait on the loud-source ring: sources are found by polls only");
            return;
        }
    };
    let mut measuring: VecDeque<Measuring> = VecDeque::new();
    let mut in_hand: foldhash::HashSet<IpNet> = Default::default();
    let mut recent: foldhash::HashMap<IpNet, Instant> = Default::default();
    loop {
        let next = measuring.front().map(|m| m.due);
        tokio::select! {
            guard = ring.readable_mut() => {
                let Ok(mut guard) = guard else { return };
                let Some(h) = now_hearing else {
                    // Off: empty the ring, measure nothing.
                    while guard.get_inner_mut().loud.next_hint().is_some() {}
                    guard.clear_ready();
                    continue;
                };
                while let Some(hint) = guard.get_inner_mut().loud.next_hint() {
                    stats.received.fetch_add(1, Relaxed);
                    let Some(source) = hint else { continue };
                    let now = Instant::now();
                    if in_hand.contains(&source)
                        || recent.get(&source).is_some_and(|t| now.duration_since(*t) < h.quiet)
                    {
                        stats.repeated.fetch_add(1, Relaxed);
                        continue;
                    }
                    if measuring.len() >= MAX_MEASURING {
                        stats.dropped.fetch_add(1, Relaxed);
                        continue;
                    }
                    let Some(first) = read(&guard.get_inner().loud, &source, &stats, &iface) else {
                        continue;
                    };
                    in_hand.insert(source);
                    measuring.push_back(Measuring { due: now + h.window, source, first: first.0 });
                }
                guard.clear_ready();
            }
            _ = async { tokio::time::sleep_until(next.unwrap_or_else(Instant::now).into()).await }, if next.is_some() => {
                let now = Instant::now();
                while measuring.front().is_some_and(|m| m.due <= now) {
                    let Some(m) = measuring.pop_front() else { break };
                    in_hand.remove(&m.source);
                    if recent.len() >= MAX_RECENT {
                        let quiet = now_hearing.map_or(Duration::ZERO, |h| h.quiet);
                        recent.retain(|_, t| now.duration_since(*t) < quiet);
                    }
                    recent.insert(m.source, now);
                    let Some(h) = now_hearing else { continue };
                    let Some((second, counted)) = read(&ring.get_ref().loud, &m.source, &stats, &iface) else {
                        continue;
                    };
                    stats.measured.fetch_add(1, Relaxed);
                    let r = rates(&m.first, &second);
                    if r.pps < h.pps as f64 && r.syn_pps < h.syn_pps as f64 {
                        continue;
                    }
                    stats.loud.fetch_add(1, Relaxed);
                    let snapshot = Snapshot {
                        packets: counted.stats.packets,
                        bytes: counted.stats.bytes,
                        syn: counted.stats.syn,
                        first_seen_ns: if counted.stats.first_seen_ns == 0 { second.t } else { counted.stats.first_seen_ns },
                        addr: counted.addr,
                    };
                    let measured = Measured { source: m.source, snapshot, rates: r, now_ns: second.t };
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
                    measuring.clear();
                    in_hand.clear();
                }
            }
        }
    }
}

fn set_levels(l: &mut Listener, hearing: Option<Hearing>, iface: &str) {
    let levels = Hearing::levels(hearing);
    match l.loud.set_levels(levels) {
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
