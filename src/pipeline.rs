//! The path from shoppers to a sink: one bounded channel, drained on a dedicated thread.
//!
//! Shoppers send batches of events through an [`Outbox`]; the simulation also sends the
//! clock's watermark, so the sink can complete what is due, and requests to save the run,
//! which travel behind every event produced before them. The bounded channel is the
//! backpressure: when the sink is slow, shoppers wait to send and simulated time waits with
//! them.
//!
//! On the sink's thread, [`drain`] passes every batch through the run's [`Recorder`] (the
//! ground-truth ledger and the injected faults) and on to the sink.
//!
//! Two things keep the hand-over cheap at a million events a second. The sink's thread, once
//! it finds the channel empty, looks again for a short while before it sleeps: a steady stream
//! of batches then never has to wake it (a wake-up costs the sender a system call); a sparse
//! one, at a real-time pace, is not worth the look, and the thread sleeps at once. And the
//! batches' vectors go back to the shoppers through a pool once written, so a step neither
//! allocates nor grows a vector, and no memory crosses from one thread's heap to the other's.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ledger::{LedgerError, LedgerState, Recorder};
use crate::metrics::{Health, PipelineMetrics};
use crate::model::{Event, Timestamp, TopicCounts};
use crate::sinks::{Sink, SinkCheckpoint, SinkError};
use crate::state::StateError;

/// Batches in flight between shoppers and the sink, at most.
pub const CHANNEL_CAPACITY: usize = 1024;

/// Empty vectors kept for the next batches, at most (in flight, the channel holds as many).
const POOL_CAPACITY: usize = 2 * CHANNEL_CAPACITY;
/// A vector that grew beyond this many events is not kept (a catalogue's batch, say).
const POOLED_EVENTS: usize = 64;
/// A new vector has room for this many events: more than a shopper's step makes.
const BATCH_EVENTS: usize = 8;
/// How many times the sink's thread looks at an empty channel before it sleeps: about 20 µs
/// here, longer than a busy run's gap between two batches.
const SPINS: u32 = 256;
/// A wait for the next message this long means the stream is sparse, and not worth spinning
/// for (a thousand batches a second or fewer).
const SPARSE_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

/// Events, in the order one producer made them, and when they were made.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    pub created: Instant,
}

impl Batch {
    /// A batch made now.
    pub fn now(events: Vec<Event>) -> Self {
        Self {
            events,
            created: Instant::now(),
        }
    }
}

/// What the output side (sink and ledger) contributes to a save of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputState {
    pub sink: SinkCheckpoint,
    pub ledger: LedgerState,
}

/// A save of the run, sent down the pipeline: called on the sink's thread with the output's
/// part once everything before it is durable, it writes the state and returns the instant the
/// saved run resumes from.
pub type SaveRequest = Box<dyn FnOnce(OutputState) -> Result<Timestamp, StateError> + Send>;

enum Message {
    Events(Batch),
    Watermark(Timestamp),
    Save(SaveRequest),
}

/// The sending end of the pipeline; clones share the channel.
#[derive(Clone)]
pub struct Outbox {
    sender: mpsc::Sender<Message>,
    pool: Arc<ArrayQueue<Vec<Event>>>,
}

/// The pipeline is closed: the sink's thread has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed;

/// A batch the pipeline could not take at once.
#[derive(Debug)]
pub enum TrySend {
    /// The pipeline is full: the batch, to send with waiting.
    Full(Batch),
    Closed,
}

impl Outbox {
    /// An empty vector for a batch: one the sink is done with, or a new one.
    pub fn buffer(&self) -> Vec<Event> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH_EVENTS))
    }

    /// Gives back a vector that [`Outbox::buffer`] gave and that was not sent.
    pub fn recycle(&self, events: Vec<Event>) {
        recycle(&self.pool, events);
    }

    /// Sends a batch, waiting while the pipeline is full.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        self.sender
            .send(Message::Events(batch))
            .await
            .map_err(|_| Closed)
    }

    /// Sends a batch if there is room now.
    pub fn try_send(&self, batch: Batch) -> Result<(), TrySend> {
        self.sender
            .try_send(Message::Events(batch))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(Message::Events(batch)) => TrySend::Full(batch),
                _ => TrySend::Closed,
            })
    }

    /// Tells the sink that simulated time has reached `at`.
    pub async fn watermark(&self, at: Timestamp) -> Result<(), Closed> {
        self.sender
            .send(Message::Watermark(at))
            .await
            .map_err(|_| Closed)
    }

    /// Asks for a save, behind everything sent before.
    pub async fn save(&self, request: SaveRequest) -> Result<(), Closed> {
        self.sender
            .send(Message::Save(request))
            .await
            .map_err(|_| Closed)
    }
}

/// Empties `events` and keeps it for a later batch, unless the pool is full or it grew large.
fn recycle(pool: &ArrayQueue<Vec<Event>>, mut events: Vec<Event>) {
    if events.capacity() <= POOLED_EVENTS {
        events.clear();
        // A full pool drops the vector.
        let _ = pool.push(events);
    }
}

/// The receiving end, for [`drain`].
pub struct Inbox {
    receiver: mpsc::Receiver<Message>,
    pool: Arc<ArrayQueue<Vec<Event>>>,
    /// Whether the stream is steady: the last message was already waiting, or came soon.
    steady: bool,
}

impl Inbox {
    /// The next message, waiting for one; `None` once every sender is gone and all is read.
    ///
    /// While the stream is steady, an empty channel is looked at again [`SPINS`] times before
    /// the thread sleeps, so a busy run's next batch never has to wake it. After a sleep of
    /// [`SPARSE_AFTER`] or more, the stream is sparse (a run at its real-time pace): the thread
    /// sleeps again as soon as it finds the channel empty, until a shorter sleep or a message
    /// already waiting says the stream is steady again.
    fn next(&mut self) -> Option<Message> {
        let spins = if self.steady { SPINS } else { 1 };
        for spin in 0..spins {
            match self.receiver.try_recv() {
                Ok(message) => {
                    self.steady = true;
                    return Some(message);
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) if spin % 16 == 15 => {
                    std::thread::yield_now();
                }
                Err(mpsc::error::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        let asleep = Instant::now();
        let message = self.receiver.blocking_recv();
        self.steady = asleep.elapsed() < SPARSE_AFTER;
        message
    }
}

/// A pipeline of [`CHANNEL_CAPACITY`] batches.
pub fn channel() -> (Outbox, Inbox) {
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let pool = Arc::new(ArrayQueue::new(POOL_CAPACITY));
    (
        Outbox {
            sender,
            pool: Arc::clone(&pool),
        },
        Inbox {
            receiver,
            pool,
            steady: false,
        },
    )
}

/// Why the output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot save the run's state: {0}")]
    State(#[from] StateError),
    #[error("cannot start the sink thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the sink thread ended without a report")]
    Vanished,
}

/// How the output fared.
#[derive(Debug)]
pub struct Delivery {
    /// Events delivered (by every sink, when there are several), by topic.
    pub delivered: TopicCounts,
    /// Events delivered by each sink, by topic.
    pub by_sink: Vec<(&'static str, TopicCounts)>,
    /// The first failure; after it, events are counted but not written.
    pub error: Option<OutputError>,
}

/// Where the pipeline's events end: the sink, behind the run's recorder (none for runs
/// embedded in tests and benchmarks).
pub struct Output {
    pub sink: Box<dyn Sink>,
    pub recorder: Option<Recorder>,
}

impl Output {
    /// Records `events`, then writes what the recorder lets through now.
    fn write(&mut self, events: &[Event], created: Instant) -> Result<(), OutputError> {
        match &mut self.recorder {
            Some(recorder) => self.sink.write(&recorder.take(events), created)?,
            None => self.sink.write(events, created)?,
        }
        Ok(())
    }

    /// Hands the sink what the recorder held back, if anything (held-back events count as
    /// created when they are released).
    fn release(&mut self, held: Vec<Event>) -> Result<(), OutputError> {
        if !held.is_empty() {
            self.sink.write(&held, Instant::now())?;
        }
        Ok(())
    }

    fn advance(&mut self, watermark: Timestamp) -> Result<(), OutputError> {
        let due = match &mut self.recorder {
            Some(recorder) => recorder.advance(watermark)?,
            None => Vec::new(),
        };
        self.release(due)?;
        Ok(self.sink.advance(watermark)?)
    }

    /// Completes `request` with the output's part, and lets the sink publish what the save
    /// covers. A sink that cannot make its output durable now (Kafka acknowledgements too
    /// slow) skips this save; a state that cannot be written is a failure.
    fn save(&mut self, request: SaveRequest, metrics: &PipelineMetrics) -> Result<(), OutputError> {
        // A save holds no event back: what faults held is released now.
        let held = self.recorder.as_mut().map(Recorder::release);
        self.release(held.unwrap_or_default())?;
        let sink = match self.sink.checkpoint() {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                tracing::warn!(error = %e, "the run's state was not saved this time; the previous save stands");
                metrics.save_skipped();
                return Ok(());
            }
        };
        let ledger = self
            .recorder
            .as_ref()
            .map(Recorder::state)
            .unwrap_or_default();
        let files = sink.files.len();
        let position = request(OutputState { sink, ledger })?;
        metrics.saved(position);
        tracing::debug!(%position, files, "state saved");
        Ok(self.sink.commit()?)
    }

    /// Releases what is held, closes the sink and writes the ledger's last hours; the first
    /// failure is returned, after every step was tried.
    fn close(&mut self) -> Result<(), OutputError> {
        let held = self.recorder.as_mut().map(Recorder::release);
        let released = self.release(held.unwrap_or_default());
        let closed = self.sink.close().map_err(OutputError::from);
        let finished = match &mut self.recorder {
            Some(recorder) => recorder.finish().map_err(OutputError::from),
            None => Ok(()),
        };
        released.and(closed).and(finished)
    }
}

/// Drains `inbox` into `output` until every sender is gone, then closes it. On a failure it
/// asks the simulation to stop (through `stop`) and keeps draining, counting what it can no
/// longer write, so every generated event is accounted for. After a failure no save is
/// written, so the last good one stands.
pub fn drain(
    mut output: Output,
    mut inbox: Inbox,
    mut metrics: PipelineMetrics,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Delivery {
    let mut error: Option<OutputError> = None;
    while let Some(message) = inbox.next() {
        let result = match message {
            Message::Events(batch) => {
                metrics.observe(&batch.events);
                let written = match error {
                    Some(_) => Ok(()),
                    None => output.write(&batch.events, batch.created),
                };
                recycle(&inbox.pool, batch.events);
                written
            }
            Message::Watermark(at) if error.is_none() => output.advance(at),
            Message::Save(request) if error.is_none() => output.save(request, &metrics),
            Message::Watermark(_) | Message::Save(_) => continue,
        };
        if let Err(e) = result {
            tracing::error!(sink = output.sink.name(), error = %e, "sink failed; stopping the simulation");
            health.set_sink_failure(e.to_string());
            error = Some(e);
            stop.cancel();
        }
    }
    // Even after a failure, completing what can be completed delivers more.
    if let Err(e) = output.close() {
        tracing::error!(sink = output.sink.name(), error = %e, "sink failed to close");
        error.get_or_insert(e);
    }
    Delivery {
        delivered: output.sink.delivered(),
        by_sink: output.sink.delivered_by_sink(),
        error,
    }
}
