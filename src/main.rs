//! The `simulator` binary: parses the command line, validates the configuration, runs the
//! simulation until its end or a signal, and reports what was delivered.
//!
//! Exit codes: 0 when everything generated was delivered; 1 when the run failed or lost
//! events (the counts are reported); 2 for bad input, before anything runs.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use simulator::clock::{Clock, Speed};
use simulator::config::{Cli, LogFormat, Settings, SinkKind};
use simulator::encoding;
use simulator::simulation::{self, RunPlan};
use std::sync::Arc;

use prometheus::Registry;
use simulator::endpoints;
use simulator::faults::FaultInjector;
use simulator::ledger::{Ledger, LedgerSink};
use simulator::metrics::{self, DeliveryMetrics, Health};
use simulator::simulation::{Instruments, Saving};
use simulator::sinks::kafka::KafkaSink;
use simulator::sinks::{FileSink, NullSink, Sink, StdoutSink, describe, recover_files, total};
use simulator::state::{Identity, Snapshot, StateError, StateStore};

/// mimalloc: the simulator allocates many small, short-lived values across threads (events,
/// batches, librdkafka messages), where it is markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version print to stdout and exit 0; mistakes exit 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let settings = match Settings::load(&cli, std::env::vars()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("simulator: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if cli.print_config {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(&settings);
    let runtime = match simulation::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn open_sink(
    settings: &Settings,
    metrics: DeliveryMetrics,
    health: &Health,
) -> Result<Box<dyn Sink>, String> {
    Ok(match settings.sink {
        SinkKind::File => {
            let sink = FileSink::new(&settings.output_dir, settings.codec)
                .map_err(|e| format!("file.output_dir (--output-dir): cannot write there: {e}"))?
                .with_metrics(metrics);
            Box::new(if settings.state_dir.is_some() {
                sink.with_saves()
            } else {
                sink
            })
        }
        SinkKind::Stdout => Box::new(StdoutSink::new().with_metrics(metrics)),
        SinkKind::Null => Box::new(
            NullSink::new()
                .map_err(|e| e.to_string())?
                .with_metrics(metrics),
        ),
        SinkKind::Kafka => {
            let kafka = settings
                .kafka
                .as_ref()
                .ok_or("sink.kind (--sink): the kafka settings are missing")?;
            let sink = KafkaSink::new(kafka, metrics).map_err(|e| e.to_string())?;
            let stats = sink.stats();
            health.set_probe(Box::new(move || stats.ready()));
            Box::new(sink)
        }
    })
}

/// The saved state of `--state-dir`, opened and checked against the settings: the store, the
/// state to resume from (if any), the seed and the run's first instant.
fn open_state(settings: &Settings) -> Result<Option<(StateStore, Option<Snapshot>)>, StateError> {
    let Some(dir) = &settings.state_dir else {
        return Ok(None);
    };
    let store = StateStore::open(dir)?;
    let restored = store.load()?;
    Ok(Some((store, restored)))
}

/// Exit code 2 with `message`.
fn bad_input(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("simulator: {message}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

/// Puts the output directory of the file sink back in line with the saved state (or salvages
/// unfinished files when nothing is saved), and reports what it did.
fn recover_output(
    settings: &Settings,
    restored: Option<&Snapshot>,
    saving: bool,
) -> Result<(), String> {
    if settings.sink != SinkKind::File || !settings.output_dir.exists() {
        return Ok(());
    }
    // Without a save to go back to, what an earlier process left is kept, in whole blocks.
    let files = match (saving, restored) {
        (true, Some(snapshot)) => Some(snapshot.sink.files.as_slice()),
        _ => None,
    };
    let recovery = recover_files(&settings.output_dir, files).map_err(|e| {
        format!("file.output_dir (--output-dir): cannot recover unfinished files: {e}")
    })?;
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

async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    // A broken schema stops the simulator before anything runs.
    encoding::schemas().context("loading the Avro schemas")?;
    let (store, restored) = match open_state(&settings) {
        Ok(Some((store, restored))) => (Some(store), restored),
        Ok(None) => (None, None),
        Err(e) => return bad_input(e),
    };
    // A resumed run is the same run: its seed and start come from the state.
    let saved = restored.as_ref().map(|r| &r.identity);
    let seed = settings
        .seed
        .or(saved.map(|i| i.seed))
        .unwrap_or_else(rand::random);
    let start = settings
        .start
        .or(saved.map(|i| simulator::model::Timestamp::from_micros(i.start)))
        .unwrap_or_else(Clock::wall_now);
    let identity = Identity::of(&settings, seed, start);
    if let (Some(store), Some(saved)) = (&store, saved)
        && let Some((setting, was, now)) = saved.difference(&identity)
    {
        return bad_input(StateError::Incompatible {
            path: store.path(),
            setting,
            saved: was,
            current: now,
        });
    }
    let end = settings.duration.map(|d| start + d);
    // Where simulated time starts: the run's start, or where the saved state left off.
    let from = restored.as_ref().map_or(start, Snapshot::position);
    if let (Some(snapshot), Some(end)) = (&restored, end)
        && (snapshot.finished || from >= end)
    {
        tracing::info!(reached = %from, "the run saved in the state directory already reached its end; nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    // A real-time run resumed after a pause catches up as fast as possible, then goes on live.
    let speed = match settings.speed {
        Speed::Factor(f) if restored.is_some() && f == 1.0 && from < Clock::wall_now() => {
            Speed::Max
        }
        speed => speed,
    };
    let clock = Clock::new(from, speed);
    // With --speed max from the past: a backfill, then live (or a stop at the present).
    let backfill = speed == Speed::Max && from < Clock::wall_now();
    let plan = RunPlan {
        seed,
        end: match (backfill && settings.stop_at_present, end) {
            (true, Some(end)) => Some(end.min(Clock::wall_now())),
            (true, None) => Some(Clock::wall_now()),
            (false, end) => end,
        },
        pace_to_wall_clock: backfill && !settings.stop_at_present,
        saving: None,
    };
    let ctx = simulation::shop_context(&settings, seed).context("building the catalogue")?;

    let registry = Registry::new();
    let health = Health::new();
    let sink_name = match settings.sink {
        SinkKind::File => "file",
        SinkKind::Kafka => "kafka",
        SinkKind::Stdout => "stdout",
        SinkKind::Null => "null",
    };
    metrics::register_process(&registry, sink_name).context("registering the process metrics")?;
    let instruments =
        Instruments::register(&registry, Arc::clone(&health)).context("registering the metrics")?;
    let delivery =
        DeliveryMetrics::register(&registry).context("registering the delivery metrics")?;
    let listener = match tokio::net::TcpListener::bind(settings.metrics_addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "simulator: metrics.addr (--metrics-addr): cannot listen on {}: {e}",
                settings.metrics_addr
            );
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let metrics_addr = listener
        .local_addr()
        .context("reading the endpoints' address")?;
    let endpoints_stop = CancellationToken::new();
    let endpoints = tokio::spawn(endpoints::serve(
        listener,
        registry,
        Arc::clone(&health),
        endpoints_stop.clone(),
    ));

    let sink = match open_sink(&settings, delivery, &health) {
        Ok(sink) => sink,
        Err(message) => {
            eprintln!("simulator: {message}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    if let Err(message) = recover_output(&settings, restored.as_ref(), store.is_some()) {
        return bad_input(message);
    }
    let sink: Box<dyn Sink> = match Ledger::new(&settings.ledger_dir) {
        Ok(ledger) => {
            let mut sink = LedgerSink::new(sink, ledger);
            if let Some(snapshot) = &restored {
                sink.restore(&snapshot.sink.ledger);
            }
            if settings.faults.any() {
                sink = sink.with_faults(FaultInjector::new(settings.faults, seed));
            }
            Box::new(sink)
        }
        Err(e) => {
            eprintln!("simulator: ledger.dir (--ledger-dir): cannot write there: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    tracing::info!(
        seed,
        rate = %settings.rate,
        shoppers = settings.shoppers,
        sink = sink.name(),
        start = %start,
        resumed_at = %restored.as_ref().map_or_else(|| "-".to_owned(), |r| r.position().to_string()),
        end = %plan.end.map_or_else(|| "never".to_owned(), |e| e.to_string()),
        speed = %match settings.speed { Speed::Max => "max".to_owned(), Speed::Factor(f) => f.to_string() },
        endpoints = %format!("http://{metrics_addr}/metrics"),
        "simulator starting"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let plan = RunPlan {
        saving: store.map(|store| Saving {
            store,
            interval: settings.state_interval,
            identity,
            restored,
        }),
        ..plan
    };
    let summary = simulation::run(&settings, plan, ctx, clock, sink, shutdown, instruments).await;
    endpoints_stop.cancel();
    let _ = endpoints.await;

    let generated = total(&summary.generated);
    let delivered = total(&summary.delivered);
    if summary.is_complete() {
        tracing::info!(
            generated,
            delivered,
            reached = %summary.reached,
            events = %describe(&summary.delivered),
            "simulator stopped; every event was delivered"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        tracing::error!(
            generated,
            delivered,
            undelivered = summary.undelivered(),
            error = %summary.sink_error.as_ref().map_or_else(String::new, |e| e.to_string()),
            generated_by_topic = %describe(&summary.generated),
            delivered_by_topic = %describe(&summary.delivered),
            "simulator stopped; some events were not delivered"
        );
        Ok(ExitCode::from(EXIT_FAILED))
    }
}

/// Cancels `shutdown` at the first SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; finishing"),
        () = terminate => tracing::info!("SIGTERM received; finishing"),
    }
    shutdown.cancel();
}
