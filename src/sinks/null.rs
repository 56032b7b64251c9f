//! Encodes every event to Avro and discards it: the cost of generation and encoding alone.

use super::{Sink, SinkError, TopicCounts, count_events};
use crate::encoding::Encoder;
use crate::model::Event;

/// The `null` sink.
#[derive(Debug)]
pub struct NullSink {
    encoder: Encoder,
    buffer: Vec<u8>,
    delivered: TopicCounts,
    /// Bytes encoded so far.
    pub bytes: u64,
}

impl NullSink {
    /// A null sink.
    pub fn new() -> Result<Self, SinkError> {
        Ok(Self {
            encoder: Encoder::new()?,
            buffer: Vec::with_capacity(1024),
            delivered: [0; 4],
            bytes: 0,
        })
    }
}

impl Sink for NullSink {
    fn name(&self) -> &'static str {
        "null"
    }

    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        for event in events {
            self.buffer.clear();
            self.encoder.encode_into(event, &mut self.buffer)?;
            self.bytes += self.buffer.len() as u64;
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
