"""The dbt project on what the loader wrote: `dbt build` on DuckDB, run after each of two
batches (the second run incremental, with re-delivered events), reconciled with the
simulator's own output; and the same project against dbt-synapse, parsed and compiled."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
from datetime import timezone

import duckdb
import pytest
import sqlglot
from pyspark.sql import functions as F

from conftest import ROOT

from retail_loader.avro import FastavroDecoder
from retail_loader.loader import Settings, load_batch
from retail_loader.warehouse import DuckDBWarehouse
from test_loader import halves

PROJECT = ROOT / "deploy" / "dbt"
MODELS = ("stg_customers", "stg_products", "stg_orders", "stg_order_items", "stg_payments",
          "dim_customer_history", "dim_customer", "dim_product_history", "dim_product", "dim_date", "fct_orders", "fct_sales", "fct_payments",
          "customer_revenue", "category_revenue", "rpt_sales")
INCREMENTAL = {"fct_orders", "fct_sales", "fct_payments"}
STATUS_RANK = {"refunded": 4, "captured": 3, "declined": 2, "authorized": 1}
ORDER_RANK = {"returned": 5, "delivered": 4, "shipped": 3, "cancelled": 2, "placed": 1}


def dbt(workdir, database, *args, executable=None, target="local", env=None) -> subprocess.CompletedProcess:
    command = [executable or str(ROOT / ".venv" / "bin" / "dbt"), *args, "--project-dir", str(PROJECT),
               "--profiles-dir", str(PROJECT), "--target", target, "--target-path", str(workdir / f"dbt-{target}")]
    environment = {**os.environ, "RETAIL_DUCKDB_PATH": str(database), "DBT_LOG_PATH": str(workdir / "dbt-logs"),
                   "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **(env or {})}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)


def succeeds(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


def query(database, sql):
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def redeliveries(frame, topics):
    """Some orders and payments sent again (same key and value, at the next offsets of their
    partitions): what an at-least-once producer does after a lost acknowledgement."""
    from pyspark.sql import Window

    last = frame.groupBy("topic", "partition").agg(F.max("offset").alias("last"))
    again = (frame.where(F.col("topic").isin(topics["orders"], topics["payments"]))
             .where(F.col("offset") % 50 == 7).join(last, ["topic", "partition"]))
    order = Window.partitionBy("topic", "partition").orderBy("offset")
    return (again.withColumn("offset", F.col("last") + F.row_number().over(order))
            .select(*frame.columns))


@pytest.fixture(scope="session")
def models(spark, kafka_frame, topics, workdir):
    """The database dbt builds: loaded by the loader in two batches, with `dbt build` after
    each; the second batch also re-delivers events."""
    database = workdir / "models.duckdb"
    database.unlink(missing_ok=True)
    settings = Settings(topics, str(workdir / "staging-models"))
    first, second = halves(kafka_frame)
    batches = [first, second.unionByName(redeliveries(kafka_frame, topics))]
    runs = []
    for batch_id, frame in enumerate(batches):
        warehouse = DuckDBWarehouse(str(database))
        load_batch(frame, batch_id, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse)
        warehouse.close()  # dbt runs in its own process: DuckDB admits one writer
        run = succeeds(dbt(workdir, database, "build"))
        # The SQL fct_sales was built from, before a later run overwrites it.
        run.fct_sales_sql = (workdir / "dbt-local" / "compiled" / "retail" / "models" / "marts" / "fct_sales.sql").read_text()
        runs.append(run)
    return database, runs


def test_dbt_build_runs_every_model_and_test_twice(models):
    database, runs = models
    for run in runs:
        assert "ERROR=0" in run.stdout and "PASS=" in run.stdout
        for model in MODELS:
            assert model in run.stdout
    # The first run built fct_sales whole; the second took the incremental path, whose SQL
    # selects only the orders fct_orders recomputed since.
    first, second = (run.fct_sales_sql for run in runs)
    watermark = "max(source_loaded_at)"
    assert watermark not in first and watermark in second


def test_redelivered_events_are_in_raw_but_not_in_the_models(models, decoded):
    database, _ = models
    raw, distinct = query(database, "SELECT count(*), count(DISTINCT event_id) FROM raw.orders")[0]
    assert raw > distinct, "the second batch re-delivered orders"
    orders = sum(1 for entity, _ in decoded.values() if entity == "orders")
    assert query(database, "SELECT count(*) FROM analytics_staging.stg_orders") == [(orders,)]
    payments = sum(1 for entity, _ in decoded.values() if entity == "payments")
    assert query(database, "SELECT count(*) FROM analytics_marts.fct_payments") == [(payments,)]


def test_daily_revenue_and_orders_reconcile_with_the_simulators_output(models, decoded):
    """Revenue (sum of line amounts) and orders per day in fct_sales equal the sums over the
    events the simulator published, decoded independently."""
    database, _ = models
    expected = collections.defaultdict(lambda: [set(), 0])
    for entity, record in decoded.values():
        if entity == "orders" and record["event_type"] == "order_placed":
            day = record["event_time"].astimezone(timezone.utc).date()
            expected[day][0].add(record["order_id"])
            expected[day][1] += sum(line["line_total"] for line in record["items"])
    got = query(database, "SELECT order_date, count(DISTINCT order_id), sum(line_amount) "
                          "FROM analytics_marts.fct_sales GROUP BY order_date")
    assert {day: (n, revenue) for day, n, revenue in got} == {
        day: (len(ids), revenue) for day, (ids, revenue) in expected.items()}
    assert len(expected) >= 1


def test_each_sale_carries_its_orders_latest_status_and_payment_status(models, decoded):
    database, _ = models
    latest = {}
    for entity, p in decoded.values():
        if entity == "payments":
            rank = (p["event_time"], STATUS_RANK[p["status"]], p["payment_id"])
            if p["order_id"] not in latest or rank > latest[p["order_id"]][0]:
                latest[p["order_id"]] = (rank, p["status"])
    got = dict(query(database, "SELECT DISTINCT order_id, payment_status FROM analytics_marts.fct_sales"))
    expected = {o: latest[o][1] if o in latest else "unpaid" for o in got}
    assert got == expected
    assert {"captured", "declined", "refunded"} <= set(got.values())

    statuses = {}
    for entity, o in decoded.values():
        if entity == "orders":
            rank = (o["event_time"], ORDER_RANK[o["status"]])
            if o["order_id"] not in statuses or rank > statuses[o["order_id"]][0]:
                statuses[o["order_id"]] = (rank, o["status"])
    got = dict(query(database, "SELECT DISTINCT order_id, order_status FROM analytics_marts.fct_sales"))
    assert got == {o: s for o, (_, s) in statuses.items()}
    assert {"placed", "shipped", "cancelled"} <= set(got.values())


def test_incremental_runs_equal_a_full_rebuild(models, workdir):
    database, _ = models
    rebuilt = workdir / "rebuilt.duckdb"
    shutil.copy(database, rebuilt)
    succeeds(dbt(workdir, rebuilt, "build", "--full-refresh"))
    for table in ("fct_orders", "fct_sales", "fct_payments", "dim_customer_history", "dim_customer", "dim_product",
                  "dim_product_history", "customer_revenue",
                  "category_revenue"):
        sql = f"SELECT * FROM analytics_marts.{table} ORDER BY ALL"
        assert query(database, sql) == query(rebuilt, sql), table


def test_the_invariant_tests_catch_a_broken_line(models, workdir):
    database, _ = models
    broken = workdir / "broken.duckdb"
    shutil.copy(database, broken)
    with duckdb.connect(str(broken)) as connection:
        connection.execute("UPDATE raw.order_items SET line_total = line_total + 1 "
                           "WHERE event_id = (SELECT min(event_id) FROM raw.order_items)")
    result = dbt(workdir, broken, "build", "--full-refresh")
    assert result.returncode != 0
    assert re.search(r"FAIL 1 assert_order_subtotal_is_the_sum_of_its_lines", result.stdout), result.stdout[-3000:]
    # The failing test stops the broken data before the marts.
    assert re.search(r"SKIP relation \w+\.fct_sales", result.stdout), result.stdout[-3000:]


def test_source_freshness_and_docs(models, workdir):
    database, _ = models
    freshness = succeeds(dbt(workdir, database, "source", "freshness"))
    assert "PASS freshness of raw.orders" in freshness.stdout
    succeeds(dbt(workdir, database, "docs", "generate"))
    import json

    catalog = json.loads((workdir / "dbt-local" / "catalog.json").read_text())
    documented = {node["metadata"]["name"] for node in catalog["nodes"].values()}
    assert set(MODELS) <= documented
    manifest = json.loads((workdir / "dbt-local" / "manifest.json").read_text())
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            assert node["description"], f"{node['name']} has no description"
    # Every column of every mart, as the warehouse has it, is described.
    marts = {n["name"]: n for n in manifest["nodes"].values()
             if n["resource_type"] == "model" and "/marts/" in "/" + n["original_file_path"]}
    for key, node in catalog["nodes"].items():
        name = node["metadata"]["name"]
        if name in marts:
            described = {c for c, v in marts[name]["columns"].items() if v.get("description")}
            assert set(node["columns"]) <= described, f"{name}: {set(node['columns']) - described} undescribed"
    assert {"fct_orders", "fct_sales", "customer_revenue", "category_revenue", "rpt_sales"} <= set(marts)
    assert {e["name"] for e in manifest["exposures"].values()} == {"local_dashboard", "tableau_workbook"}


def synapse_dbt() -> str:
    path = os.environ.get("PIPELINE_DBT_SYNAPSE") or str(ROOT / ".venv-synapse" / "bin" / "dbt")
    assert os.path.exists(path), "dbt with dbt-synapse is missing: .ci/run installs it in .venv-synapse"
    return path


SYNAPSE_ENV = {"SYNAPSE_SERVER": "retail-ws.sql.azuresynapse.net", "SYNAPSE_DATABASE": "retailpool"}


def test_the_project_parses_and_compiles_for_synapse(workdir):
    """dbt-synapse (the production adapter) loads the project, and the models it can compile
    without a connection compile to SQL that sqlglot reads as T-SQL. (Incremental models ask
    the warehouse whether they exist, so they are parsed here, not compiled.)"""
    executable = synapse_dbt()
    parsed = succeeds(dbt(workdir, "unused", "parse", executable=executable, target="synapse", env=SYNAPSE_ENV))
    assert "Registered adapter: synapse" in parsed.stdout
    succeeds(dbt(workdir, "unused", "compile", "--no-populate-cache", "--exclude", "config.materialized:incremental",
                 executable=executable, target="synapse", env=SYNAPSE_ENV))
    compiled = workdir / "dbt-synapse" / "compiled" / "retail" / "models"
    models = sorted(compiled.glob("*/*.sql"))
    assert {f.stem for f in models} == set(MODELS) - INCREMENTAL
    tests = sorted(compiled.glob("*/*.yml/*.sql")) + sorted((compiled.parent / "tests").glob("*.sql"))
    assert len(tests) > 30
    for path in models + tests:
        text = path.read_text()
        assert "isodow" not in text and "monthname" not in text, f"{path.name}: DuckDB function in Synapse SQL"
        (statement,) = sqlglot.parse(text, read="tsql")
        assert isinstance(statement, sqlglot.exp.Query), path.name


def test_the_incremental_models_compile_for_synapse_on_their_incremental_path(workdir):
    """The incremental models as Synapse runs them after the first build: compiled by
    dbt-synapse in a copy of the project whose test-only macro answers is_incremental() with
    true (dbt would otherwise ask the warehouse), then read by sqlglot as T-SQL."""
    executable = synapse_dbt()
    project = workdir / "dbt-incremental-project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"))
    (project / "macros" / "test_only_incremental.sql").write_text(
        "{% macro is_incremental() %}{{ return(true) }}{% endmacro %}\n")
    command = [executable, "compile", "--no-populate-cache", "--select", "config.materialized:incremental",
               "--project-dir", str(project), "--profiles-dir", str(project), "--target", "synapse",
               "--target-path", str(workdir / "dbt-synapse-incremental")]
    environment = {**os.environ, **SYNAPSE_ENV, "DBT_LOG_PATH": str(workdir / "dbt-logs"),
                   "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    succeeds(subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600))
    compiled = workdir / "dbt-synapse-incremental" / "compiled" / "retail" / "models" / "marts"
    for name in sorted(INCREMENTAL):
        text = (compiled / f"{name}.sql").read_text()
        assert "max(source_loaded_at)" in text, f"{name}: not its incremental path"
        (statement,) = sqlglot.parse(text, read="tsql")
        assert isinstance(statement, sqlglot.exp.Query), name


def test_once_everything_is_loaded_nothing_is_inferred_or_orphaned(models):
    database, runs = models
    assert query(database, "SELECT count(*) FROM analytics_marts.dim_customer WHERE is_inferred = 1") == [(0,)]
    assert query(database, "SELECT count(*) FROM analytics_marts.dim_product WHERE is_inferred = 1") == [(0,)]
    assert query(database, "SELECT count(*) FROM analytics_marts.fct_payments p WHERE NOT EXISTS "
                           "(SELECT 1 FROM analytics_marts.fct_sales s WHERE s.order_id = p.order_id)") == [(0,)]
    assert "WARN=0" in runs[1].stdout


def test_the_marts_reconcile_with_the_simulators_ledger(models):
    """The simulator's ground truth (its ledger, per event-time hour) summed per day equals
    what the warehouse holds: orders placed in fct_sales, captured and refunded amounts in
    fct_payments."""
    import json
    import pathlib
    from decimal import Decimal

    ledger_dir = pathlib.Path(os.environ.get("PIPELINE_LEDGER") or pytest.fail("PIPELINE_LEDGER is not set"))
    truth = collections.defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    # The replicas of a run (--shard I/N) each keep their hours under shard=I/.
    hours = sorted(ledger_dir.glob("**/date=*/hour=*.json"))
    assert len(hours) >= 24
    for path in hours:
        hour = json.loads(path.read_text())
        day = hour["hour_start"][:10]
        truth[day][0] += hour["orders_placed"]
        truth[day][1] += sum(Decimal(v) for v in hour["captured"].values())
        truth[day][2] += sum(Decimal(v) for v in hour["refunded"].values())
    database, _ = models
    orders = dict(query(database, "SELECT strftime(order_date, '%Y-%m-%d'), count(DISTINCT order_id) "
                                  "FROM analytics_marts.fct_sales GROUP BY ALL"))
    money = {d: (c, r) for d, c, r in query(
        database, "SELECT strftime(occurred_at, '%Y-%m-%d'), sum(captured_amount), sum(refunded_amount) "
                  "FROM analytics_marts.fct_payments GROUP BY ALL")}
    assert {d: v[0] for d, v in truth.items() if v[0]} == orders
    assert {d: (v[1], v[2]) for d, v in truth.items() if v[1] or v[2]} == money


def test_the_completeness_test_sees_a_gap_between_batches(models, workdir):
    """Offsets missing between two batches (a batch that never reached raw) fail the build."""
    database, _ = models
    gapped = workdir / "gapped.duckdb"
    shutil.copy(database, gapped)
    with duckdb.connect(str(gapped)) as connection:
        # The second batch of one partition as if it had begun five offsets later.
        connection.execute("""
            UPDATE raw.load_log SET start_offset = start_offset + 5
            WHERE batch_id = 1 AND (kafka_topic, kafka_partition) IN (
                SELECT kafka_topic, kafka_partition FROM raw.load_log WHERE batch_id = 1 LIMIT 1)""")
    result = dbt(workdir, gapped, "test", "--select", "assert_load_log_offsets_are_contiguous")
    assert result.returncode != 0
    assert re.search(r"FAIL 1 assert_load_log_offsets_are_contiguous", result.stdout), result.stdout[-3000:]
