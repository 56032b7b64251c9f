"""The second way in: pull each complete hour from the simulator's API into the raw tables.

`GET /v1/hours` lists the complete hours and the watermark (every hour at and before it is
complete); each hour after the last one loaded, up to the watermark, is fetched topic by topic
from `GET /v1/transactions` as Avro pages (following `Next-Cursor`), and handed to the same
`load_batch` as the Kafka path, as the messages of one micro-batch:

- `topic` is the entity's topic name, `partition` 0, `offset` the event's position in the
  topic's whole history as the API lists it (the events of every earlier complete hour, plus
  its position in the hour), so the load log's ranges are contiguous and the same hour always
  gets the same offsets;
- `value` is the event's Avro datum, exactly what the Kafka sink publishes (raw framing).

So an hour loads once: `load_batch` replaces the rows of its offsets, and loading it again (a
retry, or `--from-hour` to reload) leaves the tables as they were. What has been loaded is
recorded after each hour under `--checkpoint-location` (`pulled_through`).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from .loader import Report, Settings, load_batch
from .session import configure
from .tables import ENTITIES
from .transform import kafka_source_schema

log = logging.getLogger("retail_loader.pull")

API_ORDER = ("products", "customers", "orders", "payments")
"""The order of the API's topics in an hour (reference data first)."""
PAGE = 100_000
"""Events per page asked for: the API's largest."""
HOUR_FORMAT = "%Y-%m-%dT%H"


class PullError(RuntimeError):
    """The API answered something other than data; the message says what, never the token."""


def parse_hour(text: str) -> datetime:
    try:
        return datetime.strptime(text, HOUR_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError as error:
        raise ValueError(f"{text!r} is not an hour like 2026-03-02T13") from error


class ApiClient:
    """The simulator's pull API over HTTP (`requests`), with an optional bearer token."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 300.0):
        import requests

        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--api-url {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _get(self, path: str, params: dict | None = None, accept: str = "application/json"):
        response = self.session.get(f"{self.base_url}{path}", params=params, timeout=self.timeout,
                                    headers={"Accept": accept})
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", "")
            except ValueError:
                detail = response.text[:200]
            raise PullError(f"GET {path} {params or ''}: {response.status_code} {detail}")
        return response

    def hours(self) -> tuple[list[dict], str | None]:
        """The complete hours (each with its events per topic) and the watermark."""
        body = self._get("/v1/hours").json()
        return body["hours"], body["watermark"]

    def datums(self, hour: str, topic: str) -> Iterator[bytes]:
        """The hour's events of `topic`, in order, each as its Avro datum."""
        import fastavro

        params = {"hour": hour, "topic": topic, "limit": PAGE}
        while True:
            response = self._get("/v1/transactions", params, accept="application/avro")
            reader = fastavro.reader(io.BytesIO(response.content))
            schema = fastavro.parse_schema(reader.writer_schema)
            for record in reader:
                out = io.BytesIO()
                fastavro.schemaless_writer(out, schema, record)
                yield out.getvalue()
            cursor = response.headers.get("Next-Cursor")
            if not cursor:
                return
            params["cursor"] = cursor


def offset_bases(hours: list[dict]) -> dict[tuple[str, str], int]:
    """(hour, topic) -> the offset of the hour's first event of the topic: the events of the
    topic in every complete hour before it."""
    bases, running = {}, {t: 0 for t in API_ORDER}
    for hour in hours:
        for topic in API_ORDER:
            bases[(hour["hour"], topic)] = running[topic]
            running[topic] += hour["events"].get(topic, 0)
    return bases


def hour_messages(spark, client: ApiClient, hour: str, bases: dict, topics: dict[str, str]):
    """One hour's events as the Kafka source's columns."""
    at = parse_hour(hour)
    rows = []
    for topic in API_ORDER:
        base = bases[(hour, topic)]
        for position, datum in enumerate(client.datums(hour, topic)):
            rows.append((None, datum, topics[topic], 0, base + position, at, 0, []))
    return spark.createDataFrame(rows, kafka_source_schema())


@dataclass
class Progress:
    """The last hour loaded, in a small file under the checkpoint location (any Hadoop file
    system: local, DBFS, ABFS)."""

    spark: object
    location: str

    def _path(self):
        jvm = self.spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(f"{self.location.rstrip('/')}/pulled_through")
        return path, path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())

    def last(self) -> str | None:
        path, fs = self._path()
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            text = self.spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()
        return json.loads(text)["hour"]

    def save(self, hour: str) -> None:
        path, fs = self._path()
        stream = fs.create(path, True)
        try:
            stream.write(json.dumps({"hour": hour}).encode())
        finally:
            stream.close()


def pull(spark, client: ApiClient, *, settings: Settings, decoder, warehouse, progress: Progress,
         from_hour: str | None = None) -> list[Report]:
    """Loads every complete hour after the last one loaded (or from `from_hour`) up to the
    watermark, one batch per hour; returns their reports."""
    hours, watermark = client.hours()
    if watermark is None:
        log.info("no complete hour yet")
        return []
    bases = offset_bases(hours)
    after = None if from_hour else progress.last()
    if from_hour:
        parse_hour(from_hour)
    reports = []
    for hour in hours:
        name = hour["hour"]
        if name > watermark or (after and name <= after) or (from_hour and name < from_hour):
            continue
        messages = hour_messages(spark, client, name, bases, settings.topics)
        batch_id = int(parse_hour(name).timestamp() // 3600)
        report = load_batch(messages, batch_id, settings=settings, decoder=decoder, warehouse=warehouse)
        expected = sum(hour["events"].values())
        if report.messages != expected:
            raise PullError(f"hour {name}: loaded {report.messages} events, the API lists {expected}")
        progress.save(name)
        log.info("hour %s: %d events loaded", name, report.messages)
        reports.append(report)
    return reports


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The `pull` task's parameters."""
    parser = argparse.ArgumentParser(prog="retail_loader pull", description=__doc__.split("\n")[0])
    parser.add_argument("--api-url", required=True, help="the simulator's API, like https://simulator.example:9464")
    parser.add_argument("--secret-scope", required=True)
    parser.add_argument("--api-token-secret", default="",
                        help="key of the API's bearer token in the scope; empty: no token")
    parser.add_argument("--topics", default="", help="entity=topic pairs: the raw tables' kafka_topic values")
    parser.add_argument("--synapse-jdbc-url", required=True)
    parser.add_argument("--synapse-user-secret", default="synapse-user")
    parser.add_argument("--synapse-password-secret", default="synapse-password")
    parser.add_argument("--staging-location", required=True)
    parser.add_argument("--checkpoint-location", required=True)
    parser.add_argument("--stage-schema", default="stage")
    parser.add_argument("--from-hour", default="", help="load again from this hour (YYYY-MM-DDTHH) on")
    args = parser.parse_args(argv)
    if "password=" in args.synapse_jdbc_url.lower():
        parser.error("--synapse-jdbc-url must not hold the password: it comes from the secret scope")
    return args


def main(argv: list[str] | None = None) -> None:
    """The `pull` entry point of the wheel: the API path's job task."""
    from pyspark.dbutils import DBUtils  # Databricks runtime only
    from pyspark.sql import SparkSession

    from .avro import SparkAvroDecoder
    from .job import parse_topics
    from .warehouse import SynapseWarehouse, jdbc_connector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = arguments(argv)
    spark = SparkSession.builder.getOrCreate()
    configure(spark)
    secrets = DBUtils(spark).secrets
    try:
        settings = Settings(parse_topics(args.topics), args.staging_location, stage_schema=args.stage_schema)
        token = secrets.get(args.secret_scope, args.api_token_secret) if args.api_token_secret else None
        client = ApiClient(args.api_url, token)
        if args.from_hour:
            parse_hour(args.from_hour)
    except ValueError as error:
        sys.exit(f"retail_loader pull: {error}")
    connect = jdbc_connector(spark, args.synapse_jdbc_url, secrets.get(args.secret_scope, args.synapse_user_secret),
                             secrets.get(args.secret_scope, args.synapse_password_secret))
    warehouse = SynapseWarehouse(connect, settings.stage_schema)
    pull(spark, client, settings=settings, decoder=SparkAvroDecoder(), warehouse=warehouse,
         progress=Progress(spark, args.checkpoint_location), from_hour=args.from_hour or None)


assert set(API_ORDER) == set(ENTITIES)
