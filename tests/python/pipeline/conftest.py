"""Fixtures of the pipeline tests: the simulator's topics, read back from the broker.

`tests/pipeline.rs` runs the simulator for a simulated day into the local broker and then this
suite, with:
  PIPELINE_BOOTSTRAP     the broker's address
  PIPELINE_TOPIC_PREFIX  prefix of the run's four topics
  PIPELINE_WORKDIR       a scratch directory (the DuckDB warehouse and staging go there)
"""

from __future__ import annotations

import io
import json
import os
import pathlib
from dataclasses import dataclass

import fastavro
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

ROOT = pathlib.Path(__file__).resolve().parents[3]

ENTITIES = ("customers", "products", "orders", "payments")

# A value that is no Avro datum of any schema: an event_id announced as 36 characters, then
# only 10 bytes. Both fastavro and Java's Avro reach the end of the input.
CORRUPT_VALUE = b"\x48" + b"0123456789"


@dataclass(frozen=True)
class Message:
    """A message with exactly the Kafka source's columns."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: int
    headers: list[tuple[str, bytes]]


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set: run through `cargo test --test pipeline`")
    return value


@pytest.fixture(scope="session")
def topics() -> dict[str, str]:
    prefix = os.environ.get("PIPELINE_TOPIC_PREFIX", "")
    return {e: prefix + e for e in ENTITIES}


@pytest.fixture(scope="session")
def workdir() -> pathlib.Path:
    path = pathlib.Path(env("PIPELINE_WORKDIR"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def corrupt(topics) -> tuple[str, int, int]:
    """Publishes one undecodable message on the orders topic; its (topic, partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=env("PIPELINE_BOOTSTRAP"))
    sent = producer.send(topics["orders"], value=CORRUPT_VALUE, key=b"corrupt", partition=0).get(timeout=30)
    producer.close()
    return (sent.topic, sent.partition, sent.offset)


@pytest.fixture(scope="session")
def messages(topics, corrupt) -> list[Message]:
    """Every message of the four topics, read from the beginning until idle."""
    consumer = KafkaConsumer(bootstrap_servers=env("PIPELINE_BOOTSTRAP"), enable_auto_commit=False,
                             consumer_timeout_ms=5000, request_timeout_ms=30000,
                             # The local broker may answer a fetch with more than the 1 MB frames
                             # the client accepts by default.
                             receive_message_max_bytes=1 << 28)
    result = []
    for topic in topics.values():
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        assert partitions, f"topic {topic} does not exist"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        result.extend(
            Message(m.key, m.value, m.topic, m.partition, m.offset, m.timestamp, m.timestamp_type, list(m.headers))
            for m in consumer
        )
    consumer.close()
    assert any((m.topic, m.partition, m.offset) == corrupt for m in result), "the corrupt message was not read back"
    return result


@pytest.fixture(scope="session")
def decoded(messages, topics) -> dict[tuple[str, int, int], tuple[str, dict]]:
    """Each decodable message's (entity, record), decoded here with fastavro, independently of
    the loader. Keyed by (topic, partition, offset)."""
    schemas = {e: fastavro.parse_schema(json.loads((ROOT / "avro" / f"{e}.avsc").read_text())) for e in ENTITIES}
    entity_of = {t: e for e, t in topics.items()}
    result = {}
    for m in messages:
        entity = entity_of[m.topic]
        try:
            record = fastavro.schemaless_reader(io.BytesIO(m.value), schemas[entity])
        except Exception:  # noqa: BLE001 - undecodable: expected in the quarantine
            continue
        result[(m.topic, m.partition, m.offset)] = (entity, record)
    return result


# PostgreSQL's JDBC driver (Debian's libpostgresql-jdbc-java), on the driver's class path so
# that DriverManager finds it, as the SQL Server driver is on a Databricks cluster's.
JDBC_JAR = os.environ.get("PIPELINE_JDBC_JAR", "/usr/share/java/postgresql.jar")


@pytest.fixture(scope="session")
def spark():
    from retail_loader.session import local_session

    session = local_session("retail-loader-tests", JDBC_JAR if os.path.exists(JDBC_JAR) else None)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka_frame(spark, messages):
    """The messages as the Kafka source would hand them to foreachBatch."""
    from datetime import datetime, timezone

    from retail_loader.transform import kafka_source_schema

    rows = [
        (m.key, m.value, m.topic, m.partition, m.offset,
         datetime.fromtimestamp(m.timestamp_ms / 1000, timezone.utc), m.timestamp_type,
         [(k, v) for k, v in m.headers])
        for m in messages
    ]
    return spark.createDataFrame(rows, kafka_source_schema()).repartition(2).persist()
