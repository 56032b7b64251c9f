//! Avro encoding of events with the schemas shipped in `avro/`.
//!
//! The schemas are compiled into the binary and parsed once, at first use (the simulator asks
//! for them at start-up, so a broken schema stops it before anything runs).
//!
//! Two encoders produce the same bytes. [`Encoder`] writes each record type's fields directly,
//! in schema order: it is on the hot path of every sink, where apache-avro's schema-driven
//! serde serialiser (a field lookup by name and a namespace copy per field) cost as much as the
//! rest of the pipeline. [`Encoder::encode_with_schema`] is that serialiser, kept as the
//! reference: a property test checks that the two agree byte for byte on generated events, and
//! other tests decode the output with apache-avro and fastavro. [`container`] writes the
//! datums into Avro object container files.

pub mod container;

use std::sync::OnceLock;

use apache_avro::Schema;

use crate::model::{Event, Topic};

/// The `.avsc` text of each topic, as shipped in `avro/`.
pub const SCHEMA_TEXTS: [(Topic, &str); 4] = [
    (Topic::Products, include_str!("../../avro/products.avsc")),
    (Topic::Customers, include_str!("../../avro/customers.avsc")),
    (Topic::Orders, include_str!("../../avro/orders.avsc")),
    (Topic::Payments, include_str!("../../avro/payments.avsc")),
];

/// Encoding failures.
#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    #[error("the Avro schema of topic `{topic}` is invalid: {message}")]
    Schema { topic: Topic, message: String },
    #[error("cannot encode a `{event_type}` event with the `{topic}` schema: {source}")]
    Encode {
        topic: Topic,
        event_type: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

/// The parsed schema of every topic.
#[derive(Debug)]
pub struct Schemas {
    by_topic: [Schema; 4],
}

impl Schemas {
    fn parse() -> Result<Self, EncodingError> {
        let mut parsed = Vec::with_capacity(4);
        for topic in Topic::ALL {
            let (_, text) = SCHEMA_TEXTS[topic.index()];
            let schema = Schema::parse_str(text).map_err(|e| EncodingError::Schema {
                topic,
                message: e.to_string(),
            })?;
            parsed.push(schema);
        }
        let by_topic = parsed.try_into().expect("one schema per topic");
        Ok(Self { by_topic })
    }

    /// The schema of `topic`.
    pub fn get(&self, topic: Topic) -> &Schema {
        &self.by_topic[topic.index()]
    }

    /// `topic`'s schema as the header of an Avro file holds it (logical types and docs kept).
    pub fn header_json(&self, topic: Topic) -> String {
        serde_json::to_string(self.get(topic)).expect("a parsed schema serialises")
    }

    /// The canonical-form JSON of `topic`'s schema, for readers such as Spark's `from_avro`.
    pub fn canonical_json(&self, topic: Topic) -> String {
        self.get(topic).canonical_form()
    }
}

/// The schemas, parsed on first call and kept for the life of the process.
pub fn schemas() -> Result<&'static Schemas, EncodingError> {
    static SCHEMAS: OnceLock<Result<Schemas, (Topic, String)>> = OnceLock::new();
    let parsed = SCHEMAS.get_or_init(|| {
        Schemas::parse().map_err(|e| match e {
            EncodingError::Schema { topic, message } => (topic, message),
            other => (Topic::Products, other.to_string()),
        })
    });
    match parsed {
        Ok(schemas) => Ok(schemas),
        Err((topic, message)) => Err(EncodingError::Schema {
            topic: *topic,
            message: message.clone(),
        }),
    }
}

/// Encodes events as plain Avro binary datums (no container, no header).
#[derive(Debug)]
pub struct Encoder {
    schemas: &'static Schemas,
}

impl Encoder {
    /// An encoder over the shipped schemas.
    pub fn new() -> Result<Self, EncodingError> {
        Ok(Self {
            schemas: schemas()?,
        })
    }

    /// Appends the Avro datum of `event` to `out`. Every event fits its schema by
    /// construction, so this cannot fail.
    pub fn encode_into(&self, event: &Event, out: &mut Vec<u8>) {
        datum::write_event(out, event);
    }

    /// Appends the Avro datum of `event` to `out` with apache-avro's schema-driven serialiser.
    pub fn encode_with_schema(
        &self,
        event: &Event,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodingError> {
        let topic = event.topic();
        apache_avro::write_avro_datum_ref(self.schemas.get(topic), event, out)
            .map(drop)
            .map_err(|source| EncodingError::Encode {
                topic,
                event_type: event.event_type().as_str(),
                source: Box::new(source),
            })
    }

    /// The Avro datum of `event`.
    pub fn encode(&self, event: &Event) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(event, &mut out);
        out
    }
}

/// Avro's variable-length zig-zag encoding of `int` and `long`.
pub mod varint {
    /// Appends `n`: zig-zag, then a little-endian base-128 varint.
    pub fn write_long(out: &mut Vec<u8>, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8 & 0x7F) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// Reads a long at `*at`, advancing it; `None` if the bytes end first or run past 64 bits.
    pub fn read_long(bytes: &[u8], at: &mut usize) -> Option<i64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Some((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        None
    }
}

/// Avro binary encoding of the four record types, field by field in schema order.
mod datum {
    use uuid::Uuid;

    use super::varint::write_long as long;

    use crate::model::{
        CustomerEvent, Event, Money, OrderEvent, PaymentEvent, ProductEvent, Timestamp,
    };

    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        long(out, b.len() as i64);
        out.extend_from_slice(b);
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        bytes(out, s.as_bytes());
    }

    fn uuid(out: &mut Vec<u8>, id: &Uuid) {
        string(
            out,
            id.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
        );
    }

    fn time(out: &mut Vec<u8>, t: Timestamp) {
        long(out, t.as_millis());
    }

    fn money(out: &mut Vec<u8>, m: Money) {
        let (b, start) = m.decimal_bytes();
        bytes(out, &b[start..]);
    }

    fn envelope(out: &mut Vec<u8>, id: &Uuid, event_type: &str, at: Timestamp) {
        uuid(out, id);
        string(out, event_type);
        time(out, at);
    }

    /// A `["null", T]` union: branch 0 for null, else branch 1 and the value.
    fn optional<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
        match value {
            None => long(out, 0),
            Some(value) => {
                long(out, 1);
                write(out, value);
            }
        }
    }

    fn customer(out: &mut Vec<u8>, e: &CustomerEvent) {
        envelope(out, &e.event_id, e.event_type.as_str(), e.event_time);
        long(out, e.customer_id);
        for text in [
            &e.first_name,
            &e.last_name,
            &e.email,
            &e.phone,
            &e.street_address,
            &e.city,
            &e.region,
            &e.postal_code,
        ] {
            optional(out, text.as_deref(), string);
        }
        optional(out, e.country, string);
        time(out, e.signup_time);
        string(out, e.signup_channel.as_str());
        optional(out, e.marketing_consent, |out, b| out.push(u8::from(b)));
        // An array is a block of `len` items, then an empty block.
        if !e.changed_fields.is_empty() {
            long(out, e.changed_fields.len() as i64);
            for field in &e.changed_fields {
                string(out, field);
            }
        }
        long(out, 0);
    }

    fn product(out: &mut Vec<u8>, e: &ProductEvent) {
        envelope(out, &e.event_id, e.event_type.as_str(), e.event_time);
        long(out, e.product_id);
        string(out, &e.sku);
        string(out, &e.name);
        long(out, i64::from(e.category_id));
        string(out, e.category);
        money(out, e.unit_price);
        string(out, e.currency.as_str());
        optional(out, e.replaced_by, long);
    }

    fn order(out: &mut Vec<u8>, e: &OrderEvent) {
        envelope(out, &e.event_id, e.event_type.as_str(), e.event_time);
        long(out, e.order_id);
        long(out, e.customer_id);
        // An array is a block of `len` items, then an empty block.
        if !e.items.is_empty() {
            long(out, e.items.len() as i64);
            for line in &e.items {
                long(out, i64::from(line.line_number));
                long(out, line.product_id);
                long(out, i64::from(line.quantity));
                money(out, line.unit_price);
                money(out, line.line_total);
            }
        }
        long(out, 0);
        for amount in [e.subtotal, e.discount, e.tax, e.shipping, e.total] {
            money(out, amount);
        }
        string(out, e.currency.as_str());
        string(out, e.channel.as_str());
        string(out, e.status.as_str());
    }

    fn payment(out: &mut Vec<u8>, e: &PaymentEvent) {
        envelope(out, &e.event_id, e.event_type.as_str(), e.event_time);
        long(out, e.payment_id);
        long(out, e.order_id);
        long(out, e.customer_id);
        money(out, e.amount);
        string(out, e.currency.as_str());
        string(out, e.method.as_str());
        string(out, e.status.as_str());
        long(out, i64::from(e.attempt));
        optional(out, e.failure_reason, string);
    }

    pub(super) fn write_event(out: &mut Vec<u8>, event: &Event) {
        match event {
            Event::Customer(e) => customer(out, e),
            Event::Product(e) => product(out, e),
            Event::Order(e) => order(out, e),
            Event::Payment(e) => payment(out, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Money, OrderEvent, OrderLine, PaymentEvent, Timestamp};
    use apache_avro::types::Value;
    use uuid::Uuid;

    fn payment(failure_reason: Option<&'static str>) -> Event {
        Event::Payment(PaymentEvent {
            row: Default::default(),
            event_id: Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef),
            event_type: crate::model::EventType::PaymentDeclined,
            event_time: Timestamp::from_micros(1_000_000), // 1000 ms
            payment_id: 3,
            order_id: 2,
            customer_id: 1,
            amount: Money::from_cents(1999),
            currency: crate::model::CurrencyCode::USD,
            method: crate::model::PaymentMethod::Paypal,
            status: crate::model::PaymentStatus::Declined,
            attempt: 1,
            failure_reason,
        })
    }

    /// Avro's zig-zag varint of a long.
    fn long(n: i64) -> Vec<u8> {
        let mut out = Vec::new();
        varint::write_long(&mut out, n);
        out
    }

    fn string(s: &[u8]) -> Vec<u8> {
        [long(s.len() as i64), s.to_vec()].concat()
    }

    #[test]
    fn payment_encodes_to_exact_bytes() {
        let encoder = Encoder::new().unwrap();
        let bytes = encoder.encode(&payment(Some("account_restricted")));
        let expected = [
            string(b"01234567-89ab-4def-8123-456789abcdef"),
            string(b"payment_declined"),
            long(1000),
            long(3),
            long(2),
            long(1),
            string(&[0x07, 0xcf]), // 19.99 as decimal(12,2)
            string(b"USD"),
            string(b"paypal"),
            string(b"declined"),
            long(1),
            long(1), // union branch 1: string
            string(b"account_restricted"),
        ]
        .concat();
        assert_eq!(bytes, expected);

        let none = encoder.encode(&payment(None));
        assert_eq!(none[none.len() - 1], 0, "union branch 0: null");
    }

    #[test]
    fn order_round_trips_through_the_avro_reader() {
        let line = OrderLine {
            line_number: 1,
            product_id: 7,
            quantity: 2,
            unit_price: Money::from_cents(1050),
            line_total: Money::from_cents(2100),
        };
        let event = Event::Order(OrderEvent {
            row: Default::default(),
            event_id: Uuid::nil(),
            event_type: crate::model::EventType::OrderPlaced,
            event_time: Timestamp::from_micros(5_000),
            order_id: 1_000_000_001,
            customer_id: 1,
            items: vec![line],
            subtotal: Money::from_cents(2100),
            discount: Money::from_cents(0),
            tax: Money::from_cents(173),
            shipping: Money::from_cents(599),
            total: Money::from_cents(2872),
            currency: crate::model::CurrencyCode::USD,
            channel: crate::model::Channel::Web,
            status: crate::model::OrderStatus::Placed,
        });
        let encoder = Encoder::new().unwrap();
        let bytes = encoder.encode(&event);
        let schema = schemas().unwrap().get(Topic::Orders);
        let value = apache_avro::from_avro_datum(schema, &mut bytes.as_slice(), None).unwrap();
        let Value::Record(fields) = value else {
            panic!("not a record: {value:?}")
        };
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("order_id"), Value::Long(1_000_000_001));
        assert_eq!(get("event_time"), Value::TimestampMillis(5));
        let Value::Decimal(total) = get("total") else {
            panic!("total is not a decimal")
        };
        assert_eq!(<Vec<u8>>::try_from(total).unwrap(), vec![0x0b, 0x38]); // 2872
        let Value::Array(items) = get("items") else {
            panic!("items is not an array")
        };
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn every_schema_parses_and_has_the_envelope() {
        let schemas = schemas().unwrap();
        for topic in Topic::ALL {
            let json = schemas.canonical_json(topic);
            for field in ["event_id", "event_type", "event_time"] {
                assert!(
                    json.contains(&format!("\"name\":\"{field}\"")),
                    "{topic} lacks {field}"
                );
            }
        }
    }

    mod agreement {
        use super::*;
        use crate::model::{Catalogue, CustomerEvent, ShopRules};
        use crate::shoppers::{ShopContext, Shopper};
        use proptest::prelude::*;

        fn both(event: &Event) -> (Vec<u8>, Vec<u8>) {
            let encoder = Encoder::new().unwrap();
            let (mut fast, mut reference) = (Vec::new(), Vec::new());
            encoder.encode_into(event, &mut fast);
            encoder.encode_with_schema(event, &mut reference).unwrap();
            (fast, reference)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Every event a shopper can produce encodes to the same bytes both ways.
            #[test]
            fn field_by_field_encoding_matches_the_schema_driven_one(seed in any::<u64>(), id in 1i64..1_000_000_000) {
                let ctx = ShopContext {
                    catalogue: Catalogue::generate(seed, 40, 1.0, Timestamp::from_micros(0))
                        .unwrap()
                        .with_repricing(0.5)
                        .unwrap()
                        .with_discontinuation(26.0)
                        .unwrap(),
                    rules: ShopRules {
                        currency: crate::model::CurrencyCode::from_ascii(b"EUR"),
                        tax_rate: 0.21,
                        shipping_fee: Money::from_cents(395),
                        free_shipping_threshold: Money::from_cents(10_000),
                    },
                    currencies: vec![crate::shoppers::Currency {
                        rules: ShopRules {
                            currency: crate::model::CurrencyCode::from_ascii(b"SEK"),
                            tax_rate: 0.25,
                            shipping_fee: Money::from_cents(4900),
                            free_shipping_threshold: Money::from_cents(100_000),
                        },
                        rate: 11.4,
                        share: 0.5,
                    }],
                    mean_session_gap_micros: 3.6e9,
                    discount_probability: 0.5,
                    traffic: crate::model::TrafficProfile::flat(),
                    activity_shape: None,
                    activity_mean: 1.0,
                    seed,
                    mean_lifetime_micros: Some(3.6e10),
                    customer_id_stride: 1_000,
                    // Often enough that 40 steps see every kind of change.
                    changes: crate::shoppers::CustomerChanges {
                        moves: 2_000.0,
                        contact_changes: 2_000.0,
                        consent_changes: 2_000.0,
                        erasures: 500.0,
                    },
                };
                let mut events: Vec<Event> = ctx
                    .catalogue
                    .publish(Timestamp::from_micros(0), seed, crate::model::CurrencyCode::from_ascii(b"EUR"))
                    .into_iter()
                    .map(Event::Product)
                    .collect();
                let mut review = Timestamp::from_micros(0);
                for _ in 0..20 {
                    review = ctx.catalogue.next_review(review);
                    events.extend(ctx.catalogue.changes_at(review, crate::model::CurrencyCode::from_ascii(b"EUR")).into_iter().map(Event::Product));
                }
                let mut shopper = Shopper::new(seed, id, Timestamp::from_micros(1_700_000_000_000_000), &ctx);
                for _ in 0..40 {
                    let at = shopper.next_wake();
                    shopper.step(at, &ctx, &mut events);
                }
                for event in &events {
                    let (fast, reference) = both(event);
                    prop_assert_eq!(fast, reference, "{:?}", event);
                }
            }

            /// Extreme values: negative and large amounts, empty arrays, non-ASCII text.
            #[test]
            fn edge_values_agree(cents in -crate::model::MAX_MINOR_UNITS..=crate::model::MAX_MINOR_UNITS, text in "\\PC{0,40}", millis in any::<i32>()) {
                let at = Timestamp::from_micros(i64::from(millis) * 1000);
                let order = Event::Order(OrderEvent {
                    row: Default::default(),
                    event_id: Uuid::from_u128(cents as u128),
                    event_type: crate::model::EventType::OrderPlaced,
                    event_time: at,
                    order_id: cents,
                    customer_id: -cents,
                    items: Vec::new(),
                    subtotal: Money::from_cents(cents),
                    discount: Money::from_cents(-cents),
                    tax: Money::ZERO,
                    shipping: Money::from_cents(cents / 7),
                    total: Money::from_cents(cents),
                    currency: crate::model::CurrencyCode::USD,
                    channel: crate::model::Channel::Web,
                    status: crate::model::OrderStatus::Placed,
                });
                let (fast, reference) = both(&order);
                prop_assert_eq!(fast, reference);
                let customer = Event::Customer(CustomerEvent {
                    before: None,
                    event_id: Uuid::nil(),
                    event_type: crate::model::EventType::CustomerSignedUp,
                    event_time: at,
                    customer_id: cents,
                    first_name: Some(text.clone()),
                    last_name: Some(text.clone()),
                    email: Some(text.clone()),
                    phone: Some(String::new()),
                    street_address: Some(text.clone()),
                    city: Some(text.clone()),
                    region: Some(text.clone()),
                    postal_code: Some(text.clone()),
                    country: Some("US"),
                    signup_time: at,
                    signup_channel: crate::model::Channel::Web,
                    marketing_consent: Some(cents % 2 == 0),
                    changed_fields: vec!["email", "phone"],
                });
                let (fast, reference) = both(&customer);
                prop_assert_eq!(fast, reference);
                let Event::Customer(customer) = customer else { unreachable!() };
                let erased = Event::Customer(CustomerEvent {
                    event_type: crate::model::EventType::CustomerDeleted,
                    changed_fields: Vec::new(),
                    ..customer.with_profile(None)
                });
                let (fast, reference) = both(&erased);
                prop_assert_eq!(fast, reference);
            }
        }
    }
}
