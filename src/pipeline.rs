//! The path from shoppers to a sink: one bounded channel, drained on a dedicated thread.
//!
//! Shoppers send batches of events; a ticker sends the clock's watermark so the sink can
//! complete what is due. The bounded channel is the backpressure: when the sink is slow,
//! shoppers wait to send and simulated time waits with them.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use tokio::time::Instant;

use crate::metrics::{Health, PipelineMetrics};
use crate::model::{Event, Timestamp};
use crate::sinks::{Sink, SinkError, TopicCounts};
use crate::state::{Snapshot, StateStore};

/// Batches in flight between shoppers and the sink, at most.
pub const CHANNEL_CAPACITY: usize = 1024;

/// What flows to the sink.
#[derive(Debug)]
pub enum Message {
    /// Events, in the order one shopper produced them, and when they were created.
    Events(Vec<Event>, Instant),
    /// Simulated time has reached this instant.
    Watermark(Timestamp),
    /// Save the run's state: every event produced before this snapshot came before it.
    Save(Box<Snapshot>),
}

/// How the sink fared.
#[derive(Debug)]
pub struct Delivery {
    /// Events delivered, by topic.
    pub delivered: TopicCounts,
    /// The first failure; after it, events are counted but not written.
    pub error: Option<SinkError>,
}

/// Drains `inbox` into `sink` until every sender is gone, then closes the sink. On a sink
/// failure it asks the simulation to stop (through `stop`) and keeps draining, counting what it
/// can no longer write, so every generated event is accounted for. Saves of the run's state
/// go to `store` (see [`crate::state`]); after a failure none is written, so the last good one
/// stands.
pub fn drain(
    mut sink: Box<dyn Sink>,
    mut inbox: mpsc::Receiver<Message>,
    metrics: PipelineMetrics,
    health: Arc<Health>,
    stop: CancellationToken,
    store: Option<StateStore>,
) -> Delivery {
    let mut error: Option<SinkError> = None;
    while let Some(message) = inbox.blocking_recv() {
        let result = match message {
            Message::Events(events, created) => {
                metrics.observe(&events);
                if error.is_some() {
                    continue;
                }
                sink.write_created(&events, created)
            }
            Message::Watermark(at) if error.is_none() => sink.advance(at),
            Message::Watermark(_) => continue,
            Message::Save(snapshot) => match (&store, &error) {
                (Some(store), None) => save(sink.as_mut(), store, *snapshot, &metrics),
                _ => continue,
            },
        };
        if let Err(e) = result {
            tracing::error!(sink = sink.name(), error = %e, "sink failed; stopping the simulation");
            health.set_sink_failure(e.to_string());
            error = Some(e);
            stop.cancel();
        }
    }
    // Even after a failure, completing what can be completed delivers more.
    if let Err(e) = sink.close() {
        tracing::error!(sink = sink.name(), error = %e, "sink failed to close");
        error.get_or_insert(e);
    }
    Delivery {
        delivered: sink.delivered(),
        error,
    }
}

/// Completes `snapshot` with the sink's part, writes it, and lets the sink publish what it
/// covers. A sink that cannot make its output durable now (Kafka acknowledgements too slow)
/// skips this save; a state that cannot be written is a failure.
fn save(
    sink: &mut dyn Sink,
    store: &StateStore,
    mut snapshot: Snapshot,
    metrics: &PipelineMetrics,
) -> Result<(), SinkError> {
    match sink.checkpoint() {
        Ok(state) => snapshot.sink = state,
        Err(e) => {
            tracing::warn!(error = %e, "the run's state was not saved this time; the previous save stands");
            metrics.save_skipped();
            return Ok(());
        }
    }
    store
        .save(&snapshot)
        .map_err(|e| SinkError::State(e.to_string()))?;
    metrics.saved(snapshot.position());
    tracing::debug!(
        saves = snapshot.saves,
        position = %snapshot.position(),
        files = snapshot.sink.files.len(),
        "state saved"
    );
    sink.commit()
}
