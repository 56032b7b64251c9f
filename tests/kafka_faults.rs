//! The Kafka sink under faults, against librdkafka's mock cluster: a broker down for a while,
//! injected retriable produce errors, and a broker that never returns.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use common::{kafka_settings, start};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, TopicPartitionList};
use simulator::clock::Clock;
use simulator::config::Settings;
use simulator::encoding::schemas;
use simulator::metrics::DeliveryMetrics;
use simulator::model::{Catalogue, CurrencyCode, Event, Timestamp, Topic, total};
use simulator::simulation::{self, Summary};
use simulator::sinks::Sink;
use simulator::sinks::kafka::KafkaSink;

const PARTITIONS: i32 = 3;

fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).unwrap();
    for topic in Topic::ALL {
        cluster.create_topic(topic.as_str(), PARTITIONS, 1).unwrap();
    }
    cluster
}

/// Runs `hours` simulated hours at `speed` into a Kafka sink.
async fn run(settings: &Settings, hours: u64, clock: Clock) -> Summary {
    let sink = KafkaSink::new(
        &settings.kafka.resolve(&settings.schema_registry).unwrap(),
        DeliveryMetrics::unregistered(),
        None,
    )
    .unwrap();
    let span = Duration::from_secs(hours * 3600);
    simulation::simulate(settings, 3, span, clock, Box::new(sink))
        .await
        .unwrap()
}

/// Reads every message of every topic and returns how many times each event id is there.
fn consume_all(bootstrap: &str) -> HashMap<String, usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for topic in Topic::ALL {
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(topic.as_str(), partition, rdkafka::Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let (mut ids, mut idle) = (HashMap::new(), 0);
    while idle < 3 {
        match consumer.poll(Duration::from_secs(1)) {
            Some(Ok(message)) => {
                idle = 0;
                let topic = Topic::ALL
                    .into_iter()
                    .find(|t| t.as_str() == message.topic())
                    .unwrap();
                let mut payload = message.payload().unwrap();
                let value =
                    apache_avro::from_avro_datum(schemas().unwrap().get(topic), &mut payload, None)
                        .unwrap();
                let Value::Record(fields) = value else {
                    panic!("not a record")
                };
                let Value::Uuid(id) = &fields[0].1 else {
                    panic!("event_id is {:?}", fields[0].1)
                };
                *ids.entry(id.to_string()).or_insert(0) += 1;
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => idle += 1,
        }
    }
    ids
}

/// How many messages `ids` counts, and how many events are there more than once.
fn messages_and_repeated(ids: &HashMap<String, usize>) -> (usize, usize) {
    let messages = ids.values().sum();
    (messages, ids.values().filter(|&&n| n > 1).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_for_a_while_loses_nothing_and_readiness_follows() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    let settings = kafka_settings("3000/h", 300, &bootstrap, &[]);
    let sink = KafkaSink::new(
        &settings.kafka.resolve(&settings.schema_registry).unwrap(),
        DeliveryMetrics::unregistered(),
        None,
    )
    .unwrap();
    sink.wait_for_cluster(&|| false);
    let stats = sink.stats();
    assert_eq!(stats.ready(), Ok(()), "connected at start");
    // One simulated hour per real second: three seconds of real time.
    let clock = Clock::scaled(start(), 3600.0);
    let run = tokio::spawn({
        let settings = settings.clone();
        async move {
            let span = Duration::from_secs(3 * 3600);
            simulation::simulate(&settings, 3, span, clock, Box::new(sink))
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.broker_down(1).unwrap();
    let mut seen_not_ready = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Err(reason) = stats.ready() {
            seen_not_ready = Some(reason);
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.broker_up(1).unwrap();
    let summary = run.await.unwrap();
    let reason = seen_not_ready.expect("readiness did not notice the broker going down");
    assert!(reason.contains("down"), "{reason}");
    assert_eq!(stats.ready(), Ok(()), "ready again once deliveries succeed");
    assert!(summary.is_complete(), "{summary:?}");
    let generated = total(&summary.generated);
    assert!(generated > 9_000, "{summary:?}");
    let ids = consume_all(&bootstrap);
    assert_eq!(ids.len() as u64, generated, "events in the cluster");
    // The mock cluster checks an idempotent producer's sequence numbers only for a
    // transactional one (`rd_kafka_mock_validate_records`), so a produce request it stored
    // whose response was cut when the broker went down is stored again when librdkafka
    // resends it (a real broker acknowledges the resend without storing it). Such a resend is
    // at most the few requests in flight: every event is there at most twice, and the
    // repeated ones are a small fraction.
    let (messages, repeated) = messages_and_repeated(&ids);
    assert!(ids.values().all(|&n| n <= 2), "an event stored three times");
    assert!(
        repeated * 100 <= messages,
        "{repeated} of {messages} messages repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_produce_errors_are_retried_without_loss_or_duplicates() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        ]
        .repeat(5),
    );
    let settings = kafka_settings("3000/h", 300, &bootstrap, &[]);
    let summary = run(&settings, 2, Clock::virtual_at(start())).await;
    assert!(summary.is_complete(), "{summary:?}");
    let ids = consume_all(&bootstrap);
    assert_eq!(ids.len() as u64, total(&summary.generated));
    // An injected error is answered before anything is stored, so no retry can repeat one.
    assert_eq!(
        messages_and_repeated(&ids),
        (ids.len(), 0),
        "a retry repeated messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_returns_is_reported_after_the_delivery_timeout() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    let settings = kafka_settings(
        "3000/h",
        100,
        &bootstrap,
        &[
            ("SIMULATOR__KAFKA__DELIVERY_TIMEOUT", "2s"),
            ("SIMULATOR__KAFKA__FLUSH_TIMEOUT", "10s"),
        ],
    );
    cluster.broker_down(1).unwrap();
    let summary = run(&settings, 1, Clock::virtual_at(start())).await;
    assert!(!summary.is_complete());
    assert!(total(&summary.generated) > 3_000, "{summary:?}");
    assert_eq!(total(&summary.delivered), 0);
    assert_eq!(summary.undelivered(), total(&summary.generated));
    let error = summary.sink_error.unwrap().to_string();
    assert!(
        error.contains("were not delivered") && error.contains("MessageTimedOut"),
        "{error}"
    );
}

#[test]
fn delivery_reports_wait_for_the_sink_and_are_served_while_it_is_idle() {
    let cluster = cluster();
    let settings = kafka_settings("3000/h", 100, &cluster.bootstrap_servers(), &[]);
    let mut sink = KafkaSink::new(
        &settings.kafka.resolve(&settings.schema_registry).unwrap(),
        DeliveryMetrics::unregistered(),
        None,
    )
    .unwrap();
    let at = Timestamp::from_micros(0);
    let events: Vec<Event> = Catalogue::generate(1, 50, 1.0, at)
        .unwrap()
        .publish(at, 1, CurrencyCode::USD)
        .into_iter()
        .map(Event::Product)
        .collect();
    sink.write(&events, tokio::time::Instant::now()).unwrap();
    // No thread of librdkafka's serves the reports: they wait for the sink's thread.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(total(&sink.delivered()), 0, "served behind the sink's back");
    let started = tokio::time::Instant::now();
    while total(&sink.delivered()) < events.len() as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never delivered"
        );
        // What the pipeline does while no events come.
        std::thread::sleep(sink.idle_interval().unwrap());
        sink.idle();
    }
    assert_eq!(total(&sink.delivered()), events.len() as u64);
    assert_eq!(
        sink.idle_interval(),
        Some(Duration::from_millis(100)),
        "nothing in flight: the client's events can wait longer"
    );
    sink.close().unwrap();
}
