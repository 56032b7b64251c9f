//! Sustained events/s into a Kafka-compatible broker at `--speed max`, next to the bound that
//! librdkafka alone reaches on the same broker with the same messages (pre-encoded: same keys,
//! values, headers and producer settings).
//!
//! `SIMULATOR_TEST_KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo bench --bench kafka` (see README.md;
//! without the variable it starts `tansu` from PATH on a free port, as the tests do).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use common::create_topics;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use simulator::config::Settings;
use simulator::encoding::Encoder;
use simulator::model::{Event, total};
use simulator::simulation;
use simulator::sinks::kafka::{KafkaSettings, KafkaSink};
use simulator::sinks::{MemorySink, Sink};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 5;
const SPAN: Duration = Duration::from_secs(10 * 60);

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
    let runtime = simulation::runtime().expect("a runtime");
    total(&support::run(&runtime, settings, SEED, SPAN, sink).delivered)
}

/// librdkafka alone: the same messages, pre-encoded, through a bare producer.
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
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().expect("a producer");
    let clock = tokio::time::Instant::now();
    for (topic, key, value, timestamp, event_type) in &messages {
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: "event_type",
                value: Some(*event_type),
            })
            .insert(Header {
                key: "schema",
                value: Some("retail.Order"),
            })
            .insert(Header {
                key: "schema_fingerprint",
                value: Some("0000000000000000000"),
            })
            .insert(Header {
                key: "content-type",
                value: Some("avro/binary"),
            });
        let mut record = BaseRecord::to(&kafka.config.topics[*topic])
            .key(key)
            .payload(value)
            .timestamp(*timestamp)
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flushed");
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

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let broker = common::broker();
    let bootstrap = broker.bootstrap.clone();

    // Alternate the two, on fresh topics each time, and keep the medians: the machine is shared
    // with the broker, and single runs vary.
    const ROUNDS: usize = 3;
    let (mut bounds, mut simulators, mut count) = (Vec::new(), Vec::new(), 0);
    let (mut bound_busy, mut simulator_busy) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let id = std::process::id();
        let (bound_prefix, sim_prefix) =
            (format!("bound{id}-{round}-"), format!("sim{id}-{round}-"));
        create_topics(&bootstrap, &bound_prefix);
        create_topics(&bootstrap, &sim_prefix);
        // The events of the run, pre-encoded for the bound, then dropped before the simulator runs.
        let memory = MemorySink::new();
        run(&settings(&bootstrap, "unused-"), Box::new(memory.clone()));
        let events = memory.events();
        drop(memory);
        count = events.len();
        let (rate, busy) = busy_while(|| bound(&settings(&bootstrap, &bound_prefix), &events));
        bounds.push(rate);
        bound_busy.push(busy);
        drop(events);
        let sim_settings = settings(&bootstrap, &sim_prefix);
        let clock = tokio::time::Instant::now();
        let sink = KafkaSink::new(
            &kafka(&sim_settings),
            simulator::metrics::DeliveryMetrics::unregistered(),
            None,
        )
        .expect("a Kafka sink");
        let (delivered, busy) = busy_while(|| run(&sim_settings, Box::new(sink)));
        simulators.push(delivered as f64 / clock.elapsed().as_secs_f64());
        simulator_busy.push(busy);
        assert_eq!(delivered as usize, count);
        println!(
            "round {round}: librdkafka alone {:.0}/s ({:.0}% of the cores busy), simulator {:.0}/s ({:.0}% busy)",
            bounds[round],
            bound_busy[round] * 100.0,
            simulators[round],
            simulator_busy[round] * 100.0
        );
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
