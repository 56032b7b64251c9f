//! The one source of time.
//!
//! Two clocks share one interface:
//! - a **scaled** clock maps simulated time onto tokio's clock: simulated time starts at a given
//!   instant and runs `speed` times as fast as real time (speed 1 from "now" is plain real time).
//!   Because it sleeps with tokio's timers, tests pause and advance tokio's clock instead of
//!   sleeping.
//! - a **virtual** clock runs as fast as the machine can go (`--speed max`). It is a
//!   discrete-event scheduler: simulated time stands still while any participant is busy, and
//!   when every participant is asleep it jumps to the earliest wake-up and wakes the batch of
//!   sleepers due within [`MAX_SKEW`] of it (at most [`MAX_BATCH`] of them), which then run in
//!   parallel. Shoppers stamp their events with their own scheduled instants, so what they
//!   produce does not depend on batching or task order; batching only lets events of different
//!   shoppers interleave out of time order by less than [`MAX_SKEW`].
//!
//! Sleeps go to absolute deadlines, so rates do not drift. The wall clock is read in exactly one
//! place, [`Clock::real`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::model::Timestamp;

/// At `--speed max`, sleepers woken together are due within this much simulated time.
pub const MAX_SKEW: Duration = Duration::from_secs(1);
/// At `--speed max`, at most this many sleepers are woken together.
pub const MAX_BATCH: usize = 4096;

/// How fast simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// This many simulated seconds per real second.
    Factor(f64),
    /// As fast as the machine can go.
    Max,
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Max => f.write_str("max"),
            Speed::Factor(factor) => write!(f, "{factor}"),
        }
    }
}

impl std::str::FromStr for Speed {
    type Err = String;

    /// `max`, or a factor greater than 0 and at most 10⁹ (a trailing `x` is allowed).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "max" {
            return Ok(Speed::Max);
        }
        match text.trim_end_matches('x').parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 && f <= 1e9 => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "`{text}` is not a speed: expected `max` or a factor greater than 0 (1 is real \
                 time, 60 is a simulated minute per second)"
            )),
        }
    }
}

/// A handle on the simulation's clock; cheap to clone.
#[derive(Clone, Debug)]
pub enum Clock {
    Scaled(Arc<ScaledClock>),
    Virtual(Arc<VirtualClock>),
}

impl Clock {
    /// Real time: now, at speed 1. The only place the wall clock is read.
    #[allow(clippy::disallowed_methods)]
    pub fn real() -> Self {
        let now = DateTime::<Utc>::from(SystemTime::now());
        Self::scaled(Timestamp::from_datetime(now), 1.0)
    }

    /// The wall-clock instant, for the default start of a simulation.
    pub fn wall_now() -> Timestamp {
        Self::real().now()
    }

    /// Simulated time starting at `start` (at tokio's current instant) and running `speed`
    /// times as fast as real time.
    pub fn scaled(start: Timestamp, speed: f64) -> Self {
        Clock::Scaled(Arc::new(ScaledClock {
            origin: start,
            origin_instant: Instant::now(),
            speed,
        }))
    }

    /// A discrete-event clock that starts at `start` and runs as fast as possible.
    pub fn virtual_at(start: Timestamp) -> Self {
        Clock::Virtual(Arc::new(VirtualClock::new(start)))
    }

    /// A clock that starts at `start` with the given speed.
    pub fn new(start: Timestamp, speed: Speed) -> Self {
        match speed {
            Speed::Factor(f) => Self::scaled(start, f),
            Speed::Max => Self::virtual_at(start),
        }
    }

    /// The current simulated instant. For a virtual clock this is its watermark: every
    /// participant has finished all it had to do before it.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::Scaled(c) => c.now(),
            Clock::Virtual(c) => c.now(),
        }
    }

    /// A timer for one task. With a virtual clock, the timer makes its task a participant:
    /// simulated time does not move on while the task is busy, so create it before the task
    /// starts and keep it until the task ends.
    pub fn timer(&self) -> Timer {
        match self {
            Clock::Scaled(c) => Timer::Scaled(c.clone()),
            Clock::Virtual(c) => Timer::Virtual(c.join()),
        }
    }

    /// About how much real time simulated time takes to reach `at`: at its speed for a
    /// scaled clock; for a virtual one, a second while it races through the past, real time
    /// once it runs alongside the wall clock.
    pub fn real_time_until(&self, at: Timestamp) -> Duration {
        let ahead = (at.as_micros() - self.now().as_micros()).max(0) as f64 / 1e6;
        match self {
            Clock::Scaled(c) => Duration::from_secs_f64(ahead / c.speed),
            Clock::Virtual(c)
                if c.now().as_micros() + 3_600_000_000 < Self::wall_now().as_micros() =>
            {
                Duration::from_secs(1).min(Duration::from_secs_f64(ahead))
            }
            Clock::Virtual(_) => Duration::from_secs_f64(ahead),
        }
    }

    /// Whether this clock runs as fast as possible.
    pub fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }
}

/// Simulated time as an affine function of tokio's clock.
#[derive(Debug)]
pub struct ScaledClock {
    origin: Timestamp,
    origin_instant: Instant,
    speed: f64,
}

impl ScaledClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.origin_instant.elapsed().as_secs_f64() * 1e6 * self.speed;
        self.origin.add_micros_f64(elapsed)
    }

    fn instant_for(&self, at: Timestamp) -> Instant {
        let micros = at.micros_since(self.origin).max(0) as f64 / self.speed;
        // Far-future deadlines are capped at about 30 years of real time.
        let micros = micros.min(1e15);
        self.origin_instant + Duration::from_micros(micros as u64)
    }
}

/// A task's way to wait for a simulated instant.
#[derive(Debug)]
pub enum Timer {
    Scaled(Arc<ScaledClock>),
    Virtual(Participant),
}

impl Timer {
    /// Waits until simulated time reaches `at`.
    pub fn sleep_until(&mut self, at: Timestamp) -> Sleep<'_> {
        match self {
            Timer::Scaled(c) => {
                Sleep::Scaled(Box::pin(tokio::time::sleep_until(c.instant_for(at))))
            }
            Timer::Virtual(p) => Sleep::Virtual(VirtualSleep {
                participant: p,
                deadline: at.as_micros(),
                registered: false,
            }),
        }
    }
}

/// The future of [`Timer::sleep_until`].
pub enum Sleep<'a> {
    Scaled(Pin<Box<tokio::time::Sleep>>),
    Virtual(VirtualSleep<'a>),
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Sleep::Scaled(sleep) => sleep.as_mut().poll(cx),
            Sleep::Virtual(sleep) => Pin::new(sleep).poll(cx),
        }
    }
}

/// The discrete-event clock behind `--speed max`.
#[derive(Debug)]
pub struct VirtualClock {
    state: Mutex<VirtualState>,
}

#[derive(Debug)]
struct VirtualState {
    /// The watermark, in microseconds.
    now: i64,
    /// Participants that are not asleep.
    active: usize,
    /// Sleepers by deadline: `(deadline, slot, generation)`.
    sleepers: BinaryHeap<Reverse<(i64, u32, u32)>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Present while the slot's participant sleeps.
    waker: Option<Waker>,
    /// Bumped at every sleep, so a heap entry of an abandoned sleep is recognised as stale.
    generation: u32,
}

impl VirtualClock {
    fn new(start: Timestamp) -> Self {
        Self {
            state: Mutex::new(VirtualState {
                now: start.as_micros(),
                active: 0,
                sleepers: BinaryHeap::new(),
                slots: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VirtualState> {
        // The state stays consistent even if a holder panicked: every update is complete
        // before any call that could panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.lock().now)
    }

    fn join(self: &Arc<Self>) -> Participant {
        let mut state = self.lock();
        state.active += 1;
        let slot = match state.free.pop() {
            Some(slot) => slot,
            None => {
                state.slots.push(Slot::default());
                (state.slots.len() - 1) as u32
            }
        };
        Participant {
            clock: Arc::clone(self),
            slot,
        }
    }
}

impl VirtualState {
    /// Called when no participant is active: moves the watermark to the earliest deadline and
    /// returns the wakers of the batch due from there.
    fn advance(&mut self) -> Vec<Waker> {
        let mut woken = Vec::new();
        let mut horizon = None;
        while let Some(&Reverse((deadline, slot, generation))) = self.sleepers.peek() {
            let entry = &mut self.slots[slot as usize];
            if entry.generation != generation || entry.waker.is_none() {
                self.sleepers.pop();
                continue;
            }
            let limit =
                *horizon.get_or_insert(deadline.saturating_add(MAX_SKEW.as_micros() as i64));
            if deadline > limit || woken.len() >= MAX_BATCH {
                break;
            }
            self.sleepers.pop();
            woken.push(entry.waker.take().expect("checked above"));
            self.now = self.now.max(deadline);
            self.active += 1;
        }
        woken
    }

    fn wake_batch_if_idle(mut guard: MutexGuard<'_, VirtualState>) {
        if guard.active == 0 {
            let woken = guard.advance();
            drop(guard);
            woken.into_iter().for_each(Waker::wake);
        }
    }
}

/// A task taking part in a virtual clock; it leaves when dropped.
#[derive(Debug)]
pub struct Participant {
    clock: Arc<VirtualClock>,
    slot: u32,
}

impl Drop for Participant {
    fn drop(&mut self) {
        let mut state = self.clock.lock();
        state.active -= 1;
        state.free.push(self.slot);
        VirtualState::wake_batch_if_idle(state);
    }
}

/// A sleep on the virtual clock.
pub struct VirtualSleep<'a> {
    participant: &'a mut Participant,
    deadline: i64,
    registered: bool,
}

impl Future for VirtualSleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let slot = this.participant.slot as usize;
        let mut state = this.participant.clock.lock();
        if this.registered {
            match &mut state.slots[slot].waker {
                // Woken by `advance`, which counted us active again.
                None => {
                    this.registered = false;
                    return Poll::Ready(());
                }
                Some(waker) => {
                    waker.clone_from(cx.waker());
                    return Poll::Pending;
                }
            }
        }
        if this.deadline <= state.now {
            return Poll::Ready(());
        }
        let entry = &mut state.slots[slot];
        entry.generation = entry.generation.wrapping_add(1);
        entry.waker = Some(cx.waker().clone());
        let generation = entry.generation;
        state
            .sleepers
            .push(Reverse((this.deadline, slot as u32, generation)));
        state.active -= 1;
        this.registered = true;
        if state.active == 0 {
            let woken = state.advance();
            let ready = state.slots[slot].waker.is_none();
            drop(state);
            // Our own waker may be among them; waking it is harmless.
            woken.into_iter().for_each(Waker::wake);
            if ready {
                this.registered = false;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

impl Drop for VirtualSleep<'_> {
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        let mut state = self.participant.clock.lock();
        let entry = &mut state.slots[self.participant.slot as usize];
        if entry.waker.take().is_some() {
            // Abandoned while asleep: the participant is running again.
            entry.generation = entry.generation.wrapping_add(1);
            state.active += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(secs * 1_000_000)
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn scaled_clock_runs_faster_than_real_time() {
        let clock = Clock::scaled(at(1_000), 60.0);
        let mut timer = clock.timer();
        timer.sleep_until(at(1_000 + 3_600)).await;
        // One simulated hour at 60x is one real minute.
        assert_eq!(clock.now(), at(1_000 + 3_600));
        let Clock::Scaled(inner) = &clock else {
            unreachable!()
        };
        assert_eq!(inner.origin_instant.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn virtual_clock_wakes_participants_in_deadline_order() {
        let clock = Clock::virtual_at(at(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let hold = clock.timer(); // keeps time still until every task has joined
        let mut tasks = Vec::new();
        for id in 0..20i64 {
            let mut timer = clock.timer();
            let (clock, log) = (clock.clone(), Arc::clone(&log));
            tasks.push(tokio::spawn(async move {
                for step in 1..=5i64 {
                    // Deadlines far apart (more than MAX_SKEW) are woken strictly in order.
                    let deadline = at(step * 1_000 + id * 10);
                    timer.sleep_until(deadline).await;
                    assert!(clock.now() >= deadline);
                    log.lock().unwrap().push(deadline);
                }
            }));
        }
        drop(hold);
        for t in tasks {
            t.await.unwrap();
        }
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 100);
        assert!(log.windows(2).all(|w| w[0] <= w[1]), "woken out of order");
        assert_eq!(clock.now(), at(5_000 + 190));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn virtual_clock_batches_within_the_skew() {
        let clock = Clock::virtual_at(at(0));
        let running = Arc::new(AtomicUsize::new(0));
        let max_parallel = Arc::new(AtomicUsize::new(0));
        let hold = clock.timer();
        let mut tasks = Vec::new();
        for id in 0..8u64 {
            let mut timer = clock.timer();
            let (running, max_parallel) = (Arc::clone(&running), Arc::clone(&max_parallel));
            tasks.push(tokio::spawn(async move {
                // All due within the same simulated second: one batch.
                timer
                    .sleep_until(Timestamp::from_micros(10_000_000 + id as i64))
                    .await;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_parallel.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        drop(hold);
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            max_parallel.load(Ordering::SeqCst) > 1,
            "the batch did not run together"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_sleep_does_not_stall_the_clock() {
        let clock = Clock::virtual_at(at(0));
        let mut quitter = clock.timer();
        let mut stayer = clock.timer();
        let staying = tokio::spawn(async move {
            stayer.sleep_until(at(50)).await;
        });
        // The quitter gives up on a long sleep: it must count as running again, then leave.
        tokio::select! {
            _ = quitter.sleep_until(at(1_000_000)) => panic!("woke too early"),
            _ = tokio::task::yield_now() => {}
        }
        drop(quitter);
        staying.await.unwrap();
        assert_eq!(clock.now(), at(50));
    }
}
