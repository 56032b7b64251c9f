//! Events per second, as fast as the machine goes (`--speed max`), into the `null` sink
//! (generation and Avro encoding) and the `file` sink (plus Avro container files on disk).
//!
//! `cargo bench --bench throughput`; criterion reports the throughput in events per second.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use simulator::clock::Clock;
use simulator::config::{Cli, Settings};
use simulator::model::Timestamp;
use simulator::simulation::{self, Summary};
use simulator::sinks::{FileCodec, FileSink, NullSink, Sink, total};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 1;
/// Simulated time per iteration: at 1000 orders/s about 2 million events.
const SPAN: Duration = Duration::from_secs(15 * 60);

fn settings() -> Settings {
    let cli = Cli {
        rate: Some("1000/s".into()),
        shoppers: Some("10000".into()),
        ..Cli::default()
    };
    Settings::load(&cli, std::iter::empty()).expect("valid settings")
}

fn run(runtime: &tokio::runtime::Runtime, settings: &Settings, sink: Box<dyn Sink>) -> Summary {
    let start = Timestamp::from_datetime("2026-01-01T00:00:00Z".parse().expect("an instant"));
    let summary = runtime
        .block_on(simulation::simulate(
            settings,
            SEED,
            SPAN,
            Clock::virtual_at(start),
            sink,
        ))
        .expect("a catalogue");
    assert!(summary.is_complete(), "{summary:?}");
    summary
}

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let settings = settings();
    let events = total(
        &run(
            &runtime,
            &settings,
            Box::new(NullSink::new().expect("schemas")),
        )
        .generated,
    );
    let mut group = c.benchmark_group("simulate_15min_at_1000_per_s");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(events));
    group.bench_function("null_sink", |b| {
        b.iter(|| {
            run(
                &runtime,
                &settings,
                Box::new(NullSink::new().expect("schemas")),
            )
        })
    });
    group.bench_function("file_sink", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().expect("a temporary directory"),
            |dir| {
                let sink = FileSink::new(dir.path(), FileCodec::Null).expect("a file sink");
                run(&runtime, &settings, Box::new(sink));
                dir
            },
        )
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
