//! The `simulator` binary: parses the command line, loads the configuration, starts logging,
//! runs the simulation until its end or a signal, and maps the outcome to an exit code.
//!
//! Exit codes: 0 when everything generated was delivered; 1 when the run failed or lost
//! events (the counts are reported); 2 for bad input, before anything runs.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use simulator::config::{Cli, LogFormat, Settings};
use simulator::control::ControlPlane;
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
    // Signals are listened for from here on, by a thread the simulation cannot keep busy.
    let control = match ControlPlane::start() {
        Ok(control) => control,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the control plane's thread");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let shutdown = CancellationToken::new();
    control.listen_for_signals(shutdown.clone());
    let runtime = match if cli.serve {
        simulation::serving_runtime(&settings)
    } else {
        simulation::runtime_for(&settings)
    } {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if cli.serve {
        return match runtime.block_on(simulation::serve(settings, shutdown, &control)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => start_failed(&e),
        };
    }
    let outcome = runtime.block_on(simulation::start(settings, shutdown, &control));
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
        Err(e) => start_failed(&e),
    }
}

/// Reports why a run (or `serve`) could not start: bad input on standard error with exit 2,
/// anything else in the log with exit 1.
fn start_failed(e: &simulation::StartError) -> ExitCode {
    if e.is_bad_input() {
        eprintln!("simulator: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        tracing::error!("{e}");
        ExitCode::from(EXIT_FAILED)
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
