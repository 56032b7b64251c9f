//! One JSON object per line on standard output, for people: amounts as decimal text, times as
//! RFC 3339, and the topic as the first field. With the change stream, one line per record:
//! `{"topic":…,"key":{…},"value":{…}}` (`"value":null` for a tombstone).

use std::io::{BufWriter, Stdout, Write};

use tokio::time::Instant;

use super::{Sink, SinkCheckpoint, SinkError, count_events};
use crate::cdc::ChangeStream;
use crate::metrics::DeliveryMetrics;
use crate::model::{Event, TopicCounts};

/// The `stdout` sink.
#[derive(Debug)]
pub struct StdoutSink<W: Write + Send = Stdout> {
    out: BufWriter<W>,
    delivered: TopicCounts,
    metrics: DeliveryMetrics,
    /// The change stream, with its topics, when the envelope is Debezium's.
    changes: Option<(ChangeStream, Vec<String>)>,
}

impl StdoutSink<Stdout> {
    /// Writes to the process's standard output.
    pub fn new() -> Self {
        Self::to_writer(std::io::stdout())
    }
}

impl Default for StdoutSink<Stdout> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Write + Send> StdoutSink<W> {
    /// Writes to any writer.
    pub fn to_writer(out: W) -> Self {
        Self {
            out: BufWriter::new(out),
            delivered: TopicCounts::default(),
            metrics: DeliveryMetrics::unregistered(),
            changes: None,
        }
    }

    /// Reports deliveries (every line written) to `metrics`.
    pub fn with_metrics(mut self, metrics: DeliveryMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Writes the change stream of the events instead (`--envelope debezium`).
    pub fn with_changes(mut self, changes: ChangeStream) -> Self {
        let topics = changes.settings().topics();
        self.changes = Some((changes.json(), topics));
        self
    }

    /// The writer, once closed.
    pub fn into_inner(self) -> Option<W> {
        self.out.into_inner().ok()
    }
}

/// Writes `event` as one line of JSON with its topic first.
fn write_line<W: Write>(out: &mut W, event: &Event) -> std::io::Result<()> {
    let body = serde_json::to_string(event).map_err(std::io::Error::other)?;
    // `body` is a JSON object: splice the topic in after its opening brace.
    writeln!(out, "{{\"topic\":\"{}\",{}", event.topic(), &body[1..])
}

impl<W: Write + Send> Sink for StdoutSink<W> {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn write(&mut self, events: &[Event], _created: Instant) -> Result<(), SinkError> {
        match &mut self.changes {
            Some((changes, topics)) => {
                for record in changes.changes(events) {
                    let value = record.value.as_deref().unwrap_or(b"null");
                    (|| {
                        self.out.write_all(b"{\"topic\":")?;
                        serde_json::to_writer(&mut self.out, &topics[record.stream.index()])?;
                        self.out.write_all(b",\"key\":")?;
                        self.out.write_all(&record.key)?;
                        self.out.write_all(b",\"value\":")?;
                        self.out.write_all(value)?;
                        self.out.write_all(b"}\n")
                    })()
                    .map_err(SinkError::Stdout)?;
                }
            }
            None => {
                for event in events {
                    write_line(&mut self.out, event).map_err(SinkError::Stdout)?;
                }
            }
        }
        for event in events {
            self.metrics.delivered(event.event_type(), 1);
        }
        count_events(&mut self.delivered, events);
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<SinkCheckpoint, SinkError> {
        self.out.flush().map_err(SinkError::Stdout)?;
        Ok(SinkCheckpoint {
            changes: self.changes.as_ref().map(|(c, _)| c.position()),
            ..SinkCheckpoint::default()
        })
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(SinkError::Stdout)
    }

    fn delivered(&self) -> TopicCounts {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Money, PaymentEvent, Timestamp};

    #[test]
    fn writes_one_readable_json_object_per_line() {
        let event = Event::Payment(PaymentEvent {
            row: Default::default(),
            event_id: uuid::Uuid::nil(),
            event_type: crate::model::EventType::PaymentCaptured,
            event_time: Timestamp::from_micros(1_700_000_000_123_000),
            payment_id: 5,
            order_id: 4,
            customer_id: 1,
            amount: Money::from_cents(12_345),
            currency: crate::model::CurrencyCode::USD,
            method: crate::model::PaymentMethod::Paypal,
            status: crate::model::PaymentStatus::Captured,
            attempt: 1,
            failure_reason: None,
        });
        let mut sink = StdoutSink::to_writer(Vec::new());
        sink.write(&[event.clone(), event], tokio::time::Instant::now())
            .unwrap();
        sink.close().unwrap();
        assert_eq!(sink.delivered(), [0, 0, 0, 2]);
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let value: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(value["topic"], "payments");
        assert_eq!(value["amount"], "123.45");
        assert_eq!(value["event_time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(value["failure_reason"], serde_json::Value::Null);
    }
}
