//! The one source of time.
//!
//! Two clocks share one interface:
//! - a **scaled** clock maps simulated time onto tokio's clock: simulated time starts at a given
//!   instant and runs `speed` times as fast as real time (speed 1 from "now" is plain real time).
//!   One driver task sleeps with a tokio timer until the earliest wake-up and wakes the sleepers
//!   due by then, so tests pause and advance tokio's clock instead of sleeping.
//! - a **virtual** clock runs as fast as the machine can go (`--speed max`). It is a
//!   discrete-event scheduler: simulated time stands still while any participant is busy, and
//!   when every participant is asleep it jumps to the earliest wake-up and wakes the batch of
//!   sleepers due within [`MAX_SKEW`] of it (at most [`MAX_BATCH`] of them), which then run in
//!   parallel. Shoppers stamp their events with their own scheduled instants, so what they
//!   produce does not depend on batching or task order; batching only lets events of different
//!   shoppers interleave out of time order by less than [`MAX_SKEW`].
//!
//! Both keep their sleepers in one [`Schedule`]: a heap of deadlines and a slot per timer for
//! its waker. A million idle shoppers cost a slot and a heap entry each (40 bytes), not a
//! timer of the runtime's, and a sleep allocates nothing.
//!
//! A clock can be stopped ([`Clock::stop`]): every sleeper wakes at once, and every sleep from
//! then on, to learn that the run is over. That is how shoppers hear of a shutdown, without
//! listening for it on every step.
//!
//! Sleeps go to absolute deadlines, so rates do not drift. The wall clock is read in exactly one
//! place, [`Clock::wall_now`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
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

/// The clock was stopped: the sleep ended early, and the run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the clock was stopped")]
pub struct Stopped;

/// A handle on the simulation's clock; cheap to clone.
#[derive(Clone, Debug)]
pub enum Clock {
    Scaled(Arc<ScaledClock>),
    Virtual(Arc<VirtualClock>),
}

impl Clock {
    /// Real time: now, at speed 1.
    pub fn real() -> Self {
        Self::scaled(Self::wall_now(), 1.0)
    }

    /// The wall-clock instant, for the default start of a simulation. The only place the wall
    /// clock is read.
    #[allow(clippy::disallowed_methods)]
    pub fn wall_now() -> Timestamp {
        Timestamp::from_datetime(DateTime::<Utc>::from(SystemTime::now()))
    }

    /// Simulated time starting at `start` (at tokio's current instant) and running `speed`
    /// times as fast as real time.
    pub fn scaled(start: Timestamp, speed: f64) -> Self {
        Clock::Scaled(Arc::new(ScaledClock {
            origin: start,
            origin_instant: Instant::now(),
            speed,
            state: Mutex::new(ScaledState::default()),
            retarget: Notify::new(),
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
        let slot = match self {
            Clock::Scaled(c) => lock(&c.state).schedule.join(),
            Clock::Virtual(c) => {
                let mut state = lock(&c.state);
                state.active += 1;
                state.schedule.join()
            }
        };
        Timer {
            clock: self.clone(),
            slot,
        }
    }

    /// Makes room for `timers` more timers and their sleeps at once, rather than growing
    /// the schedule step by step as they join (which leaves up to half of it unused).
    pub fn reserve(&self, timers: usize) {
        let reserve = |schedule: &mut Schedule| {
            schedule.slots.reserve_exact(timers);
            schedule.sleepers.reserve_exact(timers);
        };
        match self {
            Clock::Scaled(c) => reserve(&mut lock(&c.state).schedule),
            Clock::Virtual(c) => reserve(&mut lock(&c.state).schedule),
        }
    }

    /// Stops the clock: every sleeper wakes with [`Stopped`] now, and every later sleep at
    /// once. Simulated time stands still for a virtual clock; a scaled one goes on telling
    /// the time.
    pub fn stop(&self) {
        let woken = match self {
            Clock::Scaled(c) => {
                let woken = lock(&c.state).schedule.stop();
                // The driver finds nobody left, and ends.
                c.retarget.notify_one();
                woken
            }
            Clock::Virtual(c) => {
                let mut state = lock(&c.state);
                let woken = state.schedule.stop();
                // Woken sleepers run again, until they see the clock stopped and leave.
                state.active += woken.len();
                woken
            }
        };
        woken.into_iter().for_each(Waker::wake);
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

    /// Has a virtual clock call `hook` whenever every participant is asleep, just before it
    /// wakes the next batch, in place of the hook it had (a clock can serve one run after
    /// another). A scaled clock has no such moment, and ignores it.
    pub fn on_idle(&self, hook: impl Fn() + Send + Sync + 'static) {
        if let Clock::Virtual(c) = self {
            *lock(&c.idle) = Some(Box::new(hook));
        }
    }

    /// Whether this clock runs as fast as possible.
    pub fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }
}

/// Locks a clock's state. The state stays consistent even if a holder panicked: every update
/// is complete before any call that could panic.
fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sleepers of a clock: a slot per timer, holding its waker while it sleeps, and the
/// deadlines of the sleeps in a heap.
#[derive(Debug, Default)]
struct Schedule {
    /// Sleeps by deadline: `(deadline, slot, generation)`; an entry whose slot has moved on to
    /// another generation, or has no waker, is stale.
    sleepers: BinaryHeap<Reverse<(i64, u32, u32)>>,
    slots: Vec<Slot>,
    /// Slots of timers that were dropped, for the next timers.
    free: Vec<u32>,
    /// Set by [`Clock::stop`].
    stopped: bool,
}

#[derive(Debug, Default)]
struct Slot {
    /// Present while the slot's timer sleeps.
    waker: Option<Waker>,
    /// Bumped at every sleep, so a heap entry of an abandoned sleep is recognised as stale.
    generation: u32,
}

impl Schedule {
    /// A slot for a new timer.
    fn join(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            (self.slots.len() - 1) as u32
        })
    }

    /// Frees the slot of a dropped timer (which cannot be asleep: its sleep borrows it).
    fn leave(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// Puts `slot` to sleep until `deadline`.
    fn sleep(&mut self, slot: u32, deadline: i64, waker: &Waker) {
        let entry = &mut self.slots[slot as usize];
        entry.generation = entry.generation.wrapping_add(1);
        entry.waker = Some(waker.clone());
        self.sleepers
            .push(Reverse((deadline, slot, entry.generation)));
    }

    /// The poll of a sleep that the schedule answers: once registered, ready when it was
    /// woken (by its deadline or by a stop) and pending while it sleeps (its waker brought up
    /// to date); not registered, ready with [`Stopped`] once the clock is stopped. `None`: the
    /// clock decides (the deadline may have passed, or the sleep must register).
    fn answer(
        &mut self,
        sleep: &mut SleepState,
        waker: &Waker,
    ) -> Option<Poll<Result<(), Stopped>>> {
        if !sleep.registered {
            return self.stopped.then_some(Poll::Ready(Err(Stopped)));
        }
        match &mut self.slots[sleep.slot as usize].waker {
            Some(current) => {
                current.clone_from(waker);
                Some(Poll::Pending)
            }
            None => {
                sleep.registered = false;
                Some(Poll::Ready(if self.stopped {
                    Err(Stopped)
                } else {
                    Ok(())
                }))
            }
        }
    }

    /// A registered sleep given up before it was woken: whether it was still asleep.
    fn abandon(&mut self, slot: u32) -> bool {
        let entry = &mut self.slots[slot as usize];
        let asleep = entry.waker.take().is_some();
        if asleep {
            entry.generation = entry.generation.wrapping_add(1);
        }
        asleep
    }

    /// The earliest deadline of a sleeper, dropping stale entries on the way.
    fn earliest(&mut self) -> Option<i64> {
        while let Some(&Reverse((deadline, slot, generation))) = self.sleepers.peek() {
            let entry = &self.slots[slot as usize];
            if entry.generation == generation && entry.waker.is_some() {
                return Some(deadline);
            }
            self.sleepers.pop();
        }
        None
    }

    /// Wakes the earliest sleeper (call after [`Schedule::earliest`] said there is one).
    fn pop(&mut self) -> Waker {
        let Reverse((_, slot, _)) = self.sleepers.pop().expect("a sleeper");
        self.slots[slot as usize]
            .waker
            .take()
            .expect("a live entry")
    }

    /// Marks the schedule stopped and takes every sleeper's waker.
    fn stop(&mut self) -> Vec<Waker> {
        self.stopped = true;
        self.sleepers.clear();
        self.slots
            .iter_mut()
            .filter_map(|slot| slot.waker.take())
            .collect()
    }
}

/// Simulated time as an affine function of tokio's clock.
#[derive(Debug)]
pub struct ScaledClock {
    origin: Timestamp,
    origin_instant: Instant,
    speed: f64,
    state: Mutex<ScaledState>,
    /// Tells the driver that a sleep earlier than its target came, or that the clock stopped.
    retarget: Notify,
}

#[derive(Debug, Default)]
struct ScaledState {
    schedule: Schedule,
    /// Whether a driver task runs.
    driving: bool,
    /// The deadline the driver sleeps until, if it sleeps.
    target: Option<i64>,
}

impl ScaledClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.origin_instant.elapsed().as_secs_f64() * 1e6 * self.speed;
        self.origin.add_micros_f64(elapsed)
    }

    fn instant_for(&self, micros: i64) -> Instant {
        let micros = (micros - self.origin.as_micros()).max(0) as f64 / self.speed;
        // Far-future deadlines are capped at about 30 years of real time.
        let micros = micros.min(1e15);
        self.origin_instant + Duration::from_micros(micros as u64)
    }

    /// Takes the wakers of the sleepers due now, and sets the driver's next target: the
    /// earliest deadline left, or none, which ends the driver (under the same lock, so that
    /// the next sleep starts another).
    fn wake_due(&self, woken: &mut Vec<Waker>) -> Option<i64> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        let target = loop {
            match state.schedule.earliest() {
                Some(deadline) if self.instant_for(deadline) <= now => {
                    woken.push(state.schedule.pop());
                }
                next => break next,
            }
        };
        state.target = target;
        state.driving = target.is_some();
        target
    }

    fn poll_sleep(
        self: &Arc<Self>,
        sleep: &mut SleepState,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Stopped>> {
        let mut state = lock(&self.state);
        if let Some(answer) = state.schedule.answer(sleep, cx.waker()) {
            return answer;
        }
        if self.instant_for(sleep.deadline) <= Instant::now() {
            return Poll::Ready(Ok(()));
        }
        state.schedule.sleep(sleep.slot, sleep.deadline, cx.waker());
        sleep.registered = true;
        if !state.driving {
            state.driving = true;
            drop(state);
            tokio::spawn(drive(Arc::clone(self)));
        } else if state.target.is_none_or(|target| sleep.deadline < target) {
            drop(state);
            self.retarget.notify_one();
        }
        Poll::Pending
    }
}

/// Ends a scaled clock's driver: the next sleep starts another.
struct Driving<'a>(&'a ScaledClock);

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.driving = false;
        state.target = None;
    }
}

/// A scaled clock's driver: wakes the sleepers as their deadlines pass, and ends when nobody
/// sleeps.
async fn drive(clock: Arc<ScaledClock>) {
    // Should the task be dropped (its runtime shutting down), the next sleep starts another.
    let driving = Driving(&clock);
    let mut woken = Vec::new();
    loop {
        let target = clock.wake_due(&mut woken);
        woken.drain(..).for_each(Waker::wake);
        let Some(target) = target else {
            // Ended under the lock already.
            std::mem::forget(driving);
            return;
        };
        tokio::select! {
            biased;
            () = clock.retarget.notified() => {}
            () = tokio::time::sleep_until(clock.instant_for(target)) => {}
        }
    }
}

/// A task's way to wait for a simulated instant; its slot in the clock's schedule is freed
/// when it is dropped (and with a virtual clock, the task stops taking part).
#[derive(Debug)]
pub struct Timer {
    clock: Clock,
    slot: u32,
}

impl Timer {
    /// Waits until simulated time reaches `at`; [`Stopped`] if the clock is stopped first.
    pub fn sleep_until(&mut self, at: Timestamp) -> Sleep<'_> {
        Sleep {
            state: SleepState {
                slot: self.slot,
                deadline: at.as_micros(),
                registered: false,
            },
            clock: &self.clock,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        match &self.clock {
            Clock::Scaled(c) => lock(&c.state).schedule.leave(self.slot),
            Clock::Virtual(c) => {
                let mut state = lock(&c.state);
                state.active -= 1;
                state.schedule.leave(self.slot);
                if state.active == 0 {
                    let woken = state.advance();
                    drop(state);
                    c.idle_then_wake(woken);
                }
            }
        }
    }
}

/// The future of [`Timer::sleep_until`]; it borrows its timer, which therefore cannot be
/// dropped while it sleeps.
pub struct Sleep<'a> {
    state: SleepState,
    clock: &'a Clock,
}

struct SleepState {
    slot: u32,
    deadline: i64,
    /// Whether the sleep is in the schedule (it was not due when first polled).
    registered: bool,
}

impl Future for Sleep<'_> {
    type Output = Result<(), Stopped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.clock {
            Clock::Scaled(c) => c.poll_sleep(&mut this.state, cx),
            Clock::Virtual(c) => c.poll_sleep(&mut this.state, cx),
        }
    }
}

impl Drop for Sleep<'_> {
    fn drop(&mut self) {
        if !self.state.registered {
            return;
        }
        match self.clock {
            Clock::Scaled(c) => {
                lock(&c.state).schedule.abandon(self.state.slot);
            }
            Clock::Virtual(c) => {
                let mut state = lock(&c.state);
                if state.schedule.abandon(self.state.slot) {
                    // Abandoned while asleep: the participant is running again.
                    state.active += 1;
                }
            }
        }
    }
}

/// The discrete-event clock behind `--speed max`.
pub struct VirtualClock {
    state: Mutex<VirtualState>,
    /// Called whenever every participant is asleep, before the next batch is woken.
    idle: Mutex<Option<IdleHook>>,
}

type IdleHook = Box<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualClock")
            .field("state", &self.state)
            .field("idle", &lock(&self.idle).as_ref().map(|_| "hook"))
            .finish()
    }
}

#[derive(Debug)]
struct VirtualState {
    /// The watermark, in microseconds.
    now: i64,
    /// Participants that are not asleep.
    active: usize,
    schedule: Schedule,
}

impl VirtualClock {
    fn new(start: Timestamp) -> Self {
        Self {
            state: Mutex::new(VirtualState {
                now: start.as_micros(),
                active: 0,
                schedule: Schedule::default(),
            }),
            idle: Mutex::new(None),
        }
    }

    /// Every participant is asleep (those of the next batch are counted active but not woken
    /// yet): runs the idle hook, then wakes `woken`.
    fn idle_then_wake(&self, woken: Vec<Waker>) {
        // Held while the hook runs, so two idle moments never overlap in it.
        if let Some(hook) = lock(&self.idle).as_ref() {
            hook();
        }
        woken.into_iter().for_each(Waker::wake);
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_micros(lock(&self.state).now)
    }

    fn poll_sleep(
        &self,
        sleep: &mut SleepState,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Stopped>> {
        let mut state = lock(&self.state);
        if let Some(answer) = state.schedule.answer(sleep, cx.waker()) {
            // Woken by `advance` or `stop`, which counted us active again.
            return answer;
        }
        if sleep.deadline <= state.now {
            return Poll::Ready(Ok(()));
        }
        state.schedule.sleep(sleep.slot, sleep.deadline, cx.waker());
        state.active -= 1;
        sleep.registered = true;
        if state.active == 0 {
            let woken = state.advance();
            let ready = state.schedule.slots[sleep.slot as usize].waker.is_none();
            drop(state);
            // Our own waker may be among them; waking it is harmless.
            self.idle_then_wake(woken);
            if ready {
                sleep.registered = false;
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Pending
    }
}

impl VirtualState {
    /// Called when no participant is active: moves the watermark to the earliest deadline and
    /// returns the wakers of the batch due from there.
    fn advance(&mut self) -> Vec<Waker> {
        let mut woken = Vec::new();
        let Some(first) = self.schedule.earliest() else {
            return woken;
        };
        let limit = first.saturating_add(MAX_SKEW.as_micros() as i64);
        while let Some(deadline) = self.schedule.earliest() {
            if deadline > limit || woken.len() >= MAX_BATCH {
                break;
            }
            woken.push(self.schedule.pop());
            self.now = self.now.max(deadline);
            self.active += 1;
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(secs * 1_000_000)
    }

    #[test]
    fn a_reserved_schedule_takes_its_timers_without_growing() {
        for clock in [Clock::virtual_at(at(0)), Clock::scaled(at(0), 1.0)] {
            clock.reserve(1_000);
            let capacities = || {
                let read =
                    |schedule: &Schedule| (schedule.slots.capacity(), schedule.sleepers.capacity());
                match &clock {
                    Clock::Virtual(c) => read(&lock(&c.state).schedule),
                    Clock::Scaled(c) => read(&lock(&c.state).schedule),
                }
            };
            let reserved = capacities();
            assert!(reserved.0 >= 1_000 && reserved.1 >= 1_000, "{reserved:?}");
            // Grown by doubling, 1,000 timers would leave room for 1,024.
            assert!(reserved.0 < 1_024, "{reserved:?}");
            let timers: Vec<Timer> = (0..1_000).map(|_| clock.timer()).collect();
            assert_eq!(capacities(), reserved);
            drop(timers);
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn scaled_clock_runs_faster_than_real_time() {
        let clock = Clock::scaled(at(1_000), 60.0);
        let mut timer = clock.timer();
        timer.sleep_until(at(1_000 + 3_600)).await.unwrap();
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
                    timer.sleep_until(deadline).await.unwrap();
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
                    .await
                    .unwrap();
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
        // The quitter gives up on a long sleep: it must count as running again, then leave.
        // (The stayer, a participant that has not slept yet, keeps the clock still meanwhile;
        // it starts only then, else it could finish and leave the quitter's sleep due.)
        tokio::select! {
            biased;
            _ = quitter.sleep_until(at(1_000_000)) => panic!("woke too early"),
            _ = tokio::task::yield_now() => {}
        }
        drop(quitter);
        let staying = tokio::spawn(async move {
            stayer.sleep_until(at(50)).await.unwrap();
        });
        staying.await.unwrap();
        assert_eq!(clock.now(), at(50));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_virtual_clock_calls_its_idle_hook_before_it_wakes_the_next_batch() {
        let clock = Clock::virtual_at(at(0));
        let idle = Arc::new(AtomicUsize::new(0));
        clock.on_idle({
            let idle = Arc::clone(&idle);
            move || {
                idle.fetch_add(1, Ordering::SeqCst);
            }
        });
        let hold = clock.timer();
        let mut tasks = Vec::new();
        for id in 0..3i64 {
            let mut timer = clock.timer();
            let idle = Arc::clone(&idle);
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for step in 1..=3i64 {
                    // Steps far apart: each is a batch of its own.
                    timer.sleep_until(at(step * 100 + id * 10)).await.unwrap();
                    seen.push(idle.load(Ordering::SeqCst));
                }
                seen
            }));
        }
        drop(hold);
        let mut woken = Vec::new();
        for task in tasks {
            woken.push(task.await.unwrap());
        }
        // Nine batches of one, each woken after the hook ran once more.
        for (id, seen) in woken.iter().enumerate() {
            let expected: Vec<usize> = (0..3).map(|step| step * 3 + id + 1).collect();
            assert_eq!(seen, &expected, "sleeper {id}");
        }
        // The clock serves a next run with that run's hook.
        let next = Arc::new(AtomicUsize::new(0));
        clock.on_idle({
            let next = Arc::clone(&next);
            move || {
                next.fetch_add(1, Ordering::SeqCst);
            }
        });
        let before = idle.load(Ordering::SeqCst);
        let mut timer = clock.timer();
        timer.sleep_until(at(1_000)).await.unwrap();
        assert_eq!(next.load(Ordering::SeqCst), 1);
        assert_eq!(idle.load(Ordering::SeqCst), before, "the replaced hook ran");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn scaled_clock_wakes_each_sleeper_at_its_deadline() {
        let clock = Clock::scaled(at(0), 10.0);
        let woke = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Started latest first: every new sleep is earlier than the driver's target.
        for secs in [900i64, 500, 100, 300, 700] {
            let mut timer = clock.timer();
            let (clock, woke) = (clock.clone(), Arc::clone(&woke));
            tasks.push(tokio::spawn(async move {
                timer.sleep_until(at(secs)).await.unwrap();
                let Clock::Scaled(inner) = &clock else {
                    unreachable!()
                };
                // Ten simulated seconds per real second, to the runtime's millisecond.
                let real = inner.origin_instant.elapsed().as_millis() as i64;
                woke.lock().unwrap().push((secs, real));
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        let woke = woke.lock().unwrap().clone();
        let order: Vec<i64> = woke.iter().map(|&(secs, _)| secs).collect();
        assert_eq!(order, [100, 300, 500, 700, 900]);
        for &(secs, real) in woke.iter() {
            assert!(
                (secs * 100..=secs * 100 + 1).contains(&real),
                "{secs} s woke at {real} ms"
            );
        }
        let Clock::Scaled(inner) = &clock else {
            unreachable!()
        };
        // Nobody sleeps: the driver has ended.
        tokio::task::yield_now().await;
        assert!(!lock(&inner.state).driving);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_stopped_scaled_clock_wakes_its_sleepers() {
        let clock = Clock::scaled(at(0), 1.0);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let mut timer = clock.timer();
            tasks.push(tokio::spawn(async move {
                let woke = timer.sleep_until(at(3_600)).await;
                // And from then on, at once.
                (woke, timer.sleep_until(at(7_200)).await)
            }));
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        clock.stop();
        for task in tasks {
            assert_eq!(task.await.unwrap(), (Err(Stopped), Err(Stopped)));
        }
        // A minute of real time passed, not an hour.
        assert!(clock.now() < at(61));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_virtual_clock_wakes_its_sleepers_and_stands_still() {
        let clock = Clock::virtual_at(at(0));
        let hold = clock.timer();
        let mut tasks = Vec::new();
        for id in 0..4i64 {
            let mut timer = clock.timer();
            tasks.push(tokio::spawn(async move {
                timer.sleep_until(at(10 + id)).await.unwrap();
                // Far ahead: nobody else sleeps, but the holder keeps time still.
                timer.sleep_until(at(1_000_000)).await
            }));
        }
        // Let the first sleeps pass: the holder sleeps past them, and wakes first after.
        let mut holder = hold;
        holder.sleep_until(at(100)).await.unwrap();
        clock.stop();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Err(Stopped));
        }
        assert_eq!(holder.sleep_until(at(200)).await, Err(Stopped));
        assert_eq!(clock.now(), at(100));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_abandoned_scaled_sleep_wakes_nobody() {
        let clock = Clock::scaled(at(0), 1.0);
        let mut quitter = clock.timer();
        tokio::select! {
            _ = quitter.sleep_until(at(10)) => panic!("woke too early"),
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        // Its slot is reused; the stale entry does not wake the new sleep early.
        drop(quitter);
        let mut next = clock.timer();
        next.sleep_until(at(20)).await.unwrap();
        assert!(clock.now() >= at(20));
    }
}
