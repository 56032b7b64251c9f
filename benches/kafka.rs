//! Sustained events/s into a Kafka-compatible broker at `--speed max`, next to the bound that
//! librdkafka alone reaches on the same broker with the same messages (pre-encoded: same keys,
//! values, headers and producer settings).
//!
//! `SIMULATOR_BENCH_KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo bench --bench kafka` (see README.md;
//! without the variable it starts `tansu` from PATH on a free port).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use simulator::clock::Clock;
use simulator::config::{Cli, Settings};
use simulator::encoding::Encoder;
use simulator::model::{Event, Timestamp};
use simulator::simulation::{self, RunPlan};
use simulator::sinks::kafka::KafkaSink;
use simulator::sinks::{MemorySink, Sink, total};
use tokio_util::sync::CancellationToken;

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 5;
const SPAN: Duration = Duration::from_secs(10 * 60);

fn settings(bootstrap: &str, prefix: &str) -> Settings {
    let cli = Cli {
        rate: Some("1000/s".into()),
        shoppers: Some("10000".into()),
        sink: Some("kafka".into()),
        bootstrap_servers: Some(bootstrap.into()),
        ..Cli::default()
    };
    let env = ["products", "customers", "orders", "payments"].map(|t| {
        (
            format!("SIMULATOR__KAFKA__TOPICS__{}", t.to_uppercase()),
            format!("{prefix}{t}"),
        )
    });
    Settings::load(&cli, env).expect("valid settings")
}

fn create_topics(bootstrap: &str, prefix: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("an admin client");
    let names: Vec<String> = ["products", "customers", "orders", "payments"]
        .iter()
        .map(|t| format!("{prefix}{t}"))
        .collect();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 4, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for result in runtime
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .expect("topics created")
    {
        result.expect("topic created");
    }
}

fn run(settings: &Settings, sink: Box<dyn Sink>) -> u64 {
    let start = Timestamp::from_datetime("2026-01-01T00:00:00Z".parse().expect("an instant"));
    let runtime = simulation::runtime().expect("a runtime");
    runtime.block_on(async {
        let ctx = simulation::shop_context(settings, SEED).expect("a catalogue");
        let plan = RunPlan {
            seed: SEED,
            end: Some(start + SPAN),
        };
        let summary = simulation::run(
            settings,
            plan,
            ctx,
            Clock::virtual_at(start),
            sink,
            CancellationToken::new(),
            simulation::Instruments::detached(),
        )
        .await;
        assert!(summary.is_complete(), "{summary:?}");
        total(&summary.delivered)
    })
}

/// librdkafka alone: the same messages, pre-encoded, through a bare producer.
fn bound(settings: &Settings, events: &[Event]) -> f64 {
    let kafka = settings.kafka.as_ref().expect("kafka settings");
    let encoder = Encoder::new().expect("schemas");
    let messages: Vec<(usize, String, Vec<u8>, i64, &'static str)> = events
        .iter()
        .map(|e| {
            (
                e.topic().index(),
                e.key().to_string(),
                encoder.encode(e).expect("encodable"),
                e.event_time().as_millis(),
                e.event_type(),
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
        let mut record = BaseRecord::to(&kafka.topics[*topic])
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

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let mut tansu: Option<Child> = None;
    let bootstrap = std::env::var("SIMULATOR_BENCH_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a port")
            .local_addr()
            .expect("an address")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        tansu = Some(
            Command::new("tansu")
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    "--storage-engine",
                    "memory://tansu/",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tansu on PATH, or SIMULATOR_BENCH_KAFKA_BOOTSTRAP"),
        );
        let address = format!("127.0.0.1:{port}");
        while TcpStream::connect(&address).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        address
    });

    // Alternate the two, on fresh topics each time, and keep the medians: the machine is shared
    // with the broker, and single runs vary.
    const ROUNDS: usize = 3;
    let (mut bounds, mut simulators, mut count) = (Vec::new(), Vec::new(), 0);
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
        bounds.push(bound(&settings(&bootstrap, &bound_prefix), &events));
        drop(events);
        let sim_settings = settings(&bootstrap, &sim_prefix);
        let clock = tokio::time::Instant::now();
        let sink = KafkaSink::new(
            sim_settings.kafka.as_ref().expect("kafka settings"),
            simulator::metrics::DeliveryMetrics::unregistered(),
        )
        .expect("a Kafka sink");
        let delivered = run(&sim_settings, Box::new(sink));
        simulators.push(delivered as f64 / clock.elapsed().as_secs_f64());
        assert_eq!(delivered as usize, count);
        println!(
            "round {round}: librdkafka alone {:.0}/s, simulator {:.0}/s",
            bounds[round], simulators[round]
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
    if let Some(mut child) = tansu {
        let _ = child.kill();
        let _ = child.wait();
    }
}
