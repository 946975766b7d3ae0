//! `status`: the daemon, its interfaces, decisions, detection and sources at a glance. Metrics
//! read the same view.

use crate::daemon::state::State;
use crate::{
    dataplane::Program,
    sources::SourceStatus,
    wire::{InterfaceView, MapView, OriginCounts, ProgramView, RefusalView, StatusView},
};

pub fn status(state: &State) -> StatusView {
    let engine = &state.engine;
    let policy = &state.policy;
    let (tracked, heavy) = policy.detector().counts();
    let (polls, late_polls, last_poll) = policy.polls();
    let (aggregates_tracked, heavy_aggregates) = policy.aggregates().counts();
    let mut view = StatusView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        uptime_secs: state.uptime().as_secs(),
        config: state.config_path().map(|p| p.display().to_string()),
        state_db: engine.store_path().display().to_string(),
        interfaces: engine
            .planes()
            .iter()
            .map(|p| InterfaceView {
                iface: p.iface.clone(),
                attach: p.attach,
                monitor: p.enforcer.monitor().unwrap_or(false),
                out_of_sync: p.out_of_sync().map(str::to_owned),
                program: p.enforcer.program().map(program_view),
            })
            .collect(),
        decisions: engine.book().len(),
        decisions_by_origin: OriginCounts(engine.book().count_by_origin()),
        allow: engine.allowlist().len(),
        tracked_sources: tracked,
        heavy_hitters: heavy,
        polls,
        late_polls,
        aggregates_tracked,
        heavy_aggregates,
        last_poll_ms: (last_poll.as_secs_f64() * 1e4).round() / 10.0,
        enrichment: policy.enrichment_state(),
        refusals: engine
            .refusals()
            .map(|(origin, why, count)| RefusalView {
                origin,
                why: why.to_owned(),
                count,
            })
            .collect(),
        ipasis: None,
        warnings: engine.warnings().cloned().collect(),
        maps: engine
            .map_fills()
            .into_iter()
            .map(|f| MapView {
                map: f.map.name().to_owned(),
                entries: f.entries,
                capacity: f.capacity,
                setting: f.map.setting().to_owned(),
                refused: f.refused,
                left_out: f.left_out,
                shadowed: f.shadowed,
            })
            .collect(),
        fleet: None,
        crowdsec: None,
        feeds: Vec::new(),
        hooks: state.hooks.iter().map(hook_view).collect(),
        verdict: state.verdict.as_ref().map(|v| Box::new(v.view())),
        policy: Some(Box::new(policy_view(engine.config()))),
        hints: Some(Box::new(hints_view(state))),
        admission: Some(Box::new(admission_view(state))),
        synproxy: state.synproxy.clone().map(Box::new),
    };
    for s in state.sources.statuses() {
        match s {
            SourceStatus::Fleet(v) => view.fleet = Some(Box::new(v)),
            SourceStatus::Crowdsec(v) => view.crowdsec = Some(Box::new(v)),
            SourceStatus::Feed(v) => view.feeds.push(v),
            SourceStatus::Ipasis(v) => view.ipasis = Some(v),
        }
    }
    view.feeds.sort_by(|a, b| a.name.cmp(&b.name));
    view
}

/// The program attached to an interface, as `status` shows it.
fn program_view(p: Program) -> ProgramView {
    let stamp = p.stamp;
    ProgramView {
        version: stamp
            .map(|s| s.version_str().to_owned())
            .unwrap_or_default(),
        build: stamp.map_or_else(|| "unstamped".into(), |s| format!("{:016x}", s.build)),
        layout: stamp.map_or(1, |s| s.layout),
        program_id: p.program_id,
        current: p.is_current(),
    }
}

/// The thresholds and policy in force.
fn policy_view(cfg: &crate::config::Config) -> crate::wire::PolicyView {
    let d = &cfg.detection;
    crate::wire::PolicyView {
        poll_interval_ms: d.poll_interval.as_millis() as u64,
        window_ms: d.window.as_millis() as u64,
        pps_threshold: d.pps_threshold,
        syn_pps_threshold: d.syn_pps_threshold,
        hard_pps_limit: d.hard_pps_limit,
        on_heavy_hitter: crate::names::of(&d.on_heavy_hitter).to_owned(),
        block_at: cfg.scoring.block_at,
        challenge_at: cfg.scoring.challenge_at,
        default_ttl_secs: cfg.decisions.default_ttl.as_secs(),
        monitor: cfg.dataplane.monitor,
    }
}

/// What the loud-source hints did: the kernel's counts from every plane, the listeners' own.
fn hints_view(state: &State) -> crate::wire::HintsView {
    use std::sync::atomic::Ordering::Relaxed;
    let h = &state.hints;
    let mut view = crate::wire::HintsView {
        fast_window_ms: state.engine.config().detection.fast_window.as_millis() as u64,
        received: h.received.load(Relaxed),
        measured: h.measured.load(Relaxed),
        loud: h.loud.load(Relaxed),
        decided: h.decided.load(Relaxed),
        repeated: h.repeated.load(Relaxed),
        dropped: h.dropped.load(Relaxed),
        failed: h.failed.load(Relaxed),
        ..Default::default()
    };
    for c in state
        .engine
        .planes()
        .iter()
        .filter_map(|p| p.enforcer.hint_counts())
    {
        view.sent += c.sent;
        view.lost += c.lost;
    }
    view
}

/// What admission does: the level in force, the kernel's counts from every plane.
fn admission_view(state: &State) -> crate::wire::AdmissionView {
    let d = &state.engine.config().detection;
    let (level, _) = state.policy.admission();
    let lowest = [d.pps_threshold, d.syn_pps_threshold, d.hard_pps_limit]
        .into_iter()
        .filter(|&r| r > 0)
        .min()
        .unwrap_or(0);
    let mut view = crate::wire::AdmissionView {
        fraction: d.admission,
        level_packets_per_cpu: level.packets,
        level_pps: if level.on() {
            (lowest as f64 * d.admission).round() as u64
        } else {
            0
        },
        flagged_cells: state.policy.admission_flags(),
        ..Default::default()
    };
    for p in state.engine.planes().iter() {
        match p.enforcer.admit_counts() {
            Some(c) => {
                view.admitted += c.admitted;
                view.held += c.held;
            }
            None if p.enforcer.program().is_some() => view.without.push(p.iface.clone()),
            None => {}
        }
    }
    view
}

fn hook_view(h: &crate::hooks::Running) -> crate::wire::HookView {
    use std::sync::atomic::Ordering::Relaxed;
    crate::wire::HookView {
        name: h.name.clone(),
        host: h.host.clone(),
        sent: h.counts.sent.load(Relaxed),
        failed: h.counts.failed.load(Relaxed),
        dropped: h.counts.dropped.load(Relaxed),
        last_error: crate::sync::lock(&h.counts.last_error).clone(),
    }
}
