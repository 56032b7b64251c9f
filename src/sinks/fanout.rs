//! Several sinks at once: every event goes to each, in order.
//!
//! An event counts as delivered when every sink delivered it (the least count per topic), and
//! each sink's own count is reported beside ([`Sink::delivered_by_sink`]). The first sink to
//! fail fails the run, like a single sink would: the pipeline stops the simulation and counts
//! the rest as not delivered.

use std::time::Duration;

use tokio::time::Instant;

use super::{Sink, SinkCheckpoint, SinkError};
use crate::model::{Event, Timestamp, TopicCounts};

/// Sinks written together.
pub struct FanOut {
    sinks: Vec<Box<dyn Sink>>,
}

impl FanOut {
    /// Writes to each of `sinks`, in this order.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { sinks }
    }

    /// Calls `step` on every sink, and returns the first failure after trying them all.
    fn each(
        &mut self,
        mut step: impl FnMut(&mut dyn Sink) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        let mut first = None;
        for sink in &mut self.sinks {
            if let Err(e) = step(sink.as_mut()) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Sink for FanOut {
    fn name(&self) -> &'static str {
        "fanout"
    }

    fn write(&mut self, events: &[Event], created: Instant) -> Result<(), SinkError> {
        for sink in &mut self.sinks {
            sink.write(events, created)?;
        }
        Ok(())
    }

    fn idle_interval(&self) -> Option<Duration> {
        self.sinks
            .iter()
            .filter_map(|sink| sink.idle_interval())
            .min()
    }

    fn idle(&mut self) {
        for sink in &mut self.sinks {
            sink.idle();
        }
    }

    fn advance(&mut self, watermark: Timestamp) -> Result<(), SinkError> {
        for sink in &mut self.sinks {
            sink.advance(watermark)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<SinkCheckpoint, SinkError> {
        let (mut files, mut changes) = (Vec::new(), None);
        for sink in &mut self.sinks {
            let checkpoint = sink.checkpoint()?;
            files.extend(checkpoint.files);
            // Each sink numbers the same changes alike: any one says where they stand.
            changes = changes.or(checkpoint.changes);
        }
        Ok(SinkCheckpoint { files, changes })
    }

    fn commit(&mut self) -> Result<(), SinkError> {
        self.each(|sink| sink.commit())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.each(|sink| sink.close())
    }

    fn delivered(&self) -> TopicCounts {
        let mut least = [u64::MAX; crate::model::Topic::COUNT];
        for sink in &self.sinks {
            for (l, d) in least.iter_mut().zip(sink.delivered()) {
                *l = (*l).min(d);
            }
        }
        if self.sinks.is_empty() {
            TopicCounts::default()
        } else {
            least
        }
    }

    fn delivered_by_sink(&self) -> Vec<(&'static str, TopicCounts)> {
        self.sinks
            .iter()
            .flat_map(|sink| sink.delivered_by_sink())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Topic;
    use crate::sinks::{MemorySink, NullSink};

    /// A sink that fails every write after the first `accept` batches.
    struct Failing {
        accept: usize,
        delivered: TopicCounts,
    }

    impl Sink for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn write(&mut self, events: &[Event], _: Instant) -> Result<(), SinkError> {
            if self.accept == 0 {
                return Err(SinkError::Stdout(std::io::Error::other("full")));
            }
            self.accept -= 1;
            crate::sinks::count_events(&mut self.delivered, events);
            Ok(())
        }
        fn close(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        fn delivered(&self) -> TopicCounts {
            self.delivered
        }
    }

    fn events(n: usize) -> Vec<Event> {
        use crate::model::{CurrencyCode, Money, PaymentEvent, PaymentMethod, PaymentStatus};
        (0..n as i64)
            .map(|i| {
                Event::Payment(PaymentEvent {
                    row: Default::default(),
                    event_id: uuid::Uuid::nil(),
                    event_type: PaymentStatus::Captured.event_type(),
                    event_time: Timestamp::from_micros(i),
                    payment_id: i,
                    order_id: i,
                    customer_id: 1,
                    amount: Money::from_cents(100),
                    currency: CurrencyCode::from_ascii(b"EUR"),
                    method: PaymentMethod::Paypal,
                    status: PaymentStatus::Captured,
                    attempt: 1,
                    failure_reason: None,
                })
            })
            .collect()
    }

    #[test]
    fn every_sink_gets_every_event_and_delivery_is_the_least_of_them() {
        let memory = MemorySink::new();
        let mut fanout = FanOut::new(vec![
            Box::new(NullSink::new().unwrap()),
            Box::new(memory.clone()),
            Box::new(Failing {
                accept: 1,
                delivered: TopicCounts::default(),
            }),
        ]);
        let batch = events(5);
        fanout.write(&batch, Instant::now()).unwrap();
        assert!(fanout.write(&batch, Instant::now()).is_err());
        fanout.close().unwrap();
        assert_eq!(
            memory.events().len(),
            10,
            "the sinks before the failing one"
        );
        let by_sink = fanout.delivered_by_sink();
        let names: Vec<_> = by_sink.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["null", "memory", "failing"]);
        let total = |c: &TopicCounts| c.iter().sum::<u64>();
        assert_eq!(total(&by_sink[0].1), 10);
        assert_eq!(total(&by_sink[2].1), 5);
        assert_eq!(fanout.delivered(), by_sink[2].1);
        assert_eq!(fanout.delivered()[Topic::Payments.index()], 5);
    }
}
