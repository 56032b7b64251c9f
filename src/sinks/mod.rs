//! Where events go.
//!
//! A [`Sink`] takes batches of events on one dedicated thread, in the order shoppers produced
//! them, and tells how many of each topic it has *delivered*: for files, written into a
//! complete file under its final name; for the other sinks, written out. The pipeline counts
//! what was generated, so anything generated and not delivered is reported, never lost
//! silently.

mod file;
pub mod kafka;
mod memory;
mod null;
mod stdout;

pub use file::{FileCodec, FileSink, Recovery, recover as recover_files};
pub use memory::MemorySink;
pub use null::NullSink;
pub use stdout::StdoutSink;

use std::path::PathBuf;

use crate::encoding::EncodingError;
use crate::model::{Event, Timestamp, Topic};

/// Per-topic event counts, indexed by [`Topic::index`].
pub type TopicCounts = [u64; 4];

/// Sink failures.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write an Avro file `{path}`: {source}")]
    Avro {
        path: PathBuf,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("the sink thread stopped abnormally: {0}")]
    Thread(String),
    #[error("cannot save the run's state: {0}")]
    State(String),
}

/// A destination for events.
pub trait Sink: Send {
    /// A short name for logs: `file`, `stdout`, `null`...
    fn name(&self) -> &'static str;

    /// Takes a batch of events, in order.
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError>;

    /// Takes a batch of events created at `created` (sinks that measure delivery latency
    /// use it); the same as [`Sink::write`] otherwise.
    fn write_created(
        &mut self,
        events: &[Event],
        _created: tokio::time::Instant,
    ) -> Result<(), SinkError> {
        self.write(events)
    }

    /// Simulated time has reached `watermark`: finish whatever is complete (the file sink
    /// closes the files of hours that ended).
    fn advance(&mut self, _watermark: Timestamp) -> Result<(), SinkError> {
        Ok(())
    }

    /// A save of the run's state follows: make everything written so far durable (files
    /// synced, deliveries acknowledged) and return what the state must hold to restore this
    /// sink's output after a crash. Called only when the state is saved.
    fn checkpoint(&mut self) -> Result<crate::state::SinkState, SinkError> {
        Ok(crate::state::SinkState::default())
    }

    /// The state covering the last checkpoint is saved: publish what it covers (the file sink
    /// renames the files it completed since the previous save).
    fn commit(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Flushes and closes everything. Called once, at the end.
    fn close(&mut self) -> Result<(), SinkError>;

    /// Events delivered so far, by topic.
    fn delivered(&self) -> TopicCounts;
}

/// Adds one to `counts` for each event of `events`.
pub fn count_events(counts: &mut TopicCounts, events: &[Event]) {
    for event in events {
        counts[event.topic().index()] += 1;
    }
}

/// The total of per-topic counts.
pub fn total(counts: &TopicCounts) -> u64 {
    counts.iter().sum()
}

/// Formats per-topic counts as `products=10 customers=3 ...`.
pub fn describe(counts: &TopicCounts) -> String {
    Topic::ALL
        .iter()
        .map(|t| format!("{t}={}", counts[t.index()]))
        .collect::<Vec<_>>()
        .join(" ")
}
