//! Events per second, as fast as the machine goes (`--speed max`), into the `null` sink
//! (generation and Avro encoding) and the `file` sink (plus Avro container files on disk).
//!
//! `cargo bench --bench throughput`; criterion reports the throughput in events per second.

mod support;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use simulator::config::Settings;
use simulator::model::total;
use simulator::simulation::Summary;
use simulator::sinks::{FileCodec, FileSink, NullSink, Sink};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 1;
/// Simulated time per iteration: at 1000 orders/s about 2 million events.
const SPAN: Duration = Duration::from_secs(15 * 60);

fn settings() -> Settings {
    support::settings("1000/s", 10_000, &[], std::iter::empty())
}

fn run(runtime: &tokio::runtime::Runtime, settings: &Settings, sink: Box<dyn Sink>) -> Summary {
    support::run(runtime, settings, SEED, SPAN, sink)
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
