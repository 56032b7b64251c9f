//! The change stream's Avro schemas, made from one list of each table's columns: a key record
//! (the primary key), and Debezium's envelope around a value record (the row), with its
//! `source` and `transaction` blocks; and the transaction metadata topic's key and value.
//! Names: `retail.cdc.<table>.Key`, `retail.cdc.<table>.Envelope` (row `Value`), whatever
//! the topic prefix (a schema registry keys subjects on topics, not on names).

use std::sync::OnceLock;

use apache_avro::Schema;
use serde_json::{Value, json};

use super::Table;

/// A column of a table: its name and Avro type.
struct Column {
    name: &'static str,
    kind: Value,
    doc: &'static str,
}

fn column(name: &'static str, kind: Value, doc: &'static str) -> Column {
    Column { name, kind, doc }
}

fn timestamp() -> Value {
    json!({"type": "long", "logicalType": "timestamp-millis"})
}

fn money() -> Value {
    json!({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2})
}

fn nullable(kind: Value) -> Value {
    json!(["null", kind])
}

/// The columns of `table`, primary key first, in the order rows are written.
fn columns(table: Table) -> Vec<Column> {
    let s = || json!("string");
    match table {
        Table::Customers => vec![
            column("customer_id", json!("long"), "Primary key."),
            column("first_name", s(), ""),
            column("last_name", s(), ""),
            column("email", s(), "Unique per customer."),
            column("phone", s(), ""),
            column("street_address", s(), ""),
            column("city", s(), ""),
            column("region", s(), "State or region code."),
            column("postal_code", s(), ""),
            column("country", s(), "ISO 3166-1 alpha-2."),
            column("marketing_consent", json!("boolean"), ""),
            column("signup_channel", s(), "web, mobile_app or call_center."),
            column("created_at", timestamp(), "The sign-up."),
            column("updated_at", timestamp(), "The latest change of the row."),
        ],
        Table::Products => vec![
            column("product_id", json!("long"), "Primary key."),
            column("sku", s(), ""),
            column("name", s(), ""),
            column("category_id", json!("int"), ""),
            column("category", s(), ""),
            column("unit_price", money(), "The price in force."),
            column("currency", s(), "ISO 4217."),
            column("created_at", timestamp(), "When it joined the catalogue."),
            column(
                "discontinued_at",
                nullable(timestamp()),
                "When it left the catalogue, or null.",
            ),
            column(
                "replaced_by",
                nullable(json!("long")),
                "The product that took its place, or null.",
            ),
        ],
        Table::Orders => vec![
            column("order_id", json!("long"), "Primary key."),
            column("customer_id", json!("long"), "References customers."),
            column(
                "status",
                s(),
                "placed, shipped, delivered, returned or cancelled.",
            ),
            column("subtotal", money(), ""),
            column("discount", money(), ""),
            column("tax", money(), ""),
            column("shipping", money(), ""),
            column("total", money(), ""),
            column("currency", s(), "ISO 4217."),
            column("channel", s(), "web, mobile_app or call_center."),
            column("created_at", timestamp(), "When it was placed."),
            column(
                "updated_at",
                timestamp(),
                "The latest change of its status.",
            ),
        ],
        Table::OrderLines => vec![
            column("order_id", json!("long"), "Primary key, with line_number."),
            column("line_number", json!("int"), "Primary key, with order_id."),
            column("product_id", json!("long"), "References products."),
            column("quantity", json!("int"), ""),
            column("unit_price", money(), "In the order's currency."),
            column("line_total", money(), ""),
        ],
        Table::Payments => vec![
            column("payment_id", json!("long"), "Primary key."),
            column("order_id", json!("long"), "References orders."),
            column("customer_id", json!("long"), "References customers."),
            column("amount", money(), ""),
            column("currency", s(), "ISO 4217."),
            column(
                "method",
                s(),
                "credit_card, debit_card, paypal or gift_card.",
            ),
            column("status", s(), "authorized, declined, captured or refunded."),
            column("attempt", json!("int"), "1 to 3 for the order."),
            column(
                "failure_reason",
                nullable(s()),
                "Why it was declined, or null.",
            ),
            column("created_at", timestamp(), "When the attempt was made."),
            column(
                "updated_at",
                timestamp(),
                "The latest change of its status.",
            ),
        ],
    }
}

/// How many columns of `table` make its primary key.
fn key_columns(table: Table) -> usize {
    match table {
        Table::OrderLines => 2,
        _ => 1,
    }
}

fn fields(columns: &[Column]) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            let mut field = json!({"name": c.name, "type": c.kind});
            if !c.doc.is_empty() {
                field["doc"] = json!(c.doc);
            }
            field
        })
        .collect()
}

/// The key schema of `table`.
pub fn key_json(table: Table) -> Value {
    let columns = columns(table);
    json!({
        "type": "record",
        "name": "Key",
        "namespace": format!("retail.cdc.{table}"),
        "doc": format!("The primary key of a row of `{table}`."),
        "fields": fields(&columns[..key_columns(table)]),
    })
}

/// The row schema of `table` (`Value`, in the envelope's namespace).
fn row_json(table: Table) -> Value {
    json!({
        "type": "record",
        "name": "Value",
        "namespace": format!("retail.cdc.{table}"),
        "doc": format!("A row of `{table}`."),
        "fields": fields(&columns(table)),
    })
}

/// The envelope schema of `table`: Debezium's `before`, `after`, `source`, `op`, `ts_ms` and
/// `transaction`.
pub fn envelope_json(table: Table) -> Value {
    let value = row_json(table);
    json!({
        "type": "record",
        "name": "Envelope",
        "namespace": format!("retail.cdc.{table}"),
        "doc": format!("A change of a row of `{table}`, in Debezium's envelope."),
        "fields": [
            {"name": "before", "type": ["null", value], "default": null,
             "doc": "The row before the change: null for an insert (c) and a snapshot read (r)."},
            {"name": "after", "type": ["null", "Value"], "default": null,
             "doc": "The row after the change: null for a delete (d)."},
            {"name": "source", "type": source_json(), "doc": "Where and when the change happened."},
            {"name": "op", "type": "string", "doc": "c (insert), u (update), d (delete) or r (snapshot read)."},
            {"name": "ts_ms", "type": ["null", "long"], "default": null,
             "doc": "When the connector processed the change (the simulated instant), in milliseconds."},
            {"name": "transaction", "type": ["null", block_json()], "default": null,
             "doc": "The transaction the change belongs to; null for snapshot reads."}
        ]
    })
}

fn block_json() -> Value {
    json!({
        "type": "record",
        "name": "block",
        "namespace": "event",
        "fields": [
            {"name": "id", "type": "string", "doc": "The transaction, as txId:lsn of its first change."},
            {"name": "total_order", "type": "long", "doc": "Position of the change in its transaction, from 1."},
            {"name": "data_collection_order", "type": "long", "doc": "Position among the transaction's changes of this table, from 1."}
        ]
    })
}

fn source_json() -> Value {
    let optional = |name: &str, kind: &str, doc: &str| json!({"name": name, "type": ["null", kind], "default": null, "doc": doc});
    json!({
        "type": "record",
        "name": "Source",
        "namespace": "io.debezium.connector.postgresql",
        "fields": [
            {"name": "version", "type": "string", "doc": "The simulator's version."},
            {"name": "connector", "type": "string", "doc": "Always postgresql."},
            {"name": "name", "type": "string", "doc": "The topic prefix."},
            {"name": "ts_ms", "type": "long", "doc": "When the change was committed, in milliseconds (the event's time)."},
            {"name": "snapshot", "type": ["string", "null"], "default": "false",
             "doc": "true for snapshot reads (last for the snapshot's last row), else false."},
            {"name": "db", "type": "string", "doc": "The database."},
            optional("sequence", "string", "Unused: null."),
            {"name": "schema", "type": "string", "doc": "The tables' schema."},
            {"name": "table", "type": "string", "doc": "The table."},
            optional("txId", "long", "The transaction's id; null for snapshot reads."),
            optional("lsn", "long", "The change's log sequence number, growing with every change."),
            optional("xmin", "long", "Unused: null.")
        ]
    })
}

/// The transaction metadata topic's key schema.
pub fn transaction_key_json() -> Value {
    json!({
        "type": "record",
        "name": "TransactionMetadataKey",
        "namespace": "io.debezium.connector.common",
        "fields": [{"name": "id", "type": "string"}]
    })
}

/// The transaction metadata topic's value schema: BEGIN, then END with the counts.
pub fn transaction_value_json() -> Value {
    json!({
        "type": "record",
        "name": "TransactionMetadataValue",
        "namespace": "io.debezium.connector.common",
        "doc": "The BEGIN or END of a transaction of the shop's database.",
        "fields": [
            {"name": "status", "type": "string", "doc": "BEGIN or END."},
            {"name": "id", "type": "string", "doc": "The transaction, as in each change's transaction.id."},
            {"name": "event_count", "type": ["null", "long"], "default": null,
             "doc": "On END: the changes the transaction made."},
            {"name": "data_collections", "type": ["null", {"type": "array", "items": {
                "type": "record",
                "name": "ConnectDefault",
                "namespace": "io.confluent.connect.avro",
                "fields": [
                    {"name": "data_collection", "type": "string", "doc": "<schema>.<table>."},
                    {"name": "event_count", "type": "long"}
                ]
            }}], "default": null, "doc": "On END: the changes per table."},
            {"name": "ts_ms", "type": "long", "doc": "When the transaction was committed, in milliseconds."}
        ]
    })
}

/// The `.avsc` files of `avro/cdc/`, by name, as this module makes them.
pub fn files() -> Vec<(String, String)> {
    let pretty = |v: Value| serde_json::to_string_pretty(&v).expect("JSON") + "\n";
    let mut files = Vec::new();
    for table in Table::ALL {
        files.push((format!("{table}.key.avsc"), pretty(key_json(table))));
        files.push((format!("{table}.avsc"), pretty(envelope_json(table))));
    }
    files.push((
        "transaction.key.avsc".to_owned(),
        pretty(transaction_key_json()),
    ));
    files.push((
        "transaction.avsc".to_owned(),
        pretty(transaction_value_json()),
    ));
    files
}

/// The parsed key and value schemas of one stream, and for a table, its row's.
#[derive(Debug)]
pub struct TableSchemas {
    pub key: Schema,
    pub value: Schema,
    /// The row (`Value`) alone: an envelope is written part by part (apache-avro's serde
    /// writer does not follow the named reference `after` makes to `before`'s type).
    pub row: Option<Schema>,
}

/// The parsed schemas of every stream: the tables in [`Table`] order, then the transaction
/// metadata; and the envelope's `source` and `transaction` blocks alone.
#[derive(Debug)]
pub struct Schemas {
    pub streams: Vec<TableSchemas>,
    pub source: Schema,
    pub block: Schema,
}

/// The schemas, parsed once.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let parse = |v: Value| Schema::parse(&v).expect("the change stream's schemas are valid");
        let mut streams: Vec<TableSchemas> = Table::ALL
            .iter()
            .map(|t| TableSchemas {
                key: parse(key_json(*t)),
                value: parse(envelope_json(*t)),
                row: Some(parse(row_json(*t))),
            })
            .collect();
        streams.push(TableSchemas {
            key: parse(transaction_key_json()),
            value: parse(transaction_value_json()),
            row: None,
        });
        Schemas {
            streams,
            source: parse(source_json()),
            block: parse(block_json()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `avro/cdc/` holds what this module makes: `SIMULATOR_BLESS=1 cargo test --lib cdc`
    /// writes it again.
    #[test]
    fn the_shipped_schemas_are_the_ones_made_here() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro/cdc");
        for (name, text) in files() {
            let path = dir.join(&name);
            if std::env::var_os("SIMULATOR_BLESS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let shipped = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                shipped == text,
                "avro/cdc/{name} is out of date: SIMULATOR_BLESS=1 cargo test --lib cdc"
            );
        }
        assert_eq!(schemas().streams.len(), Table::COUNT + 1);
    }
}
