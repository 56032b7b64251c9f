//! The composition root: [`start`] builds a run from its settings and runs it.
//!
//! It opens the saved state and checks its identity, puts the output directory back in line
//! with it, opens the sink and the ledger, registers the metrics, serves the endpoints, then
//! runs the shoppers, the price reviews, the clock's pacing, the watermark and the saves
//! until the planned end, a signal or a failure of the sink.
//!
//! Cancellation: `shutdown`, cancelled by a signal or by the sink failing, stops the shoppers
//! and the price reviews; its child `services`, also cancelled once the shoppers are done,
//! stops the ticker, the saver and the pacer. The endpoints have a token of their own,
//! cancelled when everything else is over, so that they answer until the end. The run's
//! snapshot ([`Snapshot`]) is assembled here from each component's own saved state.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{Api, Layout, Live};
use crate::cdc::{ChangeStream, Envelope};
use crate::clock::{Clock, Speed, Timer};
use crate::config::Settings;
use crate::control::ControlPlane;
use crate::encoding::{self, EncodingError};
use crate::endpoints;
use crate::faults::FaultInjector;
use crate::ledger::{Ledger, Recorder};
use crate::metrics::{self, DeliveryMetrics, Health, PipelineMetrics, SimulationMetrics};
use crate::model::{
    Catalogue, CatalogueError, Event, ShopRules, Timestamp, TopicCounts, describe, total,
};
use crate::pipeline::{
    self, Batch, Delivery, Outbox, Output, OutputError, OutputState, Staged, Staging,
};
use crate::shoppers::{
    Active, Currency, CustomerChanges, Population, ShopContext, Shopper, raw_activity, run_shopper,
};
use crate::sinks::kafka::KafkaSink;
use crate::sinks::{
    FanOut, FileSink, NullSink, Sink, SinkError, SinkKind, StdoutSink, recover_files,
};
use crate::state::{self, Identity, StateError, StateStore};

/// How often the sink hears the clock's watermark (real time) while simulated time runs fast.
const WATERMARK_INTERVAL: Duration = Duration::from_millis(500);
/// How often at a slow pace, when the last interval moved simulated time less than
/// [`WATERMARK_STEP`] (a run in real time): the sink's hours take a minute of grace, and a
/// watermark that moved half a second only wakes it (and the control plane) for nothing.
const SLOW_WATERMARK_INTERVAL: Duration = Duration::from_secs(5);
/// See [`SLOW_WATERMARK_INTERVAL`] (simulated time).
const WATERMARK_STEP: Duration = Duration::from_secs(10);
/// How often progress is logged (real time).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// The runtime the pull API serves on: the workers set (`--workers`), else one per core.
pub fn serving_runtime(settings: &Settings) -> std::io::Result<tokio::runtime::Runtime> {
    runtime_with(settings.simulation.workers.unwrap_or_else(cores))
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Orders per real second from which a run gets a worker per core; below, one worker makes
/// them with room to spare (a core makes some 200,000 a second), and a second would only cost
/// memory (its stack and its allocator's heap) and wake-ups.
pub const ONE_WORKER_BELOW: f64 = 10_000.0;

/// The runtime for a run of `settings`, with [`workers`] for this machine's cores.
pub fn runtime_for(settings: &Settings) -> std::io::Result<tokio::runtime::Runtime> {
    runtime_with(workers(settings, cores()))
}

/// The shoppers' worker threads for a run of `settings` on `cores` cores: those set
/// (`--workers`); else one for a run paced below [`ONE_WORKER_BELOW`] orders per real second;
/// else, with a Kafka sink, half the cores, one or two: librdkafka's threads and the sink's
/// spend two thirds of a message's CPU time (`perf record` of a run into tansu: about 0.9 µs
/// in the shoppers, 1.7 µs in the sink's, librdkafka's broker and delivery threads), a
/// shoppers' worker more only contends with them for the cores, and two keep up with the
/// sink's one thread; else a worker per core (the sink's thread shares them: when it is the
/// slower side, the shoppers wait on the full pipeline and leave it the cores; with a worker
/// fewer, the realistic hour took 2.05 s instead of 1.82 s into the null sink).
pub fn workers(settings: &Settings, cores: usize) -> usize {
    if let Some(workers) = settings.simulation.workers {
        return workers;
    }
    match settings.simulation.speed {
        Speed::Factor(factor)
            if settings.simulation.rate.per_second() * factor < ONE_WORKER_BELOW =>
        {
            1
        }
        _ if settings.sink.kinds.contains(crate::sinks::SinkKind::Kafka) => (cores / 2).clamp(1, 2),
        _ => cores.max(1),
    }
}

/// A runtime of `workers` worker threads. One worker is the thread that drives the run
/// itself (a `current_thread` runtime): the shoppers then take no work-stealing scheduler's
/// atomics and queues per wake-up, and no thread of their own (ten simulated minutes at
/// 1000 orders/s with `--workers 1` took a fifth less wall time and a sixth less CPU time than
/// on a one-worker `multi_thread` runtime; README's Performance).
fn runtime_with(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("shoppers")
        .enable_all()
        .build()
}

/// A saved run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub identity: Identity,
    /// Where the run resumes: no shopper has anything to do before it (microseconds).
    pub position: i64,
    /// Price reviews up to this instant are published (microseconds).
    pub repriced_through: i64,
    /// The run reached its planned end.
    pub finished: bool,
    /// Saves so far, this one included.
    pub saves: u64,
    /// Every shopper of this replica, in order.
    pub shoppers: Vec<Shopper>,
    /// The sink's and the ledger's parts.
    pub output: OutputState,
}

impl Snapshot {
    /// The resume instant.
    pub fn position(&self) -> Timestamp {
        Timestamp::from_micros(self.position)
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the shipped Avro schemas: {0}")]
    Schemas(#[from] EncodingError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("file.output_dir (--output-dir): cannot write there: {0}")]
    Output(#[source] SinkError),
    #[error("file.output_dir (--output-dir): cannot recover unfinished files: {0}")]
    Recovery(#[source] SinkError),
    #[error("ledger.dir (--ledger-dir): cannot write there: {0}")]
    Ledger(#[source] crate::durable::LockError),
    #[error("metrics.addr (--metrics-addr): cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("sink.kinds (--sink): {0}")]
    Sink(#[source] SinkError),
    #[error("kafka: {}", .0.iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>().join("; "))]
    Kafka(Vec<(&'static str, String)>),
    #[error("file.output_dir (--output-dir): {0}")]
    Serve(String),
    #[error("traffic: {0}")]
    Traffic(String),
    #[error("building the catalogue: {0}")]
    Catalogue(#[from] CatalogueError),
    #[error("registering the metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl StartError {
    /// Whether the input is at fault (exit code 2) rather than the run (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            StartError::Schemas(_) | StartError::Catalogue(_) | StartError::Metrics(_)
        )
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The saved run had already reached its end, at this instant.
    AlreadyFinished(Timestamp),
    /// It ran.
    Ran(Box<Summary>),
}

/// What a run produced.
#[derive(Debug)]
pub struct Summary {
    pub start: Timestamp,
    /// The simulated instant reached.
    pub reached: Timestamp,
    pub generated: TopicCounts,
    /// Delivered by every sink (the least of their counts), by topic.
    pub delivered: TopicCounts,
    /// Delivered by each sink, by topic.
    pub delivered_by_sink: Vec<(&'static str, TopicCounts)>,
    pub sink_error: Option<OutputError>,
}

impl Summary {
    /// Events generated and not delivered.
    pub fn undelivered(&self) -> u64 {
        self.generated
            .iter()
            .zip(self.delivered)
            .map(|(g, d)| g.saturating_sub(d))
            .sum()
    }

    /// Whether every generated event was delivered and the sink reported no failure.
    pub fn is_complete(&self) -> bool {
        self.sink_error.is_none() && self.undelivered() == 0
    }

    /// Logs the run's end: what was generated and delivered (and by each sink, when there
    /// are several).
    pub fn report(&self) {
        let (generated, delivered) = (total(&self.generated), total(&self.delivered));
        if self.delivered_by_sink.len() > 1 {
            for (sink, counts) in &self.delivered_by_sink {
                let undelivered = generated.saturating_sub(total(counts));
                tracing::info!(
                    sink,
                    delivered = total(counts),
                    undelivered,
                    events = %describe(counts),
                    "delivered by this sink"
                );
            }
        }
        if self.is_complete() {
            tracing::info!(
                generated,
                delivered,
                reached = %self.reached,
                events = %describe(&self.delivered),
                "simulator stopped; every event was delivered"
            );
        } else {
            tracing::error!(
                generated,
                delivered,
                undelivered = self.undelivered(),
                error = %self.sink_error.as_ref().map_or_else(String::new, |e| e.to_string()),
                generated_by_topic = %describe(&self.generated),
                delivered_by_topic = %describe(&self.delivered),
                "simulator stopped; some events were not delivered"
            );
        }
    }
}

/// The instruments a run reports through: its metrics, its health and its progress log.
#[derive(Debug, Clone)]
pub struct Instruments {
    pub pipeline: PipelineMetrics,
    pub simulation: SimulationMetrics,
    pub health: Arc<Health>,
    /// Where the progress log runs; `None`: beside the shoppers.
    pub progress: Option<Progress>,
}

/// The runtime the progress log runs on, and what asks it for a report out of turn.
#[derive(Debug, Clone)]
pub struct Progress {
    pub runtime: tokio::runtime::Handle,
    pub requests: Arc<tokio::sync::Notify>,
}

impl Instruments {
    /// Instruments registered into `registry`.
    pub fn register(registry: &Registry, health: Arc<Health>) -> prometheus::Result<Self> {
        Ok(Self {
            pipeline: PipelineMetrics::register(registry)?,
            simulation: SimulationMetrics::register(registry)?,
            health,
            progress: None,
        })
    }

    /// Instruments nobody reads, for runs embedded in tests and benchmarks.
    pub fn detached() -> Self {
        Self::register(&Registry::new(), Health::new())
            .expect("a fresh registry accepts every metric")
    }
}

/// The customer ids of this replica's shoppers: every N-th from I + 1.
pub fn shopper_ids(settings: &Settings) -> impl Iterator<Item = i64> + use<> {
    let shard = settings.simulation.shard;
    let (index, count) = (i64::from(shard.index), i64::from(shard.count));
    (0..i64::from(settings.simulation.shoppers)).map(move |k| 1 + index + k * count)
}

/// The shared state of all shoppers of a run that starts at `start`, built from the settings.
pub fn shop_context(
    settings: &Settings,
    seed: u64,
    start: Timestamp,
) -> Result<ShopContext, StartError> {
    let (simulation, traffic, shop) = (&settings.simulation, &settings.traffic, &settings.shop);
    let catalogue = Catalogue::generate(
        seed,
        settings.catalogue.products,
        settings.catalogue.popularity_exponent,
        start,
    )?
    .with_repricing(settings.catalogue.reprice_probability)?
    .with_discontinuation(settings.catalogue.discontinue_rate)?;
    let customers = &settings.customers;
    let rules = ShopRules {
        currency: shop.currency,
        tax_rate: shop.tax_rate,
        shipping_fee: shop.shipping_fee,
        free_shipping_threshold: shop.free_shipping_threshold,
    };
    let shoppers = f64::from(simulation.shoppers);
    Ok(ShopContext {
        catalogue,
        currencies: shop
            .currencies
            .iter()
            .map(|c| Currency {
                rules: ShopRules {
                    currency: c.code,
                    shipping_fee: rules.shipping_fee.convert(c.rate),
                    free_shipping_threshold: rules.free_shipping_threshold.convert(c.rate),
                    ..rules.clone()
                },
                rate: c.rate,
                share: c.share,
            })
            .collect(),
        rules,
        // Each of N replicas simulates `shoppers` shoppers: together they make the rate.
        mean_session_gap_micros: shoppers * f64::from(simulation.shard.count)
            / simulation.rate.per_second()
            * 1e6,
        traffic: traffic.profile().map_err(StartError::Traffic)?,
        activity_shape: traffic.activity_shape,
        activity_mean: shopper_ids(settings)
            .map(|id| raw_activity(seed, id, traffic.activity_shape))
            .sum::<f64>()
            / shoppers,
        discount_probability: shop.discount_probability,
        seed,
        mean_lifetime_micros: traffic.customer_lifetime.map(|d| d.as_micros() as f64),
        customer_id_stride: i64::from(simulation.shoppers) * i64::from(simulation.shard.count),
        changes: CustomerChanges {
            moves: customers.move_rate,
            contact_changes: customers.contact_change_rate,
            consent_changes: customers.consent_change_rate,
            erasures: customers.erasure_rate,
        },
    })
}

/// Opens the configured sinks: one, or a [`FanOut`] of several.
fn open_sinks(
    settings: &Settings,
    metrics: &DeliveryMetrics,
    health: &Health,
    shutdown: &CancellationToken,
    restored: Option<&Snapshot>,
) -> Result<Box<dyn Sink>, StartError> {
    let mut sinks = Vec::new();
    for kind in settings.sink.kinds.iter() {
        // With the change stream, each sink numbers the changes itself, from where the
        // saved run left them.
        let changes = (settings.sink.envelope == Envelope::Debezium).then(|| {
            ChangeStream::new(
                settings.debezium.clone(),
                restored.and_then(|s| s.output.sink.changes),
            )
        });
        sinks.push(open_sink(
            settings,
            kind,
            metrics.for_sink(kind.as_str()),
            health,
            shutdown,
            changes,
        )?);
    }
    Ok(if sinks.len() == 1 {
        sinks.remove(0)
    } else {
        Box::new(FanOut::new(sinks))
    })
}

/// Opens one sink.
fn open_sink(
    settings: &Settings,
    kind: SinkKind,
    metrics: DeliveryMetrics,
    health: &Health,
    shutdown: &CancellationToken,
    changes: Option<ChangeStream>,
) -> Result<Box<dyn Sink>, StartError> {
    Ok(match kind {
        SinkKind::File => {
            let mut sink = FileSink::new(&settings.file.output_dir, settings.file.codec)
                .map_err(StartError::Output)?
                .with_metrics(metrics);
            if let Some(changes) = changes {
                sink = sink.with_changes(changes);
            }
            Box::new(if settings.state.dir.is_some() {
                sink.with_saves()
            } else {
                sink
            })
        }
        SinkKind::Stdout => {
            let sink = StdoutSink::new().with_metrics(metrics);
            Box::new(match changes {
                Some(changes) => sink.with_changes(changes),
                None => sink,
            })
        }
        SinkKind::Null => {
            let sink = NullSink::new()
                .map_err(StartError::Sink)?
                .with_metrics(metrics);
            Box::new(match changes {
                Some(changes) => sink.with_changes(changes),
                None => sink,
            })
        }
        SinkKind::Kafka => {
            let kafka = settings
                .kafka
                .resolve(&settings.schema_registry)
                .map_err(StartError::Kafka)?;
            let sink = KafkaSink::new(&kafka, metrics, changes).map_err(StartError::Sink)?;
            // A signal during the wait ends it: the run then stops before it starts.
            sink.wait_for_cluster(&|| shutdown.is_cancelled());
            let stats = sink.stats();
            health.set_probe(Box::new(move || stats.ready()));
            Box::new(sink)
        }
    })
}

/// Puts the output directory of the file sink back in line with the saved state (or salvages
/// unfinished files when nothing is saved), and reports what it did.
fn recover_output(settings: &Settings, restored: Option<&Snapshot>) -> Result<(), StartError> {
    let root = &settings.file.output_dir;
    if !settings.sink.kinds.contains(SinkKind::File) || !root.exists() {
        return Ok(());
    }
    // Without a save to go back to, what an earlier process left is kept, in whole blocks.
    let files = match (settings.state.dir.is_some(), restored) {
        (true, Some(snapshot)) => Some(snapshot.output.sink.files.as_slice()),
        _ => None,
    };
    let recovery = recover_files(root, files).map_err(StartError::Recovery)?;
    for (path, events) in &recovery.restored {
        tracing::warn!(path = %path.display(), events, "recovered a file a previous run had not finished");
    }
    for path in &recovery.removed {
        tracing::warn!(
            path = %path.display(),
            "removed a file started after the last save; its events are generated again"
        );
    }
    Ok(())
}

/// The parameters of one run that are not settings.
struct RunPlan {
    /// The seed in force (given, saved, or drawn and logged).
    seed: u64,
    /// Simulated end, exclusive; `None` runs until shutdown.
    end: Option<Timestamp>,
    /// Keep a virtual clock from passing the wall clock: race through the past, then run in
    /// real time (backfill, then live).
    pace_to_wall_clock: bool,
    /// Where the run's state is saved, and what it resumes from; `None`: not saved.
    saving: Option<Saving>,
}

/// Saving the run's state: where, how often, and what it resumes from.
struct Saving {
    store: Arc<StateStore>,
    /// Real time between two saves.
    interval: Duration,
    identity: Identity,
    /// The state the run resumes from; `None` starts afresh.
    restored: Option<Snapshot>,
}

/// Runs the simulation the settings describe until its end, `shutdown` (a signal) or a
/// failure of the sink, serving the endpoints and logging progress from `control` meanwhile.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
    control: &ControlPlane,
) -> Result<Outcome, StartError> {
    // A broken schema stops the simulator before anything runs.
    encoding::schemas()?;
    let (store, restored) = match &settings.state.dir {
        Some(dir) => {
            let store = StateStore::open(dir)?;
            let restored: Option<Snapshot> = store.load()?;
            (Some(Arc::new(store)), restored)
        }
        None => (None, None),
    };
    // A resumed run is the same run: its seed and start come from the state.
    let saved = restored.as_ref().map(|r| &r.identity);
    let saved_seed = saved.and_then(|i| i.get("simulation.seed")?.parse().ok());
    let saved_start = saved.and_then(|i| {
        chrono::DateTime::parse_from_rfc3339(i.get("simulation.start")?)
            .ok()
            .map(|t| Timestamp::from_datetime(t.to_utc()))
    });
    let seed = settings
        .simulation
        .seed
        .or(saved_seed)
        .unwrap_or_else(rand::random);
    let start = settings
        .simulation
        .start
        .or(saved_start)
        .unwrap_or_else(Clock::wall_now);
    let identity = settings.identity(seed, start);
    if let (Some(store), Some(saved)) = (&store, saved)
        && let Some((setting, was, now)) = saved.difference(&identity)
    {
        return Err(StateError::Incompatible {
            path: store.path(),
            setting,
            saved: was,
            current: now,
        }
        .into());
    }
    let end = settings.simulation.duration.map(|d| start + d);
    // Where simulated time starts: the run's start, or where the saved state left off.
    let from = restored.as_ref().map_or(start, Snapshot::position);
    // A finished run given a later end goes on to it: the duration is not part of a run's
    // identity.
    if let (Some(_), Some(end)) = (&restored, end)
        && from >= end
    {
        return Ok(Outcome::AlreadyFinished(from));
    }
    // A real-time run resumed after a pause catches up as fast as possible, then goes on live.
    let speed = match settings.simulation.speed {
        Speed::Factor(f) if restored.is_some() && f == 1.0 && from < Clock::wall_now() => {
            Speed::Max
        }
        speed => speed,
    };
    let clock = Clock::new(from, speed);
    // With --speed max from the past: a backfill, then live (or a stop at the present).
    let backfill = speed == Speed::Max && from < Clock::wall_now();
    let stop_at_present = settings.simulation.stop_at_present;
    let ctx = shop_context(&settings, seed, start)?;

    let registry = Registry::new();
    let health = Health::new();
    metrics::register_process(&registry, &settings.sink.kinds.names())?;
    let instruments = Instruments::register(&registry, Arc::clone(&health))?;
    let delivery = DeliveryMetrics::register(&registry)?;
    // The endpoints answer from the control plane, whatever the shoppers do.
    let (listener, endpoints_addr) = listen(settings.metrics.addr, control)?;
    // The pull API serves the file sink's hours of events while the run writes them.
    let api = if settings.sink.kinds.contains(SinkKind::File)
        && settings.sink.envelope == Envelope::Events
    {
        let token = settings.api.token();
        let live = Live {
            clock: clock.clone(),
            end,
        };
        Some(Api::new(
            api_layout(&settings),
            token,
            Some(live),
            &registry,
        )?)
    } else {
        None
    };
    let served = CancellationToken::new();
    let endpoints = control.spawn(endpoints::serve(
        listener,
        registry,
        Arc::clone(&health),
        api,
        served.clone(),
    ));

    let sink = open_sinks(&settings, &delivery, &health, &shutdown, restored.as_ref())?;
    let ledger = Ledger::new(&settings.ledger_dir()).map_err(StartError::Ledger)?;
    // Locked, both; now each must hold this run's output or none.
    if settings.sink.kinds.contains(SinkKind::File) {
        state::claim(
            &settings.file.output_dir,
            "file.output_dir (--output-dir)",
            &identity,
        )?;
    }
    state::claim(
        &settings.ledger_root(),
        "ledger.dir (--ledger-dir)",
        &identity,
    )?;
    recover_output(&settings, restored.as_ref())?;
    let mut recorder = Recorder::new(
        ledger,
        settings
            .faults
            .any()
            .then(|| FaultInjector::new(settings.faults, seed)),
    );
    if let Some(snapshot) = &restored {
        recorder.restore(snapshot.output.ledger.clone());
    }
    let plan = RunPlan {
        seed,
        end: match (backfill && stop_at_present, end) {
            (true, Some(end)) => Some(end.min(Clock::wall_now())),
            (true, None) => Some(Clock::wall_now()),
            (false, end) => end,
        },
        pace_to_wall_clock: backfill && !stop_at_present,
        saving: store.map(|store| Saving {
            store,
            interval: settings.state.interval,
            identity,
            restored,
        }),
    };
    tracing::info!(
        seed,
        rate = %settings.simulation.rate,
        shoppers = settings.simulation.shoppers,
        sink = %settings.sink.kinds,
        start = %start,
        resumed_at = %plan.saving.as_ref().and_then(|s| s.restored.as_ref()).map_or_else(|| "-".to_owned(), |r| r.position().to_string()),
        end = %plan.end.map_or_else(|| "never".to_owned(), |e| e.to_string()),
        speed = %settings.simulation.speed,
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        endpoints = %format!("http://{endpoints_addr}/metrics"),
        "simulator starting"
    );
    let output = Output {
        sink,
        recorder: Some(recorder),
    };
    let instruments = Instruments {
        progress: Some(Progress {
            runtime: control.handle().clone(),
            requests: control.report_requests(),
        }),
        ..instruments
    };
    let summary = run(&settings, plan, ctx, clock, output, shutdown, instruments).await;
    served.cancel();
    let _ = endpoints.await;
    Ok(Outcome::Ran(Box::new(summary)))
}

/// Binds the endpoints' address (`metrics.addr`) for the control plane's runtime; returns the
/// listener and the address bound (port 0 picks one).
fn listen(
    addr: std::net::SocketAddr,
    control: &ControlPlane,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), StartError> {
    let listen_error = |source| StartError::Listen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    let _context = control.handle().enter();
    let listener = tokio::net::TcpListener::from_std(listener).map_err(listen_error)?;
    Ok((listener, local))
}

/// Where the pull API finds the files and the ledger.
fn api_layout(settings: &Settings) -> Layout {
    Layout {
        root: settings.file.output_dir.clone(),
        ledger: settings.ledger_root(),
    }
}

/// `simulator serve`: serves the hours of the output directory over the pull API (with the
/// metrics and probes) until `shutdown`, simulating nothing.
pub async fn serve(
    settings: Settings,
    shutdown: CancellationToken,
    control: &ControlPlane,
) -> Result<(), StartError> {
    let root = &settings.file.output_dir;
    if !root.is_dir() {
        return Err(StartError::Serve(format!(
            "`{}` is not a directory of the simulator's files",
            root.display()
        )));
    }
    let record = std::fs::read(root.join(state::RUN_RECORD))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Identity>(&bytes).ok());
    if record.is_some_and(|r| {
        r.get("sink.envelope")
            .is_some_and(|e| e.contains(Envelope::Debezium.as_str()))
    }) {
        return Err(StartError::Serve(format!(
            "`{}` holds a change stream (--envelope debezium): the API serves business events",
            root.display()
        )));
    }
    let token = settings.api.token();
    let registry = Registry::new();
    let health = Health::new();
    health.set_serving_only();
    metrics::register_process(&registry, &[])?;
    let api = Api::new(api_layout(&settings), token, None, &registry)?;
    let complete = api.check().map_err(|e| StartError::Serve(e.to_string()))?;
    let (listener, local) = listen(settings.metrics.addr, control)?;
    tracing::info!(
        dir = %root.display(),
        complete_hours = complete,
        api = %format!("http://{local}/v1/hours"),
        "serving the output directory"
    );
    let served = CancellationToken::new();
    let endpoints = control.spawn(endpoints::serve(
        listener,
        registry,
        health,
        Some(api),
        served.clone(),
    ));
    shutdown.cancelled().await;
    served.cancel();
    let _ = endpoints.await;
    tracing::info!("stopped serving");
    Ok(())
}

/// Runs `span` of simulated time from the clock's current instant into `sink`, with the
/// settings' shop and a catalogue and shoppers drawn from `seed`, reporting to no registry and
/// keeping no ledger: a whole run in one call, for embedding (tests, benchmarks).
pub async fn simulate(
    settings: &Settings,
    seed: u64,
    span: Duration,
    clock: Clock,
    sink: Box<dyn Sink>,
) -> Result<Summary, StartError> {
    let plan = RunPlan {
        seed,
        end: Some(clock.now() + span),
        pace_to_wall_clock: false,
        saving: None,
    };
    let ctx = shop_context(settings, seed, clock.now())?;
    let output = Output {
        sink,
        recorder: None,
    };
    Ok(run(
        settings,
        plan,
        ctx,
        clock,
        output,
        CancellationToken::new(),
        Instruments::detached(),
    )
    .await)
}

/// Runs a simulation on `clock` into `output` until the plan's end or `shutdown`, and returns
/// what was generated and delivered. The output is closed before this returns.
async fn run(
    settings: &Settings,
    plan: RunPlan,
    ctx: ShopContext,
    clock: Clock,
    output: Output,
    shutdown: CancellationToken,
    instruments: Instruments,
) -> Summary {
    let start = clock.now();
    let Instruments {
        pipeline: pipeline_metrics,
        simulation: metrics,
        health,
        progress,
    } = instruments;
    let shard = settings.simulation.shard;
    metrics
        .target_rate
        .set(settings.simulation.rate.per_second() / f64::from(shard.count));
    let ctx = Arc::new(ctx);
    // The pipeline's counters are the one count of generated events; this run's share is what
    // they gain from here.
    let counted = pipeline_metrics.clone();
    let before = counted.generated();
    let generated_since = move || -> TopicCounts {
        let now = counted.generated();
        std::array::from_fn(|i| now[i] - before[i])
    };
    let (outbox, inbox) = pipeline::channel(clock.is_virtual());
    // At `--speed max`, the lanes go down the pipeline whenever every participant sleeps.
    clock.on_idle(outbox.on_idle());
    // The sink runs on a thread of its own, named so it shows in profiles and `top -H`.
    let (done, sink_result) = tokio::sync::oneshot::channel();
    let spawned = {
        let (stop, health) = (shutdown.clone(), Arc::clone(&health));
        std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let drained = pipeline::drain(output, inbox, pipeline_metrics, health, stop);
                let _ = done.send(drained);
            })
    };
    if let Err(e) = spawned {
        return Summary {
            start,
            reached: start,
            generated: TopicCounts::default(),
            delivered: TopicCounts::default(),
            delivered_by_sink: Vec::new(),
            sink_error: Some(OutputError::Thread(e)),
        };
    }
    let (saving, restored) = match plan.saving {
        Some(Saving {
            store,
            interval,
            identity,
            restored,
        }) => (Some((store, interval, identity)), restored),
        None => (None, None),
    };
    let saves = restored.as_ref().map_or(0, |r| r.saves);

    // Reference data first: every product exists before any order names it. Replicas share
    // the catalogue (same seed); replica 0 publishes it, once: a resumed run already has.
    if shard.index == 0 && restored.is_none() && !shutdown.is_cancelled() {
        let catalogue = ctx
            .catalogue
            .publish(start, plan.seed, ctx.rules.currency)
            .into_iter()
            .map(Event::Product)
            .collect();
        let _ = outbox.send(Batch::now(catalogue)).await;
    }

    let population = Arc::new(match restored {
        Some(snapshot) => Population::new(
            snapshot.shoppers,
            Timestamp::from_micros(snapshot.repriced_through),
        ),
        None => Population::new(
            shopper_ids(settings).map(|id| Shopper::new(plan.seed, id, start, &ctx)),
            start,
        ),
    });
    let services = shutdown.child_token();
    let shoppers = TaskTracker::new();
    let background = TaskTracker::new();
    // The shoppers' timers, the hold's and a few for the background tasks, at once.
    clock.reserve(population.len() + 16);
    // Holding a timer keeps a virtual clock still until every shopper has joined.
    let hold = clock.timer();
    for index in 0..population.len() {
        shoppers.spawn(run_shopper(
            Arc::clone(&population),
            index,
            Arc::clone(&ctx),
            clock.timer(),
            plan.end,
            outbox.clone(),
            Active::new(&metrics.shoppers_active),
        ));
    }
    if shard.index == 0
        && (settings.catalogue.reprice_probability > 0.0
            || settings.catalogue.discontinue_rate > 0.0)
    {
        shoppers.spawn(reprice(
            Arc::clone(&ctx),
            Arc::clone(&population),
            clock.timer(),
            plan.end,
            outbox.clone(),
        ));
    }
    if plan.pace_to_wall_clock && clock.is_virtual() {
        background.spawn(pace(
            clock.clone(),
            clock.timer(),
            plan.end,
            services.clone(),
        ));
    }
    // The shoppers and the price reviews hear of the end, however it comes, from the clock.
    background.spawn({
        let (clock, services) = (clock.clone(), services.clone());
        async move {
            services.cancelled().await;
            clock.stop();
        }
    });
    drop(hold);
    shoppers.close();
    health.set_shoppers_running(true);

    let ticker = tick(
        clock.clone(),
        outbox.clone(),
        generated_since.clone(),
        metrics.clone(),
        progress.as_ref().map(|p| Arc::clone(&p.requests)),
        services.clone(),
    );
    match &progress {
        Some(progress) => background.spawn_on(ticker, &progress.runtime),
        None => background.spawn(ticker),
    };
    let saver = saving.as_ref().map(|(store, interval, identity)| {
        let context = SaveContext {
            clock: clock.clone(),
            population: Arc::clone(&population),
            identity: identity.clone(),
            store: Arc::clone(store),
            outbox: outbox.clone(),
        };
        background.spawn(save_periodically(
            context,
            *interval,
            saves,
            services.clone(),
        ))
    });
    background.close();
    shoppers.wait().await;
    health.set_shoppers_running(false);
    // Whatever stopped the shoppers (their end, a signal, a failed sink), the services go.
    services.cancel();
    background.wait().await;
    let saves = match saver {
        Some(saver) => saver.await.unwrap_or(saves),
        None => saves,
    };

    let finished = plan.end.is_some() && !shutdown.is_cancelled();
    // Stopped early, the run got as far as its resume point: simulated time may have moved
    // on past it once the shoppers left (a virtual clock wakes whoever still sleeps).
    let reached = match plan.end {
        Some(end) if finished => end,
        _ => population.resume_point(clock.now()),
    };
    let _ = outbox.watermark(reached).await;
    if let Some((store, _, identity)) = saving {
        // The final save: every shopper has stopped.
        let context = SaveContext {
            clock: clock.clone(),
            population: Arc::clone(&population),
            identity,
            store,
            outbox: outbox.clone(),
        };
        let _ = context.save(saves + 1, Some(reached), finished).await;
    }
    drop(outbox);
    let Delivery {
        delivered,
        by_sink,
        error,
    } = sink_result.await.unwrap_or(Delivery {
        delivered: TopicCounts::default(),
        by_sink: Vec::new(),
        error: Some(OutputError::Vanished),
    });
    Summary {
        start,
        reached,
        generated: generated_since(),
        delivered,
        delivered_by_sink: by_sink,
        sink_error: error,
    }
}

/// What a save is taken from, and where it goes.
struct SaveContext {
    clock: Clock,
    population: Arc<Population>,
    identity: Identity,
    store: Arc<StateStore>,
    outbox: Outbox,
}

impl SaveContext {
    /// Sends save number `saves` of the run as it is now down the pipeline, resuming at
    /// `position` (by default the population's resume point); `finished`: the run reached its
    /// end. Consistent while the population is paused or stopped.
    async fn save(
        &self,
        saves: u64,
        position: Option<Timestamp>,
        finished: bool,
    ) -> Result<(), pipeline::Closed> {
        let shoppers = self.population.snapshot();
        // The resumed clock starts where nobody has anything left to do before (the rule of
        // `Population::resume_point`, applied to the copy in hand).
        let position = position.unwrap_or_else(|| {
            shoppers
                .iter()
                .map(Shopper::next_wake)
                .fold(self.clock.now(), Timestamp::min)
        });
        let mut snapshot = Snapshot {
            identity: self.identity.clone(),
            position: position.as_micros(),
            repriced_through: self.population.repriced_through().as_micros(),
            finished,
            saves,
            shoppers,
            output: OutputState::default(),
        };
        let store = Arc::clone(&self.store);
        self.outbox
            .save(Box::new(move |output| {
                snapshot.output = output;
                store.save(&snapshot)?;
                Ok(snapshot.position())
            }))
            .await
    }
}

/// Saves the run's state every `interval` (real time), the first time at once, until `stop`;
/// returns the number of saves reached. Each save pauses the shoppers between two steps, takes
/// their states, and sends them down the pipeline behind everything they produced before.
async fn save_periodically(
    context: SaveContext,
    interval: Duration,
    mut saves: u64,
    stop: CancellationToken,
) -> u64 {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return saves,
            _ = ticks.tick() => {}
        }
        let paused = context.population.pause().await;
        saves += 1;
        if context.save(saves, None, false).await.is_err() {
            return saves;
        }
        drop(paused);
    }
}

/// Publishes the catalogue's changes (prices, and products discontinued and replaced), each at
/// its review instant, after the population's
/// `repriced_through` until `end` (exclusive) or the clock stops. A participant of the clock like a
/// shopper, and like a shopper it publishes under a step permit.
async fn reprice(
    ctx: Arc<ShopContext>,
    population: Arc<Population>,
    mut timer: Timer,
    end: Option<Timestamp>,
    outbox: Outbox,
) {
    let mut at = population.repriced_through();
    let mut staged = Staged::default();
    loop {
        at = ctx.catalogue.next_review(at);
        if end.is_some_and(|end| at >= end) || timer.sleep_until(at).await.is_err() {
            return;
        }
        let _permit = population.step_permit().await;
        if let Some(lane) = outbox.moved(&staged)
            && outbox.send_lane(lane).await.is_err()
        {
            return;
        }
        let ((), staging) = outbox.stage(&mut staged, |events| {
            let changes = ctx.catalogue.changes_at(at, ctx.rules.currency);
            events.extend(changes.into_iter().map(Event::Product));
        });
        let sent = match staging {
            Staging::Done => Ok(()),
            Staging::Full(lane) => outbox.send_lane(lane).await,
            Staging::Closed => Err(pipeline::Closed),
        };
        if sent.is_err() {
            return;
        }
        population.set_repriced_through(at);
        drop(_permit);
        tokio::task::coop::consume_budget().await;
    }
}

/// How often simulated time catches up with the wall clock once it has reached the present.
const LIVE_STEP: Duration = Duration::from_millis(100);

/// Holds a virtual clock back from the future: while simulated time is behind the wall clock
/// it lets it race there; once it has caught up, it lets it move on to the wall clock's
/// instant every [`LIVE_STEP`] of real time. As a participant of the clock, it stops simulated
/// time while it waits. It never takes the clock past the run's `end`: a backfill that ends in
/// the past just ends.
async fn pace(clock: Clock, mut timer: Timer, end: Option<Timestamp>, stop: CancellationToken) {
    let mut live = false;
    loop {
        let wall = Clock::wall_now();
        let now = clock.now();
        if now.as_micros() + 1_000_000 < wall.as_micros() {
            let target = end.map_or(wall, |end| end.min(wall));
            if now >= target {
                // The run's end is behind the wall clock: nothing to pace any more (and no
                // reason to hold simulated time).
                drop(timer);
                stop.cancelled().await;
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                slept = timer.sleep_until(target) => if slept.is_err() { return },
            }
            continue;
        }
        if !live {
            live = true;
            tracing::info!(simulated_time = %now, "backfill reached the present; running in real time");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LIVE_STEP) => {}
        }
        // The clock wakes sleepers up to MAX_SKEW past a deadline: stopping that much short
        // of the wall clock keeps every event at or before its real instant.
        let target = Timestamp::from_micros(
            Clock::wall_now().as_micros() - crate::clock::MAX_SKEW.as_micros() as i64,
        );
        tokio::select! {
            () = stop.cancelled() => return,
            slept = timer.sleep_until(target) => if slept.is_err() { return },
        }
    }
}

/// Waits for a report request; forever without a source of them.
async fn requested(requests: Option<&tokio::sync::Notify>) {
    match requests {
        Some(requests) => requests.notified().await,
        None => std::future::pending().await,
    }
}

/// Sends the watermark to the sink at a steady pace ([`WATERMARK_INTERVAL`], or
/// [`SLOW_WATERMARK_INTERVAL`] while simulated time runs slowly), and logs progress every
/// [`PROGRESS_INTERVAL`] and whenever `requests` asks for it.
async fn tick(
    clock: Clock,
    outbox: Outbox,
    generated: impl Fn() -> TopicCounts,
    metrics: SimulationMetrics,
    requests: Option<Arc<tokio::sync::Notify>>,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval(WATERMARK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = tokio::time::interval(PROGRESS_INTERVAL);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    report.reset();
    let (mut last_total, mut last_report) = (0u64, tokio::time::Instant::now());
    let mut last_watermark = clock.now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {
                let now = clock.now();
                // Once the run is stopping, simulated time may pass where the shoppers got
                // to: the run's end sends the last watermark itself.
                if stop.is_cancelled() {
                    return;
                }
                metrics.simulated_time.set(now.as_micros() as f64 / 1e6);
                if outbox.watermark(now).await.is_err() {
                    return;
                }
                let step = now.as_micros() - last_watermark.as_micros();
                if step < WATERMARK_STEP.as_micros() as i64 {
                    interval.reset_after(SLOW_WATERMARK_INTERVAL);
                }
                last_watermark = now;
                continue;
            }
            _ = report.tick() => {}
            () = requested(requests.as_deref()) => {}
        }
        let counts = generated();
        let total: u64 = counts.iter().sum();
        let elapsed = last_report.elapsed().as_secs_f64().max(1e-3);
        tracing::info!(
            simulated_time = %clock.now(),
            events_per_second = ((total - last_total) as f64 / elapsed).round() as u64,
            events = %describe(&counts),
            "progress"
        );
        (last_total, last_report) = (total, tokio::time::Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;

    fn workers_for(args: &[&str], cores: usize) -> usize {
        let cli =
            Cli::try_parse_from(std::iter::once("simulator").chain(args.iter().copied())).unwrap();
        workers(&Settings::load(&cli, std::iter::empty()).unwrap(), cores)
    }

    #[test]
    fn a_single_worker_is_the_thread_that_drives_the_run() {
        use tokio::runtime::RuntimeFlavor;
        let one = runtime_with(1).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        assert_eq!(one.metrics().num_workers(), 1);
        let two = runtime_with(2).unwrap();
        assert_eq!(two.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(two.metrics().num_workers(), 2);
    }

    #[test]
    fn a_run_paced_below_ten_thousand_orders_a_second_gets_one_worker() {
        assert_eq!(workers_for(&[], 8), 1, "the defaults: 500/h in real time");
        assert_eq!(workers_for(&["--rate", "9999/s"], 8), 1);
        assert_eq!(workers_for(&["--rate", "100/s", "--speed", "60"], 8), 1);
        assert_eq!(workers_for(&["--rate", "10000/s"], 8), 8);
        assert_eq!(workers_for(&["--rate", "500/h", "--speed", "100000"], 8), 8);
        assert_eq!(workers_for(&["--speed", "max"], 2), 2);
    }

    #[test]
    fn a_fast_run_into_kafka_leaves_cores_to_librdkafka() {
        let kafka = [
            "--speed",
            "max",
            "--sink",
            "kafka,file",
            "--bootstrap-servers",
            "127.0.0.1:9092",
        ];
        let by_cores: Vec<usize> = [1, 2, 3, 4, 16]
            .into_iter()
            .map(|cores| workers_for(&kafka, cores))
            .collect();
        assert_eq!(by_cores, [1, 1, 1, 2, 2]);
        // Paced below the threshold, one worker whatever the sink.
        assert_eq!(workers_for(&kafka[2..], 16), 1);
    }

    #[test]
    fn workers_set_are_taken_as_they_are() {
        assert_eq!(workers_for(&["--workers", "3"], 2), 3);
        let kafka = ["--sink", "kafka", "--bootstrap-servers", "127.0.0.1:9092"];
        let fast_kafka = [&["--workers", "2", "--speed", "max"][..], &kafka].concat();
        assert_eq!(workers_for(&fast_kafka, 2), 2);
        assert_eq!(
            workers_for(&["--workers", "4"], 8),
            4,
            "even when paced slowly"
        );
        assert_eq!(workers_for(&["--workers", "auto", "--speed", "max"], 4), 4);
    }

    #[test]
    fn a_worker_count_out_of_range_is_named() {
        for bad in ["0", "257", "two", "-1"] {
            let cli = Cli::try_parse_from(["simulator", "--workers", bad]).unwrap();
            let error = Settings::load(&cli, std::iter::empty())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("simulation.workers (--workers)")
                    && error.contains("from 1 to 256, nor `auto`"),
                "{bad}: {error}"
            );
        }
    }
}
