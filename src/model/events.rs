//! The business events the simulator publishes, one record type per topic.
//!
//! Field order here is the field order of the Avro schemas in `avro/`: the Avro encoder writes
//! fields in the order serde hands them over, and the encoding tests decode every record type
//! with an independent reader to keep the two in step.

use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::{
    Channel, CurrencyCode, EventType, Money, OrderStatus, PaymentMethod, PaymentStatus, Timestamp,
    Topic,
};

/// Customer ids are shopper ids: a shopper becomes customer `id` at its first visit.
pub type CustomerId = i64;
/// Product ids are 1-based positions in the catalogue.
pub type ProductId = i64;
/// Order ids encode the customer that placed them, see [`order_id`].
pub type OrderId = i64;
/// Payment ids encode the customer that made them, see [`payment_id`].
pub type PaymentId = i64;

/// How many ids of one kind a single customer can own: ids are `customer_id * ID_STRIDE + seq`.
pub const ID_STRIDE: i64 = 1_000_000_000;

/// The id of customer `customer`'s `seq`-th order (from 1). `42_000_000_017` is the 17th order
/// of customer 42. Each shopper numbers its own orders, so ids never depend on task scheduling
/// and never collide between shoppers.
pub const fn order_id(customer: CustomerId, seq: u32) -> OrderId {
    customer * ID_STRIDE + seq as i64
}

/// Payment attempts per order, at most.
pub const MAX_PAYMENT_ATTEMPTS: i32 = 3;

/// The id of attempt `attempt` (1 to [`MAX_PAYMENT_ATTEMPTS`]) to pay order `order`, in the
/// id space of the order's customer: `customer * ID_STRIDE + (order seq - 1) * 3 + attempt`.
/// Derived from the order alone, so follow-ups of an order need no counter.
pub const fn payment_id(order: OrderId, attempt: i32) -> PaymentId {
    let (customer, seq) = (order / ID_STRIDE, order % ID_STRIDE);
    customer * ID_STRIDE + (seq - 1) * MAX_PAYMENT_ATTEMPTS as i64 + attempt as i64
}

/// Orders one customer can place: their payments' ids must stay within the customer's space.
pub const MAX_ORDERS_PER_CUSTOMER: u32 = ((ID_STRIDE - 1) / MAX_PAYMENT_ATTEMPTS as i64) as u32;

/// The largest customer id whose order ids fit in 64 bits.
pub const MAX_CUSTOMER_ID: CustomerId = i64::MAX / ID_STRIDE - 1;

/// Serialises a UUID as its hyphenated text, the Avro `uuid` logical type on `string`.
fn uuid_text<S: Serializer>(id: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
}

/// A customer signed up, changed their details, or was erased (topic `customers`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerEvent {
    #[serde(serialize_with = "uuid_text")]
    pub event_id: Uuid,
    pub event_type: EventType,
    pub event_time: Timestamp,
    pub customer_id: CustomerId,
    /// The customer's personal data as of this event; `None` once erased.
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub street_address: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<&'static str>,
    pub signup_time: Timestamp,
    pub signup_channel: Channel,
    /// Whether the customer accepts marketing; `None` once erased.
    pub marketing_consent: Option<bool>,
    /// The fields a `customer_updated` event changed, by name, in schema order.
    pub changed_fields: Vec<&'static str>,
    /// The customer as they were before this event, and when that version began: what an
    /// update or an erasure changes in the shop's `customers` table (not published with the
    /// event; the change stream's `before`).
    #[serde(skip)]
    pub before: Option<Box<(CustomerProfile, Timestamp)>>,
}

/// A customer's personal data: what an erasure removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfile {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub street_address: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: &'static str,
    pub marketing_consent: bool,
}

impl CustomerProfile {
    /// The names of the fields that differ in `other`, in schema order.
    pub fn changed_fields(&self, other: &Self) -> Vec<&'static str> {
        [
            ("first_name", self.first_name != other.first_name),
            ("last_name", self.last_name != other.last_name),
            ("email", self.email != other.email),
            ("phone", self.phone != other.phone),
            (
                "street_address",
                self.street_address != other.street_address,
            ),
            ("city", self.city != other.city),
            ("region", self.region != other.region),
            ("postal_code", self.postal_code != other.postal_code),
            ("country", self.country != other.country),
            (
                "marketing_consent",
                self.marketing_consent != other.marketing_consent,
            ),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

impl CustomerEvent {
    /// A customer's event with no personal data: [`CustomerEvent::with_profile`] sets it.
    pub fn new(
        event_id: Uuid,
        event_type: EventType,
        event_time: Timestamp,
        customer_id: CustomerId,
        signup_time: Timestamp,
        signup_channel: Channel,
    ) -> Self {
        Self {
            event_id,
            event_type,
            event_time,
            customer_id,
            first_name: None,
            last_name: None,
            email: None,
            phone: None,
            street_address: None,
            city: None,
            region: None,
            postal_code: None,
            country: None,
            signup_time,
            signup_channel,
            marketing_consent: None,
            changed_fields: Vec::new(),
            before: None,
        }
    }

    /// Sets the personal data of `profile` (all of it, or none for an erasure).
    pub fn with_profile(mut self, profile: Option<CustomerProfile>) -> Self {
        (
            self.first_name,
            self.last_name,
            self.email,
            self.phone,
            self.street_address,
            self.city,
            self.region,
            self.postal_code,
            self.country,
            self.marketing_consent,
        ) = match profile {
            Some(p) => (
                Some(p.first_name),
                Some(p.last_name),
                Some(p.email),
                Some(p.phone),
                Some(p.street_address),
                Some(p.city),
                Some(p.region),
                Some(p.postal_code),
                Some(p.country),
                Some(p.marketing_consent),
            ),
            None => Default::default(),
        };
        self
    }
}

/// A product was published in the catalogue, repriced or discontinued (topic `products`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductEvent {
    #[serde(serialize_with = "uuid_text")]
    pub event_id: Uuid,
    pub event_type: EventType,
    pub event_time: Timestamp,
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    pub category_id: i32,
    pub category: &'static str,
    pub unit_price: Money,
    pub currency: CurrencyCode,
    /// For `product_discontinued`: the product that takes its place in the catalogue.
    pub replaced_by: Option<ProductId>,
    /// What the shop's `products` table holds beside the event (not published with it).
    #[serde(skip)]
    pub row: ProductRowContext,
}

/// What a product event implies of the `products` table beyond its own fields.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProductRowContext {
    /// When the product joined the catalogue.
    pub created_at: Timestamp,
    /// For `product_repriced`: the price it replaces.
    pub previous_price: Option<Money>,
    /// A `product_published` of the catalogue as it is at the start of a run (a snapshot),
    /// rather than a product added later.
    pub snapshot: bool,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderLine {
    pub line_number: i32,
    pub product_id: ProductId,
    pub quantity: i32,
    pub unit_price: Money,
    pub line_total: Money,
}

/// An order was placed (topic `orders`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderEvent {
    #[serde(serialize_with = "uuid_text")]
    pub event_id: Uuid,
    pub event_type: EventType,
    pub event_time: Timestamp,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub items: Vec<OrderLine>,
    pub subtotal: Money,
    pub discount: Money,
    pub tax: Money,
    pub shipping: Money,
    pub total: Money,
    pub currency: CurrencyCode,
    pub channel: Channel,
    pub status: OrderStatus,
    /// When the order was placed, and when its row last changed before this event (not
    /// published with the event; the shop's `orders` table has them).
    #[serde(skip)]
    pub row: RowTimes,
}

/// When a row of the shop's tables was created, and when it last changed before an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowTimes {
    pub created_at: Timestamp,
    pub changed_before: Timestamp,
}

/// A payment attempt changed state (topic `payments`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentEvent {
    #[serde(serialize_with = "uuid_text")]
    pub event_id: Uuid,
    pub event_type: EventType,
    pub event_time: Timestamp,
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub amount: Money,
    pub currency: CurrencyCode,
    pub method: PaymentMethod,
    pub status: PaymentStatus,
    pub attempt: i32,
    pub failure_reason: Option<&'static str>,
    /// When the attempt was made, and when its row last changed before this event (not
    /// published with the event; the shop's `payments` table has them).
    #[serde(skip)]
    pub row: RowTimes,
}

/// Any event, as it travels from shoppers to a sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Customer(CustomerEvent),
    Product(ProductEvent),
    Order(OrderEvent),
    Payment(PaymentEvent),
}

impl Event {
    /// The topic the event belongs to.
    pub fn topic(&self) -> Topic {
        match self {
            Event::Customer(_) => Topic::Customers,
            Event::Product(_) => Topic::Products,
            Event::Order(_) => Topic::Orders,
            Event::Payment(_) => Topic::Payments,
        }
    }

    /// When it happened.
    pub fn event_time(&self) -> Timestamp {
        match self {
            Event::Customer(e) => e.event_time,
            Event::Product(e) => e.event_time,
            Event::Order(e) => e.event_time,
            Event::Payment(e) => e.event_time,
        }
    }

    /// Its unique id.
    pub fn event_id(&self) -> Uuid {
        match self {
            Event::Customer(e) => e.event_id,
            Event::Product(e) => e.event_id,
            Event::Order(e) => e.event_id,
            Event::Payment(e) => e.event_id,
        }
    }

    /// Its `event_type`, for example `order_placed`.
    pub fn event_type(&self) -> EventType {
        match self {
            Event::Customer(e) => e.event_type,
            Event::Product(e) => e.event_type,
            Event::Order(e) => e.event_type,
            Event::Payment(e) => e.event_type,
        }
    }

    /// The message key: the order for orders and payments (so a payment shares its order's
    /// partition), the customer for customers, the product for products.
    pub fn key(&self) -> i64 {
        match self {
            Event::Customer(e) => e.customer_id,
            Event::Product(e) => e.product_id,
            Event::Order(e) => e.order_id,
            Event::Payment(e) => e.order_id,
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Customer(e) => e.serialize(serializer),
            Event::Product(e) => e.serialize(serializer),
            Event::Order(e) => e.serialize(serializer),
            Event::Payment(e) => e.serialize(serializer),
        }
    }
}
