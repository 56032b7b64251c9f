"""The tables the loader writes: the `raw` schema of the warehouse and its `stage` twins.

One definition per table, from which everything else is derived: the Spark projection that
fills it, the Synapse DDL in `deploy/synapse/`, the DuckDB DDL of the local stand-in, and the
column lists of the load statements. Column order is significant: Parquet files are staged in
this order and `COPY INTO` maps Parquet columns to table columns by position.
"""

from __future__ import annotations

from dataclasses import dataclass

# Logical column types, with their Synapse and DuckDB spellings.
BIGINT = ("BIGINT", "BIGINT")
INT = ("INT", "INTEGER")
UUID = ("CHAR(36)", "VARCHAR")
MONEY = ("DECIMAL(12,2)", "DECIMAL(12,2)")
TIMESTAMP = ("DATETIME2(6)", "TIMESTAMP")
BOOLEAN = ("BIT", "BOOLEAN")


def text(length: int) -> tuple[str, str]:
    return (f"NVARCHAR({length})", "VARCHAR")


def binary(length: int | None = None) -> tuple[str, str]:
    return (f"VARBINARY({length or 'MAX'})", "BLOB")


@dataclass(frozen=True)
class Column:
    name: str
    type: tuple[str, str]
    # The Spark SQL expression that fills the column; defaults to the event's field of the
    # same name.
    source: str | None = None
    nullable: bool = False
    doc: str = ""
    upgrade: str = ""
    """How a table created by an earlier release gets this column: `add` (a new column) or
    `relax` (it was NOT NULL); see `synapse_upgrade`."""

    @property
    def synapse_type(self) -> str:
        return self.type[0]

    @property
    def duckdb_type(self) -> str:
        return self.type[1]

    @property
    def expression(self) -> str:
        return self.source or f"event.{self.name}"


@dataclass(frozen=True)
class Table:
    name: str
    entity: str | None
    """The topic entity whose messages fill it (`customers`, ...); None for tables that every
    topic feeds."""
    columns: tuple[Column, ...]
    distribution: str
    index: str
    doc: str
    offset_column: str = "kafka_offset"
    """The column that holds a Kafka offset: a reloaded range of offsets replaces the rows it
    covers."""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


RAW_INDEX = "HEAP"
"""The raw tables are heaps. They are trickle-loaded: an hourly batch puts a few thousand rows
in each of a pool's 60 distributions, and a clustered columnstore compresses a rowgroup only
once a distribution's delta store holds about a million rows, so below some 60 million rows a
table would be all delta store, and every per-batch DELETE would leave deleted rows behind in
it. Microsoft's guidance is a heap under about 60 million rows; at the simulator's default
rate the largest raw table (orders) grows by about 13 million rows a year. Past that, convert a
table with CREATE CLUSTERED COLUMNSTORE INDEX (deploy/databricks/README.md); the marts, which
dbt rebuilds or replaces by order, are columnstore, and the weekly maintenance job reorganises
the incremental ones."""

# Where each row came from, on every event table.
LOAD_COLUMNS = (
    Column("kafka_topic", text(249), "topic", doc="Topic the message was read from."),
    Column("kafka_partition", INT, "partition", doc="Partition of the message."),
    Column("kafka_offset", BIGINT, "offset", doc="Offset of the message in its partition."),
    Column("kafka_timestamp", TIMESTAMP, "timestamp", doc="Timestamp of the message (the event time)."),
    Column("batch_id", BIGINT, "batch_id", doc="Structured Streaming micro-batch that loaded the row."),
    Column("loaded_at", TIMESTAMP, "loaded_at", doc="When that batch was loaded (UTC)."),
)

EVENT_COLUMNS = (
    Column("event_id", UUID, doc="Unique id of the event; the stream is at-least-once, so "
           "downstream models deduplicate on it."),
    Column("event_type", text(40)),
    Column("event_time", TIMESTAMP, doc="When it happened (UTC, millisecond precision)."),
)

ERASED = "null in `customer_deleted` (erased)"

CUSTOMERS = Table(
    name="customers",
    entity="customers",
    columns=EVENT_COLUMNS + (
        Column("customer_id", BIGINT),
        Column("first_name", text(100), nullable=True, upgrade="relax", doc=f"Personal data, {ERASED}, as every field to country."),
        Column("last_name", text(100), nullable=True, upgrade="relax"),
        Column("email", text(320), nullable=True, upgrade="relax"),
        Column("phone", text(40), nullable=True, upgrade="relax"),
        Column("street_address", text(200), nullable=True, upgrade="relax"),
        Column("city", text(100), nullable=True, upgrade="relax"),
        Column("region", text(100), nullable=True, upgrade="relax"),
        Column("postal_code", text(20), nullable=True, upgrade="relax"),
        Column("country", text(2), nullable=True, upgrade="relax"),
        Column("signup_time", TIMESTAMP),
        Column("signup_channel", text(20)),
        Column("marketing_consent", BOOLEAN, nullable=True, upgrade="add",
               doc=f"Accepts marketing messages; {ERASED}."),
        Column("changed_fields", text(200), "array_join(event.changed_fields, ',')", nullable=True,
               upgrade="add",
               doc="For `customer_updated`: the fields that changed, separated by commas; empty "
               "otherwise (null in rows loaded before the column existed)."),
    ) + LOAD_COLUMNS,
    distribution="HASH(customer_id)",
    index=RAW_INDEX,
    doc="One row per `customers` event (customer signed up, updated or erased).",
)

PRODUCTS = Table(
    name="products",
    entity="products",
    columns=EVENT_COLUMNS + (
        Column("product_id", BIGINT),
        Column("sku", text(40)),
        Column("name", text(200)),
        Column("category_id", INT),
        Column("category", text(100)),
        Column("unit_price", MONEY),
        Column("currency", text(3)),
        Column("replaced_by", BIGINT, nullable=True, upgrade="add",
               doc="For `product_discontinued`: the product published in its place."),
    ) + LOAD_COLUMNS,
    distribution="ROUND_ROBIN",
    index=RAW_INDEX,
    doc="One row per `products` event (product published, repriced or discontinued).",
)

ORDERS = Table(
    name="orders",
    entity="orders",
    columns=EVENT_COLUMNS + (
        Column("order_id", BIGINT),
        Column("customer_id", BIGINT),
        Column("line_count", INT, "size(event.items)", doc="Number of lines in `raw.order_items`."),
        Column("subtotal", MONEY),
        Column("discount", MONEY),
        Column("tax", MONEY),
        Column("shipping", MONEY),
        Column("total", MONEY),
        Column("currency", text(3)),
        Column("channel", text(20)),
        Column("status", text(20)),
    ) + LOAD_COLUMNS,
    distribution="HASH(order_id)",
    index=RAW_INDEX,
    doc="One row per `orders` event; its lines are in `raw.order_items`.",
)

# Filled from the orders topic with one row per element of `items` (exploded as `line`).
ORDER_ITEMS = Table(
    name="order_items",
    entity="orders",
    columns=(
        Column("event_id", UUID, doc="The order event the line belongs to."),
        Column("event_time", TIMESTAMP),
        Column("order_id", BIGINT),
        Column("line_number", INT, "line.line_number"),
        Column("product_id", BIGINT, "line.product_id"),
        Column("quantity", INT, "line.quantity"),
        Column("unit_price", MONEY, "line.unit_price"),
        Column("line_total", MONEY, "line.line_total"),
        Column("currency", text(3)),
    ) + LOAD_COLUMNS,
    distribution="HASH(order_id)",
    index=RAW_INDEX,
    doc="One row per line of an `orders` event, distributed like `raw.orders`.",
)

PAYMENTS = Table(
    name="payments",
    entity="payments",
    columns=EVENT_COLUMNS + (
        Column("payment_id", BIGINT),
        Column("order_id", BIGINT),
        Column("customer_id", BIGINT),
        Column("amount", MONEY),
        Column("currency", text(3)),
        Column("method", text(20)),
        Column("status", text(20)),
        Column("attempt", INT),
        Column("failure_reason", text(100), nullable=True),
    ) + LOAD_COLUMNS,
    distribution="HASH(order_id)",
    index=RAW_INDEX,
    doc="One row per `payments` event (authorised, captured or declined).",
)

REJECTED = Table(
    name="rejected_messages",
    entity=None,
    columns=(
        Column("kafka_topic", text(249), "topic"),
        Column("kafka_partition", INT, "partition"),
        Column("kafka_offset", BIGINT, "offset"),
        Column("kafka_timestamp", TIMESTAMP, "timestamp", nullable=True),
        Column("kafka_key", binary(1024), "key", nullable=True),
        Column("kafka_value", binary(), "value", nullable=True),
        Column("reason", text(400), "reason"),
        Column("batch_id", BIGINT, "batch_id"),
        Column("loaded_at", TIMESTAMP, "loaded_at"),
    ),
    # Columnstore cannot hold VARBINARY(MAX); the table stays small.
    distribution="ROUND_ROBIN",
    index="HEAP",
    doc="Messages that could not be decoded, kept whole (quarantine) with the reason.",
)

LOAD_LOG = Table(
    name="load_log",
    entity=None,
    columns=(
        Column("batch_id", BIGINT, "batch_id"),
        Column("kafka_topic", text(249), "topic"),
        Column("kafka_partition", INT, "partition"),
        Column("start_offset", BIGINT, "start_offset"),
        Column("end_offset", BIGINT, "end_offset"),
        Column("messages", BIGINT, "messages"),
        Column("rejected", BIGINT, "rejected"),
        Column("loaded_at", TIMESTAMP, "loaded_at"),
    ),
    distribution="ROUND_ROBIN",
    index=RAW_INDEX,
    doc="One row per topic partition per batch: the offsets loaded and how many were rejected.",
    offset_column="start_offset",
)

EVENT_TABLES = (CUSTOMERS, PRODUCTS, ORDERS, ORDER_ITEMS, PAYMENTS)
TABLES = EVENT_TABLES + (REJECTED, LOAD_LOG)
ENTITIES = ("customers", "products", "orders", "payments")


STAGE_SCHEMAS = ("stage", "stage_dev")
"""The stage schemas the Synapse DDL creates twins in: one per bundle target (prod, dev), so
that two targets loading one pool never empty or read each other's stage tables."""


def synapse_ddl(stage_schemas: tuple[str, ...] = STAGE_SCHEMAS) -> str:
    """The Synapse DDL of the `raw` tables and their stage twins (`deploy/synapse/raw_tables.sql`)."""
    parts = [
        "-- The loader's tables in the Synapse dedicated SQL pool. Generated from\n"
        "-- deploy/databricks/src/retail_loader/tables.py; a test keeps the two equal.\n"
        "-- Run after schemas.sql; creates the tables that do not exist yet.",
    ]
    for table in TABLES:
        parts.append(f"\n-- {table.doc}")
        parts.append(_create(f"raw.{table.name}", table, table.distribution, table.index))
        for stage in stage_schemas:
            parts.append(f"\n-- Staging twin of raw.{table.name} for the loader writing {stage}: COPY INTO lands "
                         "here, emptied before each batch.")
            parts.append(_create(f"{stage}.{table.name}", table, "ROUND_ROBIN", "HEAP"))
    return "\n".join(parts) + "\n"


def _create(qualified: str, table: Table, distribution: str, index: str) -> str:
    columns = ",\n".join(
        f"    {c.name} {c.synapse_type} {'NULL' if c.nullable else 'NOT NULL'}" for c in table.columns
    )
    return (
        f"IF OBJECT_ID('{qualified}') IS NULL\n"
        f"CREATE TABLE {qualified} (\n{columns}\n)\n"
        f"WITH (DISTRIBUTION = {distribution}, {index});"
    )


def synapse_upgrade(stage_schemas: tuple[str, ...] = STAGE_SCHEMAS) -> str:
    """The T-SQL that brings tables an earlier release created up to these definitions
    (`deploy/synapse/upgrade_raw_tables.sql`); a no-op on tables already current. A `raw` table
    gets its new columns (at its end: the loader inserts into `raw` by column name) and loses
    the NOT NULL of relaxed ones; a stage twin, empty between batches and filled by position,
    is dropped and created again in the new column order."""
    parts = [
        "-- Brings the loader's tables created by an earlier release up to date: run it once,\n"
        "-- between two loads, after raw_tables.sql. Generated from\n"
        "-- deploy/databricks/src/retail_loader/tables.py; a test keeps the two equal.",
    ]
    for table in TABLES:
        changed = [c for c in table.columns if c.upgrade]
        if not changed:
            continue
        parts.append(f"\n-- raw.{table.name}: " + ", ".join(f"{c.name} ({c.upgrade})" for c in changed) + ".")
        for c in changed:
            null = "NULL" if c.nullable else "NOT NULL"
            if c.upgrade == "add":
                parts.append(f"IF COL_LENGTH('raw.{table.name}', '{c.name}') IS NULL\n"
                             f"ALTER TABLE raw.{table.name} ADD {c.name} {c.synapse_type} {null};")
            else:
                parts.append(f"ALTER TABLE raw.{table.name} ALTER COLUMN {c.name} {c.synapse_type} {null};")
        for stage in stage_schemas:
            qualified = f"{stage}.{table.name}"
            parts.append(f"IF OBJECT_ID('{qualified}') IS NOT NULL\nDROP TABLE {qualified};")
            parts.append(_create(qualified, table, "ROUND_ROBIN", "HEAP"))
    return "\n".join(parts) + "\n"


def duckdb_ddl(stage_schema: str = "stage") -> list[str]:
    """The same tables in DuckDB, the local stand-in for Synapse, created or brought up to date
    (new columns added, relaxed ones made nullable: the local loader inserts by name)."""
    statements = ["CREATE SCHEMA IF NOT EXISTS raw", f"CREATE SCHEMA IF NOT EXISTS {stage_schema}"]
    for schema in ("raw", stage_schema):
        for table in TABLES:
            columns = ", ".join(
                f"{c.name} {c.duckdb_type}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
            )
            statements.append(f"CREATE TABLE IF NOT EXISTS {schema}.{table.name} ({columns})")
            for c in table.columns:
                if c.upgrade == "add":
                    statements.append(
                        f"ALTER TABLE {schema}.{table.name} ADD COLUMN IF NOT EXISTS {c.name} {c.duckdb_type}")
                elif c.upgrade == "relax":
                    statements.append(f"ALTER TABLE {schema}.{table.name} ALTER COLUMN {c.name} DROP NOT NULL")
    return statements
