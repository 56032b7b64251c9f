//! The shop's rows, and the transactions business events make of them.

use serde::Serialize;

use super::schemas::{Schemas, schemas};
use super::{DebeziumSettings, Table};
use crate::encoding::varint::write_long;
use crate::model::{
    CustomerEvent, CustomerProfile, Event, EventType, Money, OrderEvent, OrderStatus, PaymentEvent,
    PaymentStatus, ProductEvent, Timestamp, Topic,
};

/// Where a change record goes: a table's topic, or the transaction metadata's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Table(Table),
    Transactions,
}

impl Stream {
    /// How many streams there are: every table, and the transaction metadata.
    pub const COUNT: usize = Table::COUNT + 1;

    /// Every stream, in index order.
    pub fn all() -> impl Iterator<Item = Stream> {
        Table::ALL
            .into_iter()
            .map(Stream::Table)
            .chain(std::iter::once(Stream::Transactions))
    }

    /// The position in [`Stream::all`].
    pub fn index(self) -> usize {
        match self {
            Stream::Table(t) => t.index(),
            Stream::Transactions => Table::COUNT,
        }
    }

    /// The business topic whose events a stream's records stand for, one record each: a
    /// table's rows for the entity (order lines and transaction markers stand for none).
    pub fn topic(self) -> Option<Topic> {
        match self {
            Stream::Table(Table::Products) => Some(Topic::Products),
            Stream::Table(Table::Customers) => Some(Topic::Customers),
            Stream::Table(Table::Orders) => Some(Topic::Orders),
            Stream::Table(Table::Payments) => Some(Topic::Payments),
            Stream::Table(Table::OrderLines) | Stream::Transactions => None,
        }
    }
}

/// One record of the change stream: where it goes, its key and value (Avro datums; `None` is a
/// tombstone), when it happened, and which business event of the batch it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    pub stream: Stream,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub time: Timestamp,
    /// The position in the batch of the event this record belongs to.
    pub event: usize,
    /// The event's own row change (one per event): what counts the event as delivered.
    pub primary: bool,
}

#[derive(Serialize)]
struct CustomerRow<'a> {
    customer_id: i64,
    first_name: &'a str,
    last_name: &'a str,
    email: &'a str,
    phone: &'a str,
    street_address: &'a str,
    city: &'a str,
    region: &'a str,
    postal_code: &'a str,
    country: &'a str,
    marketing_consent: bool,
    signup_channel: &'static str,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Serialize)]
struct ProductRow<'a> {
    product_id: i64,
    sku: &'a str,
    name: &'a str,
    category_id: i32,
    category: &'static str,
    unit_price: Money,
    currency: &'a str,
    created_at: Timestamp,
    discontinued_at: Option<Timestamp>,
    replaced_by: Option<i64>,
}

#[derive(Serialize)]
struct OrderRow<'a> {
    order_id: i64,
    customer_id: i64,
    status: &'static str,
    subtotal: Money,
    discount: Money,
    tax: Money,
    shipping: Money,
    total: Money,
    currency: &'a str,
    channel: &'static str,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Serialize)]
struct OrderLineRow {
    order_id: i64,
    line_number: i32,
    product_id: i64,
    quantity: i32,
    unit_price: Money,
    line_total: Money,
}

#[derive(Serialize)]
struct PaymentRow<'a> {
    payment_id: i64,
    order_id: i64,
    customer_id: i64,
    amount: Money,
    currency: &'a str,
    method: &'static str,
    status: &'static str,
    attempt: i32,
    failure_reason: Option<&'static str>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// A row, and its primary key as a record.
trait Row: Serialize {
    fn key(&self) -> impl Serialize;
}

macro_rules! keyed {
    ($row:ident $(<$lt:lifetime>)?, $key:ident { $($field:ident: $ty:ty),+ }) => {
        #[derive(Serialize)]
        struct $key {
            $($field: $ty,)+
        }

        impl Row for $row $(<$lt>)? {
            fn key(&self) -> impl Serialize {
                $key { $($field: self.$field,)+ }
            }
        }
    };
}

keyed!(CustomerRow<'_>, CustomerKey { customer_id: i64 });
keyed!(ProductRow<'_>, ProductKey { product_id: i64 });
keyed!(OrderRow<'_>, OrderKey { order_id: i64 });
keyed!(
    OrderLineRow,
    OrderLineKey {
        order_id: i64,
        line_number: i32
    }
);
keyed!(PaymentRow<'_>, PaymentKey { payment_id: i64 });

#[derive(Serialize)]
struct Source<'a> {
    version: &'static str,
    connector: &'static str,
    name: &'a str,
    ts_ms: i64,
    snapshot: Option<&'static str>,
    db: &'a str,
    sequence: Option<&'static str>,
    schema: &'a str,
    table: &'static str,
    #[serde(rename = "txId")]
    tx_id: Option<i64>,
    lsn: Option<i64>,
    xmin: Option<i64>,
}

#[derive(Serialize)]
struct Block {
    id: String,
    total_order: i64,
    data_collection_order: i64,
}

/// The envelope, whole, for JSON (Avro writes it field by field, see `TableSchemas::row`).
#[derive(Serialize)]
struct Envelope<'a, R> {
    before: Option<R>,
    after: Option<R>,
    source: Source<'a>,
    op: &'static str,
    ts_ms: Option<i64>,
    transaction: Option<Block>,
}

#[derive(Serialize)]
struct TransactionKey<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct DataCollection {
    data_collection: String,
    event_count: i64,
}

#[derive(Serialize)]
struct TransactionValue<'a> {
    status: &'static str,
    id: &'a str,
    event_count: Option<i64>,
    data_collections: Option<Vec<DataCollection>>,
    ts_ms: i64,
}

/// A row change, before it is numbered and encoded.
enum Change<'a> {
    Customer(Option<CustomerRow<'a>>, Option<CustomerRow<'a>>),
    Product(Option<ProductRow<'a>>, Option<ProductRow<'a>>),
    Order(Option<OrderRow<'a>>, Option<OrderRow<'a>>),
    OrderLine(OrderLineRow),
    Payment(Option<PaymentRow<'a>>, Option<PaymentRow<'a>>),
}

impl Change<'_> {
    fn table(&self) -> Table {
        match self {
            Change::Customer(..) => Table::Customers,
            Change::Product(..) => Table::Products,
            Change::Order(..) => Table::Orders,
            Change::OrderLine(_) => Table::OrderLines,
            Change::Payment(..) => Table::Payments,
        }
    }
}

/// A change and the event it belongs to.
struct Pending<'a> {
    change: Change<'a>,
    event: usize,
    primary: bool,
    /// A snapshot read (`r`) of the catalogue at the start.
    snapshot: bool,
}

fn customer_row<'a>(
    e: &CustomerEvent,
    profile: &'a CustomerProfile,
    updated_at: Timestamp,
) -> CustomerRow<'a> {
    CustomerRow {
        customer_id: e.customer_id,
        first_name: &profile.first_name,
        last_name: &profile.last_name,
        email: &profile.email,
        phone: &profile.phone,
        street_address: &profile.street_address,
        city: &profile.city,
        region: &profile.region,
        postal_code: &profile.postal_code,
        country: profile.country,
        marketing_consent: profile.marketing_consent,
        signup_channel: e.signup_channel.as_str(),
        created_at: e.signup_time,
        updated_at,
    }
}

fn product_row(e: &ProductEvent, unit_price: Money, discontinued: bool) -> ProductRow<'_> {
    ProductRow {
        product_id: e.product_id,
        sku: &e.sku,
        name: &e.name,
        category_id: e.category_id,
        category: e.category,
        unit_price,
        currency: e.currency.as_str(),
        created_at: e.row.created_at,
        discontinued_at: discontinued.then_some(e.event_time),
        replaced_by: if discontinued { e.replaced_by } else { None },
    }
}

fn order_row(e: &OrderEvent, status: OrderStatus, updated_at: Timestamp) -> OrderRow<'_> {
    OrderRow {
        order_id: e.order_id,
        customer_id: e.customer_id,
        status: status.as_str(),
        subtotal: e.subtotal,
        discount: e.discount,
        tax: e.tax,
        shipping: e.shipping,
        total: e.total,
        currency: e.currency.as_str(),
        channel: e.channel.as_str(),
        created_at: e.row.created_at,
        updated_at,
    }
}

fn payment_row<'a>(
    e: &'a PaymentEvent,
    status: PaymentStatus,
    failure_reason: Option<&'static str>,
    updated_at: Timestamp,
) -> PaymentRow<'a> {
    PaymentRow {
        payment_id: e.payment_id,
        order_id: e.order_id,
        customer_id: e.customer_id,
        amount: e.amount,
        currency: e.currency.as_str(),
        method: e.method.as_str(),
        status: status.as_str(),
        attempt: e.attempt,
        failure_reason,
        created_at: e.row.created_at,
        updated_at,
    }
}

/// The status an order leaves for `status` (orders move along one path).
fn previous_order_status(status: OrderStatus) -> OrderStatus {
    match status {
        OrderStatus::Placed | OrderStatus::Shipped | OrderStatus::Cancelled => OrderStatus::Placed,
        OrderStatus::Delivered => OrderStatus::Shipped,
        OrderStatus::Returned => OrderStatus::Delivered,
    }
}

/// The status a payment leaves for `status`: a capture follows the authorisation, a refund the
/// capture.
fn previous_payment_status(status: PaymentStatus) -> PaymentStatus {
    match status {
        PaymentStatus::Refunded => PaymentStatus::Captured,
        _ => PaymentStatus::Authorized,
    }
}

/// The changes one event makes. `profiles` holds the customer's details (after, then before)
/// for the rows to borrow.
fn changes<'a>(
    event: &'a Event,
    index: usize,
    profiles: &'a [Option<CustomerProfile>; 2],
    out: &mut Vec<Pending<'a>>,
) {
    let mut push = |change, primary, snapshot| {
        out.push(Pending {
            change,
            event: index,
            primary,
            snapshot,
        })
    };
    match event {
        Event::Customer(c) => {
            let after = profiles[0]
                .as_ref()
                .map(|p| customer_row(c, p, c.event_time));
            let before = match (&profiles[1], &c.before) {
                (Some(p), Some(before)) => Some(customer_row(c, p, before.1)),
                _ => None,
            };
            push(Change::Customer(before, after), true, false);
        }
        Event::Product(p) => {
            let (before, after) = match p.event_type {
                EventType::ProductRepriced => (
                    Some(product_row(
                        p,
                        p.row.previous_price.unwrap_or(p.unit_price),
                        false,
                    )),
                    Some(product_row(p, p.unit_price, false)),
                ),
                EventType::ProductDiscontinued => (
                    Some(product_row(p, p.unit_price, false)),
                    Some(product_row(p, p.unit_price, true)),
                ),
                _ => (None, Some(product_row(p, p.unit_price, false))),
            };
            push(Change::Product(before, after), true, p.row.snapshot);
        }
        Event::Order(o) if o.status == OrderStatus::Placed => {
            push(
                Change::Order(None, Some(order_row(o, o.status, o.event_time))),
                true,
                false,
            );
            for line in &o.items {
                push(
                    Change::OrderLine(OrderLineRow {
                        order_id: o.order_id,
                        line_number: line.line_number,
                        product_id: line.product_id,
                        quantity: line.quantity,
                        unit_price: line.unit_price,
                        line_total: line.line_total,
                    }),
                    false,
                    false,
                );
            }
        }
        Event::Order(o) => {
            let before = order_row(o, previous_order_status(o.status), o.row.changed_before);
            push(
                Change::Order(Some(before), Some(order_row(o, o.status, o.event_time))),
                true,
                false,
            );
        }
        Event::Payment(p) => {
            let after = payment_row(p, p.status, p.failure_reason, p.event_time);
            let before = match p.status {
                PaymentStatus::Authorized | PaymentStatus::Declined => None,
                PaymentStatus::Captured | PaymentStatus::Refunded => Some(payment_row(
                    p,
                    previous_payment_status(p.status),
                    None,
                    p.row.changed_before,
                )),
            };
            push(Change::Payment(before, Some(after)), true, false);
        }
    }
}

/// Whether `next` belongs to the transaction of `event`: a refund commits with its order's
/// return or cancellation.
fn joins(event: &Event, next: &Event) -> bool {
    match (event, next) {
        (Event::Order(o), Event::Payment(p)) => {
            matches!(o.status, OrderStatus::Returned | OrderStatus::Cancelled)
                && p.status == PaymentStatus::Refunded
                && p.order_id == o.order_id
                && p.event_time == o.event_time
        }
        _ => false,
    }
}

/// Turns batches of business events into the change stream: numbers every change (`lsn`) and
/// transaction (`txId`), and encodes keys and envelopes.
#[derive(Debug)]
pub struct ChangeStream {
    settings: DebeziumSettings,
    schemas: &'static Schemas,
    /// Keys and values as JSON text rather than Avro (the `stdout` sink's lines).
    json: bool,
    /// The next change's log sequence number.
    lsn: i64,
    /// The next transaction's id.
    tx: i64,
}

/// Where a change stream stands: what a save of the run keeps, so a resumed run numbers on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub lsn: i64,
    pub tx: i64,
}

/// Log sequence numbers and transaction ids start here (like a database that has run a while).
const FIRST_LSN: i64 = 1_000;
const FIRST_TX: i64 = 500;

impl ChangeStream {
    /// A change stream numbered from the start, or from `position`.
    pub fn new(settings: DebeziumSettings, position: Option<Position>) -> Self {
        let position = position.unwrap_or(Position {
            lsn: FIRST_LSN,
            tx: FIRST_TX,
        });
        Self {
            settings,
            schemas: schemas(),
            json: false,
            lsn: position.lsn,
            tx: position.tx,
        }
    }

    /// The same stream, with keys and values as JSON text (instants as RFC 3339 text, amounts
    /// as decimal text), for lines of JSON.
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }

    /// Where the stream stands.
    pub fn position(&self) -> Position {
        Position {
            lsn: self.lsn,
            tx: self.tx,
        }
    }

    /// The settings it publishes under.
    pub fn settings(&self) -> &DebeziumSettings {
        &self.settings
    }

    /// The records of `events`, in commit order: per transaction, its BEGIN (with transaction
    /// metadata), its changes (each delete followed by a tombstone), its END.
    pub fn changes(&mut self, events: &[Event]) -> Vec<ChangeRecord> {
        let mut out = Vec::with_capacity(events.len() * 2);
        let mut index = 0;
        // The catalogue's snapshot: every read, then the last one marked so.
        let snapshot_end = events
            .iter()
            .rposition(|e| matches!(e, Event::Product(p) if p.row.snapshot));
        while index < events.len() {
            let mut end = index + 1;
            while end < events.len() && joins(&events[end - 1], &events[end]) {
                end += 1;
            }
            self.transaction(events, index..end, snapshot_end, &mut out);
            index = end;
        }
        out
    }

    fn transaction(
        &mut self,
        events: &[Event],
        range: std::ops::Range<usize>,
        snapshot_end: Option<usize>,
        out: &mut Vec<ChangeRecord>,
    ) {
        let profiles: Vec<[Option<CustomerProfile>; 2]> = events[range.clone()]
            .iter()
            .map(|e| match e {
                Event::Customer(c) => [
                    (c.event_type != EventType::CustomerDeleted).then(|| profile_of(c)),
                    c.before.as_ref().map(|b| b.0.clone()),
                ],
                _ => [None, None],
            })
            .collect();
        let mut pending = Vec::new();
        for (offset, event) in events[range.clone()].iter().enumerate() {
            changes(event, range.start + offset, &profiles[offset], &mut pending);
        }
        let first = &events[range.start];
        let time = first.event_time();
        let snapshot = pending.first().is_some_and(|p| p.snapshot);
        let tx = (!snapshot).then(|| {
            let tx = self.tx;
            self.tx += 1;
            tx
        });
        let id = tx.map(|tx| format!("{tx}:{}", self.lsn));
        let metadata = self.settings.transaction_metadata && !snapshot;
        if let (true, Some(id)) = (metadata, &id) {
            out.push(self.marker(id, "BEGIN", None, time, range.start));
        }
        let mut per_table = [0i64; Table::COUNT];
        for (total, change) in pending.into_iter().enumerate() {
            let table = change.change.table();
            per_table[table.index()] += 1;
            let block = id.as_ref().map(|id| Block {
                id: id.clone(),
                total_order: total as i64 + 1,
                data_collection_order: per_table[table.index()],
            });
            let last_read = change.snapshot && Some(change.event) == snapshot_end;
            let (key, value, deleted) = self.encode(&change, tx, block, last_read, time);
            out.push(ChangeRecord {
                stream: Stream::Table(table),
                key: key.clone(),
                value: Some(value),
                time,
                event: change.event,
                primary: change.primary,
            });
            if deleted {
                out.push(ChangeRecord {
                    stream: Stream::Table(table),
                    key,
                    value: None,
                    time,
                    event: change.event,
                    primary: false,
                });
            }
            self.lsn += 1;
        }
        if let (true, Some(id)) = (metadata, &id) {
            out.push(self.marker(id, "END", Some(per_table), time, range.start));
        }
    }

    /// A BEGIN or END of the transaction `id` on the metadata topic.
    fn marker(
        &self,
        id: &str,
        status: &'static str,
        counts: Option<[i64; Table::COUNT]>,
        time: Timestamp,
        event: usize,
    ) -> ChangeRecord {
        let schemas = &self.schemas.streams[Stream::Transactions.index()];
        let data_collections = counts.map(|counts| {
            Table::ALL
                .iter()
                .filter(|t| counts[t.index()] > 0)
                .map(|t| DataCollection {
                    data_collection: format!("{}.{t}", self.settings.schema),
                    event_count: counts[t.index()],
                })
                .collect()
        });
        let value = TransactionValue {
            status,
            id,
            event_count: counts.map(|c| c.iter().sum()),
            data_collections,
            ts_ms: time.as_millis(),
        };
        ChangeRecord {
            stream: Stream::Transactions,
            key: self.datum(&schemas.key, &TransactionKey { id }),
            value: Some(self.datum(&schemas.value, &value)),
            time,
            event,
            primary: false,
        }
    }

    /// The key and envelope of a change, and whether it deletes its row.
    fn encode(
        &self,
        change: &Pending<'_>,
        tx: Option<i64>,
        block: Option<Block>,
        last_read: bool,
        time: Timestamp,
    ) -> (Vec<u8>, Vec<u8>, bool) {
        let table = change.change.table();
        let schemas = &self.schemas.streams[Stream::Table(table).index()];
        let source = Source {
            version: env!("CARGO_PKG_VERSION"),
            connector: "postgresql",
            name: &self.settings.topic_prefix,
            ts_ms: time.as_millis(),
            snapshot: Some(match (change.snapshot, last_read) {
                (true, true) => "last",
                (true, false) => "true",
                (false, _) => "false",
            }),
            db: &self.settings.database,
            sequence: None,
            schema: &self.settings.schema,
            table: table.as_str(),
            tx_id: tx,
            lsn: Some(self.lsn),
            xmin: None,
        };
        let op = |before: bool, after: bool| match (before, after, change.snapshot) {
            (_, _, true) => "r",
            (false, true, false) => "c",
            (true, true, false) => "u",
            _ => "d",
        };
        macro_rules! envelope {
            ($before:expr, $after:expr) => {{
                let (before, after) = ($before, $after);
                let (b, a) = (before.is_some(), after.is_some());
                let row = after.as_ref().or(before.as_ref()).expect("a row");
                let key = self.datum(&schemas.key, &Row::key(*row));
                if self.json {
                    let value = Envelope {
                        before,
                        after,
                        source,
                        op: op(b, a),
                        ts_ms: Some(time.as_millis()),
                        transaction: block,
                    };
                    let value = serde_json::to_vec(&value).expect("rows serialise");
                    return (key, value, !a);
                }
                // The envelope's fields in order, each written alone (see `TableSchemas::row`).
                let row_schema = schemas.row.as_ref().expect("a table's row schema");
                let mut value = Vec::with_capacity(512);
                for image in [before, after] {
                    match image {
                        None => write_long(&mut value, 0),
                        Some(image) => {
                            write_long(&mut value, 1);
                            value.extend(datum(row_schema, image));
                        }
                    }
                }
                value.extend(datum(&self.schemas.source, &source));
                let op = op(b, a);
                write_long(&mut value, op.len() as i64);
                value.extend_from_slice(op.as_bytes());
                write_long(&mut value, 1);
                write_long(&mut value, time.as_millis());
                match block {
                    None => write_long(&mut value, 0),
                    Some(block) => {
                        write_long(&mut value, 1);
                        value.extend(datum(&self.schemas.block, &block));
                    }
                }
                (key, value, !a)
            }};
        }
        match &change.change {
            Change::Customer(before, after) => envelope!(before.as_ref(), after.as_ref()),
            Change::Product(before, after) => envelope!(before.as_ref(), after.as_ref()),
            Change::Order(before, after) => envelope!(before.as_ref(), after.as_ref()),
            Change::OrderLine(row) => envelope!(None, Some(row)),
            Change::Payment(before, after) => envelope!(before.as_ref(), after.as_ref()),
        }
    }
}

/// The customer's details as an event carries them.
fn profile_of(c: &CustomerEvent) -> CustomerProfile {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    CustomerProfile {
        first_name: text(&c.first_name),
        last_name: text(&c.last_name),
        email: text(&c.email),
        phone: text(&c.phone),
        street_address: text(&c.street_address),
        city: text(&c.city),
        region: text(&c.region),
        postal_code: text(&c.postal_code),
        country: c.country.unwrap_or_default(),
        marketing_consent: c.marketing_consent.unwrap_or_default(),
    }
}

impl ChangeStream {
    /// `value` as the stream writes it: its Avro datum under `schema`, or its JSON text.
    fn datum<T: Serialize>(&self, schema: &apache_avro::Schema, value: &T) -> Vec<u8> {
        if self.json {
            serde_json::to_vec(value).expect("rows serialise")
        } else {
            datum(schema, value)
        }
    }
}

/// The Avro datum of `value` under `schema`; the rows are made for their schemas, so this
/// cannot fail.
fn datum<T: Serialize>(schema: &apache_avro::Schema, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    apache_avro::write_avro_datum_ref(schema, value, &mut out)
        .expect("the change stream's rows fit their schemas");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Catalogue, CurrencyCode, ShopRules};
    use crate::shoppers::{CustomerChanges, ShopContext, Shopper};
    use apache_avro::types::Value;
    use std::collections::HashMap;

    fn settings(transaction_metadata: bool) -> DebeziumSettings {
        DebeziumSettings {
            topic_prefix: "shop".into(),
            database: "shop".into(),
            schema: "public".into(),
            transaction_metadata,
        }
    }

    /// A catalogue's start and a few customers' busy lives, batch by batch as a sink gets them.
    fn batches() -> Vec<Vec<Event>> {
        let start = Timestamp::from_micros(1_700_000_000_000_000);
        let ctx = ShopContext {
            catalogue: Catalogue::generate(3, 30, 1.0, start)
                .unwrap()
                .with_repricing(0.5)
                .unwrap()
                .with_discontinuation(20.0)
                .unwrap(),
            rules: ShopRules {
                currency: CurrencyCode::USD,
                tax_rate: 0.1,
                shipping_fee: Money::from_cents(500),
                free_shipping_threshold: Money::from_cents(5_000),
            },
            currencies: Vec::new(),
            mean_session_gap_micros: 3.6e9,
            discount_probability: 0.2,
            traffic: crate::model::TrafficProfile::flat(),
            activity_shape: None,
            activity_mean: 1.0,
            seed: 3,
            mean_lifetime_micros: None,
            customer_id_stride: 10,
            changes: CustomerChanges {
                moves: 200.0,
                contact_changes: 200.0,
                consent_changes: 200.0,
                erasures: 20.0,
            },
        };
        let mut batches = vec![
            ctx.catalogue
                .publish(start, 3, CurrencyCode::USD)
                .into_iter()
                .map(Event::Product)
                .collect::<Vec<_>>(),
        ];
        let mut shoppers: Vec<Shopper> = (1..=10)
            .map(|id| Shopper::new(3, id, start, &ctx))
            .collect();
        let mut review = start;
        let end = start + std::time::Duration::from_secs(60 * 86_400);
        loop {
            let (index, at) = shoppers
                .iter()
                .enumerate()
                .map(|(i, s)| (i, s.next_wake()))
                .min_by_key(|(_, at)| *at)
                .unwrap();
            let next_review = ctx.catalogue.next_review(review);
            if next_review.min(at) >= end {
                break;
            }
            if next_review <= at {
                review = next_review;
                let changes: Vec<Event> = ctx
                    .catalogue
                    .changes_at(review, CurrencyCode::USD)
                    .into_iter()
                    .map(Event::Product)
                    .collect();
                if !changes.is_empty() {
                    batches.push(changes);
                }
                continue;
            }
            let mut events = Vec::new();
            shoppers[index].step(at, &ctx, &mut events);
            batches.push(events);
        }
        batches
    }

    fn decode(schema: &apache_avro::Schema, bytes: &[u8]) -> Value {
        apache_avro::from_avro_datum(schema, &mut &bytes[..], None).unwrap()
    }

    fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
        let Value::Record(fields) = record else {
            panic!("not a record: {record:?}")
        };
        &fields.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn union(value: &Value) -> Option<&Value> {
        match value {
            Value::Union(_, inner) if **inner == Value::Null => None,
            Value::Union(_, inner) => Some(inner),
            other => panic!("not a union: {other:?}"),
        }
    }

    #[test]
    fn every_change_follows_the_last_image_of_its_row_in_numbered_transactions() {
        let mut stream = ChangeStream::new(settings(true), None);
        let (mut rows, mut last_lsn, mut ops) = (HashMap::new(), 0i64, HashMap::new());
        let mut open: Option<(String, i64, [i64; Table::COUNT])> = None;
        let mut transactions = 0;
        for batch in batches() {
            let records = stream.changes(&batch);
            let primaries = records.iter().filter(|r| r.primary).count();
            assert_eq!(
                primaries,
                batch.len(),
                "one row change of each event counts it"
            );
            for (i, record) in records.iter().enumerate() {
                let schemas = &schemas().streams[record.stream.index()];
                let key = decode(&schemas.key, &record.key);
                let Stream::Table(table) = record.stream else {
                    let value = decode(&schemas.value, record.value.as_ref().unwrap());
                    let Value::String(status) = field(&value, "status") else {
                        panic!()
                    };
                    let Value::String(id) = field(&value, "id") else {
                        panic!()
                    };
                    match status.as_str() {
                        "BEGIN" => {
                            assert!(open.is_none(), "transactions do not nest");
                            open = Some((id.clone(), 0, [0; Table::COUNT]));
                        }
                        "END" => {
                            let (open_id, count, _) = open.take().expect("END after BEGIN");
                            assert_eq!(&open_id, id);
                            assert_eq!(
                                union(field(&value, "event_count")),
                                Some(&Value::Long(count))
                            );
                            transactions += 1;
                        }
                        other => panic!("status {other}"),
                    }
                    continue;
                };
                let Some(value) = &record.value else {
                    // A tombstone follows its delete, under the same key.
                    assert_eq!(records[i - 1].key, record.key);
                    assert!(!rows.contains_key(&(table, format!("{key:?}"))));
                    continue;
                };
                let envelope = decode(&schemas.value, value);
                let Value::String(op) = field(&envelope, "op") else {
                    panic!()
                };
                *ops.entry(op.clone()).or_insert(0) += 1;
                let source = field(&envelope, "source");
                let Some(Value::Long(lsn)) = union(field(source, "lsn")) else {
                    panic!()
                };
                assert!(*lsn > last_lsn, "lsn grows");
                last_lsn = *lsn;
                let before = union(field(&envelope, "before")).cloned();
                let after = union(field(&envelope, "after")).cloned();
                let row_key = (table, format!("{key:?}"));
                assert_eq!(
                    before,
                    rows.get(&row_key).cloned(),
                    "{table} {op}: before is the last after"
                );
                match after {
                    Some(after) => rows.insert(row_key, after),
                    None => rows.remove(&row_key),
                };
                if op != "r" {
                    let (id, count, per_table) =
                        open.as_mut().expect("a change inside a transaction");
                    *count += 1;
                    per_table[table.index()] += 1;
                    let block = union(field(&envelope, "transaction")).unwrap();
                    assert_eq!(field(block, "id"), &Value::String(id.clone()));
                    assert_eq!(field(block, "total_order"), &Value::Long(*count));
                    assert_eq!(
                        field(block, "data_collection_order"),
                        &Value::Long(per_table[table.index()])
                    );
                    let Some(Value::Long(tx)) = union(field(source, "txId")) else {
                        panic!()
                    };
                    assert!(id.starts_with(&format!("{tx}:")));
                }
            }
        }
        assert!(open.is_none());
        for op in ["r", "c", "u", "d"] {
            assert!(ops.get(op).copied().unwrap_or(0) > 0, "no {op} in {ops:?}");
        }
        assert!(transactions > 100);
    }

    #[test]
    fn a_refund_commits_with_the_return_and_numbers_go_on_from_a_saved_position() {
        let batches = batches();
        let refund = batches
            .iter()
            .find(|b| {
                b.iter()
                    .any(|e| e.event_type() == EventType::PaymentRefunded)
            })
            .expect("a refund in sixty days");
        let mut stream = ChangeStream::new(settings(true), None);
        let records = stream.changes(refund);
        let markers = records
            .iter()
            .filter(|r| r.stream == Stream::Transactions)
            .count();
        let refunded = refund
            .iter()
            .position(|e| e.event_type() == EventType::PaymentRefunded)
            .unwrap();
        // The refund and the order's change share one BEGIN and END.
        assert_eq!(markers, 2 * (refund.len() - 1), "{refund:?}");
        assert!(refunded > 0 && matches!(&refund[refunded - 1], Event::Order(_)));
        let position = stream.position();
        let mut resumed = ChangeStream::new(settings(false), Some(position));
        let again = resumed.changes(refund);
        assert!(
            again.iter().all(|r| r.stream != Stream::Transactions),
            "no metadata when off"
        );
        assert_eq!(
            resumed.position().lsn,
            position.lsn + (position.lsn - FIRST_LSN)
        );
    }
}
