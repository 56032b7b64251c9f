//! What the benchmarks share: their settings and one whole run.
#![allow(dead_code)]

use std::time::Duration;

use simulator::clock::Clock;
use simulator::config::{Cli, Settings};
use simulator::model::Timestamp;
use simulator::simulation::{self, Summary};
use simulator::sinks::Sink;

/// Settings from flags over the shipped defaults: `rate` over `shoppers`, then the given
/// `(key, value)` pairs, and `SIMULATOR__…` environment pairs.
pub fn settings(
    rate: &str,
    shoppers: u32,
    flags: &[(&'static str, String)],
    env: impl IntoIterator<Item = (String, String)>,
) -> Settings {
    let mut cli = Cli::default()
        .with("simulation.rate", rate)
        .with("simulation.shoppers", shoppers.to_string());
    for (key, value) in flags {
        cli = cli.with(key, value.clone());
    }
    Settings::load(&cli, env).expect("valid settings")
}

/// Runs `span` of simulated time from 2026-01-01 as fast as possible into `sink`, and checks
/// that everything generated was delivered.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    seed: u64,
    span: Duration,
    sink: Box<dyn Sink>,
) -> Summary {
    let start = Timestamp::from_datetime("2026-01-01T00:00:00Z".parse().expect("an instant"));
    let summary = runtime
        .block_on(simulation::simulate(
            settings,
            seed,
            span,
            Clock::virtual_at(start),
            sink,
        ))
        .expect("a catalogue");
    assert!(summary.is_complete(), "{summary:?}");
    summary
}
