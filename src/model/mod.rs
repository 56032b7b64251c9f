//! The retail OLTP model: pure data and rules, no I/O and no clock.
//!
//! Entities and their keys (documented field by field in `avro/README.md`):
//! - a **customer** (`customer_id`) signs up at a shopper's first visit, then now and then
//!   moves, changes their email, phone or marketing consent, and may ask to be erased;
//! - a **product** (`product_id`) belongs to a category, is published at start, is
//!   repriced now and then, and is discontinued one day, a replacement taking its place;
//! - an **order** (`order_id`) belongs to a customer and has lines, each naming a product;
//! - a **payment** (`payment_id`) is one attempt to pay an order.
//!
//! Every key an event mentions was published by an earlier event: the catalogue comes first,
//! a customer signs up before its first order, and a payment follows its order.

mod catalogue;
mod events;
mod kinds;
pub mod money;
mod pricing;
pub mod time;
mod traffic;

pub use catalogue::{Catalogue, CatalogueError, ORDERABLE_AFTER, Product, REVIEW_PERIOD};
pub use events::{
    CustomerEvent, CustomerId, CustomerProfile, Event, ID_STRIDE, MAX_CUSTOMER_ID,
    MAX_ORDERS_PER_CUSTOMER, MAX_PAYMENT_ATTEMPTS, OrderEvent, OrderId, OrderLine, PaymentEvent,
    PaymentId, ProductEvent, ProductId, ProductRowContext, RowTimes, order_id, payment_id,
};
pub use kinds::{
    Channel, CurrencyCode, EventType, OrderStatus, PaymentMethod, PaymentStatus, PerTopic, Topic,
    TopicCounts, UnknownName, describe, total,
};
pub use money::{MAX_MINOR_UNITS, Money, ParseMoneyError};
pub use pricing::{OrderTotals, ShopRules};
pub use time::{MICROS_PER_HOUR, Timestamp};
pub use traffic::{DAYS, HOURS, Promotion, TrafficProfile};

use uuid::Uuid;

/// Mixes two words into a well-spread 64-bit value (SplitMix64's finaliser): how seeds are
/// derived for shoppers, products and weeks from the run's seed.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random (version 4) UUID drawn from a seeded generator, so event ids are reproducible.
pub fn new_event_id<R: rand::Rng + ?Sized>(rng: &mut R) -> Uuid {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}
