//! Where events go.
//!
//! A [`Sink`] takes batches of events on one dedicated thread, in the order shoppers produced
//! them, and tells how many of each topic it has *delivered*: for files, written into a
//! complete file under its final name; for the other sinks, written out. The pipeline counts
//! what was generated, so anything generated and not delivered is reported, never lost
//! silently.

mod fanout;
mod file;
pub mod kafka;
mod memory;
mod null;
mod stdout;

pub use fanout::FanOut;
pub use file::{FileCodec, FileRecord, FileSettings, FileSink, Recovery, recover as recover_files};
pub use memory::MemorySink;
pub use null::NullSink;
pub use stdout::StdoutSink;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::cdc::Envelope;
use crate::encoding::EncodingError;
use crate::model::{Event, Timestamp, TopicCounts};
use crate::settings::{Describe, Invalid, Parser, Printed, one_of, quoted, text_of};

crate::named! {
    /// Where events go.
    pub enum SinkKind {
        File = "file",
        Kafka = "kafka",
        Stdout = "stdout",
        Null = "null",
    }
}

/// The sinks of a run: one or more, each at most once, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkKinds(Vec<SinkKind>);

impl SinkKinds {
    /// Parses `file`, `kafka,file`...: kinds separated by commas, none twice.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut kinds = Vec::new();
        for name in text.split(',').map(str::trim) {
            let kind: SinkKind = name.parse().map_err(|_| {
                format!(
                    "`{name}` is not a sink: expected one of {} (several separated by commas)",
                    SinkKind::names()
                )
            })?;
            if kinds.contains(&kind) {
                return Err(format!("`{name}` is given twice in `{text}`"));
            }
            kinds.push(kind);
        }
        Ok(Self(kinds))
    }

    /// One sink.
    pub fn one(kind: SinkKind) -> Self {
        Self(vec![kind])
    }

    /// Whether `kind` is one of them.
    pub fn contains(&self, kind: SinkKind) -> bool {
        self.0.contains(&kind)
    }

    /// Each, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = SinkKind> + '_ {
        self.0.iter().copied()
    }

    /// Their names.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|k| k.as_str()).collect()
    }
}

impl std::fmt::Display for SinkKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// `sink.kinds`: text like `kafka,file`, or a TOML list of names.
struct KindsParser;

impl Describe for KindsParser {
    fn value_name(&self) -> &'static str {
        "KIND[,KIND]"
    }
    fn allowed(&self) -> String {
        format!(
            "one or more of {}, separated by commas, none twice",
            SinkKind::names()
        )
    }
}

impl Parser for KindsParser {
    type Value = SinkKinds;
    fn parse(&self, value: &::config::Value) -> Result<SinkKinds, Invalid> {
        let text = match &value.kind {
            ::config::ValueKind::Array(items) => items
                .iter()
                .map(text_of)
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => text_of(value)?,
        };
        SinkKinds::parse(&text).map_err(|message| vec![(String::new(), message)])
    }
    fn print(&self, kinds: &SinkKinds) -> Printed {
        Printed::Value(quoted(&kinds.to_string()))
    }
}

crate::section! {
    /// Which sinks events go to.
    pub struct SinkSettings in "sink" {
        /// Where events go: file (Avro files), kafka (Kafka or Event Hubs), stdout (JSON
        /// lines) or null (encode, discard); several separated by commas (kafka,file) each
        /// get every event.
        pub kinds: SinkKinds = KindsParser, flag = "--sink";
        /// What is published: events (the business events, a topic per entity) or debezium
        /// (the change stream of the shop's tables, a topic per table, in Debezium's
        /// envelope).
        pub envelope: Envelope = one_of("ENVELOPE", "an envelope", Envelope::names()),
            flag = "--envelope", identity = true;
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
    /// Where the change stream stands (`--envelope debezium`): its next numbers.
    pub changes: Option<crate::cdc::Position>,
}

/// A destination for events.
pub trait Sink: Send {
    /// A short name for logs: `file`, `stdout`, `null`...
    fn name(&self) -> &'static str;

    /// Takes a batch of events, in order, created at `created` (sinks that measure delivery
    /// latency use it).
    fn write(&mut self, events: &[Event], created: Instant) -> Result<(), SinkError>;

    /// How long the sink may be left waiting for events before [`Sink::idle`] must run;
    /// `None` (the default) when nothing happens in the sink between writes.
    fn idle_interval(&self) -> Option<Duration> {
        None
    }

    /// No events came for [`Sink::idle_interval`]: serve what arrived meanwhile (the Kafka
    /// sink's delivery reports and client events).
    fn idle(&mut self) {}

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

    /// Events delivered so far by each sink this one is made of, by name: itself, unless it
    /// writes to several.
    fn delivered_by_sink(&self) -> Vec<(&'static str, TopicCounts)> {
        vec![(self.name(), self.delivered())]
    }
}

/// Adds one to `counts` for each event of `events`.
pub fn count_events(counts: &mut TopicCounts, events: &[Event]) {
    for event in events {
        counts[event.topic().index()] += 1;
    }
}
