//! Simulated shoppers: the pure behaviour in [`shopper`] and the thin tokio actor that drives it.

mod shopper;

pub use shopper::{CHANNELS, MAX_PAYMENT_ATTEMPTS, PAYMENT_METHODS, ShopContext, Shopper};

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Timer;
use crate::model::Timestamp;
use crate::pipeline::Message;

/// Runs one shopper until `end` (exclusive), `shutdown`, or the pipeline closing: sleeps until
/// the shopper's next wake-up, steps it, and sends what it produced. The send waits while the
/// pipeline is full, which is how a slow sink slows the shoppers down.
pub async fn run_shopper(
    mut shopper: Shopper,
    ctx: Arc<ShopContext>,
    mut timer: Timer,
    end: Option<Timestamp>,
    outbox: mpsc::Sender<Message>,
    shutdown: CancellationToken,
) {
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
        if outbox
            .send(Message::Events(std::mem::take(&mut events)))
            .await
            .is_err()
        {
            return;
        }
    }
}
