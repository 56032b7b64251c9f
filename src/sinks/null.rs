//! Encodes every event to Avro and discards it: the cost of generation and encoding alone.

use super::{Sink, SinkError, count_events};
use tokio::time::Instant;

use crate::cdc::ChangeStream;
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
    /// The change stream, when the envelope is Debezium's.
    changes: Option<ChangeStream>,
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
            changes: None,
        })
    }

    /// Encodes the change stream of the events instead (`--envelope debezium`).
    pub fn with_changes(mut self, changes: ChangeStream) -> Self {
        self.changes = Some(changes);
        self
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
        match &mut self.changes {
            Some(changes) => {
                for record in changes.changes(events) {
                    self.bytes += (record.key.len() + record.value.map_or(0, |v| v.len())) as u64;
                }
            }
            None => {
                for event in events {
                    self.buffer.clear();
                    self.encoder.encode_into(event, &mut self.buffer);
                    self.bytes += self.buffer.len() as u64;
                }
            }
        }
        for event in events {
            self.metrics.delivered(event.event_type(), 1);
        }
        count_events(&mut self.delivered, events);
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<super::SinkCheckpoint, SinkError> {
        Ok(super::SinkCheckpoint {
            changes: self.changes.as_ref().map(ChangeStream::position),
            ..Default::default()
        })
    }

    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn delivered(&self) -> TopicCounts {
        self.delivered
    }
}
