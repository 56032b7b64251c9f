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

pub use file::{FileCodec, FileRecord, FileSettings, FileSink, Recovery, recover as recover_files};
pub use memory::MemorySink;
pub use null::NullSink;
pub use stdout::StdoutSink;

use std::path::PathBuf;

use tokio::time::Instant;

use crate::encoding::EncodingError;
use crate::model::{Event, Timestamp, TopicCounts};
use crate::settings::one_of;

crate::named! {
    /// Where events go.
    pub enum SinkKind {
        File = "file",
        Kafka = "kafka",
        Stdout = "stdout",
        Null = "null",
    }
}

crate::section! {
    /// Which sink events go to.
    pub struct SinkSettings in "sink" {
        /// Where events go: file (Avro files), kafka (Kafka or Event Hubs), stdout (JSON
        /// lines) or null (encode, discard).
        pub kind: SinkKind = one_of("KIND", "a sink", SinkKind::names()), flag = "--sink";
    }
}

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
    Kafka(Box<kafka::KafkaSinkError>),
    #[error(transparent)]
    Directory(#[from] crate::durable::LockError),
}

impl From<kafka::KafkaSinkError> for SinkError {
    fn from(error: kafka::KafkaSinkError) -> Self {
        SinkError::Kafka(Box::new(error))
    }
}

/// What a sink contributes to a save of the run: what recovery needs to restore its output
/// after a crash. Only the file sink has anything to say.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SinkCheckpoint {
    /// Files being written, or complete and waiting for the save to be renamed into place.
    pub files: Vec<FileRecord>,
}

/// A destination for events.
pub trait Sink: Send {
    /// A short name for logs: `file`, `stdout`, `null`...
    fn name(&self) -> &'static str;

    /// Takes a batch of events, in order, created at `created` (sinks that measure delivery
    /// latency use it).
    fn write(&mut self, events: &[Event], created: Instant) -> Result<(), SinkError>;

    /// Simulated time has reached `watermark`: finish whatever is complete (the file sink
    /// closes the files of hours that ended).
    fn advance(&mut self, _watermark: Timestamp) -> Result<(), SinkError> {
        Ok(())
    }

    /// A save of the run's state follows: make everything written so far durable (files
    /// synced, deliveries acknowledged) and return what the state must hold to restore this
    /// sink's output after a crash. Called only when the state is saved.
    fn checkpoint(&mut self) -> Result<SinkCheckpoint, SinkError> {
        Ok(SinkCheckpoint::default())
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
