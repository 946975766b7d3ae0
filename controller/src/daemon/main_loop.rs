//! The daemon's one loop: a poll every `poll_interval`, and whatever the other tasks send
//! (IPASIS answers, decision sources' events, snapshot requests, protected addresses), SIGHUP
//! and the stop signals. Everything that touches the state runs on a blocking thread
//! ([`locked`]); a panic anywhere stops the loop with the panic's message.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use super::{
    error::DaemonError,
    notify::{notify, reloading},
    poll, protect,
    shared::{Shared, locked},
};
use crate::{
    dataplane::Dataplane, engine::SourceEvent, enrich::pipeline::Enriched,
    instruments::Instruments, sources::SnapshotRequest, synproxy::Guard,
};

/// What other tasks send the loop.
pub struct Inbox {
    pub answers: mpsc::Receiver<Enriched>,
    pub events: mpsc::Receiver<SourceEvent>,
    pub snapshots: mpsc::Receiver<SnapshotRequest>,
    /// The gateways and hosts to protect, read again now and then.
    pub protected: mpsc::Receiver<protect::Protected>,
    /// Wakes the reader of `protected` (on reload).
    pub refresh: Arc<tokio::sync::Notify>,
    /// Panics of the control socket's handlers and the protection refresher.
    pub panics: mpsc::UnboundedReceiver<String>,
    /// Hinted sources measured loud (see `loud`).
    pub loud: mpsc::Receiver<super::loud::Measured>,
}

/// Runs until SIGTERM/SIGINT (`Ok`), a lost data plane or a panic (`Err`).
pub async fn run(
    shared: &Shared,
    readers: &mut Vec<Dataplane>,
    synproxy: &mut Option<Guard>,
    mut inbox: Inbox,
    mut period: Duration,
    instruments: &Instruments,
) -> Result<(), DaemonError> {
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Runtime)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Runtime)?;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backlog: VecDeque<SourceEvent> = VecDeque::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let wanted = tick(shared, readers, period, instruments).await?;
                if let Some(g) = synproxy.as_mut() {
                    guard_synproxy(shared, readers, g).await?;
                }
                if wanted != period {
                    period = wanted;
                    ticker = tokio::time::interval(period);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
            }
            Some(p) = inbox.protected.recv() => {
                locked(shared, "applying protected addresses", move |s| s.engine.set_protected(p)).await?;
            }
            _ = hup.recv() => {
                inbox.refresh.notify_one();
                notify(&reloading());
                let reloaded = locked(shared, "reloading", |s| s.reload_from_file()).await?;
                notify("READY=1");
                match reloaded {
                    Ok(message) => tracing::info!("SIGHUP: {message}"),
                    Err(e) => tracing::error!("SIGHUP: {e}"),
                }
            }
            Some(measured) = inbox.loud.recv() => {
                locked(shared, "judging a loud source", move |s| s.on_loud(measured)).await?;
            }
            Some(enriched) = inbox.answers.recv() => {
                // Scoring writes the cache and maybe a decision (fsync).
                locked(shared, "scoring an IPASIS answer", move |s| s.on_enriched(enriched)).await?;
            }
            Some(SnapshotRequest { origins, reply }) = inbox.snapshots.recv() => {
                let local = locked(shared, "reading decisions for a snapshot", move |s| {
                    s.engine
                        .book()
                        .iter()
                        .filter(|d| origins.contains(&d.origin))
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .await?;
                let _ = reply.send(local);
            }
            Some(event) = inbox.events.recv() => {
                // A large set is applied in parts, one per turn of this loop: polls and control
                // requests run in between.
                backlog.extend(event.chunked(crate::engine::CHUNK));
            }
            Some(event) = async { backlog.pop_front() }, if !backlog.is_empty() => {
                locked(shared, "applying a decision source's change", move |s| {
                    if let Err(err) = s.apply(event) {
                        s.engine.warn(format!("applying a decision source's change: {err}"));
                    }
                })
                .await?;
            }
            Some(message) = inbox.panics.recv() => {
                return Err(DaemonError::Panicked { what: "a task", message });
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

/// The synproxy's turn after a poll: its table checked (now and then), its mode judged from the
/// SYN rate, the program told when answering starts or stops, `status` given the view.
async fn guard_synproxy(
    shared: &Shared,
    readers: &mut [Dataplane],
    g: &mut Guard,
) -> Result<(), DaemonError> {
    let now = std::time::Instant::now();
    let mut counts = crate::dataplane::SynproxyCounts::default();
    for dp in readers.iter() {
        match dp.synproxy_counts() {
            Ok(Some(c)) => counts.add(&c),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "reading the synproxy's counters on {}: {e}",
                dp.pins().iface()
            ),
        }
    }
    // `nft list` every few seconds: a few milliseconds on this thread.
    let lost = tokio::task::block_in_place(|| g.check_table(now));
    let changed = g.observe(now, counts) | lost.is_some();
    if changed {
        let (program, ports) = g.program();
        for dp in readers.iter_mut() {
            if let Err(e) = dp.set_synproxy(program, ports) {
                tracing::error!("setting the synproxy on {}: {e}", dp.pins().iface());
            }
        }
    }
    let view = g.view();
    locked(shared, "the synproxy's view", move |s| {
        if let Some(w) = lost {
            s.engine.warn(w);
        }
        s.synproxy = Some(view);
    })
    .await
}

/// One poll: read the counters, detect, decide; the period wanted next (reloadable).
async fn tick(
    shared: &Shared,
    readers: &mut Vec<Dataplane>,
    period: Duration,
    instruments: &Instruments,
) -> Result<Duration, DaemonError> {
    let started = std::time::Instant::now();
    let owned = std::mem::take(readers);
    let aggregates = locked(shared, "polling", |s| s.policy.aggregates_on()).await?;
    let (back, poll) = tokio::task::spawn_blocking(move || {
        let p = poll::read(&owned, aggregates);
        (owned, p)
    })
    .await
    .map_err(|e| DaemonError::Panicked {
        what: "reading the counters",
        message: super::shared::panic_message(e),
    })?;
    *readers = back;
    let poll = poll.map_err(DaemonError::Lost)?;
    let (wanted, summary, admission) = locked(shared, "a poll", move |s| {
        s.tick(poll.now_ns, poll.readings, poll.took);
        if let Some(reading) = poll.aggregates {
            s.judge_aggregates(poll.now_ns, reading.cells, reading.pending);
        }
        s.check_sources();
        // The whole poll: read, detect, decide. Longer than the interval, the next one starts
        // late (the ticker delays rather than bursts) and `status` says so.
        let spent = started.elapsed();
        s.note_poll_time(spent, period);
        let (level, flags) = s.policy.admission();
        (
            s.poll_interval(),
            (s.summary(), spent),
            (level, flags.to_vec()),
        )
    })
    .await?;
    // A few map writes (the level, and the flag words that changed): the program admits by
    // this poll's thresholds and loud networks from now on.
    let (level, flags) = admission;
    for dp in readers.iter_mut() {
        if let Err(e) = dp.set_admission(level, &flags) {
            tracing::warn!("setting admission on {}: {e}", dp.pins().iface());
        }
    }
    let (summary, spent) = summary;
    instruments.poll_duration.observe(spent.as_secs_f64());
    // The watchdog is fed from here only: a poll loop that stops turning gets the daemon
    // restarted (WatchdogSec in the unit); the XDP program enforces meanwhile.
    notify(&format!("WATCHDOG=1\nSTATUS={summary}"));
    Ok(wanted)
}
