"""The loader's batch function on the simulator's real messages, into DuckDB standing in for
Synapse: everything lands once, with the right values; reloading changes nothing; corrupt
messages are quarantined or fail the batch, naming them."""

from __future__ import annotations

import json
from datetime import timezone
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from conftest import CORRUPT_VALUE, ENTITIES

from retail_loader.avro import FastavroDecoder, schema_json, spark_type
from retail_loader.loader import Settings, UndecodableMessages, load_batch
from retail_loader.tables import TABLES
from retail_loader.transform import NOT_CONFLUENT
from retail_loader.warehouse import DuckDBWarehouse

# Columns that differ between loads of the same messages.
LOAD_ONLY = {"batch_id", "loaded_at"}


def naive_utc(moment):
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def expected_rows(messages, decoded, corrupt) -> dict[str, set[tuple]]:
    """Every table's rows, computed from the independently decoded messages."""
    rows = {t.name: set() for t in TABLES}
    for m in messages:
        where = (m.topic, m.partition, m.offset, naive_utc_ms(m.timestamp_ms))
        if (m.topic, m.partition, m.offset) not in decoded:
            rows["rejected_messages"].add(where + (m.key, m.value))
            continue
        entity, r = decoded[(m.topic, m.partition, m.offset)]
        event = (str(r["event_id"]), r["event_type"], naive_utc(r["event_time"]))
        if entity == "customers":
            rows["customers"].add(event + (
                r["customer_id"], r["first_name"], r["last_name"], r["email"], r["phone"],
                r["street_address"], r["city"], r["region"], r["postal_code"], r["country"],
                naive_utc(r["signup_time"]), r["signup_channel"], r["marketing_consent"],
                ",".join(r["changed_fields"])) + where)
        elif entity == "products":
            rows["products"].add(event + (
                r["product_id"], r["sku"], r["name"], r["category_id"], r["category"],
                r["unit_price"], r["currency"], r["replaced_by"]) + where)
        elif entity == "orders":
            rows["orders"].add(event + (
                r["order_id"], r["customer_id"], len(r["items"]), r["subtotal"], r["discount"],
                r["tax"], r["shipping"], r["total"], r["currency"], r["channel"], r["status"]) + where)
            for line in r["items"]:
                rows["order_items"].add((
                    str(r["event_id"]), naive_utc(r["event_time"]), r["order_id"], line["line_number"],
                    line["product_id"], line["quantity"], line["unit_price"], line["line_total"],
                    r["currency"]) + where)
        else:
            rows["payments"].add(event + (
                r["payment_id"], r["order_id"], r["customer_id"], r["amount"], r["currency"],
                r["method"], r["status"], r["attempt"], r["failure_reason"]) + where)
    return rows


def naive_utc_ms(ms: int):
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, timezone.utc).replace(tzinfo=None)


def table_rows(warehouse: DuckDBWarehouse, table, exclude=LOAD_ONLY) -> list[tuple]:
    columns = [c for c in table.column_names if c not in exclude]
    if table.name == "rejected_messages":
        columns = [c for c in columns if c != "reason"]
    return warehouse.connection.execute(f"SELECT {', '.join(columns)} FROM raw.{table.name}").fetchall()


def snapshot(warehouse: DuckDBWarehouse) -> dict[str, list[tuple]]:
    return {t.name: sorted(table_rows(warehouse, t), key=repr) for t in TABLES if t.name != "load_log"}


def halves(frame):
    """The messages split at each partition's middle offset: two consecutive batches."""
    middle = frame.groupBy("topic", "partition").agg(
        ((F.min("offset") + F.max("offset")) / 2).cast("long").alias("middle"))
    joined = frame.join(middle, ["topic", "partition"])
    first = joined.where(F.col("offset") <= F.col("middle")).drop("middle")
    second = joined.where(F.col("offset") > F.col("middle")).drop("middle")
    return first.select(*frame.columns), second.select(*frame.columns)


@pytest.fixture(scope="session")
def settings(topics, workdir) -> Settings:
    return Settings(topics, str(workdir / "staging"))


@pytest.fixture(scope="session")
def warehouse(spark, kafka_frame, settings, workdir) -> DuckDBWarehouse:
    """The DuckDB warehouse, loaded with every message in two consecutive batches (the
    database the dbt tests build on)."""
    path = workdir / "warehouse.duckdb"
    path.unlink(missing_ok=True)
    warehouse = DuckDBWarehouse(str(path))
    first, second = halves(kafka_frame)
    for batch_id, frame in enumerate((first, second)):
        load_batch(frame, batch_id, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
    yield warehouse
    warehouse.close()


def test_local_decoder_gives_the_type_from_avro_gives(spark):
    jvm = spark.sparkContext._jvm
    for entity in ENTITIES:
        schema = jvm.org.apache.avro.Schema.Parser().parse(schema_json(entity))
        theirs = jvm.org.apache.spark.sql.avro.SchemaConverters.toSqlType(schema).dataType()
        assert json.loads(theirs.json()) == spark_type(schema_json(entity)).jsonValue(), entity


def test_every_message_lands_once_with_its_values(warehouse, messages, decoded, corrupt):
    expected = expected_rows(messages, decoded, corrupt)
    assert sum(len(v) for k, v in expected.items() if k in ENTITIES) == len(decoded)
    for table in TABLES:
        if table.name == "load_log":
            continue
        got = table_rows(warehouse, table)
        assert len(got) == len(set(got)), f"raw.{table.name} holds duplicate rows"
        assert set(got) == expected[table.name], f"raw.{table.name} differs from the topics"
    # Every event id once, in the table of its topic.
    ids = warehouse.connection.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM (SELECT event_id FROM raw.customers UNION ALL "
        "SELECT event_id FROM raw.products UNION ALL SELECT event_id FROM raw.orders UNION ALL "
        "SELECT event_id FROM raw.payments)").fetchone()
    assert ids == (len(decoded), len(decoded))
    assert warehouse.connection.execute("SELECT sum(line_count) FROM raw.orders").fetchone()[0] == len(
        expected["order_items"])


def test_the_corrupt_message_is_quarantined_with_its_coordinates(warehouse, messages, decoded, corrupt):
    rows = warehouse.connection.execute(
        "SELECT kafka_topic, kafka_partition, kafka_offset, kafka_value, reason FROM raw.rejected_messages"
    ).fetchall()
    undecodable = {(m.topic, m.partition, m.offset) for m in messages} - decoded.keys()
    assert corrupt in undecodable
    assert {(t, p, o) for t, p, o, _, _ in rows} == undecodable
    for *_, value, reason in rows:
        assert bytes(value) == CORRUPT_VALUE
        assert reason == "not a datum of the orders schema (avro/orders.avsc)"


def test_load_log_accounts_for_every_message(warehouse, messages, decoded):
    log = warehouse.connection.execute(
        "SELECT kafka_topic, kafka_partition, min(start_offset), max(end_offset), sum(messages), sum(rejected), "
        "count(DISTINCT batch_id) FROM raw.load_log GROUP BY ALL").fetchall()
    expected = {}
    for m in messages:
        lo, hi, n = expected.get((m.topic, m.partition), (m.offset, m.offset, 0))
        expected[(m.topic, m.partition)] = (min(lo, m.offset), max(hi, m.offset), n + 1)
    assert {(t, p): (lo, hi, n) for t, p, lo, hi, n, _, _ in log} == expected
    assert sum(r for *_, r, _ in log) == len(messages) - len(decoded)
    assert {b for *_, b in log} == {2}, "each partition is split over the two batches"


def test_reloading_a_batch_changes_nothing(warehouse, kafka_frame, settings):
    before = snapshot(warehouse)
    first, second = halves(kafka_frame)
    # The same batch again (a retry), then everything under a new id (a lost checkpoint).
    load_batch(second, 1, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
    assert snapshot(warehouse) == before
    load_batch(kafka_frame, 7, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
    assert snapshot(warehouse) == before
    batches = warehouse.connection.execute("SELECT DISTINCT batch_id FROM raw.orders").fetchall()
    assert batches == [(7,)]
    # Restore the two-batch load for the tests that follow.
    load_batch(first, 0, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
    load_batch(second, 1, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
    assert snapshot(warehouse) == before


def test_fail_mode_names_the_corrupt_message_and_loads_nothing(kafka_frame, topics, workdir, corrupt):
    warehouse = DuckDBWarehouse(str(workdir / "failing.duckdb"))
    settings = Settings(topics, str(workdir / "staging-failing"), on_undecodable="fail")
    with pytest.raises(UndecodableMessages) as raised:
        load_batch(kafka_frame, 0, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
    topic, partition, offset = corrupt
    assert f"topic {topic} partition {partition} offset {offset}" in str(raised.value)
    for table in TABLES:
        assert warehouse.connection.execute(f"SELECT count(*) FROM raw.{table.name}").fetchone() == (0,)
    warehouse.close()


def test_confluent_framing_is_unwrapped_and_checked(spark, kafka_frame, topics, workdir, decoded):
    """The same messages with the Confluent prefix load the same rows; a value without the
    magic byte is quarantined as such."""
    framed = kafka_frame.where(F.col("topic") == topics["products"]).withColumn(
        "value",
        F.when(F.col("offset") == 0, F.col("value"))
        .otherwise(F.concat(F.lit(bytearray(b"\x00\x00\x00\x00\x07")), F.col("value"))),
    )
    warehouse = DuckDBWarehouse(str(workdir / "confluent.duckdb"))
    settings = Settings(topics, str(workdir / "staging-confluent"), framing="confluent")
    report = load_batch(framed, 0, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
    products = sum(1 for e, _ in decoded.values() if e == "products")
    partitions = framed.where(F.col("offset") == 0).count()
    assert report.rows["products"] == products - partitions
    reasons = warehouse.connection.execute("SELECT DISTINCT reason FROM raw.rejected_messages").fetchall()
    assert reasons == [(NOT_CONFLUENT,)]
    assert report.rejected == partitions
    warehouse.close()


def test_amounts_and_times_keep_their_exact_values(warehouse):
    total, minimum = warehouse.connection.execute(
        "SELECT sum(total), min(event_time) FROM raw.orders").fetchone()
    assert isinstance(total, Decimal) and total == total.quantize(Decimal("0.01"))
    types = dict(warehouse.connection.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'raw' AND table_name = 'orders'").fetchall())
    assert types["total"] == "DECIMAL(12,2)" and types["event_time"] == "TIMESTAMP"
    assert minimum.year >= 2020


def test_a_stray_file_in_the_staging_folder_changes_nothing(kafka_frame, topics, workdir):
    """A file beside the ones a batch's write committed (what a failed or speculative task
    leaves under Databricks' commit protocol) is never loaded: COPY is given the committed
    files by name, not the folder."""
    import shutil
    from pathlib import Path

    strays = []

    class StrayLeavingWarehouse(DuckDBWarehouse):
        def stage(self, table, files):
            first = Path(files[0].removeprefix("file://"))
            stray = first.with_name("part-99999-5f0e0d1c-0000-4000-8000-000000000000-c000.snappy.parquet")
            shutil.copy(first, stray)  # a whole second copy of committed rows
            strays.append(stray)
            super().stage(table, files)

    settings = Settings(topics, str(workdir / "staging-stray"))
    clean = DuckDBWarehouse(str(workdir / "clean.duckdb"))
    load_batch(kafka_frame, 0, settings=settings, decoder=FastavroDecoder(), warehouse=clean)
    with_strays = StrayLeavingWarehouse(str(workdir / "strays.duckdb"))
    load_batch(kafka_frame, 0, settings=settings, decoder=FastavroDecoder(), warehouse=with_strays)
    assert len(strays) >= 5, "a stray file sat beside every staged table"
    assert snapshot(with_strays) == snapshot(clean)
    clean.close()
    with_strays.close()


def test_the_stage_schema_is_the_targets(kafka_frame, topics, workdir):
    settings = Settings(topics, str(workdir / "staging-dev"), stage_schema="stage_dev")
    warehouse = DuckDBWarehouse(str(workdir / "dev.duckdb"), stage_schema="stage_dev")
    load_batch(kafka_frame, 0, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
    stage_tables = {r[0] for r in warehouse.connection.execute(
        "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_schema LIKE 'stage%'").fetchall()}
    assert stage_tables == {"stage_dev"}
    assert warehouse.connection.execute("SELECT count(*) FROM raw.orders").fetchone()[0] > 0
    warehouse.close()
    with pytest.raises(ValueError, match="not a schema name"):
        Settings(topics, "x", stage_schema="stage; DROP TABLE raw.orders")
