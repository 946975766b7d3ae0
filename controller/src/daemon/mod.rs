//! `ipwarden run`: the long-running daemon.
//!
//! Start: load the configuration, open the store (refusing to start on an unreadable one),
//! attach to or adopt every interface, restore decisions into the maps, listen on the control
//! socket, tell systemd READY. Then poll the counters every `poll_interval` and feed the engine.
//! SIGHUP reloads the configuration; SIGTERM/SIGINT stop, leaving the program attached (and
//! enforcing) unless `daemon.detach_on_stop` is set.

pub mod handlers;
mod notify;
pub mod poll;
mod protect;
mod scrape;
pub mod state;
#[cfg(test)]
mod tests;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use thiserror::Error;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    config::{Config, ConfigError, DEFAULT_PATH},
    dataplane::{self, Adoption, AttachOptions, Dataplane, DataplaneError, PinDir},
    decision::Origin,
    engine::{AttachKind, EngineError, Plane, SourceEvent},
    enrich::{
        ApiKey, EnrichError, IpasisClient, Pipeline,
        pipeline::{Enriched, LookupError},
    },
    fleet::{self, SnapshotRequest},
    ipc::server::{self, ServerError},
    metrics::Instruments,
    policy::EnrichmentState,
    store::{self, Store, StoreError},
    wire::{LookupView, Request, Response},
};
use state::State;

pub use notify::{notify, reloading};

/// What `ipwarden run` was given on the command line; it overrides the file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    pub ifaces: Vec<String>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub bpffs: Option<PathBuf>,
    /// Move an unreadable state database aside and rebuild it from the pinned maps.
    pub rebuild_store: bool,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no interface to protect: give --iface IF or set daemon.ifaces")]
    NoInterface,
    #[error(transparent)]
    Metrics(crate::metrics::MetricsError),
    #[error(transparent)]
    Fingerprints(crate::fingerprint::RuleError),
    #[error(
        "refusing to start without the decision store (an empty block list would silently replace it); restore the file, or start once with --rebuild-store to rebuild it from the pinned maps"
    )]
    Store(#[from] StoreError),
    #[error("moving {path} aside")]
    Aside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {iface}")]
    Dataplane {
        iface: String,
        #[source]
        source: DataplaneError,
    },
    #[error("restoring decisions into the maps")]
    Restore(#[source] EngineError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(
        "the data plane is gone (program detached or maps removed?); stopping, since nothing is protected"
    )]
    Lost(#[source] DataplaneError),
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the IPASIS API key")]
    Key(#[source] crate::enrich::key::KeyError),
    #[error("the IPASIS client")]
    Client(#[source] crate::enrich::client::ClientBuildError),
    #[error("fleet mode")]
    Fleet(#[source] crate::fleet::FleetError),
    #[error("the CrowdSec link")]
    Crowdsec(#[source] crate::crowdsec::CrowdsecError),
}

/// Loads the configuration and applies the command-line overrides.
pub fn load_config(opts: &RunOptions) -> Result<(Config, Option<PathBuf>), DaemonError> {
    let (path, explicit) = match &opts.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let mut cfg = Config::load(&path, explicit)?;
    let loaded_from = (explicit || path.exists()).then_some(path);
    if !opts.ifaces.is_empty() {
        cfg.daemon.ifaces = opts.ifaces.clone();
    }
    if let Some(s) = &opts.socket {
        cfg.daemon.socket = s.clone();
    }
    if let Some(s) = &opts.state_dir {
        cfg.daemon.state_dir = s.clone();
    }
    if let Some(b) = &opts.bpffs {
        cfg.daemon.bpffs = b.clone();
    }
    cfg.validate("command line")?;
    if cfg.daemon.ifaces.is_empty() {
        return Err(DaemonError::NoInterface);
    }
    Ok((cfg, loaded_from))
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(opts: &RunOptions) -> Result<(), DaemonError> {
    let (cfg, path) = load_config(opts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(serve(cfg, path, opts.rebuild_store))
}

/// Every interface attached or adopted.
struct Attachments {
    planes: Vec<Plane>,
    /// A second handle per interface, for the poll loop's counter reads.
    readers: Vec<Dataplane>,
    /// What `status` must warn about for the daemon's whole life.
    warnings: Vec<String>,
}

/// Attaches to (or adopts) every interface.
fn attach_all(cfg: &Config) -> Result<Attachments, DaemonError> {
    let mut planes = Vec::new();
    let mut readers = Vec::new();
    let mut warnings = Vec::new();
    for iface in &cfg.daemon.ifaces {
        let err = |source| DaemonError::Dataplane {
            iface: iface.clone(),
            source,
        };
        let pins = PinDir::new(&cfg.daemon.bpffs, iface);
        let opts = AttachOptions {
            pins: pins.clone(),
            mode: cfg.dataplane.attach_mode.into(),
            capacities: cfg.dataplane.capacities(),
            build: dataplane::stamp::this_build(),
        };
        let attach = if dataplane::is_attached(&pins) {
            match dataplane::adopt(&opts).map_err(err)? {
                Adoption::Kept => {
                    tracing::info!(
                        iface,
                        "adopting the existing attachment: no gap in protection"
                    );
                    AttachKind::Adopted
                }
                Adoption::Replaced { .. } => AttachKind::Upgraded,
            }
        } else {
            let attached = dataplane::attach(&opts).map_err(err)?;
            if attached.bpffs.ends_with_process() {
                warnings.push(format!(
                    "{iface}: this daemon mounted bpffs at {} itself, in a private mount namespace: the pins and the XDP program end with this process, enforcement will not survive it (run the daemon in the host's mount namespace, see the README's network namespace section)",
                    cfg.daemon.bpffs.display()
                ));
            }
            attached.kind
        };
        planes.push(Plane::new(
            iface.clone(),
            attach,
            Box::new(Dataplane::open(&pins).map_err(err)?),
        ));
        readers.push(Dataplane::open(&pins).map_err(err)?);
    }
    Ok(Attachments {
        planes,
        readers,
        warnings,
    })
}

/// Opens the store; with `rebuild`, first moves an existing (unreadable) database aside.
fn open_store(cfg: &Config, rebuild: bool) -> Result<Store, DaemonError> {
    let path = cfg.daemon.state_dir.join(store::FILE_NAME);
    if rebuild && path.exists() {
        let aside = path.with_extension(format!(
            "redb.unreadable-{}",
            crate::decision::now_unix_ms()
        ));
        std::fs::rename(&path, &aside).map_err(|source| DaemonError::Aside {
            path: path.clone(),
            source,
        })?;
        tracing::warn!(from = %path.display(), to = %aside.display(), "moved the state database aside; rebuilding it from the pinned maps");
    }
    let store = Store::open(&cfg.daemon.state_dir)?;
    if let Some(n) = store.migrated() {
        tracing::warn!(
            decisions = n,
            schema = store::SCHEMA,
            path = %store.path().display(),
            "state database migrated from the previous release's schema"
        );
    }
    Ok(store)
}

async fn serve(
    cfg: Config,
    config_path: Option<PathBuf>,
    rebuild: bool,
) -> Result<(), DaemonError> {
    // The key is checked first: a bad key file stops the daemon before it touches anything.
    let pipeline = enrichment(&cfg)?;
    let store = open_store(&cfg, rebuild)?;
    let Attachments {
        planes,
        mut readers,
        warnings,
    } = attach_all(&cfg)?;
    let mut state = State::new(cfg.clone(), config_path, store, planes);
    state.policy.set_fingerprint_rules(
        crate::fingerprint::Rules::load(cfg.fingerprints.rules.as_deref())
            .map_err(DaemonError::Fingerprints)?,
    );
    for w in warnings {
        state.engine.warn_standing(w);
    }
    // The hosts the daemon talks to: blocking them would cut it off from its API and peers.
    let mut protected_urls: Vec<String> = Vec::new();
    if pipeline.is_some() {
        protected_urls.push(cfg.ipasis.base_url.clone());
    }
    protected_urls.extend(cfg.fleet.iter().flat_map(|f| f.url.iter().cloned()));
    if cfg.allow.builtin {
        let protected = protect::current(protected_urls.iter().map(String::as_str));
        if !protected.prefixes.is_empty() {
            tracing::info!(addresses = ?protected.prefixes, "never blocking the gateways and the API's addresses");
        }
        state.engine.set_protected(protected);
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
        Some(p) => {
            state.policy.set_enrichment(p.clone());
            tracing::info!(base_url = %cfg.ipasis.base_url, "IPASIS enrichment on");
        }
        None if !cfg.ipasis.enabled => state.policy.set_enrichment_off(EnrichmentState::Disabled),
        None => {
            state.policy.set_enrichment_off(EnrichmentState::NoKey);
            tracing::warn!("IPASIS enrichment off: no API key; the velocity-only policy applies");
        }
    }
    // Results flow one way: the enrichment stage and the decision sources send, the poll loop
    // hands what they sent to the engine.
    let (answers_tx, answers) = mpsc::channel::<Enriched>(256);
    let (sources_tx, sources) = mpsc::channel::<SourceEvent>(64);
    let (snapshots_tx, snapshots) = mpsc::channel::<SnapshotRequest>(4);
    let fleet = match &cfg.fleet {
        Some(f) => Some(
            start_fleet(
                f,
                &cfg,
                &mut state,
                pipeline.as_ref(),
                sources_tx.clone(),
                snapshots_tx,
            )
            .await?,
        ),
        None => None,
    };
    let crowdsec = match &cfg.crowdsec {
        Some(c) => {
            let rate = crate::decision::ChallengeRate {
                pps: cfg.scoring.challenge_pps,
                burst: cfg.scoring.challenge_burst,
            };
            let started = crate::crowdsec::start(c, rate, sources_tx.clone())
                .map_err(DaemonError::Crowdsec)?;
            state.sources.crowdsec = Some(started.link);
            let push = started.push.map(|(sink, task)| {
                state.engine.add_sink(Box::new(sink));
                tracing::info!(login = %c.login, "CrowdSec watcher on: velocity and IPASIS decisions are pushed as alerts");
                task
            });
            tracing::info!(lapi = %c.lapi_url, poll = ?c.poll_interval, resync = ?c.resync_interval, "CrowdSec bouncer on");
            Some((started.task, push))
        }
        None => None,
    };
    let feeds = if cfg.feeds.is_empty() {
        Vec::new()
    } else {
        let (views, tasks) =
            crate::feeds::start(&cfg.feeds, &cfg.daemon.state_dir, sources_tx.clone());
        state.sources.feeds = Some(views);
        tracing::info!(feeds = cfg.feeds.len(), "feeds on");
        tasks
    };
    let instruments = Instruments::default();
    if let Some(p) = &pipeline {
        p.instrument(instruments.clone());
    }
    let engine = Arc::new(Mutex::new(state));
    let metrics = match cfg.metrics.listen {
        Some(addr) => {
            let scraped = engine.clone();
            let registry = crate::metrics::registry(
                &instruments,
                Arc::new(move || scrape::snapshot(&scraped.lock().expect("engine lock poisoned"))),
            );
            let server = crate::metrics::serve(addr, registry)
                .await
                .map_err(DaemonError::Metrics)?;
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
            Some(tokio::spawn(server))
        }
        None => None,
    };
    let worker = pipeline.clone().map(|p| tokio::spawn(p.run(answers_tx)));
    drop(sources_tx);
    let listener = server::bind(&cfg.daemon.socket)?;
    let handler_engine = engine.clone();
    let refresh = Arc::new(tokio::sync::Notify::new());
    let (protected_tx, protected) = mpsc::channel::<protect::Protected>(2);
    let refresher = cfg.allow.builtin.then(|| {
        tokio::spawn(refresh_protected(
            protected_urls,
            refresh.clone(),
            protected_tx,
        ))
    });
    let reloaded = refresh.clone();
    let server = tokio::spawn(server::serve(
        listener,
        Arc::new(move |req| {
            if matches!(req, Request::Reload) {
                reloaded.notify_one();
            }
            handle(&handler_engine, pipeline.as_deref(), req)
        }),
    ));
    tracing::info!(socket = %cfg.daemon.socket.display(), ifaces = ?cfg.daemon.ifaces, "ipwarden running");
    notify("READY=1");

    let publish = fleet.as_ref().map(|f| f.1.clone()).unwrap_or_default();
    let inbox = Inbox {
        answers,
        sources,
        snapshots,
        protected,
        refresh,
        publish,
    };
    let result = poll_loop(
        &engine,
        &mut readers,
        inbox,
        cfg.detection.poll_interval,
        &instruments,
    )
    .await;

    notify("STOPPING=1");
    server.abort();
    if let Some(r) = refresher {
        r.abort();
    }
    if let Some(m) = metrics {
        m.abort();
    }
    if let Some(w) = worker {
        w.abort();
    }
    if let Some((task, _)) = fleet {
        task.abort();
    }
    if let Some((task, push)) = crowdsec {
        task.abort();
        if let Some(p) = push {
            p.abort();
        }
    }
    for task in feeds {
        task.abort();
    }
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

/// The enrichment stage, if enabled and a key is available.
fn enrichment(cfg: &Config) -> Result<Option<Arc<Pipeline>>, DaemonError> {
    if !cfg.ipasis.enabled {
        return Ok(None);
    }
    let Some(key) = ApiKey::load(cfg.ipasis.key_file.as_deref()).map_err(DaemonError::Key)? else {
        return Ok(None);
    };
    let client = IpasisClient::new(&cfg.ipasis, &key).map_err(DaemonError::Client)?;
    Ok(Some(Arc::new(Pipeline::new(cfg.ipasis.clone(), client))))
}

/// Answers one control-socket request (on a blocking thread). Fresh lookups go to the API
/// without holding the engine lock.
fn handle(engine: &Mutex<State>, pipeline: Option<&Pipeline>, req: Request) -> Response {
    let Request::Lookup { addr, fresh } = req else {
        return handlers::handle(&mut engine.lock().expect("engine lock poisoned"), req);
    };
    if !fresh
        && let Some(v) = handlers::lookup_view(&engine.lock().expect("engine lock poisoned"), addr)
    {
        return Response::Lookup(v);
    }
    let Some(pipeline) = pipeline else {
        return Response::Error {
            message: "enrichment is off (no IPASIS API key, or [ipasis] enabled = false)".into(),
        };
    };
    let result = tokio::runtime::Handle::current().block_on(pipeline.lookup_now(addr));
    let source = crate::net::host_prefix(addr);
    let record = match result {
        Ok(r) => Some(r),
        // The API rejected the address: that answer is cached too.
        Err(LookupError::Api(EnrichError::Invalid)) => None,
        Err(e) => {
            return Response::Error {
                message: format!("lookup failed: {e}"),
            };
        }
    };
    match engine
        .lock()
        .expect("engine lock poisoned")
        .store_answer(source, record.clone())
    {
        Ok(_) => Response::Lookup(LookupView {
            addr,
            source,
            cached: false,
            age_secs: 0,
            record,
        }),
        Err(e) => Response::Error {
            message: e.to_string(),
        },
    }
}

/// Starts fleet mode: peers' decisions come in as a decision source, local ones go out through
/// a sink, IPASIS answers are shared. Returns the task and the origins it publishes.
async fn start_fleet(
    f: &crate::config::FleetConfig,
    cfg: &Config,
    state: &mut State,
    pipeline: Option<&Arc<Pipeline>>,
    sources: mpsc::Sender<SourceEvent>,
    snapshots: mpsc::Sender<SnapshotRequest>,
) -> Result<(tokio::task::JoinHandle<()>, Vec<Origin>), DaemonError> {
    let host = f.host();
    let bucket = format!("{}-decisions", f.bucket_prefix);
    let applied = state
        .engine
        .checkpoint(&fleet::checkpoint_key(&bucket))
        .map_err(DaemonError::Restore)?;
    let started = fleet::start(
        f,
        host.clone(),
        cfg.ipasis.cache_ttl,
        applied,
        sources,
        snapshots,
    )
    .await
    .map_err(DaemonError::Fleet)?;
    let origins = started.outbox.origins().to_vec();
    state.engine.add_sink(Box::new(started.outbox));
    state.sources.fleet = Some(started.link);
    if let (Some(shared), Some(p)) = (started.answers, pipeline) {
        p.share_with(shared);
    }
    tracing::info!(host, servers = ?f.url, bucket, resume_after = ?applied, publish = ?origins, apply = f.apply, "fleet mode on");
    Ok((started.task, origins))
}

/// Reads the gateways and resolves `urls` every [`protect::REFRESH`] and when `wake` is
/// notified (a reload), sending what it found; the engine applies changes only.
async fn refresh_protected(
    urls: Vec<String>,
    wake: Arc<tokio::sync::Notify>,
    out: mpsc::Sender<protect::Protected>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(protect::REFRESH) => {}
            _ = wake.notified() => {}
        }
        let urls = urls.clone();
        let Ok(found) =
            tokio::task::spawn_blocking(move || protect::current(urls.iter().map(String::as_str)))
                .await
        else {
            return;
        };
        if out.send(found).await.is_err() {
            return;
        }
    }
}

/// What other tasks send the engine.
struct Inbox {
    answers: mpsc::Receiver<Enriched>,
    sources: mpsc::Receiver<SourceEvent>,
    snapshots: mpsc::Receiver<SnapshotRequest>,
    /// The gateways and hosts to protect, read again now and then.
    protected: mpsc::Receiver<protect::Protected>,
    /// Wakes the reader of `protected` (on reload).
    refresh: Arc<tokio::sync::Notify>,
    /// The origins the fleet publishes (what a snapshot holds).
    publish: Vec<Origin>,
}

async fn poll_loop(
    engine: &Arc<Mutex<State>>,
    readers: &mut Vec<Dataplane>,
    mut inbox: Inbox,
    mut period: std::time::Duration,
    instruments: &Instruments,
) -> Result<(), DaemonError> {
    let signal_err = DaemonError::Runtime;
    let mut hup = signal(SignalKind::hangup()).map_err(signal_err)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Runtime)?;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backlog: std::collections::VecDeque<SourceEvent> = Default::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let started = std::time::Instant::now();
                let owned = std::mem::take(readers);
                let aggregates = engine.lock().expect("engine lock poisoned").policy.aggregates_on();
                let (back, poll) = tokio::task::spawn_blocking(move || {
                    let p = poll::read(&owned, aggregates);
                    (owned, p)
                })
                .await
                .expect("poll task panicked");
                *readers = back;
                let poll = poll.map_err(DaemonError::Lost)?;
                let mut e = engine.lock().expect("engine lock poisoned");
                e.tick(poll.now_ns, poll.snapshots, poll.took);
                if let Some(reading) = poll.aggregates {
                    e.judge_aggregates(poll.now_ns, reading.cells, reading.pending);
                }
                // The whole poll: read, detect, decide. Longer than the interval, the next one
                // starts late (the ticker delays rather than bursts) and `status` says so.
                let spent = started.elapsed();
                instruments.poll_duration.observe(spent.as_secs_f64());
                e.note_poll_time(spent, period);
                let wanted = e.poll_interval();
                let summary = e.summary();
                drop(e);
                // The watchdog is fed from here only: a poll loop that stops turning gets the
                // daemon restarted (WatchdogSec in the unit); the XDP program enforces meanwhile.
                notify(&format!("WATCHDOG=1\nSTATUS={summary}"));
                if wanted != period {
                    period = wanted;
                    ticker = tokio::time::interval(period);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
            }
            Some(p) = inbox.protected.recv() => {
                engine.lock().expect("engine lock poisoned").engine.set_protected(p);
            }
            _ = hup.recv() => {
                inbox.refresh.notify_one();
                notify(&reloading());
                let reloaded = engine.lock().expect("engine lock poisoned").reload_from_file();
                notify("READY=1");
                match reloaded {
                    Ok(message) => tracing::info!("SIGHUP: {message}"),
                    Err(e) => tracing::error!("SIGHUP: {e}"),
                }
            }
            Some(enriched) = inbox.answers.recv() => {
                let engine = engine.clone();
                // Scoring writes the cache and maybe a decision (fsync): off the async workers.
                let _ = tokio::task::spawn_blocking(move || {
                    engine.lock().expect("engine lock poisoned").on_enriched(enriched);
                })
                .await;
            }
            Some(SnapshotRequest(reply)) = inbox.snapshots.recv() => {
                let local: Vec<crate::decision::Decision> = engine
                    .lock()
                    .expect("engine lock poisoned")
                    .engine
                    .book()
                    .iter()
                    .filter(|d| inbox.publish.contains(&d.origin))
                    .cloned()
                    .collect();
                let _ = reply.send(local);
            }
            Some(event) = inbox.sources.recv() => {
                // A large set is applied in parts, one per turn of this loop: polls and control
                // requests run in between.
                backlog.extend(event.chunked(crate::engine::CHUNK));
            }
            Some(event) = async { backlog.pop_front() }, if !backlog.is_empty() => {
                let engine = engine.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let mut e = engine.lock().expect("engine lock poisoned");
                    if let Err(err) = e.apply(event) {
                        tracing::error!(error = %err, "applying a decision source's change");
                    }
                })
                .await;
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}
