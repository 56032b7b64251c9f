//! The path from shoppers to a sink: one bounded channel, drained on a dedicated thread.
//!
//! Shoppers send batches of events through an [`Outbox`]; the simulation also sends the
//! clock's watermark, so the sink can complete what is due, and requests to save the run,
//! which travel behind every event produced before them. The bounded channel is the
//! backpressure: when the sink is slow, shoppers wait to send and simulated time waits with
//! them.
//!
//! On the sink's thread, [`drain`] passes every batch through the run's [`Recorder`] (the
//! ground-truth ledger and the injected faults) and on to the sink. A sink with work of its own
//! between batches (Kafka's delivery reports) gives a time limit ([`Sink::idle_interval`]):
//! the thread waits for the next batch no longer than that, then lets the sink do it
//! ([`Sink::idle`]).
//!
//! Three things keep the hand-over cheap at a million events a second.
//! - **Lanes.** A step does not send its events itself: it stages them in its thread's lane,
//!   one of a few vectors, each behind its own lock, and a lane goes down the channel as one
//!   batch. At `--speed max` a lane is sent when it is full ([`LANE_EVENTS`]) and whenever the
//!   virtual clock finds every participant asleep ([`Outbox::on_idle`]): a batch then holds the
//!   events of a clock's whole batch of wake-ups made on one thread, some hundreds, rather than
//!   a step's two or three, and while the sink keeps up, events of different shoppers stay
//!   within the clock's skew of each other. At a real-time pace a lane is sent at every step, as soon as it has events.
//!   A watermark and a save send every lane first, so they still travel behind every event made
//!   before them, and a participant that finds itself on another thread sends the lane it left
//!   first if its events are still there, so each participant's events stay in order.
//! - **A patient sink.** The sink's thread, once it finds the channel empty, looks again for a
//!   short while before it sleeps: a steady stream of batches then never has to wake it (a
//!   wake-up costs the sender a system call); a sparse one, at a real-time pace, is not worth the
//!   look, and the thread sleeps at once.
//! - **Recycled vectors.** The batches' vectors go back to the lanes through a pool once
//!   written, so staging neither allocates nor grows a vector, and no memory crosses from one
//!   thread's heap to the other's.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Wake, Waker};
use std::time::Duration;

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
pub const CHANNEL_CAPACITY: usize = 64;
/// At `--speed max`, a lane holding this many events is sent at once (some 70 KiB).
pub const LANE_EVENTS: usize = 256;
/// Lanes of an outbox: more than this machine's worker threads, so that each usually has its
/// own; threads beyond share them.
const LANES: usize = 16;

/// Empty vectors kept for the next batches, at most (in flight, the channel holds as many).
const POOL_CAPACITY: usize = 2 * CHANNEL_CAPACITY;
/// A vector that grew beyond this many events is not kept (a catalogue's batch, say).
const POOLED_EVENTS: usize = 2 * LANE_EVENTS;
/// A new vector has room for this many events at least: more than a shopper's step makes (at
/// `--speed max`, for a full lane).
const BATCH_EVENTS: usize = 8;
/// How many times the sink's thread looks at an empty channel before it sleeps: about 20 µs
/// here, longer than a busy run's gap between two batches.
const SPINS: u32 = 256;
/// A wait for the next message this long means the stream is sparse, and not worth spinning
/// for (a thousand batches a second or fewer).
const SPARSE_AFTER: Duration = Duration::from_millis(1);

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

/// The sending end of the pipeline; clones share the channel and the lanes.
#[derive(Clone)]
pub struct Outbox {
    sender: mpsc::Sender<Message>,
    lanes: Arc<Lanes>,
}

/// Events staged on their way to the channel, a lane per thread, and the pool their vectors
/// come from.
struct Lanes {
    lanes: [Padded<LaneCell>; LANES],
    pool: Arc<ArrayQueue<Vec<Event>>>,
    /// A lane holding this many events is sent at once.
    full: usize,
}

/// A value alone on its cache lines, so that two threads' lanes do not share one.
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Default)]
struct LaneCell {
    lane: Mutex<Lane>,
    /// Bumped each time the lane is sent, under its lock and before the lock is let go: a
    /// participant that staged here at generation `g` has its events still here while the lane
    /// is at `g`. Read without the lock, by participants that moved to another thread.
    generation: AtomicU32,
}

#[derive(Default)]
struct Lane {
    events: Vec<Event>,
    /// When the first of `events` was staged.
    created: Option<Instant>,
}

impl Lanes {
    fn lock(&self, lane: usize) -> MutexGuard<'_, Lane> {
        // Staging leaves a lane whole: a panic inside a step loses at most that step's events.
        self.lanes[lane]
            .0
            .lane
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn generation(&self, lane: usize) -> u32 {
        self.lanes[lane].0.generation.load(Ordering::Acquire)
    }

    /// The staged events of `lane` (locked by the caller, as `guard`) as a batch; the lane is
    /// emptied, with a vector from the pool, and its generation moves on.
    fn take(&self, lane: usize, guard: &mut Lane) -> Option<Batch> {
        let created = guard.created.take()?;
        self.lanes[lane]
            .0
            .generation
            .fetch_add(1, Ordering::Release);
        let fresh = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.full.max(BATCH_EVENTS)));
        Some(Batch {
            events: std::mem::replace(&mut guard.events, fresh),
            created,
        })
    }
}

/// Where a participant (a shopper, the price reviews) staged its last events, so that it sends
/// them before staging on another thread's lane.
#[derive(Debug, Clone, Copy, Default)]
pub struct Staged {
    /// The lane, plus one (0: none yet).
    lane: u8,
    generation: u32,
}

/// What staging left to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Staging {
    /// Nothing: the events wait in their lane, or went down the channel.
    Done,
    /// The lane is due to be sent, and the pipeline is full: [`Outbox::send_lane`] waits.
    Full(usize),
    /// The pipeline is closed.
    Closed,
}

static NEXT_LANE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's lane, given out on first use.
    static LANE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The lane of the calling thread.
fn this_lane() -> usize {
    LANE.with(|lane| {
        if lane.get() == usize::MAX {
            lane.set(NEXT_LANE.fetch_add(1, Ordering::Relaxed) % LANES);
        }
        lane.get()
    })
}

/// The pipeline is closed: the sink's thread has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed;

impl Outbox {
    /// Lets `make` add events to the calling thread's lane, for the participant that last
    /// staged as `staged` (and, now, here), and returns what `make` returned with what is left
    /// to do. The lane is sent at once if it is due and the pipeline has room.
    ///
    /// Call [`Outbox::moved`] first: events staged on another thread's lane must go before.
    pub fn stage<R>(
        &self,
        staged: &mut Staged,
        make: impl FnOnce(&mut Vec<Event>) -> R,
    ) -> (R, Staging) {
        self.stage_on(this_lane(), staged, make)
    }

    fn stage_on<R>(
        &self,
        index: usize,
        staged: &mut Staged,
        make: impl FnOnce(&mut Vec<Event>) -> R,
    ) -> (R, Staging) {
        let mut lane = self.lanes.lock(index);
        let before = lane.events.len();
        let made = make(&mut lane.events);
        if lane.events.len() == before {
            return (made, Staging::Done);
        }
        if before == 0 {
            lane.created = Some(Instant::now());
        }
        *staged = Staged {
            lane: index as u8 + 1,
            generation: self.lanes.generation(index),
        };
        if lane.events.len() < self.lanes.full {
            return (made, Staging::Done);
        }
        let staging = match self.sender.try_reserve() {
            Ok(permit) => {
                if let Some(batch) = self.lanes.take(index, &mut lane) {
                    permit.send(Message::Events(batch));
                }
                Staging::Done
            }
            Err(mpsc::error::TrySendError::Full(())) => Staging::Full(index),
            Err(mpsc::error::TrySendError::Closed(())) => Staging::Closed,
        };
        (made, staging)
    }

    /// The lane to send before the participant that last staged as `staged` stages on this
    /// thread's: the one it staged on last, if that was another thread's and its events are
    /// still there.
    pub fn moved(&self, staged: &Staged) -> Option<usize> {
        self.moved_to(this_lane(), staged)
    }

    fn moved_to(&self, here: usize, staged: &Staged) -> Option<usize> {
        let previous = usize::from(staged.lane.checked_sub(1)?);
        (previous != here && self.lanes.generation(previous) == staged.generation)
            .then_some(previous)
    }

    /// Sends what lane `index` holds, waiting while the pipeline is full.
    pub async fn send_lane(&self, index: usize) -> Result<(), Closed> {
        // Room first, then the events, under the lane's lock: nothing staged later on this
        // lane can overtake them.
        let permit = self.sender.reserve().await.map_err(|_| Closed)?;
        let mut lane = self.lanes.lock(index);
        if let Some(batch) = self.lanes.take(index, &mut lane) {
            permit.send(Message::Events(batch));
        }
        Ok(())
    }

    /// Sends every lane's events, waiting while the pipeline is full.
    pub async fn flush(&self) -> Result<(), Closed> {
        for index in 0..LANES {
            if !self.lanes.lock(index).events.is_empty() {
                self.send_lane(index).await?;
            }
        }
        Ok(())
    }

    /// What the virtual clock calls when every participant is asleep: sends every lane that
    /// has events, as far as the pipeline has room now (what does not fit goes with the lane's
    /// next send, or the next watermark). It holds no sender of its own, so the pipeline still
    /// closes when the outboxes are gone.
    pub fn on_idle(&self) -> impl Fn() + Send + Sync + 'static {
        let (sender, lanes) = (self.sender.downgrade(), Arc::clone(&self.lanes));
        move || {
            let Some(sender) = sender.upgrade() else {
                return;
            };
            for index in 0..LANES {
                let mut lane = lanes.lock(index);
                if lane.events.is_empty() {
                    continue;
                }
                let Ok(permit) = sender.try_reserve() else {
                    return;
                };
                if let Some(batch) = lanes.take(index, &mut lane) {
                    permit.send(Message::Events(batch));
                }
            }
        }
    }

    /// Sends a batch straight down the channel (behind what was sent, not what is staged),
    /// waiting while the pipeline is full.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        self.sender
            .send(Message::Events(batch))
            .await
            .map_err(|_| Closed)
    }

    /// Tells the sink that simulated time has reached `at`, behind every event staged before.
    pub async fn watermark(&self, at: Timestamp) -> Result<(), Closed> {
        self.flush().await?;
        self.sender
            .send(Message::Watermark(at))
            .await
            .map_err(|_| Closed)
    }

    /// Asks for a save, behind every event staged before.
    pub async fn save(&self, request: SaveRequest) -> Result<(), Closed> {
        self.flush().await?;
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
    /// Wakes the thread waiting in [`Inbox::next`] with a time limit, and which thread it is.
    waker: Option<(std::thread::ThreadId, Waker)>,
}

/// What [`Inbox::next`] found.
enum Received {
    Message(Message),
    /// Nothing came within the time allowed.
    Nothing,
    /// Every sender is gone and all is read.
    Closed,
}

/// Unparks the thread that waits for the channel.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl Inbox {
    /// The next message, waiting for one at most `limit` (given when the thread is about to
    /// sleep; `None`: as long as it takes).
    ///
    /// While the stream is steady, an empty channel is looked at again [`SPINS`] times before
    /// the thread sleeps, so a busy run's next batch never has to wake it. After a sleep of
    /// [`SPARSE_AFTER`] or more, the stream is sparse (a run at its real-time pace): the thread
    /// sleeps again as soon as it finds the channel empty, until a shorter sleep or a message
    /// already waiting says the stream is steady again.
    fn next(&mut self, limit: impl FnOnce() -> Option<Duration>) -> Received {
        let spins = if self.steady { SPINS } else { 1 };
        for spin in 0..spins {
            match self.receiver.try_recv() {
                Ok(message) => {
                    self.steady = true;
                    return Received::Message(message);
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return Received::Closed,
                Err(mpsc::error::TryRecvError::Empty) if spin % 16 == 15 => {
                    std::thread::yield_now();
                }
                Err(mpsc::error::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        let asleep = Instant::now();
        let received = match limit() {
            None => self
                .receiver
                .blocking_recv()
                .map_or(Received::Closed, Received::Message),
            Some(limit) => self.receive_within(asleep + limit),
        };
        self.steady = asleep.elapsed() < SPARSE_AFTER;
        received
    }

    /// The next message, sleeping until one comes or `deadline` passes.
    fn receive_within(&mut self, deadline: Instant) -> Received {
        let thread = std::thread::current();
        let waker = match &self.waker {
            Some((id, waker)) if *id == thread.id() => waker.clone(),
            _ => {
                let waker = Waker::from(Arc::new(Unpark(thread.clone())));
                self.waker = Some((thread.id(), waker.clone()));
                waker
            }
        };
        let mut context = std::task::Context::from_waker(&waker);
        loop {
            match self.receiver.poll_recv(&mut context) {
                Poll::Ready(Some(message)) => return Received::Message(message),
                Poll::Ready(None) => return Received::Closed,
                Poll::Pending => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Received::Nothing;
                    }
                    // Woken by a sender, or at the deadline (or early, for no reason: the
                    // channel is looked at again either way).
                    std::thread::park_timeout(deadline - now);
                }
            }
        }
    }
}

/// A pipeline of [`CHANNEL_CAPACITY`] batches. `batched`: lanes are sent when full (and when
/// the virtual clock is idle, see [`Outbox::on_idle`]), for `--speed max`; otherwise at every
/// step that stages events.
pub fn channel(batched: bool) -> (Outbox, Inbox) {
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let pool = Arc::new(ArrayQueue::new(POOL_CAPACITY));
    let lanes = Lanes {
        lanes: std::array::from_fn(|_| Padded(LaneCell::default())),
        pool: Arc::clone(&pool),
        full: if batched { LANE_EVENTS } else { 1 },
    };
    (
        Outbox {
            sender,
            lanes: Arc::new(lanes),
        },
        Inbox {
            receiver,
            pool,
            steady: false,
            waker: None,
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
    loop {
        let message = match inbox.next(|| output.sink.idle_interval()) {
            Received::Message(message) => message,
            Received::Nothing => {
                output.sink.idle();
                continue;
            }
            Received::Closed => break,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Catalogue, CurrencyCode};

    fn events(n: usize) -> Vec<Event> {
        if n == 0 {
            return Vec::new();
        }
        let at = Timestamp::from_micros(0);
        Catalogue::generate(1, n, 1.0, at)
            .unwrap()
            .publish(at, 1, CurrencyCode::USD)
            .into_iter()
            .map(Event::Product)
            .collect()
    }

    /// What the channel holds now, in order: `events:N`, `watermark`, `save`.
    fn waiting(inbox: &mut Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.receiver.try_recv().ok())
            .map(|message| match message {
                Message::Events(batch) => format!("events:{}", batch.events.len()),
                Message::Watermark(_) => "watermark".into(),
                Message::Save(_) => "save".into(),
            })
            .collect()
    }

    fn stage(outbox: &Outbox, lane: usize, staged: &mut Staged, n: usize) -> Staging {
        let ((), staging) = outbox.stage_on(lane, staged, |out| out.extend(events(n)));
        staging
    }

    #[test]
    fn at_max_speed_a_lane_waits_until_it_is_full_or_the_clock_is_idle() {
        let (outbox, mut inbox) = channel(true);
        let idle = outbox.on_idle();
        let mut staged = Staged::default();
        assert_eq!(stage(&outbox, 0, &mut staged, 3), Staging::Done);
        assert_eq!(stage(&outbox, 1, &mut Staged::default(), 2), Staging::Done);
        assert!(
            waiting(&mut inbox).is_empty(),
            "sent before the lane was due"
        );
        idle();
        assert_eq!(waiting(&mut inbox), ["events:3", "events:2"]);
        // A lane that reaches its size goes at once, whole.
        assert_eq!(
            stage(&outbox, 0, &mut staged, LANE_EVENTS - 1),
            Staging::Done
        );
        assert!(waiting(&mut inbox).is_empty());
        assert_eq!(stage(&outbox, 0, &mut staged, 1), Staging::Done);
        assert_eq!(waiting(&mut inbox), [format!("events:{LANE_EVENTS}")]);
    }

    #[test]
    fn at_a_real_time_pace_each_step_is_sent_at_once() {
        let (outbox, mut inbox) = channel(false);
        let mut staged = Staged::default();
        assert_eq!(stage(&outbox, 0, &mut staged, 2), Staging::Done);
        assert_eq!(stage(&outbox, 0, &mut staged, 0), Staging::Done);
        assert_eq!(stage(&outbox, 0, &mut staged, 1), Staging::Done);
        assert_eq!(waiting(&mut inbox), ["events:2", "events:1"]);
    }

    #[tokio::test]
    async fn a_watermark_and_a_save_travel_behind_every_staged_event() {
        let (outbox, mut inbox) = channel(true);
        stage(&outbox, 3, &mut Staged::default(), 2);
        outbox.watermark(Timestamp::from_micros(1)).await.unwrap();
        stage(&outbox, 5, &mut Staged::default(), 1);
        stage(&outbox, 3, &mut Staged::default(), 4);
        outbox
            .save(Box::new(|_| Ok(Timestamp::from_micros(1))))
            .await
            .unwrap();
        assert_eq!(
            waiting(&mut inbox),
            ["events:2", "watermark", "events:4", "events:1", "save"]
        );
    }

    #[tokio::test]
    async fn a_participant_on_another_thread_sends_the_lane_it_left_first() {
        let (outbox, mut inbox) = channel(true);
        let mut staged = Staged::default();
        assert_eq!(outbox.moved_to(2, &staged), None, "nothing staged yet");
        stage(&outbox, 2, &mut staged, 3);
        assert_eq!(outbox.moved_to(2, &staged), None, "still on its lane");
        assert_eq!(outbox.moved_to(7, &staged), Some(2));
        outbox.send_lane(2).await.unwrap();
        assert_eq!(waiting(&mut inbox), ["events:3"]);
        // Sent: nothing of it is left behind.
        assert_eq!(outbox.moved_to(7, &staged), None);
        // Sent with others' events by the idle clock, likewise.
        stage(&outbox, 2, &mut staged, 1);
        stage(&outbox, 2, &mut Staged::default(), 1);
        outbox.on_idle()();
        assert_eq!(waiting(&mut inbox), ["events:2"]);
        assert_eq!(outbox.moved_to(7, &staged), None);
    }

    #[tokio::test]
    async fn a_full_pipeline_keeps_staged_events_until_there_is_room() {
        let (outbox, mut inbox) = channel(true);
        for _ in 0..CHANNEL_CAPACITY {
            outbox.send(Batch::now(events(1))).await.unwrap();
        }
        let mut staged = Staged::default();
        stage(&outbox, 1, &mut staged, 2);
        outbox.on_idle()();
        assert_eq!(
            stage(&outbox, 1, &mut staged, LANE_EVENTS),
            Staging::Full(1),
            "a full lane and no room"
        );
        assert_eq!(waiting(&mut inbox).len(), CHANNEL_CAPACITY);
        outbox.send_lane(1).await.unwrap();
        assert_eq!(waiting(&mut inbox), [format!("events:{}", LANE_EVENTS + 2)]);
    }

    /// A sink that counts the events it is given and the times it is left idle.
    #[derive(Clone, Default)]
    struct Watching {
        written: Arc<AtomicUsize>,
        idle: Arc<AtomicUsize>,
        interval: Option<Duration>,
    }

    impl Sink for Watching {
        fn name(&self) -> &'static str {
            "watching"
        }

        fn write(&mut self, events: &[Event], _: Instant) -> Result<(), SinkError> {
            self.written.fetch_add(events.len(), Ordering::SeqCst);
            Ok(())
        }

        fn idle_interval(&self) -> Option<Duration> {
            self.interval
        }

        fn idle(&mut self) {
            self.idle.fetch_add(1, Ordering::SeqCst);
        }

        fn close(&mut self) -> Result<(), SinkError> {
            Ok(())
        }

        fn delivered(&self) -> TopicCounts {
            TopicCounts::default()
        }
    }

    /// Drains `inbox` into `sink` on a thread of its own, as a run does.
    fn drain_on_thread(sink: &Watching, inbox: Inbox) -> std::thread::JoinHandle<Delivery> {
        let output = Output {
            sink: Box::new(sink.clone()),
            recorder: None,
        };
        let metrics = PipelineMetrics::register(&prometheus::Registry::new()).unwrap();
        std::thread::spawn(move || {
            drain(
                output,
                inbox,
                metrics,
                Health::new(),
                CancellationToken::new(),
            )
        })
    }

    /// Waits until `done` holds, failing after a minute.
    fn until(done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(60), "never happened");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_sink_left_without_events_is_served_at_its_idle_interval() {
        let (outbox, inbox) = channel(false);
        let sink = Watching {
            interval: Some(Duration::from_millis(1)),
            ..Watching::default()
        };
        let drained = drain_on_thread(&sink, inbox);
        until(|| sink.idle.load(Ordering::SeqCst) >= 3);
        drop(outbox);
        drained.join().unwrap();
    }

    #[tokio::test]
    async fn events_wake_a_sink_waiting_out_its_idle_interval() {
        let (outbox, inbox) = channel(false);
        let sink = Watching {
            interval: Some(Duration::from_secs(3600)),
            ..Watching::default()
        };
        let drained = drain_on_thread(&sink, inbox);
        // Long enough for the thread to find the channel empty and sleep.
        std::thread::sleep(Duration::from_millis(50));
        outbox.send(Batch::now(events(3))).await.unwrap();
        until(|| sink.written.load(Ordering::SeqCst) == 3);
        assert_eq!(sink.idle.load(Ordering::SeqCst), 0, "woken by the interval");
        drop(outbox);
        drained.join().unwrap();
    }

    #[test]
    fn the_idle_hook_does_not_keep_the_pipeline_open() {
        let (outbox, mut inbox) = channel(true);
        let idle = outbox.on_idle();
        stage(&outbox, 0, &mut Staged::default(), 1);
        drop(outbox);
        assert!(
            matches!(inbox.next(|| None), Received::Closed),
            "the pipeline stayed open"
        );
        idle();
    }
}
