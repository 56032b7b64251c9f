//! The change stream: the same simulation published as the shop's database would log it, in
//! Debezium's envelope (`--envelope debezium`).
//!
//! The shop's normalised OLTP schema has five tables ([`Table`]): `customers`, `products`,
//! `orders`, `order_lines` and `payments`. Each business event is the transaction the shop's
//! database would commit for it ([`ChangeStream::changes`]): an order placed inserts its
//! `orders` row and its `order_lines` rows; a status change updates the `orders` row; a payment
//! attempt inserts its `payments` row and a capture or refund updates it (a refund with the
//! order's return or cancellation, in one transaction); a sign-up inserts a `customers` row, a
//! change of details updates it and an erasure deletes it; the catalogue at the start of a run
//! is the initial snapshot (`op` `r`), a repricing or a discontinuation updates a `products`
//! row and a replacement inserts one.
//!
//! Every change carries its row's `before` and `after` images (the events carry what the tables
//! hold beside them, [`crate::model::RowTimes`]), a `source` block with a log sequence number
//! (`lsn`) that grows with every change and the transaction's id (`txId`), and the transaction
//! block (`id`, `total_order`, `data_collection_order`); a delete is followed by a tombstone (a
//! null value under the same key); the transaction metadata topic, optionally, has a `BEGIN`
//! and an `END` (with the count of changes per table) around each transaction. Keys are the
//! rows' primary keys as records. Schemas are made here, from one list of each table's columns
//! ([`schemas`]), and shipped in `avro/cdc/` (a test keeps the two equal).
//!
//! Numbers are assigned as changes reach a sink, in the order of the stream: the log of one
//! output is one commit order. A run resumed from a saved state goes on from the numbers the
//! save holds.

mod rows;
mod schemas;

pub use rows::Position;
pub use rows::{ChangeRecord, ChangeStream, Stream};
pub use schemas::{Schemas, TableSchemas, files as schema_files, schemas};

use crate::settings::{Text, boolean, is_topic_name, quoted};

crate::named! {
    /// The tables of the shop's OLTP schema, in the order reference data must appear.
    pub enum Table {
        Products = "products",
        Customers = "customers",
        Orders = "orders",
        OrderLines = "order_lines",
        Payments = "payments",
    }
}

crate::named! {
    /// How events are published: as business events (one topic per entity), or as the change
    /// stream of the shop's tables.
    #[derive(Default)]
    pub enum Envelope {
        #[default]
        Events = "events",
        Debezium = "debezium",
    }
}

/// A name usable in a topic (and a database or schema name): letters, digits, `.`, `_`, `-`.
fn topic_part() -> Text<String> {
    Text::new(
        "NAME",
        "letters, digits, `.`, `_` or `-`, at most 100",
        |s| {
            let s = s.trim();
            if is_topic_name(s, 100) {
                Ok(s.to_owned())
            } else {
                Err(format!(
                    "`{s}` is not a name of letters, digits, `.`, `_` or `-` (at most 100)"
                ))
            }
        },
        |s| quoted(s),
    )
}

crate::section! {
    /// The change stream (`--envelope debezium`).
    pub struct DebeziumSettings in "debezium" {
        /// Prefix of the change stream's topics, <prefix>.<schema>.<table> (Debezium's
        /// topic.prefix; also source.name).
        pub topic_prefix: String = topic_part(), identity = true;
        /// The database the changes come from (source.db).
        pub database: String = topic_part(), identity = true;
        /// The schema of the shop's tables (source.schema, and the topics' middle part).
        pub schema: String = topic_part(), identity = true;
        /// Publish BEGIN and END of every transaction on <prefix>.transaction, with the
        /// count of changes per table (Debezium's provide.transaction.metadata).
        pub transaction_metadata: bool = boolean(), identity = true;
    }
}

impl DebeziumSettings {
    /// The topic (or directory) of `table`: `<prefix>.<schema>.<table>`.
    pub fn topic(&self, table: Table) -> String {
        format!("{}.{}.{table}", self.topic_prefix, self.schema)
    }

    /// The transaction metadata topic: `<prefix>.transaction`.
    pub fn transaction_topic(&self) -> String {
        format!("{}.transaction", self.topic_prefix)
    }

    /// Every stream's topic, in [`Stream`] order: the tables, then the transaction metadata.
    pub fn topics(&self) -> Vec<String> {
        Table::ALL
            .iter()
            .map(|t| self.topic(*t))
            .chain(std::iter::once(self.transaction_topic()))
            .collect()
    }
}
