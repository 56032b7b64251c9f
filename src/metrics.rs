//! Prometheus metrics and health.
//!
//! Each component owns a metrics struct, registered into the one [`Registry`] handed down at
//! start; there are no global metrics. Names follow Prometheus conventions: the `simulator_`
//! prefix, base units (seconds, bytes), `_total` for counters, low-cardinality labels (topic,
//! event type, channel, status, method, currency, reason, broker).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::model::{
    Channel, CurrencyCode, Event, EventType, OrderStatus, PaymentMethod, PaymentStatus, Timestamp,
    TopicCounts,
};

fn per_event_type(vec: &IntCounterVec) -> [IntCounter; EventType::COUNT] {
    EventType::ALL.map(|t| vec.with_label_values(&[t.topic().as_str(), t.as_str()]))
}

fn per_event_type_of(vec: &IntCounterVec, sink: &str) -> [IntCounter; EventType::COUNT] {
    EventType::ALL.map(|t| vec.with_label_values(&[sink, t.topic().as_str(), t.as_str()]))
}

/// The series of `vec` with `labels`, looked up the first time and kept in `series`.
fn labelled<'a>(
    series: &'a mut Option<IntCounter>,
    vec: &IntCounterVec,
    labels: [&str; 2],
) -> &'a IntCounter {
    series.get_or_insert_with(|| vec.with_label_values(&labels))
}

/// What the pipeline sees go by: events generated and the business they represent.
///
/// Every event passes through [`PipelineMetrics::observe`], so the labelled series it counts
/// into are looked up once each, on first use (a series appears when it is first counted, as
/// it would through the vector), and kept in dense arrays by the labels' indices.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    generated: [IntCounter; EventType::COUNT],
    orders: IntCounterVec,
    payments: IntCounterVec,
    revenue: CounterVec,
    refunds: CounterVec,
    /// `orders` by channel and status, once counted.
    orders_by: [[Option<IntCounter>; OrderStatus::COUNT]; Channel::COUNT],
    /// `payments` by method and status, once counted.
    payments_by: [[Option<IntCounter>; PaymentStatus::COUNT]; PaymentMethod::COUNT],
    /// `revenue` and `refunds` of each currency counted so far (a run has a handful).
    money_by: Vec<(CurrencyCode, Counter, Counter)>,
    saves: IntCounterVec,
    saved_position: prometheus::Gauge,
}

impl PipelineMetrics {
    /// Registers the pipeline's metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let generated = IntCounterVec::new(
            Opts::new(
                "simulator_events_generated_total",
                "Events generated, by topic and event type.",
            ),
            &["topic", "event_type"],
        )?;
        let orders = IntCounterVec::new(
            Opts::new(
                "simulator_orders_total",
                "Order events, by sales channel and order status.",
            ),
            &["channel", "status"],
        )?;
        let payments = IntCounterVec::new(
            Opts::new(
                "simulator_payments_total",
                "Payment events, by method and status.",
            ),
            &["method", "status"],
        )?;
        let revenue = CounterVec::new(
            Opts::new(
                "simulator_revenue_total",
                "Captured payments, in units of the currency.",
            ),
            &["currency"],
        )?;
        registry.register(Box::new(generated.clone()))?;
        registry.register(Box::new(orders.clone()))?;
        registry.register(Box::new(payments.clone()))?;
        let refunds = CounterVec::new(
            Opts::new(
                "simulator_refunds_total",
                "Refunded payments (cancellations and returns), in units of the currency.",
            ),
            &["currency"],
        )?;
        registry.register(Box::new(revenue.clone()))?;
        registry.register(Box::new(refunds.clone()))?;
        let saves = IntCounterVec::new(
            Opts::new(
                "simulator_state_saves_total",
                "Saves of the run's state (--state-dir), by result: saved, or skipped when the \
                 sink could not make its output durable in time.",
            ),
            &["result"],
        )?;
        let saved_position = prometheus::Gauge::new(
            "simulator_state_saved_position_seconds",
            "Simulated instant (Unix seconds) from which the last saved state resumes.",
        )?;
        registry.register(Box::new(saves.clone()))?;
        registry.register(Box::new(saved_position.clone()))?;
        Ok(Self {
            generated: per_event_type(&generated),
            orders,
            payments,
            revenue,
            refunds,
            orders_by: Default::default(),
            payments_by: Default::default(),
            money_by: Vec::new(),
            saves,
            saved_position,
        })
    }

    /// Counts a save of the run's state that was written, resuming from `position`.
    pub fn saved(&self, position: Timestamp) {
        self.saves.with_label_values(&["saved"]).inc();
        self.saved_position.set(position.as_micros() as f64 / 1e6);
    }

    /// Counts a save of the run's state that was skipped.
    pub fn save_skipped(&self) {
        self.saves.with_label_values(&["skipped"]).inc();
    }

    /// Events generated so far, by topic (the sum of the per-event-type counters).
    pub fn generated(&self) -> TopicCounts {
        let mut counts = TopicCounts::default();
        for (event_type, counter) in EventType::ALL.iter().zip(&self.generated) {
            counts[event_type.topic().index()] += counter.get();
        }
        counts
    }

    /// Counts a batch of generated events.
    pub fn observe(&mut self, events: &[Event]) {
        for event in events {
            self.generated[event.event_type().index()].inc();
            match event {
                Event::Order(o) => {
                    let series = &mut self.orders_by[o.channel.index()][o.status.index()];
                    labelled(
                        series,
                        &self.orders,
                        [o.channel.as_str(), o.status.as_str()],
                    )
                    .inc();
                }
                Event::Payment(p) => {
                    let status = p.status;
                    let series = &mut self.payments_by[p.method.index()][status.index()];
                    labelled(series, &self.payments, [p.method.as_str(), status.as_str()]).inc();
                    let amount = p.amount.cents() as f64 / 100.0;
                    match status {
                        PaymentStatus::Captured => self.money(p.currency).0.inc_by(amount),
                        PaymentStatus::Refunded => self.money(p.currency).1.inc_by(amount),
                        PaymentStatus::Authorized | PaymentStatus::Declined => {}
                    }
                }
                Event::Customer(_) | Event::Product(_) => {}
            }
        }
    }

    /// The revenue and refunds series of `currency`.
    fn money(&mut self, currency: CurrencyCode) -> (&Counter, &Counter) {
        let at = match self.money_by.iter().position(|(c, ..)| *c == currency) {
            Some(at) => at,
            None => {
                let label = [currency.as_str()];
                self.money_by.push((
                    currency,
                    self.revenue.with_label_values(&label),
                    self.refunds.with_label_values(&label),
                ));
                self.money_by.len() - 1
            }
        };
        let (_, revenue, refunds) = &self.money_by[at];
        (revenue, refunds)
    }
}

/// What a sink reports about delivery.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    delivered_by_sink: IntCounterVec,
    /// The counters of the sink these metrics were handed to ([`DeliveryMetrics::for_sink`]).
    delivered: [IntCounter; EventType::COUNT],
    failures: IntCounterVec,
    /// From the event's creation to its delivery report, in seconds.
    pub latency: Histogram,
    pub queue_messages: IntGauge,
    pub queue_bytes: IntGauge,
    pub queue_max_messages: IntGauge,
    pub broker_rtt: GaugeVec,
    pub broker_throttle: GaugeVec,
    pub broker_tx_errors: IntCounterVec,
    pub broker_tx_retries: IntCounterVec,
    pub broker_up: IntGaugeVec,
    /// New producers built after a fatal error of the previous one.
    pub producer_restarts: IntCounter,
    /// Messages sent again by a new producer, unacknowledged by the one before.
    pub resent: IntCounter,
}

impl DeliveryMetrics {
    /// Registers the delivery metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let delivered = IntCounterVec::new(
            Opts::new(
                "simulator_events_delivered_total",
                "Events delivered (acknowledged by the broker, or in a complete file), by sink, topic and event type.",
            ),
            &["sink", "topic", "event_type"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "simulator_delivery_failures_total",
                "Events that could not be delivered, by reason.",
            ),
            &["reason"],
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "simulator_delivery_latency_seconds",
                "Time from an event's creation to its delivery report.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
        )?;
        let queue_messages = IntGauge::new(
            "simulator_producer_queue_messages",
            "Messages waiting in the producer's queue.",
        )?;
        let queue_bytes = IntGauge::new(
            "simulator_producer_queue_bytes",
            "Bytes waiting in the producer's queue.",
        )?;
        let queue_max_messages = IntGauge::new(
            "simulator_producer_queue_max_messages",
            "Capacity of the producer's queue, in messages.",
        )?;
        let broker_rtt = GaugeVec::new(
            Opts::new(
                "simulator_kafka_broker_rtt_seconds",
                "Average request round-trip time to each broker.",
            ),
            &["broker"],
        )?;
        let broker_throttle = GaugeVec::new(
            Opts::new(
                "simulator_kafka_broker_throttle_seconds",
                "Average throttle time each broker imposed.",
            ),
            &["broker"],
        )?;
        let broker_tx_errors = IntCounterVec::new(
            Opts::new(
                "simulator_kafka_broker_tx_errors_total",
                "Transmission errors, by broker.",
            ),
            &["broker"],
        )?;
        let broker_tx_retries = IntCounterVec::new(
            Opts::new(
                "simulator_kafka_broker_tx_retries_total",
                "Request retries, by broker.",
            ),
            &["broker"],
        )?;
        let broker_up = IntGaugeVec::new(
            Opts::new(
                "simulator_kafka_broker_up",
                "1 when the connection to the broker is up.",
            ),
            &["broker"],
        )?;
        let producer_restarts = IntCounter::new(
            "simulator_kafka_producer_restarts_total",
            "Kafka producers built anew after a fatal error of the previous one (a broker that lost its producer state).",
        )?;
        let resent = IntCounter::new(
            "simulator_kafka_messages_resent_total",
            "Messages a new Kafka producer sent again because the previous one never had them acknowledged.",
        )?;
        registry.register(Box::new(producer_restarts.clone()))?;
        registry.register(Box::new(resent.clone()))?;
        registry.register(Box::new(delivered.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(queue_messages.clone()))?;
        registry.register(Box::new(queue_bytes.clone()))?;
        registry.register(Box::new(queue_max_messages.clone()))?;
        registry.register(Box::new(broker_rtt.clone()))?;
        registry.register(Box::new(broker_throttle.clone()))?;
        registry.register(Box::new(broker_tx_errors.clone()))?;
        registry.register(Box::new(broker_tx_retries.clone()))?;
        registry.register(Box::new(broker_up.clone()))?;
        Ok(Self {
            delivered: per_event_type_of(&delivered, "none"),
            delivered_by_sink: delivered,
            failures,
            latency,
            queue_messages,
            queue_bytes,
            queue_max_messages,
            broker_rtt,
            broker_throttle,
            broker_tx_errors,
            broker_tx_retries,
            broker_up,
            producer_restarts,
            resent,
        })
    }

    /// Metrics registered nowhere, for sinks built without a registry.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry accepts every metric")
    }

    /// The same metrics, counting deliveries under `sink` (the sink's name, like `file`).
    pub fn for_sink(&self, sink: &str) -> Self {
        Self {
            delivered: per_event_type_of(&self.delivered_by_sink, sink),
            ..self.clone()
        }
    }

    /// Counts `count` delivered events of `event_type`.
    pub fn delivered(&self, event_type: EventType, count: u64) {
        self.delivered[event_type.index()].inc_by(count);
    }

    /// Counts a failed delivery.
    pub fn failed(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }
}

/// What the simulation itself reports.
#[derive(Debug, Clone)]
pub struct SimulationMetrics {
    pub target_rate: Gauge,
    pub shoppers_active: IntGauge,
    pub simulated_time: Gauge,
}

impl SimulationMetrics {
    /// Registers the simulation's metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let target_rate = Gauge::new(
            "simulator_target_orders_per_second",
            "The configured long-run rate of orders, per second.",
        )?;
        let shoppers_active = IntGauge::new("simulator_shoppers_active", "Shopper tasks running.")?;
        let simulated_time = Gauge::new(
            "simulator_simulated_time_seconds",
            "The simulation clock, in seconds since the Unix epoch.",
        )?;
        registry.register(Box::new(target_rate.clone()))?;
        registry.register(Box::new(shoppers_active.clone()))?;
        registry.register(Box::new(simulated_time.clone()))?;
        Ok(Self {
            target_rate,
            shoppers_active,
            simulated_time,
        })
    }
}

/// Registers the process metrics (CPU, memory, file descriptors), `simulator_build_info` and
/// `simulator_sink_info{sink}` (the sinks this process writes to, one series each, for alerts
/// that apply to one).
pub fn register_process(registry: &Registry, sinks: &[&str]) -> prometheus::Result<()> {
    let sink_info = IntGaugeVec::new(
        Opts::new("simulator_sink_info", "A sink in use; always 1."),
        &["sink"],
    )?;
    for sink in sinks {
        sink_info.with_label_values(&[sink]).set(1);
    }
    registry.register(Box::new(sink_info))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let info = IntGaugeVec::new(
        Opts::new("simulator_build_info", "Build information; always 1."),
        &["version"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(info))?;
    Ok(())
}

/// A check of whether a sink can deliver: `Err` says why not.
pub type SinkProbe = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Liveness and readiness, shared between the simulation and the HTTP endpoints.
#[derive(Default)]
pub struct Health {
    shoppers_running: AtomicBool,
    serving_only: AtomicBool,
    sink_failure: Mutex<Option<String>>,
    probe: Mutex<Option<SinkProbe>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("shoppers_running", &self.shoppers_running)
            .finish()
    }
}

impl Health {
    /// A fresh health record, not ready.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// This process only serves files (`simulator serve`): it has no shoppers to wait for.
    pub fn set_serving_only(&self) {
        self.serving_only.store(true, Ordering::Relaxed);
    }

    /// The shoppers started or stopped.
    pub fn set_shoppers_running(&self, running: bool) {
        self.shoppers_running.store(running, Ordering::Relaxed);
    }

    /// The sink failed for good.
    pub fn set_sink_failure(&self, reason: String) {
        *self.sink_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Installs the sink's own check (the Kafka sink's connection and recent deliveries).
    pub fn set_probe(&self, probe: SinkProbe) {
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(probe);
    }

    /// `Ok` when shoppers run and the sink can deliver; otherwise why not, the root cause
    /// first: a failed sink stops the shoppers, and the failure is what to report.
    pub fn ready(&self) -> Result<(), String> {
        if let Some(reason) = &*self.sink_failure.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(format!("the sink failed: {reason}"));
        }
        if let Some(probe) = &*self.probe.lock().unwrap_or_else(|e| e.into_inner()) {
            probe()?;
        }
        if !self.shoppers_running.load(Ordering::Relaxed)
            && !self.serving_only.load(Ordering::Relaxed)
        {
            return Err("shoppers are not running".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_root_cause_first() {
        let health = Health::new();
        assert_eq!(
            health.ready(),
            Err("shoppers are not running".to_owned()),
            "not ready before the shoppers start"
        );
        health.set_shoppers_running(true);
        assert_eq!(health.ready(), Ok(()));
        health.set_probe(Box::new(|| {
            Err("the Kafka cluster has no topic `orders`".into())
        }));
        assert_eq!(
            health.ready(),
            Err("the Kafka cluster has no topic `orders`".to_owned())
        );
        // A failed sink stops the shoppers: the failure, not the stopped shoppers, is the reason.
        health.set_sink_failure("delivery cannot succeed: TopicAuthorizationFailed".into());
        health.set_shoppers_running(false);
        assert_eq!(
            health.ready(),
            Err("the sink failed: delivery cannot succeed: TopicAuthorizationFailed".to_owned())
        );
    }
}
