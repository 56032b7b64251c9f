//! Publishes events to Kafka, or to Azure Event Hubs through its Kafka endpoint.
//!
//! Each event becomes one message: key the entity's id as text (`order_id` for orders and
//! payments, so a payment shares its order's partition), value the Avro datum (raw or in the
//! Confluent wire format), headers `event_type`, `schema`, `schema_fingerprint` and
//! `content-type`, timestamp the event time.
//!
//! Delivery: idempotent producer with `acks=all`; librdkafka retries until the delivery
//! timeout. Every delivery report is counted, success or failure (with its reason). When
//! librdkafka's queue is full, [`Sink::write`] waits, which holds the pipeline and so the
//! shoppers: memory stays bounded and nothing is dropped. [`Sink::close`] flushes within the
//! flush timeout; what is still undelivered then is reported.

mod config;
mod registry;

pub use config::{
    EventHubsConnection, Framing, KafkaConfig, KafkaSettings, KafkaTarget, Property, PropertyValue,
    SchemaRegistryConfig, Secret, SecretFile,
};
pub use registry::{RegistryError, register};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::{Sink, SinkCheckpoint, SinkError};
use crate::encoding::{Encoder, schemas};
use crate::metrics::DeliveryMetrics;
use crate::model::{Event, EventType, Topic, TopicCounts};

/// How long to wait before offering a message again when librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(2);
/// How long start-up waits for the cluster's metadata before going on regardless.
const CONNECT_CHECK: Duration = Duration::from_secs(10);
/// Repeated client errors of one kind are logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Delivery outcomes, shared with librdkafka's callback thread.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    delivered: [AtomicU64; 4],
    failed: [AtomicU64; 4],
    /// Failures by reason (librdkafka's error name).
    reasons: Mutex<BTreeMap<String, u64>>,
    /// A failure no retry can mend (authorisation, size, fatal idempotence errors).
    permanent: Mutex<Option<String>>,
    /// Whether the cluster has answered at least once.
    connected: AtomicBool,
    /// librdkafka reported every broker down, and no delivery has succeeded since.
    all_brokers_down: AtomicBool,
    /// Failed delivery reports since the last successful one.
    failures_since_success: AtomicU64,
    /// Why the last delivery failed.
    last_failure: Mutex<Option<String>>,
}

impl DeliveryStats {
    /// Messages delivered, by topic.
    pub fn delivered(&self) -> TopicCounts {
        std::array::from_fn(|i| self.delivered[i].load(Ordering::Relaxed))
    }

    /// Messages that failed, by topic.
    pub fn failed(&self) -> TopicCounts {
        std::array::from_fn(|i| self.failed[i].load(Ordering::Relaxed))
    }

    /// Failures by reason.
    pub fn failure_reasons(&self) -> BTreeMap<String, u64> {
        self.reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_permanent(&self, reason: String) {
        self.permanent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
    }

    fn permanent(&self) -> Option<String> {
        self.permanent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the sink can deliver now: connected, no permanent failure, and the latest
    /// delivery reports not all failures.
    pub fn ready(&self) -> Result<(), String> {
        if let Some(reason) = self.permanent() {
            return Err(format!("delivery cannot succeed: {reason}"));
        }
        if !self.connected.load(Ordering::Relaxed) {
            return Err("the Kafka cluster has not answered yet".into());
        }
        if self.all_brokers_down.load(Ordering::Relaxed) {
            return Err("every Kafka broker is down; librdkafka keeps reconnecting".into());
        }
        let failures = self.failures_since_success.load(Ordering::Relaxed);
        if failures > 0 {
            let reason = self
                .last_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return Err(format!(
                "the last {failures} deliveries failed ({})",
                reason.unwrap_or_default()
            ));
        }
        Ok(())
    }
}

/// Errors after which retrying cannot succeed.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::Fatal
    )
}

/// librdkafka's callbacks: delivery reports, client errors and logs.
struct Context {
    stats: Arc<DeliveryStats>,
    metrics: DeliveryMetrics,
    /// The origin of the creation instants carried in each message's opaque.
    origin: tokio::time::Instant,
    /// Cumulative per-broker transmit errors and retries last reported by librdkafka.
    broker_totals: Mutex<BTreeMap<String, (u64, u64)>>,
    last_logged: Mutex<BTreeMap<String, tokio::time::Instant>>,
}

/// Bits of a message's opaque that hold its event type.
const TYPE_BITS: u32 = 4;
const _: () = assert!(EventType::COUNT <= 1 << TYPE_BITS);

/// A message's opaque: its event type's index in the low bits, its creation instant (in
/// microseconds since the sink's origin) above them.
fn opaque(event_type: usize, created_micros: u64) -> usize {
    ((created_micros as usize) << TYPE_BITS) | event_type
}

impl Context {
    /// Whether an error of this kind may be logged now (at most once per interval).
    fn may_log(&self, kind: &str) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self.last_logged.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(kind) {
            Some(at) if now.duration_since(*at) < ERROR_LOG_INTERVAL => false,
            _ => {
                last.insert(kind.to_owned(), now);
                true
            }
        }
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.stats.all_brokers_down.store(true, Ordering::Relaxed);
        }
        if let Some(code) = error.rdkafka_error_code()
            && (code == RDKafkaErrorCode::Fatal || is_permanent(code))
        {
            self.stats.set_permanent(format!("{error}: {reason}"));
        }
        if self.may_log(&format!("{error}")) {
            tracing::warn!(error = %error, reason, "Kafka client error; librdkafka keeps retrying");
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        self.metrics.queue_messages.set(statistics.msg_cnt as i64);
        self.metrics.queue_bytes.set(statistics.msg_size as i64);
        self.metrics
            .queue_max_messages
            .set(statistics.msg_max as i64);
        let mut totals = self.broker_totals.lock().unwrap_or_else(|e| e.into_inner());
        for broker in statistics.brokers.values().filter(|b| b.nodeid >= 0) {
            let label = [broker.name.as_str()];
            // librdkafka reports round-trip times in microseconds, throttle times in milliseconds.
            let rtt = broker.rtt.as_ref().map_or(0.0, |w| w.avg as f64 / 1e6);
            let throttle = broker.throttle.as_ref().map_or(0.0, |w| w.avg as f64 / 1e3);
            self.metrics.broker_rtt.with_label_values(&label).set(rtt);
            self.metrics
                .broker_throttle
                .with_label_values(&label)
                .set(throttle);
            self.metrics
                .broker_up
                .with_label_values(&label)
                .set(i64::from(broker.state == "UP"));
            let (errors, retries) = totals.entry(broker.name.clone()).or_default();
            self.metrics
                .broker_tx_errors
                .with_label_values(&label)
                .inc_by(broker.txerrs.saturating_sub(*errors));
            self.metrics
                .broker_tx_retries
                .with_label_values(&label)
                .inc_by(broker.txretries.saturating_sub(*retries));
            (*errors, *retries) = (broker.txerrs, broker.txretries);
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}")
            }
            Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            Notice | Info => tracing::info!(facility = fac, "librdkafka: {log_message}"),
            Debug => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let event_type = opaque & ((1 << TYPE_BITS) - 1);
        let topic = EventType::ALL[event_type].topic().index();
        match result {
            Ok(_) => {
                self.stats.connected.store(true, Ordering::Relaxed);
                self.stats
                    .failures_since_success
                    .store(0, Ordering::Relaxed);
                self.stats.all_brokers_down.store(false, Ordering::Relaxed);
                self.stats.delivered[topic].fetch_add(1, Ordering::Relaxed);
                self.metrics.delivered(EventType::ALL[event_type], 1);
                let created = Duration::from_micros((opaque >> TYPE_BITS) as u64);
                let latency = self.origin.elapsed().saturating_sub(created);
                self.metrics.latency.observe(latency.as_secs_f64());
            }
            Err((error, _)) => {
                self.stats.failed[topic].fetch_add(1, Ordering::Relaxed);
                self.stats
                    .failures_since_success
                    .fetch_add(1, Ordering::Relaxed);
                let reason = match error.rdkafka_error_code() {
                    Some(code) => {
                        if is_permanent(code) {
                            self.stats.set_permanent(error.to_string());
                        }
                        format!("{code:?}")
                    }
                    None => error.to_string(),
                };
                self.metrics.failed(&reason);
                *self
                    .stats
                    .last_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
                if self.may_log(&reason) {
                    tracing::warn!(topic = Topic::ALL[topic].as_str(), %reason, error = %error, "a message was not delivered");
                }
                *self
                    .stats
                    .reasons
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(reason)
                    .or_default() += 1;
            }
        }
    }
}

/// Per-topic constants of every message.
struct TopicSpec {
    name: String,
    schema_name: String,
    fingerprint: String,
    /// The 5-byte Confluent prefix, when that framing is in force.
    prefix: Option<[u8; 5]>,
}

/// The `kafka` sink.
pub struct KafkaSink {
    producer: ThreadedProducer<Context>,
    stats: Arc<DeliveryStats>,
    topics: Vec<TopicSpec>,
    encoder: Encoder,
    value: Vec<u8>,
    flush_timeout: Duration,
    origin: tokio::time::Instant,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field(
                "topics",
                &self.topics.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// How the Kafka sink fails.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    #[error(transparent)]
    Registry(RegistryError),
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] KafkaError),
    #[error("delivery cannot succeed: {0}")]
    Permanent(String),
    #[error("cannot produce to `{topic}`: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "{in_flight} messages still unacknowledged after the {timeout} flush timeout ({source})"
    )]
    Unacknowledged {
        in_flight: i32,
        timeout: String,
        #[source]
        source: KafkaError,
    },
    #[error("{failed} messages were not delivered ({reasons})")]
    Undelivered { failed: u64, reasons: String },
    #[error(
        "{in_flight} messages still undelivered after the {timeout} flush timeout ({source}); \
         failures so far: {reasons}"
    )]
    Unflushed {
        in_flight: i32,
        timeout: String,
        reasons: String,
        #[source]
        source: KafkaError,
    },
}

impl KafkaSink {
    /// Creates the producer (and registers the schemas for the `confluent` framing). An
    /// unreachable cluster is reported but not fatal: librdkafka keeps trying.
    pub fn new(settings: &KafkaSettings, metrics: DeliveryMetrics) -> Result<Self, SinkError> {
        let schemas = schemas()?;
        let mut topics = Vec::with_capacity(4);
        for topic in Topic::ALL {
            let schema = schemas.get(topic);
            let name = settings.config.topics[topic.index()].clone();
            let prefix = match settings.config.framing {
                Framing::Raw => None,
                Framing::Confluent => {
                    let url = settings.schema_registry_url.as_deref().unwrap_or_default();
                    let text = crate::encoding::SCHEMA_TEXTS[topic.index()].1;
                    let id = register(url, &format!("{name}-value"), text)
                        .map_err(KafkaSinkError::Registry)?;
                    tracing::info!(topic = %name, schema_id = id, "schema registered");
                    let mut prefix = [0u8; 5];
                    prefix[1..].copy_from_slice(&id.to_be_bytes());
                    Some(prefix)
                }
            };
            topics.push(TopicSpec {
                name,
                schema_name: schema.name().map(|n| n.fullname(None)).unwrap_or_default(),
                fingerprint: format!("{}", schema.fingerprint::<apache_avro::rabin::Rabin>()),
                prefix,
            });
        }

        let mut config = ClientConfig::new();
        for property in settings.producer_properties() {
            config.set(property.key.as_str(), property.value.expose());
        }
        let stats = Arc::new(DeliveryStats::default());
        let origin = tokio::time::Instant::now();
        let context = Context {
            stats: Arc::clone(&stats),
            metrics,
            origin,
            broker_totals: Mutex::new(BTreeMap::new()),
            last_logged: Mutex::new(BTreeMap::new()),
        };
        let producer: ThreadedProducer<Context> = config
            .create_with_context(context)
            .map_err(KafkaSinkError::Producer)?;
        let bootstrap = settings.target.bootstrap_servers();
        match producer.client().fetch_metadata(None, CONNECT_CHECK) {
            Ok(metadata) => {
                stats.connected.store(true, Ordering::Relaxed);
                tracing::info!(%bootstrap, brokers = metadata.brokers().len(), "connected to the Kafka cluster");
            }
            Err(e) => tracing::warn!(
                %bootstrap,
                error = %e,
                "cannot reach the Kafka cluster yet; events are queued and delivery is retried until the delivery timeout"
            ),
        }
        Ok(Self {
            producer,
            stats,
            topics,
            encoder: Encoder::new()?,
            value: Vec::with_capacity(1024),
            flush_timeout: settings.config.flush_timeout,
            origin,
        })
    }

    /// The delivery statistics.
    pub fn stats(&self) -> Arc<DeliveryStats> {
        Arc::clone(&self.stats)
    }

    fn check_permanent(&self) -> Result<(), SinkError> {
        match self.stats.permanent() {
            Some(reason) => Err(KafkaSinkError::Permanent(reason).into()),
            None => Ok(()),
        }
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn write(&mut self, events: &[Event], created: tokio::time::Instant) -> Result<(), SinkError> {
        self.check_permanent()?;
        let created_micros = created.saturating_duration_since(self.origin).as_micros() as u64;
        let mut key = itoa::Buffer::new();
        for event in events {
            let topic = event.topic().index();
            let spec = &self.topics[topic];
            self.value.clear();
            if let Some(prefix) = &spec.prefix {
                self.value.extend_from_slice(prefix);
            }
            self.encoder.encode_into(event, &mut self.value);
            let key = key.format(event.key());
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: "event_type",
                    value: Some(event.event_type().as_str()),
                })
                .insert(Header {
                    key: "schema",
                    value: Some(spec.schema_name.as_str()),
                })
                .insert(Header {
                    key: "schema_fingerprint",
                    value: Some(spec.fingerprint.as_str()),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some("avro/binary"),
                });
            let mut record = BaseRecord::with_opaque_to(
                &spec.name,
                opaque(event.event_type().index(), created_micros),
            )
            .key(key)
            .payload(&self.value)
            .timestamp(event.event_time().as_millis())
            .headers(headers);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        // Backpressure: wait for deliveries to make room.
                        record = returned;
                        std::thread::sleep(QUEUE_FULL_BACKOFF);
                        self.check_permanent()?;
                    }
                    Err((source, _)) => {
                        return Err(KafkaSinkError::Produce {
                            topic: spec.name.clone(),
                            source,
                        }
                        .into());
                    }
                }
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<SinkCheckpoint, SinkError> {
        // Everything produced before the save is acknowledged (or counted as failed) before
        // the save is written.
        self.producer.flush(self.flush_timeout).map_err(|source| {
            KafkaSinkError::Unacknowledged {
                in_flight: self.producer.in_flight_count(),
                timeout: humantime::format_duration(self.flush_timeout).to_string(),
                source,
            }
        })?;
        Ok(SinkCheckpoint::default())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let result = self.producer.flush(self.flush_timeout);
        let in_flight = self.producer.in_flight_count();
        let failed: u64 = self.stats.failed().iter().sum();
        match result {
            Ok(()) if failed == 0 => Ok(()),
            Ok(()) => Err(KafkaSinkError::Undelivered {
                failed,
                reasons: format!("{:?}", self.stats.failure_reasons()),
            }
            .into()),
            Err(source) => Err(KafkaSinkError::Unflushed {
                in_flight,
                timeout: humantime::format_duration(self.flush_timeout).to_string(),
                reasons: format!("{:?}", self.stats.failure_reasons()),
                source,
            }
            .into()),
        }
    }

    fn delivered(&self) -> TopicCounts {
        self.stats.delivered()
    }
}
