"""From a micro-batch of Kafka messages to the rows of every raw table. Pure Spark, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .avro import Decoder
from .tables import EVENT_TABLES, LOAD_LOG, REJECTED, Table

FRAMINGS = ("raw", "confluent")

NOT_CONFLUENT = "not in Confluent framing (magic byte 0 and a 4-byte schema id)"


@dataclass(frozen=True)
class Batch:
    """A micro-batch's rows, one DataFrame per table (in the table's column order)."""

    tables: dict[str, DataFrame]
    ranges: list[dict]
    """Per topic partition: topic, partition, start_offset, end_offset, messages, rejected."""
    cached: list[DataFrame]
    """The decoded messages, persisted so that each value is decoded once; unpersist after."""

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def kafka_source_schema():
    """The columns of the Kafka source, which `split` reads: what a micro-batch holds."""
    from pyspark.sql import types as T

    return T.StructType([
        T.StructField("key", T.BinaryType()),
        T.StructField("value", T.BinaryType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("timestamp", T.TimestampType()),
        T.StructField("timestampType", T.IntegerType()),
        T.StructField("headers", T.ArrayType(T.StructType([
            T.StructField("key", T.StringType()),
            T.StructField("value", T.BinaryType()),
        ]))),
    ])


def payload(value: Column, framing: str) -> Column:
    """The Avro datum inside a message value: the value itself, or after the Confluent prefix
    (null when the prefix is missing)."""
    if framing == "raw":
        return value
    if framing == "confluent":
        return F.when(
            (F.length(value) >= 5) & (F.substring(value, 1, 1) == F.lit(bytearray(b"\x00"))),
            F.expr("substring(value, 6)"),
        )
    raise ValueError(f"unknown framing {framing!r}: expected one of {', '.join(FRAMINGS)}")


def split(
    messages: DataFrame,
    batch_id: int,
    loaded_at: datetime,
    topics: dict[str, str],
    framing: str,
    decoder: Decoder,
) -> Batch:
    """Decodes `messages` (the Kafka source's columns) and projects them onto every table.

    `topics` maps each entity to its topic name. A message that does not decode goes to
    `raw.rejected_messages` with the reason; a message from a topic not in `topics` too.
    Call `.persist()` on `messages` first: each table reads it.
    """
    meta = messages.withColumn("batch_id", F.lit(batch_id).cast("bigint")).withColumn(
        "loaded_at", F.lit(loaded_at).cast("timestamp")
    )
    decoded, rejected, cached = {}, [], []
    for entity, topic in topics.items():
        rows = meta.where(F.col("topic") == topic).withColumn("datum", payload(F.col("value"), framing))
        rows = rows.withColumn("event", decoder.decode(F.col("datum"), entity)).persist()
        cached.append(rows)
        decoded[entity] = rows.where(F.col("event").isNotNull())
        reason = F.when(F.col("datum").isNull(), F.lit(NOT_CONFLUENT)).otherwise(
            F.lit(f"not a datum of the {entity} schema (avro/{entity}.avsc)")
        )
        rejected.append(rows.where(F.col("event").isNull()).withColumn("reason", reason))
    unknown = meta.where(~F.col("topic").isin(list(topics.values()))).withColumn(
        "reason", F.lit("topic not configured for any entity")
    )
    rejected.append(unknown)

    tables = {}
    for table in EVENT_TABLES:
        rows = decoded[table.entity]
        if table.name == "order_items":
            rows = rows.withColumn("line", F.explode(F.col("event.items")))
        tables[table.name] = _project(rows, table)
    all_rejected = rejected[0]
    for more in rejected[1:]:
        all_rejected = all_rejected.unionByName(more, allowMissingColumns=True)
    tables[REJECTED.name] = _project(all_rejected, REJECTED)

    per_partition = meta.groupBy("topic", "partition").agg(
        F.min("offset").alias("start_offset"),
        F.max("offset").alias("end_offset"),
        F.count(F.lit(1)).alias("messages"),
    )
    rejected_counts = all_rejected.groupBy("topic", "partition").agg(F.count(F.lit(1)).alias("rejected"))
    log = (
        per_partition.join(rejected_counts, ["topic", "partition"], "left")
        .withColumn("rejected", F.coalesce(F.col("rejected"), F.lit(0)).cast("bigint"))
        .withColumn("batch_id", F.lit(batch_id).cast("bigint"))
        .withColumn("loaded_at", F.lit(loaded_at).cast("timestamp"))
    )
    tables[LOAD_LOG.name] = _project(log, LOAD_LOG)
    ranges = [row.asDict() for row in log.orderBy("topic", "partition").collect()]
    return Batch(tables, ranges, cached)


def _project(rows: DataFrame, table: Table) -> DataFrame:
    return rows.select(*[F.expr(c.expression).alias(c.name) for c in table.columns])
