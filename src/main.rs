//! The `simulator` binary: parses the command line, loads the configuration, starts logging,
//! runs the simulation until its end or a signal, and maps the outcome to an exit code.
//!
//! Exit codes: 0 when everything generated was delivered; 1 when the run failed or lost
//! events (the counts are reported); 2 for bad input, before anything runs.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use simulator::config::{Cli, LogFormat, Settings};
use simulator::simulation::{self, Outcome};

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
    let shutdown = CancellationToken::new();
    let outcome = runtime.block_on(async {
        tokio::spawn(stop_on_signal(shutdown.clone()));
        simulation::start(settings, shutdown).await
    });
    match outcome {
        Ok(Outcome::AlreadyFinished(reached)) => {
            tracing::info!(%reached, "the run saved in the state directory already reached its end; nothing to do");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Ran(summary)) => {
            summary.report();
            if summary.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(e) if e.is_bad_input() => {
            eprintln!("simulator: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Logs to standard error, in colour only on a terminal and when `NO_COLOR` is not set.
fn init_logging(settings: &Settings) {
    use std::io::IsTerminal as _;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Cancels `shutdown` at the first SIGINT, SIGTERM, SIGHUP or SIGQUIT: each ends the run the
/// same way, with every event written out, the state saved and the summary logged.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let other = async {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
        ];
        let mut streams = Vec::new();
        for (kind, name) in kinds {
            match signal(kind) {
                Ok(stream) => streams.push((stream, name)),
                Err(e) => tracing::warn!(error = %e, signal = name, "cannot listen for the signal"),
            }
        }
        if streams.is_empty() {
            std::future::pending::<()>().await;
        }
        let received = futures_select(streams).await;
        tracing::info!("{received} received; finishing");
    };
    #[cfg(not(unix))]
    let other = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; finishing"),
        () = other => {}
    }
    shutdown.cancel();
}

/// The name of the first of `streams` to deliver a signal.
#[cfg(unix)]
async fn futures_select(
    mut streams: Vec<(tokio::signal::unix::Signal, &'static str)>,
) -> &'static str {
    std::future::poll_fn(|cx| {
        for (stream, name) in &mut streams {
            if stream.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*name);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
