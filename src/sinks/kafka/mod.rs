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
//!
//! Delivery reports and the client's events (errors, statistics, token refreshes) are served
//! on the sink's own thread, with no polling thread of librdkafka's: after each batch, while
//! it waits for room in the queue, and when no events come ([`Sink::idle`], within
//! `IN_FLIGHT_POLL` while messages are in flight, `IDLE_POLL` otherwise). A message is
//! then freed by the thread that allocated it, which the allocator does cheaply.
//!
//! Recovery: a broker that loses the producer's state (restarted on volatile storage, a
//! failover) makes an idempotent producer fail for good (`UnknownProducerId`,
//! `OutOfOrderSequenceNumber`). The messages it then gives back unacknowledged are kept, a new
//! producer is built, and they are sent again, with the same event ids (consumers
//! deduplicate on `event_id`); `simulator_kafka_producer_restarts_total` and
//! `simulator_kafka_messages_resent_total` count it. Only restarts that deliver nothing in
//! between, [`MAX_FRUITLESS_RESTARTS`] of them, end the run.
//!
//! Topics: start-up reads the cluster's metadata and names every configured topic the cluster
//! lacks, in the log, in `/readyz` and in the final error.
//!
//! With the change stream ([`crate::cdc`], `--envelope debezium`) each event becomes the
//! records of its transaction instead, on the tables' topics (and the transaction metadata's):
//! key the row's primary key and value the envelope, both Avro (raw or Confluent-framed, each
//! registered under `<topic>-key` and `<topic>-value`), a tombstone (a null value) after each
//! delete, no headers. An event counts as delivered with its own row's record; every other
//! record (order lines, tombstones, transaction markers) that fails is counted too, and fails
//! the run like an event.

mod config;
mod entra;
mod producer;
mod registry;

pub use config::{
    ENTRA_AUTHORITY, EntraConnection, EntraCredential, EntraSource, EventHubsConnection, Framing,
    KafkaAuth, KafkaConfig, KafkaSettings, KafkaTarget, MANAGED_IDENTITY_ENDPOINT, Property,
    PropertyValue, SchemaRegistryConfig, Secret, SecretFile,
};
pub use entra::{Token, TokenError, TokenSource};
pub use producer::{MAX_HEADERS, Record, TopicError, TopicProducer};
pub use registry::{RegistryError, register};

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use super::{Sink, SinkCheckpoint, SinkError};
use crate::cdc::{ChangeStream, Stream};
use crate::encoding::{Encoder, schemas};
use crate::metrics::DeliveryMetrics;
use crate::model::{Event, EventType, Topic, TopicCounts};

/// How long to wait before offering a message again when librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(2);
/// How late a delivery report may be served while messages are in flight and no events come:
/// the delivery latency histogram's finest bucket.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(1);
/// How late the client's events may be served with nothing in flight (librdkafka's own
/// polling thread would wait as long).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long start-up waits for the cluster's metadata before going on regardless.
const CONNECT_CHECK: Duration = Duration::from_secs(10);
/// Each attempt to read the metadata, between which a signal is noticed.
const CONNECT_ATTEMPT: Duration = Duration::from_millis(500);
/// How long a producer that failed for good gets to hear back about what it has in flight.
const FATAL_DRAIN: Duration = Duration::from_secs(5);
/// Producer restarts in a row, with no delivery in between, after which the run stops.
pub const MAX_FRUITLESS_RESTARTS: u32 = 5;
/// Repeated client errors of one kind are logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Delivery outcomes, shared with librdkafka's callback thread.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    delivered: [AtomicU64; 4],
    failed: [AtomicU64; 4],
    /// Change stream records that stand for no event of their own (order lines, tombstones,
    /// transaction markers) and failed.
    records_failed: AtomicU64,
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
    /// The producer failed for good (its fatal error); a new one takes over.
    fatal: Mutex<Option<String>>,
    /// Configured topics the cluster's metadata lacked when last read.
    missing_topics: Mutex<BTreeSet<String>>,
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

    /// Every message that failed: events' and the change stream's other records.
    fn failed_messages(&self) -> u64 {
        self.failed().iter().sum::<u64>() + self.records_failed.load(Ordering::Relaxed)
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

    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_fatal(&self, reason: Option<String>) {
        *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// The configured topics the cluster lacked when its metadata was last read.
    pub fn missing_topics(&self) -> Vec<String> {
        self.missing_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// `the Kafka cluster has no topic `a`, `b``, when topics are missing.
    fn missing(&self) -> Option<String> {
        let topics = self.missing_topics();
        (!topics.is_empty()).then(|| {
            let names: Vec<String> = topics.iter().map(|t| format!("`{t}`")).collect();
            format!("the Kafka cluster has no topic {}", names.join(", "))
        })
    }

    /// What the missing topics add to a failure's reason: nothing, or which they are.
    fn missing_note(&self) -> String {
        self.missing()
            .map_or_else(String::new, |m| format!("; {m}"))
    }

    /// Whether the sink can deliver now: connected, no permanent failure, every topic there,
    /// and the latest delivery reports not all failures.
    pub fn ready(&self) -> Result<(), String> {
        if let Some(reason) = self.permanent() {
            return Err(format!("delivery cannot succeed: {reason}"));
        }
        if let Some(missing) = self.missing() {
            return Err(format!(
                "{missing}; their events cannot be delivered until they are created"
            ));
        }
        if let Some(reason) = self.fatal() {
            return Err(format!(
                "the Kafka producer failed ({reason}); a new one is taking over"
            ));
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

/// Errors after which retrying cannot succeed, with this producer or another.
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
    )
}

/// Delivery failures that come from the producer's own state having failed for good, or from
/// its queue being purged: a new producer can deliver the message.
fn is_producer_failure(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::PurgeQueue
            | RDKafkaErrorCode::PurgeInflight
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::InvalidProducerIdMapping
            | RDKafkaErrorCode::GaplessGuarantee
    )
}

/// A message a failed producer gave back unacknowledged, to send again.
struct Salvaged {
    topic: usize,
    key: Vec<u8>,
    /// `None`: a tombstone.
    payload: Option<Vec<u8>>,
    timestamp: Option<i64>,
    opaque: usize,
}

/// What the callbacks of every producer of the sink share.
struct Shared {
    stats: Arc<DeliveryStats>,
    metrics: DeliveryMetrics,
    /// The origin of the creation instants carried in each message's opaque.
    origin: tokio::time::Instant,
    /// Cumulative per-broker transmit errors and retries last reported by librdkafka.
    broker_totals: Mutex<BTreeMap<String, (u64, u64)>>,
    last_logged: Mutex<BTreeMap<String, tokio::time::Instant>>,
    /// The topic names, in topic order, to tell a returned message's topic.
    topics: Vec<String>,
    /// Messages given back by a failed producer, for the next one.
    salvaged: Mutex<Vec<Salvaged>>,
    /// Where OAUTHBEARER tokens come from (`kafka.auth = "entra"`).
    tokens: Option<TokenSource>,
}

/// librdkafka's callbacks (delivery reports, client errors and logs), one per producer.
struct Context(Arc<Shared>);

impl std::ops::Deref for Context {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Bits of a message's opaque that hold its event type, or [`RECORD`].
const TYPE_BITS: u32 = 4;
/// The "event type" of a change stream record that stands for no event of its own.
const RECORD: usize = EventType::COUNT;
const _: () = assert!(EventType::COUNT < 1 << TYPE_BITS);

/// A message's opaque: its event type's index in the low bits, its creation instant (in
/// microseconds since the sink's origin) above them.
fn opaque(event_type: usize, created_micros: u64) -> usize {
    ((created_micros as usize) << TYPE_BITS) | event_type
}

impl Shared {
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
    // Tokens for SASL OAUTHBEARER come from `generate_oauth_token`; librdkafka asks only when
    // that is the mechanism.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        let Some(tokens) = &self.tokens else {
            return Err("no credential for SASL OAUTHBEARER: set kafka.auth = \"entra\"".into());
        };
        match tokens.fetch() {
            Ok(token) => {
                tracing::info!(
                    credential = tokens.credential(),
                    principal = %token.principal,
                    expires_at_ms = token.expires_at_ms,
                    "Microsoft Entra ID token obtained for the Kafka endpoint"
                );
                Ok(rdkafka::client::OAuthToken {
                    token: token.value,
                    principal_name: token.principal,
                    lifetime_ms: token.expires_at_ms,
                })
            }
            Err(error) => {
                tracing::warn!(error = %error, "no Microsoft Entra ID token; librdkafka asks again");
                Err(Box::new(error))
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.stats.all_brokers_down.store(true, Ordering::Relaxed);
        }
        match code {
            Some(RDKafkaErrorCode::Fatal) => {
                // The sink builds a new producer when it next writes, and says so.
                self.stats.set_fatal(Some(reason.to_owned()));
            }
            Some(code) if is_permanent(code) => {
                self.stats.set_permanent(format!("{error}: {reason}"));
                tracing::error!(error = %error, reason, "Kafka client error that no retry can mend; the run stops");
            }
            _ => {
                if self.may_log(&format!("{error}")) {
                    tracing::warn!(error = %error, reason, "Kafka client error; librdkafka keeps retrying");
                }
            }
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
        let topic = EventType::ALL
            .get(event_type)
            .map_or(usize::MAX, |t| t.topic().index());
        match result {
            Ok(_) => {
                self.stats.connected.store(true, Ordering::Relaxed);
                self.stats
                    .failures_since_success
                    .store(0, Ordering::Relaxed);
                self.stats.all_brokers_down.store(false, Ordering::Relaxed);
                if event_type == RECORD {
                    return;
                }
                self.stats.delivered[topic].fetch_add(1, Ordering::Relaxed);
                self.metrics.delivered(EventType::ALL[event_type], 1);
                let created = Duration::from_micros((opaque >> TYPE_BITS) as u64);
                let latency = self.origin.elapsed().saturating_sub(created);
                self.metrics.latency.observe(latency.as_secs_f64());
            }
            Err((error, message)) => {
                let code = error.rdkafka_error_code();
                if code.is_some_and(is_producer_failure) || self.stats.fatal().is_some() {
                    // Not a failure of the message: the next producer sends it again.
                    let topic = self
                        .topics
                        .iter()
                        .position(|name| name == message.topic())
                        .unwrap_or(topic);
                    self.salvaged
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Salvaged {
                            topic,
                            key: message.key().unwrap_or_default().to_vec(),
                            payload: message.payload().map(<[u8]>::to_vec),
                            timestamp: message.timestamp().to_millis(),
                            opaque,
                        });
                    return;
                }
                match self.stats.failed.get(topic) {
                    Some(failed) => failed.fetch_add(1, Ordering::Relaxed),
                    None => self.stats.records_failed.fetch_add(1, Ordering::Relaxed),
                };
                self.stats
                    .failures_since_success
                    .fetch_add(1, Ordering::Relaxed);
                let reason = match code {
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
                    let note = self.stats.missing_note();
                    tracing::warn!(topic = message.topic(), %reason, error = %error, "a message was not delivered{note}");
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
    /// The change stream's keys' Confluent prefix (keys are Avro records there).
    key_prefix: Option<[u8; 5]>,
}

impl TopicSpec {
    /// The constants of topic `name`, whose values are of `schema`.
    fn new(
        name: String,
        schema: &apache_avro::Schema,
        prefix: Option<[u8; 5]>,
        key_prefix: Option<[u8; 5]>,
    ) -> Self {
        Self {
            name,
            schema_name: schema.name().map(|n| n.fullname(None)).unwrap_or_default(),
            fingerprint: format!("{}", schema.fingerprint::<apache_avro::rabin::Rabin>()),
            prefix,
            key_prefix,
        }
    }
}

/// The `kafka` sink.
pub struct KafkaSink {
    producer: TopicProducer<Context>,
    /// The producer's configuration, to build another after a fatal error.
    config: ClientConfig,
    shared: Arc<Shared>,
    stats: Arc<DeliveryStats>,
    topics: Vec<TopicSpec>,
    encoder: Encoder,
    /// The change stream, when the envelope is Debezium's: its streams are the topics.
    changes: Option<ChangeStream>,
    value: Vec<u8>,
    flush_timeout: Duration,
    origin: tokio::time::Instant,
    bootstrap: String,
    /// Producer restarts since the last successful delivery.
    fruitless_restarts: u32,
    /// Deliveries counted at the last restart.
    delivered_at_restart: u64,
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
    #[error(transparent)]
    Topic(TopicError),
    #[error("delivery cannot succeed: {0}")]
    Permanent(String),
    #[error(
        "the Kafka producer failed for good {restarts} times in a row, each new one delivering \
         nothing ({reason})"
    )]
    Restarts { restarts: u32, reason: String },
    #[error("cannot produce to `{topic}`: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "{in_flight} messages still unacknowledged after the {timeout} flush timeout ({source}){missing}"
    )]
    Unacknowledged {
        in_flight: i32,
        timeout: String,
        missing: String,
        #[source]
        source: KafkaError,
    },
    #[error("{failed} messages were not delivered ({reasons}){missing}")]
    Undelivered {
        failed: u64,
        reasons: String,
        missing: String,
    },
    #[error(
        "{in_flight} messages still undelivered after the {timeout} flush timeout ({source}); \
         failures so far: {reasons}{missing}"
    )]
    Unflushed {
        in_flight: i32,
        timeout: String,
        reasons: String,
        missing: String,
        #[source]
        source: KafkaError,
    },
}

/// The headers of every message of `spec`'s topic with events of `event_type`.
fn headers(spec: &TopicSpec, event_type: EventType) -> [(&'static CStr, &[u8]); 4] {
    [
        (c"event_type", event_type.as_str().as_bytes()),
        (c"schema", spec.schema_name.as_bytes()),
        (c"schema_fingerprint", spec.fingerprint.as_bytes()),
        (c"content-type", b"avro/binary"),
    ]
}

/// One message to produce.
struct Outgoing<'a> {
    topic: usize,
    key: &'a [u8],
    /// `None`: a tombstone.
    payload: Option<&'a [u8]>,
    timestamp: Option<i64>,
    opaque: usize,
}

impl KafkaSink {
    /// Creates the producer (and registers the schemas for the `confluent` framing). It does
    /// not wait for the cluster: [`KafkaSink::wait_for_cluster`] does. With `changes`, it
    /// publishes the change stream instead of the events.
    pub fn new(
        settings: &KafkaSettings,
        metrics: DeliveryMetrics,
        changes: Option<ChangeStream>,
    ) -> Result<Self, SinkError> {
        let schemas = schemas()?;
        // The Confluent prefix of a schema registered under `subject`, with that framing.
        let registered = |subject: String, text: &str| -> Result<Option<[u8; 5]>, SinkError> {
            match settings.config.framing {
                Framing::Raw => Ok(None),
                Framing::Confluent => {
                    let url = settings.schema_registry_url.as_deref().unwrap_or_default();
                    let id = register(url, &subject, text).map_err(KafkaSinkError::Registry)?;
                    tracing::info!(%subject, schema_id = id, "schema registered");
                    let mut prefix = [0u8; 5];
                    prefix[1..].copy_from_slice(&id.to_be_bytes());
                    Ok(Some(prefix))
                }
            }
        };
        let mut topics = Vec::with_capacity(Stream::COUNT);
        match &changes {
            None => {
                for topic in Topic::ALL {
                    let schema = schemas.get(topic);
                    let name = settings.config.topics[topic.index()].clone();
                    let text = crate::encoding::SCHEMA_TEXTS[topic.index()].1;
                    let prefix = registered(format!("{name}-value"), text)?;
                    topics.push(TopicSpec::new(name, schema, prefix, None));
                }
            }
            Some(changes) => {
                let cdc = crate::cdc::schemas();
                for (name, stream) in changes.settings().topics().into_iter().zip(&cdc.streams) {
                    // Whole, logical types included (the canonical form drops them).
                    let text = |schema| serde_json::to_string(schema).expect("a parsed schema");
                    let (key, value) = (text(&stream.key), text(&stream.value));
                    let prefix = registered(format!("{name}-value"), &value)?;
                    let key_prefix = registered(format!("{name}-key"), &key)?;
                    topics.push(TopicSpec::new(name, &stream.value, prefix, key_prefix));
                }
            }
        }

        let mut config = ClientConfig::new();
        for property in settings.producer_properties() {
            config.set(property.key.as_str(), property.value.expose());
        }
        let stats = Arc::new(DeliveryStats::default());
        let origin = tokio::time::Instant::now();
        let shared = Arc::new(Shared {
            stats: Arc::clone(&stats),
            metrics,
            origin,
            broker_totals: Mutex::new(BTreeMap::new()),
            last_logged: Mutex::new(BTreeMap::new()),
            topics: topics.iter().map(|t| t.name.clone()).collect(),
            salvaged: Mutex::new(Vec::new()),
            tokens: match &settings.target {
                KafkaTarget::Entra(connection) => Some(TokenSource::new(connection.clone())),
                _ => None,
            },
        });
        let producer = create_producer(&config, &shared)?;
        Ok(Self {
            producer,
            config,
            shared,
            stats,
            topics,
            encoder: Encoder::new()?,
            changes,
            value: Vec::with_capacity(1024),
            flush_timeout: settings.config.flush_timeout,
            origin,
            bootstrap: settings.target.bootstrap_servers(),
            fruitless_restarts: 0,
            delivered_at_restart: 0,
        })
    }

    /// Waits, up to 10 seconds or until `stop` says so, for the cluster's metadata, and
    /// names every configured topic the cluster lacks. An unreachable cluster is reported
    /// but not fatal: librdkafka keeps trying.
    pub fn wait_for_cluster(&self, stop: &dyn Fn() -> bool) {
        let bootstrap = &self.bootstrap;
        let started = tokio::time::Instant::now();
        loop {
            // Serves the client's events meanwhile: a token to fetch before connecting, the
            // errors that readiness reports.
            self.producer.base().poll(Duration::ZERO);
            match self
                .producer
                .base()
                .client()
                .fetch_metadata(None, CONNECT_ATTEMPT)
            {
                Ok(metadata) => {
                    self.stats.connected.store(true, Ordering::Relaxed);
                    tracing::info!(%bootstrap, brokers = metadata.brokers().len(), "connected to the Kafka cluster");
                    let present: BTreeSet<&str> = metadata
                        .topics()
                        .iter()
                        .filter(|t| t.error().is_none())
                        .map(|t| t.name())
                        .collect();
                    let missing: BTreeSet<String> = self
                        .topics
                        .iter()
                        .map(|t| t.name.clone())
                        .filter(|name| !present.contains(name.as_str()))
                        .collect();
                    for topic in &missing {
                        tracing::error!(%bootstrap, %topic, "the Kafka cluster has no such topic: its events cannot be delivered until it is created (or kafka.topics names one that exists)");
                    }
                    *self
                        .stats
                        .missing_topics
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = missing;
                    return;
                }
                Err(e) if stop() || started.elapsed() >= CONNECT_CHECK => {
                    tracing::warn!(
                        %bootstrap,
                        error = %e,
                        "cannot reach the Kafka cluster yet; events are queued and delivery is retried until the delivery timeout"
                    );
                    return;
                }
                Err(_) => {}
            }
        }
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

    /// Whether the producer has failed for good.
    fn producer_failed(&self) -> bool {
        self.stats.fatal().is_some() || self.producer.base().client().fatal_error().is_some()
    }

    /// Stops on a permanent failure; replaces a producer that failed for good.
    fn check(&mut self) -> Result<(), SinkError> {
        self.check_permanent()?;
        if self.producer_failed() {
            self.restart()?;
        }
        Ok(())
    }

    /// Replaces a producer that failed for good: it gets a moment to hear back about what it
    /// has in flight, what it gives back unacknowledged is sent again by a new producer.
    fn restart(&mut self) -> Result<(), SinkError> {
        let reason = match self.producer.base().client().fatal_error() {
            Some((code, reason)) => format!("{code:?}: {reason}"),
            None => self.stats.fatal().unwrap_or_default(),
        };
        let delivered: u64 = self.stats.delivered().iter().sum();
        if delivered > self.delivered_at_restart {
            self.fruitless_restarts = 0;
        }
        if self.fruitless_restarts >= MAX_FRUITLESS_RESTARTS {
            let error = KafkaSinkError::Restarts {
                restarts: self.fruitless_restarts,
                reason,
            };
            self.stats.set_permanent(error.to_string());
            return Err(error.into());
        }
        let _ = self.producer.base().flush(FATAL_DRAIN);
        let next = create_producer(&self.config, &self.shared)?;
        // Dropping the old producer purges what it still holds, into the salvage.
        drop(std::mem::replace(&mut self.producer, next));
        self.stats.set_fatal(None);
        let salvaged = std::mem::take(
            &mut *self
                .shared
                .salvaged
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        self.fruitless_restarts += 1;
        self.delivered_at_restart = delivered;
        self.shared.metrics.producer_restarts.inc();
        tracing::warn!(
            %reason,
            resent = salvaged.len(),
            "the Kafka producer failed for good (the cluster lost its state, or failed over); a new producer sends again every message not acknowledged, with the same event ids"
        );
        for message in &salvaged {
            self.produce(Outgoing {
                topic: message.topic,
                key: &message.key,
                payload: message.payload.as_deref(),
                timestamp: message.timestamp,
                opaque: message.opaque,
            })?;
            self.shared.metrics.resent.inc();
        }
        Ok(())
    }

    /// Hands one message to the producer, waiting while its queue is full and replacing it
    /// if it has failed for good.
    fn produce(&mut self, message: Outgoing<'_>) -> Result<(), SinkError> {
        let event_type = EventType::ALL.get(message.opaque & ((1 << TYPE_BITS) - 1));
        loop {
            let spec = &self.topics[message.topic];
            // The change stream's records, like Debezium's, carry no headers.
            let headers = match (&self.changes, event_type) {
                (None, Some(event_type)) => Some(headers(spec, *event_type)),
                _ => None,
            };
            let record = Record {
                topic: message.topic,
                key: message.key,
                payload: message.payload,
                timestamp: message.timestamp,
                headers: headers.as_ref().map_or(&[], |h| &h[..]),
            };
            match self.producer.send(&record, message.opaque) {
                Ok(()) => return Ok(()),
                Err((RDKafkaErrorCode::QueueFull, _)) => {
                    // Backpressure: wait for deliveries to make room, serving them.
                    self.producer.base().poll(QUEUE_FULL_BACKOFF);
                    self.check()?;
                }
                Err(_) if self.producer_failed() => self.restart()?,
                Err((code, _)) => {
                    return Err(KafkaSinkError::Produce {
                        topic: spec.name.clone(),
                        source: KafkaError::MessageProduction(code),
                    }
                    .into());
                }
            }
        }
    }

    /// Flushes the producer; one that fails for good meanwhile is replaced, and what it gave
    /// back flushed by the next.
    fn flush(&mut self) -> Result<(), KafkaError> {
        loop {
            let flushed = self.producer.base().flush(self.flush_timeout);
            let pending = !self
                .shared
                .salvaged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            if !(self.producer_failed() || pending) {
                return flushed;
            }
            if self.restart().is_err() {
                return flushed;
            }
        }
    }
}

impl KafkaSink {
    /// Serves every delivery report waiting, and the client's events met on the way.
    fn serve(&self) {
        serve_reports(self.producer.base());
    }

    /// Publishes `events`, one message each.
    fn write_events(&mut self, events: &[Event], created_micros: u64) -> Result<(), SinkError> {
        let mut key = itoa::Buffer::new();
        let mut value = std::mem::take(&mut self.value);
        let mut result = Ok(());
        for event in events {
            let topic = event.topic().index();
            value.clear();
            if let Some(prefix) = &self.topics[topic].prefix {
                value.extend_from_slice(prefix);
            }
            self.encoder.encode_into(event, &mut value);
            result = self.produce(Outgoing {
                topic,
                key: key.format(event.key()).as_bytes(),
                payload: Some(&value),
                timestamp: Some(event.event_time().as_millis()),
                opaque: opaque(event.event_type().index(), created_micros),
            });
            if result.is_err() {
                break;
            }
        }
        self.value = value;
        result
    }

    /// Publishes the change stream's records of `events`: each event's own row change counts
    /// it delivered; the others are counted only if they fail.
    fn write_changes(&mut self, events: &[Event], created_micros: u64) -> Result<(), SinkError> {
        let records = self
            .changes
            .as_mut()
            .expect("a change stream")
            .changes(events);
        let mut key = Vec::with_capacity(32);
        let mut value = std::mem::take(&mut self.value);
        let mut result = Ok(());
        for record in &records {
            let topic = record.stream.index();
            let spec = &self.topics[topic];
            key.clear();
            key.extend_from_slice(spec.key_prefix.as_ref().map_or(&[][..], |p| &p[..]));
            key.extend_from_slice(&record.key);
            let payload = record.value.as_ref().map(|datum| {
                value.clear();
                value.extend_from_slice(spec.prefix.as_ref().map_or(&[][..], |p| &p[..]));
                value.extend_from_slice(datum);
                &value[..]
            });
            let event_type = if record.primary {
                events[record.event].event_type().index()
            } else {
                RECORD
            };
            result = self.produce(Outgoing {
                topic,
                key: &key,
                payload,
                timestamp: Some(record.time.as_millis()),
                opaque: opaque(event_type, created_micros),
            });
            if result.is_err() {
                break;
            }
        }
        self.value = value;
        result
    }
}

/// Serves every delivery report `producer` has waiting, and the client's events met on the
/// way, on the calling thread; one poll serves one report, of a produce request's messages to
/// one partition.
pub fn serve_reports<C: ProducerContext>(producer: &BaseProducer<C>) {
    loop {
        let before = producer.in_flight_count();
        producer.poll(Duration::ZERO);
        if before == 0 || producer.in_flight_count() >= before {
            return;
        }
    }
}

/// A producer of `config`, with a handle of each of the sink's topics, whose callbacks report
/// to `shared`.
fn create_producer(
    config: &ClientConfig,
    shared: &Arc<Shared>,
) -> Result<TopicProducer<Context>, SinkError> {
    let producer = config
        .create_with_context(Context(Arc::clone(shared)))
        .map_err(KafkaSinkError::Producer)?;
    Ok(TopicProducer::new(producer, &shared.topics).map_err(KafkaSinkError::Topic)?)
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn write(&mut self, events: &[Event], created: tokio::time::Instant) -> Result<(), SinkError> {
        self.check()?;
        let created_micros = created.saturating_duration_since(self.origin).as_micros() as u64;
        let written = if self.changes.is_some() {
            self.write_changes(events, created_micros)
        } else {
            self.write_events(events, created_micros)
        };
        // The delivery reports that came meanwhile.
        self.serve();
        written
    }

    fn idle_interval(&self) -> Option<Duration> {
        Some(if self.producer.base().in_flight_count() > 0 {
            IN_FLIGHT_POLL
        } else {
            IDLE_POLL
        })
    }

    fn idle(&mut self) {
        self.serve();
    }

    fn checkpoint(&mut self) -> Result<SinkCheckpoint, SinkError> {
        // Everything produced before the save is acknowledged (or counted as failed) before
        // the save is written.
        let changes = self.changes.as_ref().map(ChangeStream::position);
        self.flush()
            .map_err(|source| KafkaSinkError::Unacknowledged {
                in_flight: self.producer.base().in_flight_count(),
                timeout: humantime::format_duration(self.flush_timeout).to_string(),
                missing: self.stats.missing_note(),
                source,
            })?;
        // Restarts given up on leave messages neither acknowledged nor failed.
        self.check_permanent()?;
        Ok(SinkCheckpoint {
            changes,
            ..SinkCheckpoint::default()
        })
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let result = self.flush();
        // Restarts given up on leave messages neither acknowledged nor failed: say why.
        self.check_permanent()?;
        let in_flight = self.producer.base().in_flight_count();
        let failed = self.stats.failed_messages();
        let missing = self.stats.missing_note();
        match result {
            Ok(()) if failed == 0 => Ok(()),
            Ok(()) => Err(KafkaSinkError::Undelivered {
                failed,
                reasons: format!("{:?}", self.stats.failure_reasons()),
                missing,
            }
            .into()),
            Err(source) => Err(KafkaSinkError::Unflushed {
                in_flight,
                timeout: humantime::format_duration(self.flush_timeout).to_string(),
                reasons: format!("{:?}", self.stats.failure_reasons()),
                missing,
                source,
            }
            .into()),
        }
    }

    fn delivered(&self) -> TopicCounts {
        self.stats.delivered()
    }
}
