//! Sustained events/s into a Kafka-compatible broker at `--speed max`, next to the bound that
//! librdkafka alone reaches on the same broker with the same messages (pre-encoded: same keys,
//! values, headers and producer settings, produced as the sink produces them).
//!
//! `cargo bench --bench kafka` starts a `tansu` from PATH for each phase, as the tests do;
//! with `SIMULATOR_TEST_KAFKA_BOOTSTRAP=HOST:PORT` every phase uses that broker instead (see
//! README.md).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::ffi::CStr;
use std::time::Duration;

use common::create_topics;
use rdkafka::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use simulator::config::Settings;
use simulator::encoding::Encoder;
use simulator::model::{Event, total};
use simulator::simulation;
use simulator::sinks::kafka::{KafkaSettings, KafkaSink, Record, TopicProducer, serve_reports};
use simulator::sinks::{MemorySink, Sink};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 5;
const SPAN: Duration = Duration::from_secs(10 * 60);
/// Messages between two services of the bound's delivery reports: a full lane of the
/// pipeline, the batch the sink serves its reports after at `--speed max`.
const BATCH: usize = simulator::pipeline::LANE_EVENTS;

fn settings(bootstrap: &str, prefix: &str) -> Settings {
    let flags = [
        ("sink.kinds", "kafka".to_owned()),
        ("kafka.bootstrap_servers", bootstrap.to_owned()),
    ];
    support::settings("1000/s", 10_000, &flags, common::topic_env(prefix))
}

fn kafka(settings: &Settings) -> KafkaSettings {
    settings
        .kafka
        .resolve(&settings.schema_registry)
        .expect("kafka settings")
}

fn run(settings: &Settings, sink: Box<dyn Sink>) -> u64 {
    // The runtime the binary would give this run (`--workers auto`).
    let runtime = simulation::runtime_for(settings).expect("a runtime");
    total(&support::run(&runtime, settings, SEED, SPAN, sink).delivered)
}

/// librdkafka alone: the same messages, pre-encoded, through a bare producer served as the
/// sink serves its own: delivery reports polled on the producing thread after every
/// [`BATCH`] messages, and while the queue is full.
fn bound(settings: &Settings, events: &[Event]) -> f64 {
    let kafka = kafka(settings);
    let encoder = Encoder::new().expect("schemas");
    let messages: Vec<(usize, String, Vec<u8>, i64, &'static str)> = events
        .iter()
        .map(|e| {
            (
                e.topic().index(),
                e.key().to_string(),
                encoder.encode(e),
                e.event_time().as_millis(),
                e.event_type().as_str(),
            )
        })
        .collect();
    let mut config = ClientConfig::new();
    for property in kafka.producer_properties() {
        config.set(property.key.as_str(), property.value.expose());
    }
    let producer: BaseProducer<DefaultProducerContext> = config.create().expect("a producer");
    let producer = TopicProducer::new(producer, &kafka.config.topics).expect("topic handles");
    let clock = tokio::time::Instant::now();
    for (n, (topic, key, value, timestamp, event_type)) in messages.iter().enumerate() {
        let headers: [(&CStr, &[u8]); 4] = [
            (c"event_type", event_type.as_bytes()),
            (c"schema", b"retail.Order"),
            (c"schema_fingerprint", b"0000000000000000000"),
            (c"content-type", b"avro/binary"),
        ];
        let record = Record {
            topic: *topic,
            key: key.as_bytes(),
            payload: Some(value),
            timestamp: Some(*timestamp),
            headers: &headers,
        };
        loop {
            match producer.send(&record, ()) {
                Ok(()) => break,
                // Wait for deliveries to make room, as the sink does.
                Err((RDKafkaErrorCode::QueueFull, ())) => {
                    producer.base().poll(Duration::from_millis(2));
                }
                Err((code, ())) => panic!("librdkafka refused a message: {code}"),
            }
        }
        if n % BATCH == BATCH - 1 {
            serve_reports(producer.base());
        }
    }
    producer
        .base()
        .flush(Duration::from_secs(120))
        .expect("flushed");
    messages.len() as f64 / clock.elapsed().as_secs_f64()
}

/// The machine's busy and total CPU time so far, in clock ticks of every core (`/proc/stat`).
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// How busy the machine's cores were while `phase` ran, as a share of all of them.
fn busy_while<T>(phase: impl FnOnce() -> T) -> (T, f64) {
    let (busy, total) = cpu_ticks();
    let result = phase();
    let (busy_after, total_after) = cpu_ticks();
    let share = (busy_after - busy) as f64 / (total_after - total).max(1) as f64;
    (result, share)
}

/// The run's events, generated into memory (the same every time: one seed).
fn events() -> Vec<Event> {
    let memory = MemorySink::new();
    run(
        &settings("127.0.0.1:9", "unused-"),
        Box::new(memory.clone()),
    );
    memory.events()
}

/// What a phase measured: messages sent, events/s, and how busy the cores were.
type Phase = (usize, f64, f64);

/// librdkafka alone on a fresh broker.
fn bound_phase(round: usize) -> Phase {
    let broker = common::broker();
    let prefix = format!("bound{}-{round}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let events = events();
    let (rate, busy) = busy_while(|| bound(&settings(&broker.bootstrap, &prefix), &events));
    (events.len(), rate, busy)
}

/// The simulator on a fresh broker.
fn simulator_phase(round: usize) -> Phase {
    let broker = common::broker();
    let prefix = format!("sim{}-{round}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let settings = settings(&broker.bootstrap, &prefix);
    let clock = tokio::time::Instant::now();
    let sink = KafkaSink::new(
        &kafka(&settings),
        simulator::metrics::DeliveryMetrics::unregistered(),
        None,
    )
    .expect("a Kafka sink");
    let (delivered, busy) = busy_while(|| run(&settings, Box::new(sink)));
    let rate = delivered as f64 / clock.elapsed().as_secs_f64();
    (delivered as usize, rate, busy)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    // Each phase gets a broker of its own, started afresh: tansu's in-memory storage keeps
    // every message, and a broker holding the earlier phases' millions is a slower one. With
    // SIMULATOR_TEST_KAFKA_BOOTSTRAP every phase shares the broker given, and the later ones
    // are measured against a fuller broker.
    //
    // Three rounds, the order of the two phases alternated, and the medians kept: the
    // machine is shared with the broker, and single runs vary.
    const ROUNDS: usize = 3;
    let (mut bounds, mut simulators, mut count) = (Vec::new(), Vec::new(), 0);
    for round in 0..ROUNDS {
        let (bound, simulator) = if round % 2 == 0 {
            let bound = bound_phase(round);
            (bound, simulator_phase(round))
        } else {
            let simulator = simulator_phase(round);
            (bound_phase(round), simulator)
        };
        assert_eq!(
            simulator.0, bound.0,
            "the simulator delivered every message"
        );
        count = bound.0;
        println!(
            "round {round}: librdkafka alone {:.0}/s ({:.0}% of the cores busy), simulator {:.0}/s ({:.0}% busy)",
            bound.1,
            bound.2 * 100.0,
            simulator.1,
            simulator.2 * 100.0
        );
        bounds.push(bound.1);
        simulators.push(simulator.1);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bound, simulator) = (median(&mut bounds), median(&mut simulators));
    println!("messages per run: {count}");
    println!("librdkafka alone, pre-encoded (median): {bound:.0} events/s");
    println!("simulator --sink kafka --speed max (median): {simulator:.0} events/s");
    println!("ratio: {:.0}%", simulator / bound * 100.0);
}
