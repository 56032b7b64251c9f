//! Encodes every event to Avro and discards it: the cost of generation and encoding alone.

use super::{Sink, SinkError, count_events};
use tokio::time::Instant;

use crate::encoding::Encoder;
use crate::metrics::DeliveryMetrics;
use crate::model::{Event, TopicCounts};

/// The `null` sink.
#[derive(Debug)]
pub struct NullSink {
    encoder: Encoder,
    buffer: Vec<u8>,
    delivered: TopicCounts,
    metrics: DeliveryMetrics,
    /// Bytes encoded so far.
    pub bytes: u64,
}

impl NullSink {
    /// A null sink.
    pub fn new() -> Result<Self, SinkError> {
        Ok(Self {
            encoder: Encoder::new()?,
            buffer: Vec::with_capacity(1024),
            delivered: TopicCounts::default(),
            metrics: DeliveryMetrics::unregistered(),
            bytes: 0,
        })
    }

    /// Reports deliveries (every event encoded) to `metrics`.
    pub fn with_metrics(mut self, metrics: DeliveryMetrics) -> Self {
        self.metrics = metrics;
        self
    }
}

impl Sink for NullSink {
    fn name(&self) -> &'static str {
        "null"
    }

    fn write(&mut self, events: &[Event], _created: Instant) -> Result<(), SinkError> {
        for event in events {
            self.buffer.clear();
            self.encoder.encode_into(event, &mut self.buffer);
            self.bytes += self.buffer.len() as u64;
            self.metrics.delivered(event.event_type(), 1);
        }
        count_events(&mut self.delivered, events);
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn delivered(&self) -> TopicCounts {
        self.delivered
    }
}
