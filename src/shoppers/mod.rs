//! Simulated shoppers: the pure behaviour in [`shopper`] and the thin tokio actor that drives it.

mod settings;
mod shopper;

pub use crate::model::MAX_PAYMENT_ATTEMPTS;
pub use settings::{
    CatalogueSettings, CurrencySettings, CustomerSettings, MAX_PRODUCTS, ProfileName, ShopSettings,
    TrafficSettings,
};
pub use shopper::{
    CHANNELS, Currency, CustomerChanges, PAYMENT_METHODS, ShopContext, Shopper, Versions, profile,
    raw_activity,
};

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::clock::Timer;
use crate::model::Timestamp;
use crate::pipeline::{Outbox, Staged, Staging};

/// Every shopper of a run, each behind its own lock so that a save can read them all while
/// they run, and a gate that a save closes to take them all between two steps.
#[derive(Debug)]
pub struct Population {
    slots: Box<[Mutex<Shopper>]>,
    /// Shared by every step (with its send); taken exclusively by a save.
    gate: tokio::sync::RwLock<()>,
    /// Price reviews up to this instant (microseconds) have been published.
    repriced_through: AtomicI64,
}

impl Population {
    /// The population of these shoppers, whose price reviews are published up to
    /// `repriced_through`. Each shopper goes straight into its slot: a million shoppers are
    /// not first gathered in a vector of their own (160 MB, resident until given back).
    pub fn new(shoppers: impl IntoIterator<Item = Shopper>, repriced_through: Timestamp) -> Self {
        Self {
            slots: shoppers.into_iter().map(Mutex::new).collect(),
            gate: tokio::sync::RwLock::new(()),
            repriced_through: AtomicI64::new(repriced_through.as_micros()),
        }
    }

    /// How many shoppers there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is no shopper.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Shopper `index`.
    pub fn shopper(&self, index: usize) -> MutexGuard<'_, Shopper> {
        // A shopper's step cannot leave it half-changed in a way a later step would mind.
        self.slots[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no step is under way, and keeps new steps from starting until the guard
    /// is dropped.
    pub async fn pause(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// Permission to take a step and send its events, shared by running shoppers.
    pub async fn step_permit(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// A copy of every shopper, in order. Consistent while paused.
    pub fn snapshot(&self) -> Vec<Shopper> {
        (0..self.len()).map(|i| self.shopper(i).clone()).collect()
    }

    /// Where a run of this population resumes: the earliest instant a shopper has something
    /// to do, or `now` if that is earlier. Consistent while paused or stopped.
    pub fn resume_point(&self, now: Timestamp) -> Timestamp {
        (0..self.len())
            .map(|i| self.shopper(i).next_wake())
            .fold(now, Timestamp::min)
    }

    /// Price reviews up to this instant have been published.
    pub fn repriced_through(&self) -> Timestamp {
        Timestamp::from_micros(self.repriced_through.load(Ordering::Acquire))
    }

    /// Records that price reviews up to `at` have been published.
    pub fn set_repriced_through(&self, at: Timestamp) {
        self.repriced_through
            .store(at.as_micros(), Ordering::Release);
    }
}

/// Counts a running shopper in a gauge from its creation until it is dropped.
#[derive(Debug)]
pub struct Active(prometheus::IntGauge);

impl Active {
    /// Counts one more shopper in `gauge`.
    pub fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs shopper `index` of `population` until `end` (exclusive), the clock stopping (which is
/// how a shutdown reaches it), or the pipeline closing: sleeps until the shopper's next
/// wake-up, steps it, and stages what it produced in the pipeline's lane for its thread (see
/// [`crate::pipeline`]). Sending a full lane waits while the pipeline is full, which is how a
/// slow sink slows the shoppers down. A step and its staging happen under the population's
/// step permit, so a save sees every shopper between two steps, with all it produced staged
/// (and the save sends the lanes before itself).
///
/// A shopper that never has to wait (alone at `--speed max`, its own wake-up is always the
/// next) still gives its worker back now and then: each step spends from tokio's cooperative
/// budget, so the runtime's other tasks (the saves, the pacing) keep running.
///
/// An idle shopper is this future and little else, so it is kept small: the arguments are
/// captured once by the `async move` block (an `async fn` would hold them twice), nothing but
/// the clock's sleep is awaited on the common path, and the rarely needed waits (for a permit
/// during a save, for room in a full pipeline) are boxed.
// The actor's dependencies, passed once: bundling them would only move the list elsewhere.
#[allow(clippy::manual_async_fn, clippy::too_many_arguments)]
pub fn run_shopper(
    population: Arc<Population>,
    index: usize,
    ctx: Arc<ShopContext>,
    mut timer: Timer,
    end: Option<Timestamp>,
    outbox: Outbox,
    active: Active,
) -> impl Future<Output = ()> + Send {
    // Outside the future, which then holds 8 bytes for the end, not 16.
    let end = end.map_or(i64::MAX, Timestamp::as_micros);
    async move {
        let _ = &active;
        // The shopper's next wake-up: read again under the same lock as each step, so a step
        // takes the shopper's lock once (nothing else changes a running shopper).
        let mut at = population.shopper(index).next_wake();
        let mut staged = Staged::default();
        loop {
            // Between two steps, with no permit held.
            tokio::task::coop::consume_budget().await;
            if at.as_micros() >= end {
                return;
            }
            // A stopped clock is the shutdown.
            if timer.sleep_until(at).await.is_err() {
                return;
            }
            // Boxed: the waiting path is rare (only during a save) and would make every idle
            // shopper's future bigger.
            let _permit = match population.gate.try_read() {
                Ok(permit) => permit,
                Err(_) => Box::pin(population.step_permit()).await,
            };
            // Moved to another thread with events still in the lane it left: those go first.
            if let Some(lane) = outbox.moved(&staged)
                && Box::pin(outbox.send_lane(lane)).await.is_err()
            {
                return;
            }
            let staging;
            (at, staging) = outbox.stage(&mut staged, |events| {
                let mut shopper = population.shopper(index);
                shopper.step(at, &ctx, events);
                shopper.next_wake()
            });
            let lane = match staging {
                Staging::Done => continue,
                Staging::Full(lane) => lane,
                Staging::Closed => return,
            };
            if Box::pin(outbox.send_lane(lane)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::model::{Catalogue, Money, ShopRules};

    #[tokio::test]
    async fn an_idle_shopper_stays_small() {
        let ctx = Arc::new(ShopContext {
            catalogue: Catalogue::generate(1, 10, 1.0, Timestamp::from_micros(0)).unwrap(),
            rules: ShopRules {
                currency: crate::model::CurrencyCode::USD,
                tax_rate: 0.0,
                shipping_fee: Money::ZERO,
                free_shipping_threshold: Money::ZERO,
            },
            currencies: Vec::new(),
            mean_session_gap_micros: 1e9,
            discount_probability: 0.0,
            traffic: crate::model::TrafficProfile::flat(),
            activity_shape: None,
            activity_mean: 1.0,
            seed: 1,
            mean_lifetime_micros: None,
            customer_id_stride: 1,
            changes: crate::shoppers::CustomerChanges::default(),
        });
        let clock = Clock::scaled(Timestamp::from_micros(0), 1.0);
        let shopper = Shopper::new(1, 1, Timestamp::from_micros(0), &ctx);
        let population = Arc::new(Population::new(vec![shopper], Timestamp::from_micros(0)));
        let (outbox, _inbox) = crate::pipeline::channel(false);
        let gauge = prometheus::IntGauge::new("active", "shoppers").unwrap();
        let actor = run_shopper(
            population,
            0,
            ctx,
            clock.timer(),
            None,
            outbox,
            Active::new(&gauge),
        );
        assert_eq!(gauge.get(), 1);
        // The task's future and its slot are most of an idle shopper's memory. Tokio keeps a
        // task in a block aligned to 128 bytes, with about 100 bytes of its own: a future of
        // at most 144 bytes (152 with the task tracker's token) keeps the task at 256 bytes
        // rather than 384.
        let size = std::mem::size_of_val(&actor);
        assert!(size <= 144, "an idle shopper's future grew to {size} bytes");
        // Its state, in the population beside it.
        let state = std::mem::size_of::<Shopper>();
        assert!(
            state <= 160,
            "an idle shopper's state grew to {state} bytes"
        );
        drop(actor);
        assert_eq!(gauge.get(), 0, "a finished shopper leaves the gauge");
    }
}
