"""The `foreachBatch` function: one micro-batch of Kafka messages into the warehouse."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from pyspark.sql import DataFrame, SparkSession

from .avro import Decoder
from .tables import REJECTED, TABLES
from .transform import FRAMINGS, split
from .warehouse import Warehouse, check_schema, check_topic, swap_statements

log = logging.getLogger("retail_loader")

ON_UNDECODABLE = ("quarantine", "fail")


@dataclass(frozen=True)
class Settings:
    topics: dict[str, str]
    """Topic name of each entity (`customers`, `products`, `orders`, `payments`)."""
    staging: str
    """Where batches are staged as Parquet (a directory, or abfss:// on Azure)."""
    framing: str = "raw"
    on_undecodable: str = "quarantine"
    """`quarantine`: undecodable messages go to raw.rejected_messages and the batch loads;
    `fail`: the batch fails, naming them, and loads nothing."""
    stage_schema: str = "stage"
    """The schema of the stage tables: one per bundle target (`stage`, `stage_dev`)."""

    def __post_init__(self):
        check_schema(self.stage_schema)
        for topic in self.topics.values():
            check_topic(topic)
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing {self.framing!r}: expected one of {', '.join(FRAMINGS)}")
        if self.on_undecodable not in ON_UNDECODABLE:
            raise ValueError(f"on_undecodable {self.on_undecodable!r}: expected one of {', '.join(ON_UNDECODABLE)}")


@dataclass
class Report:
    batch_id: int
    rows: dict[str, int] = field(default_factory=dict)
    ranges: list[dict] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(r["messages"] for r in self.ranges)

    @property
    def rejected(self) -> int:
        return sum(r["rejected"] for r in self.ranges)


class UndecodableMessages(Exception):
    """A batch held messages that do not decode, and the loader was told to fail on them."""

    def __init__(self, batch_id: int, count: int, examples: list[tuple[str, int, int, str]]):
        listed = "; ".join(f"topic {t} partition {p} offset {o}: {why}" for t, p, o, why in examples)
        more = f" (and {count - len(examples)} more)" if count > len(examples) else ""
        super().__init__(f"batch {batch_id}: {count} message(s) could not be decoded: {listed}{more}")
        self.batch_id, self.count, self.examples = batch_id, count, examples


def load_batch(
    messages: DataFrame,
    batch_id: int,
    *,
    settings: Settings,
    decoder: Decoder,
    warehouse: Warehouse,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> Report:
    """Decodes a micro-batch (the Kafka source's columns), stages every table's rows as
    Parquet under `<staging>/batch=<id>/<table>`, and swaps them into the raw tables in one
    transaction. Loading the same messages again, under any batch id, leaves the tables as
    they were. Raises (and loads nothing) if any step fails, so that Structured Streaming
    retries the batch."""
    spark = messages.sparkSession
    messages = messages.persist()
    batch = None
    try:
        if messages.isEmpty():
            log.info("batch %d: no new messages", batch_id)
            return Report(batch_id)
        batch = split(messages, batch_id, now(), settings.topics, settings.framing, decoder)
        report = Report(batch_id, ranges=batch.ranges)
        if report.rejected and settings.on_undecodable == "fail":
            examples = (
                batch.tables[REJECTED.name]
                .orderBy("kafka_topic", "kafka_partition", "kafka_offset")
                .select("kafka_topic", "kafka_partition", "kafka_offset", "reason")
                .limit(10)
                .collect()
            )
            raise UndecodableMessages(batch_id, report.rejected, [tuple(r) for r in examples])

        location = f"{settings.staging.rstrip('/')}/batch={batch_id}"
        _remove(spark, location)  # what a failed attempt left
        warehouse.clear_stage()
        for table in TABLES:
            rows = batch.tables[table.name]
            report.rows[table.name] = count = rows.count()
            if count:
                path = f"{location}/{table.name}"
                rows.write.mode("overwrite").parquet(path)
                # The files this write committed, named one by one: never a `*` path, which
                # would also read what failed or speculative tasks left.
                warehouse.stage(table, committed_files(spark, path))
        warehouse.swap(swap_statements(batch.ranges, settings.topics, settings.stage_schema))
        _remove(spark, location)
        log.info(
            "batch %d: %d messages loaded from %d topic partitions; rows %s",
            batch_id, report.messages, len(report.ranges),
            " ".join(f"{k}={v}" for k, v in report.rows.items()),
        )
        if report.rejected:
            log.warning(
                "batch %d: %d undecodable message(s) quarantined in raw.%s",
                batch_id, report.rejected, REJECTED.name,
            )
        return report
    finally:
        if batch is not None:
            batch.release()
        messages.unpersist()


def committed_files(spark: SparkSession, path: str) -> list[str]:
    """The Parquet files a write to `path` committed: what Spark's reader lists there (on
    Databricks, under its commit protocol), in a stable order."""
    files = sorted(spark.read.parquet(path).inputFiles())
    if not files:
        raise RuntimeError(f"the write to {path} committed no file")
    return files


def _remove(spark: SparkSession, location: str) -> None:
    """Deletes a directory through Hadoop's file system (local, DBFS or ABFS alike)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)
