//! Simulated shoppers: the pure behaviour in [`shopper`] and the thin tokio actor that drives it.

mod shopper;

pub use crate::model::MAX_PAYMENT_ATTEMPTS;
pub use shopper::{CHANNELS, PAYMENT_METHODS, ShopContext, Shopper, raw_activity};

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

use crate::clock::Timer;
use crate::model::Timestamp;
use crate::pipeline::Message;

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

/// Runs one shopper until `end` (exclusive), `shutdown`, or the pipeline closing: sleeps until
/// the shopper's next wake-up, steps it, and sends what it produced. The send waits while the
/// pipeline is full, which is how a slow sink slows the shoppers down.
///
/// An idle shopper is this future and little else, so it is kept small: the arguments are
/// captured once by the `async move` block (an `async fn` would hold them twice), and the
/// rarely needed waiting send is boxed.
#[allow(clippy::manual_async_fn)]
pub fn run_shopper(
    mut shopper: Shopper,
    ctx: Arc<ShopContext>,
    mut timer: Timer,
    end: Option<Timestamp>,
    outbox: mpsc::Sender<Message>,
    shutdown: CancellationToken,
    active: Active,
) -> impl Future<Output = ()> + Send {
    async move {
        let _active = active;
        let mut events = Vec::new();
        loop {
            let at = shopper.next_wake();
            if end.is_some_and(|end| at >= end) || shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = timer.sleep_until(at) => {}
            }
            shopper.step(at, &ctx, &mut events);
            if events.is_empty() {
                // A customer left; the slot's next one has not come yet.
                continue;
            }
            let batch = Message::Events(std::mem::take(&mut events), tokio::time::Instant::now());
            match outbox.try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(message)) => {
                    if Box::pin(outbox.send(message)).await.is_err() {
                        return;
                    }
                }
                Err(TrySendError::Closed(_)) => return,
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
            catalogue: Catalogue::generate(1, 10, 1.0).unwrap(),
            rules: ShopRules {
                currency: "USD",
                tax_rate: 0.0,
                shipping_fee: Money::ZERO,
                free_shipping_threshold: Money::ZERO,
            },
            mean_session_gap_micros: 1e9,
            discount_probability: 0.0,
            traffic: crate::model::TrafficProfile::flat(),
            activity_shape: None,
            activity_mean: 1.0,
            seed: 1,
            mean_lifetime_micros: None,
            customer_id_stride: 1,
        });
        let clock = Clock::scaled(Timestamp::from_micros(0), 1.0);
        let shopper = Shopper::new(1, 1, Timestamp::from_micros(0), &ctx);
        let (outbox, _inbox) = mpsc::channel(1);
        let gauge = prometheus::IntGauge::new("active", "shoppers").unwrap();
        let actor = run_shopper(
            shopper,
            ctx,
            clock.timer(),
            None,
            outbox,
            CancellationToken::new(),
            Active::new(&gauge),
        );
        assert_eq!(gauge.get(), 1);
        // The task's future is most of an idle shopper's memory (target: 1 KiB in all).
        let size = std::mem::size_of_val(&actor);
        assert!(size <= 320, "an idle shopper's future grew to {size} bytes");
        drop(actor);
        assert_eq!(gauge.get(), 0, "a finished shopper leaves the gauge");
    }
}
