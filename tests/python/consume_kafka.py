"""Independent check of what the simulator published to Kafka, with kafka-python and fastavro.

Usage: consume_kafka.py --bootstrap HOST:PORT --avro-dir DIR [--framing raw|confluent]
                        [--registry URL] [--topic-prefix P]

Consumes every partition of the four topics from the beginning to the end offsets, decodes
every value against avro/<topic>.avsc (raw datum, or Confluent framing with the schema fetched
from the registry by id), and checks keys, headers, timestamps, partitioning (a payment is in
its order's partition) and the model's invariants. Prints a JSON summary; exits 1 on violations.
"""

import argparse
import io
import json
import pathlib
import sys
import urllib.request

import fastavro
from kafka import KafkaConsumer, TopicPartition

from retail_checks import TOPICS, check_records, summary

KEYS = {"products": "product_id", "customers": "customer_id", "orders": "order_id", "payments": "order_id"}


def consume(consumer, topic):
    """Every message of every partition of `topic`, read until none has come for the idle
    timeout. (End offsets are not used: the local test broker reports them per batch.)"""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    if not partitions:
        raise SystemExit(f"topic {topic} does not exist")
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return list(consumer)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--avro-dir", required=True, type=pathlib.Path)
    parser.add_argument("--framing", default="raw", choices=["raw", "confluent"])
    parser.add_argument("--registry")
    parser.add_argument("--topic-prefix", default="")
    parser.add_argument("--idle-ms", type=int, default=5000, help="stop reading a topic after this long without a message")
    args = parser.parse_args()

    schemas = {t: fastavro.parse_schema(json.loads((args.avro_dir / f"{t}.avsc").read_text())) for t in TOPICS}
    registry_cache = {}

    def registry_schema(schema_id):
        if schema_id not in registry_cache:
            with urllib.request.urlopen(f"{args.registry}/schemas/ids/{schema_id}") as answer:
                registry_cache[schema_id] = fastavro.parse_schema(json.loads(json.load(answer)["schema"]))
        return registry_cache[schema_id]

    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=args.idle_ms, request_timeout_ms=30000,
                             receive_message_max_bytes=1 << 28)
    problems, records, order_partition, schema_ids = [], {t: [] for t in TOPICS}, {}, {}
    for topic in TOPICS:
        for m in consume(consumer, args.topic_prefix + topic):
            value = m.value
            if args.framing == "confluent":
                if value[0] != 0:
                    problems.append(f"{topic}/{m.partition}@{m.offset}: magic byte {value[0]}")
                    continue
                schema_id = int.from_bytes(value[1:5], "big")
                schema_ids.setdefault(topic, set()).add(schema_id)
                writer = registry_schema(schema_id)
                value = value[5:]
            else:
                writer = schemas[topic]
            buffer = io.BytesIO(value)
            record = fastavro.schemaless_reader(buffer, writer, schemas[topic])
            if buffer.tell() != len(value):
                problems.append(f"{topic}/{m.partition}@{m.offset}: {len(value) - buffer.tell()} bytes after the datum")
            headers = {k: v.decode() for k, v in m.headers}
            if m.key.decode() != str(record[KEYS[topic]]):
                problems.append(f"{topic}/{m.partition}@{m.offset}: key {m.key!r} is not {KEYS[topic]}")
            if headers.get("event_type") != record["event_type"]:
                problems.append(f"{topic}/{m.partition}@{m.offset}: event_type header {headers.get('event_type')}")
            if headers.get("content-type") != "avro/binary" or headers.get("schema") != f"retail.{schemas[topic]['name'].split('.')[-1]}":
                problems.append(f"{topic}/{m.partition}@{m.offset}: headers {headers}")
            if not headers.get("schema_fingerprint"):
                problems.append(f"{topic}/{m.partition}@{m.offset}: no schema fingerprint header")
            if m.timestamp != int(record["event_time"].timestamp() * 1000):
                problems.append(f"{topic}/{m.partition}@{m.offset}: timestamp {m.timestamp} is not the event time")
            if topic == "orders":
                order_partition[record["order_id"]] = m.partition
            if topic == "payments" and order_partition.get(record["order_id"], m.partition) != m.partition:
                problems.append(f"payment {record['payment_id']} is not in its order's partition")
            records[topic].append(record)
    consumer.close()

    problems += check_records(records)
    if problems:
        print(f"{len(problems)} problems:", *problems[:50], sep="\n  ", file=sys.stderr)
        return 1
    print(json.dumps(summary(records, schema_ids={t: sorted(v) for t, v in schema_ids.items()})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
