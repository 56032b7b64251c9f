"""The API path of the Databricks job, in local Spark against a live `simulator serve`:
every event of every complete hour lands in the raw tables once, and a rerun changes nothing."""

from __future__ import annotations

from collections import Counter

import pytest
import requests

from conftest import TOPICS, read_hour, serve


@pytest.fixture(scope="module")
def spark():
    from retail_loader.session import local_session

    session = local_session("retail-pull-tests")
    yield session
    session.stop()


def snapshot(warehouse) -> dict[str, list[tuple]]:
    from retail_loader.tables import TABLES

    tables = {}
    for table in TABLES:
        columns = [c for c in table.column_names if c not in ("batch_id", "loaded_at")]
        tables[table.name] = sorted(warehouse.connection.execute(
            f"SELECT {', '.join(columns)} FROM raw.{table.name}").fetchall(), key=repr)
    return tables


def test_every_hour_pulled_from_the_api_lands_once(spark, backfill, workdir):
    from retail_loader.avro import FastavroDecoder
    from retail_loader.loader import Settings
    from retail_loader.pull import ApiClient, Progress, pull
    from retail_loader.warehouse import DuckDBWarehouse

    token = "pull-token"
    server = serve(backfill, workdir, SIMULATOR__API__TOKEN=token)
    try:
        topics = {t: f"retail.{t}" for t in TOPICS}
        settings = Settings(topics, str(workdir / "pull-staging"))
        warehouse = DuckDBWarehouse(str(workdir / "pull.duckdb"))
        progress = Progress(spark, str(workdir / "pull-checkpoint"))
        client = ApiClient(server.url, token)
        reports = pull(spark, client, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse,
                       progress=progress)
        hours = requests.get(f"{server.url}/v1/hours", headers={"Authorization": f"Bearer {token}"},
                             timeout=30).json()["hours"]
        assert len(reports) == len(hours) == 6
        assert progress.last() == "2026-03-02T05"

        # Every event of the files, once: by event id, duplicates injected included.
        expected = Counter()
        for hour in hours:
            for topic in TOPICS:
                expected.update((topic, str(r["event_id"])) for r in read_hour(backfill, hour["hour"], topic))
        loaded = Counter()
        for topic in TOPICS:
            rows = warehouse.connection.execute(f"SELECT event_id FROM raw.{topic}").fetchall()
            loaded.update((topic, str(r[0])) for r in rows)
        assert loaded == expected
        offsets = warehouse.connection.execute(
            "SELECT kafka_topic, min(start_offset), max(end_offset), sum(messages) FROM raw.load_log "
            "GROUP BY kafka_topic ORDER BY 1").fetchall()
        for topic, start, end, messages in offsets:
            assert start == 0 and end == messages - 1, (topic, start, end, messages)

        before = snapshot(warehouse)
        # Nothing new: nothing to do. Forced again from an hour: the same tables.
        assert pull(spark, client, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse,
                    progress=progress) == []
        again = pull(spark, client, settings=settings, decoder=FastavroDecoder(), warehouse=warehouse,
                     progress=progress, from_hour="2026-03-02T03")
        assert len(again) == 3
        assert snapshot(warehouse) == before
        warehouse.close()
    finally:
        server.stop()
