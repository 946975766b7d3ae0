//! From a loaded configuration to a running daemon, and back to a clean stop.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;

use super::{
    error::DaemonError,
    lookup, main_loop,
    notify::notify,
    protect, scrape,
    shared::Shared,
    start::{self, Attachments},
    state::State,
};
use crate::{
    config::Config,
    dataplane::{self, PinDir},
    instruments::Instruments,
    ipc::server,
    policy::EnrichmentState,
    sources::{self, Start},
};

pub async fn serve(
    cfg: Config,
    config_path: Option<PathBuf>,
    rebuild: bool,
) -> Result<(), DaemonError> {
    // The key is checked first: a bad key file stops the daemon before it touches anything.
    let pipeline = start::enrichment(&cfg)?;
    let store = start::open_store(&cfg, rebuild)?;
    let Attachments {
        planes,
        mut readers,
        warnings,
    } = start::attach_all(&cfg)?;
    // The file's own `[daemon]` (before command-line overrides), for reload to compare with.
    let daemon_in_file = match &config_path {
        Some(p) => Config::load(p, true).ok().map(|c| c.daemon),
        None => Some(Config::default().daemon),
    };
    let mut state = State::new(cfg.clone(), config_path, store, planes);
    state.daemon_in_file = daemon_in_file;
    state.policy.set_fingerprint_rules(
        crate::fingerprint::Rules::load(cfg.fingerprints.rules.as_deref())
            .map_err(DaemonError::Fingerprints)?,
    );
    for w in warnings {
        state.engine.warn_standing(w);
    }
    let protected_urls = protect::urls(&cfg, pipeline.is_some());
    if cfg.allow.protect_management {
        let protected = protect::current(protected_urls.iter().map(String::as_str));
        if !protected.prefixes.is_empty() {
            tracing::info!(addresses = ?protected.prefixes, "never blocking the gateways and the API's addresses");
        }
        state.engine.set_protected(protected);
    } else {
        state.engine.warn_standing(
            "allow.protect_management is off: the default gateways, the IPASIS endpoint and the fleet's servers can be blocked".to_owned(),
        );
    }
    // A large restore can outlast the unit's start timeout: ask for more, and say why.
    notify("EXTEND_TIMEOUT_USEC=300000000\nSTATUS=restoring decisions into the maps");
    if rebuild {
        let (decisions, allow) = state
            .engine
            .import_from_maps()
            .map_err(DaemonError::Restore)?;
        tracing::warn!(decisions, allow, "state rebuilt from the pinned maps");
    }
    let restored = state.engine.restore().map_err(DaemonError::Restore)?;
    tracing::info!(
        decisions = restored.decisions,
        expired = restored.expired,
        runtime_allow = restored.allow,
        "state restored"
    );
    match &pipeline {
        Some(p) => state.policy.set_enrichment(p.clone()),
        None if !cfg.ipasis.enabled => state.policy.set_enrichment_off(EnrichmentState::Disabled),
        None => {
            state.policy.set_enrichment_off(EnrichmentState::NoKey);
            tracing::warn!("IPASIS enrichment off: no API key; the velocity-only policy applies");
        }
    }
    // Results flow one way: the enrichment stage and the decision sources send, the main loop
    // hands what they sent to the engine.
    let (answers_tx, answers) = mpsc::channel(256);
    let (events_tx, events) = mpsc::channel(64);
    let (snapshots_tx, snapshots) = mpsc::channel(4);
    let mut ctx = sources::Context {
        cfg: cfg.clone(),
        events: events_tx,
        answers: answers_tx,
        snapshots: snapshots_tx,
        checkpoints: state.engine.checkpoints().map_err(DaemonError::Restore)?,
        ipasis: pipeline.clone(),
        sinks: Vec::new(),
    };
    let ipasis = pipeline.clone().map(sources::Ipasis);
    let starts: Vec<&dyn Start> = ipasis
        .iter()
        .map(|s| s as &dyn Start)
        .chain(cfg.fleet.iter().map(|s| s as &dyn Start))
        .chain(cfg.crowdsec.iter().map(|s| s as &dyn Start))
        .chain(cfg.feeds.iter().map(|s| s as &dyn Start))
        .collect();
    for source in starts {
        state
            .sources
            .push(source.start(&mut ctx).await.map_err(DaemonError::Source)?);
    }
    let host_name = crate::net::host_name().unwrap_or_default();
    for hook in &cfg.notify {
        let (sink, running) = crate::hooks::start(hook, &host_name).map_err(DaemonError::Hook)?;
        tracing::info!(hook = hook.name, host = running.host, "notify hook on");
        ctx.sinks.push(Box::new(sink));
        state.hooks.push(running);
    }
    // A reload that adds or changes a feed starts it on the same channel.
    state.set_feed_events(ctx.events.clone());
    for sink in std::mem::take(&mut ctx.sinks) {
        state.engine.add_sink(sink);
    }
    if !cfg.feeds.is_empty() {
        tracing::info!(feeds = cfg.feeds.len(), "feeds on");
    }
    let verdicts = match &cfg.verdict {
        Some(v) => {
            Some(verdict_endpoint(&cfg, v, &mut state, pipeline.clone(), ctx.events.clone()).await?)
        }
        None => None,
    };
    // The sources hold their own senders: the channels stay open while they run.
    drop(ctx);
    let instruments = Instruments::default();
    if let Some(p) = &pipeline {
        p.instrument(instruments.clone());
    }
    let shared: Shared = Arc::new(Mutex::new(state));
    let metrics = match cfg.metrics.listen {
        Some(addr) => {
            let scraped = shared.clone();
            let registry = crate::metrics::registry(
                &instruments,
                Arc::new(move || scrape::snapshot(&crate::sync::lock(&scraped))),
            );
            let server = crate::metrics::serve(addr, registry)
                .await
                .map_err(DaemonError::Metrics)?;
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
            Some(tokio::spawn(server))
        }
        None => None,
    };
    let (panics_tx, panics) = mpsc::unbounded_channel();
    let listener = server::bind(&cfg.daemon.socket)?;
    let refresh = Arc::new(tokio::sync::Notify::new());
    let (protected_tx, protected) = mpsc::channel(2);
    let refresher = cfg.allow.protect_management.then(|| {
        tokio::spawn(protect::refresh(
            protected_urls,
            refresh.clone(),
            protected_tx,
            panics_tx.clone(),
        ))
    });
    let reloaded = refresh.clone();
    let handler_state = shared.clone();
    let server = tokio::spawn(server::serve(
        listener,
        Arc::new(move |req| {
            if matches!(req, crate::wire::Request::Reload) {
                reloaded.notify_one();
            }
            lookup::answer(&handler_state, pipeline.as_deref(), req, &panics_tx)
        }),
    ));
    tracing::info!(socket = %cfg.daemon.socket.display(), ifaces = ?cfg.daemon.ifaces, "ipwarden running");
    notify("READY=1");

    let (loud_tx, loud) = mpsc::channel(256);
    let listeners = listen_for_loud(&cfg, &shared, loud_tx);
    let inbox = main_loop::Inbox {
        answers,
        events,
        snapshots,
        protected,
        refresh,
        panics,
        loud,
    };
    let mut synproxy = start::synproxy(&cfg, &mut readers).await;
    let result = main_loop::run(
        &shared,
        &mut readers,
        &mut synproxy,
        inbox,
        cfg.detection.poll_interval,
        &instruments,
    )
    .await;
    if let Err(e) = &result {
        tracing::error!(error = %crate::engine::error_chain(e), "stopping");
    }

    notify("STOPPING=1");
    server.abort();
    for task in refresher
        .into_iter()
        .chain(metrics)
        .chain(verdicts)
        .chain(listeners)
    {
        task.abort();
    }
    crate::sync::lock(&shared).sources.stop_all();
    let _ = std::fs::remove_file(&cfg.daemon.socket);
    if cfg.daemon.detach_on_stop {
        for iface in &cfg.daemon.ifaces {
            if let Err(e) = dataplane::detach(&PinDir::new(&cfg.daemon.bpffs, iface)) {
                tracing::warn!(iface, error = %e, "detaching on stop");
            }
        }
    } else {
        tracing::info!("stopped; the XDP program stays attached and keeps enforcing");
    }
    result
}

/// Starts a loud-source listener per interface whose program has the ring (see `loud`). An
/// interface without one is warned about in `status`: its sources are found by polls only.
fn listen_for_loud(
    cfg: &Config,
    shared: &Shared,
    out: mpsc::Sender<super::loud::Measured>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (hearing, heard) =
        tokio::sync::watch::channel(super::loud::Hearing::from_config(&cfg.detection));
    let mut state = crate::sync::lock(shared);
    let mut tasks = Vec::new();
    for iface in &cfg.daemon.ifaces {
        match dataplane::Loud::open(&PinDir::new(&cfg.daemon.bpffs, iface)) {
            Ok(Some(loud)) => tasks.push(tokio::spawn(super::loud::listen(
                loud,
                heard.clone(),
                out.clone(),
                state.hints.clone(),
            ))),
            Ok(None) => state.engine.warn_standing(format!(
                "{iface}: the attached program has no loud-source ring: heavy hitters are found at polls only"
            )),
            Err(e) => state.engine.warn_standing(format!(
                "{iface}: opening the loud-source ring: {e}: heavy hitters are found at polls only"
            )),
        }
    }
    state.hearing = Some(hearing);
    tasks
}

/// Starts the verdict endpoint: its key, its mirror of the decisions (kept by the engine from
/// now on) and its listener.
async fn verdict_endpoint(
    cfg: &Config,
    v: &crate::config::VerdictConfig,
    state: &mut State,
    pipeline: Option<Arc<crate::enrich::Pipeline>>,
    events: mpsc::Sender<crate::engine::SourceEvent>,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    use crate::verdict::{Endpoint, Key, Parts, Table, VerdictError};
    let key = Key::load_or_create(&v.key_path(&cfg.daemon.state_dir))
        .map_err(|e| DaemonError::Verdict(VerdictError::Key(e)))?;
    let table = Table::seeded(state.engine.book().iter(), state.engine.allow_entries());
    state.engine.add_sink(table.sink());
    let endpoint = Arc::new(Endpoint::new(
        cfg,
        Parts {
            table,
            answers: state.engine.answers(),
            pipeline,
            events,
            key,
        },
    ));
    state.verdict = Some(endpoint.clone());
    let server = crate::verdict::serve(endpoint)
        .await
        .map_err(DaemonError::Verdict)?;
    tracing::info!(addr = %v.listen, trusted_proxies = ?v.trusted_proxies, "verdicts at http://{}/verdict", v.listen);
    Ok(tokio::spawn(server))
}
