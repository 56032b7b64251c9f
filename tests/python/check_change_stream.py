"""Independent check of the simulator's change stream (`--envelope debezium`), with fastavro.

Usage: check_change_stream.py --schemas AVRO_CDC_DIR --events EVENTS_DIR
                              (--files CHANGES_DIR | --bootstrap HOST:PORT [--registry URL])
                              [--prefix shop]

Reads every change record, from the file sink's table directories or from the Kafka topics
(keys, tombstones and all; with --registry, keys and values in the Confluent wire format, their
writer schemas fetched from the registry by id), and checks, in log order (`source.lsn`):
- every `lsn` is unique and grows; a transaction's changes share its id and `txId`, numbered
  1..n (`total_order`) and per table (`data_collection_order`); BEGIN and END on the
  transaction topic surround it and END counts its changes per table;
- each change's `before` is the previous `after` of its key (none before an insert or a
  snapshot read), and a delete is followed by a tombstone (Kafka);
- replaying every change (insert, update, delete by key) gives exactly the tables that the
  business events of the same run (EVENTS_DIR, written with `--envelope events` and the same
  seed) imply: each customer as of their latest event, erased ones gone; each product as of
  its latest event, discontinued ones marked; each order with its latest status and its
  lines; each payment attempt with its latest status.
Prints a JSON summary; exits 1 with the violations if any.
"""

import argparse
import collections
import datetime as dt
import io
import json
import pathlib
import sys
import urllib.request

import fastavro

TABLES = ("products", "customers", "orders", "order_lines", "payments")
KEYS = {"customers": ("customer_id",), "products": ("product_id",), "orders": ("order_id",),
        "order_lines": ("order_id", "line_number"), "payments": ("payment_id",)}
PERSONAL = ("first_name", "last_name", "email", "phone", "street_address", "city", "region", "postal_code",
            "country", "marketing_consent")


def schemas(directory):
    load = lambda name: fastavro.parse_schema(json.loads((directory / name).read_text()))
    out = {t: (load(f"{t}.key.avsc"), load(f"{t}.avsc")) for t in TABLES}
    out["transaction"] = (load("transaction.key.avsc"), load("transaction.avsc"))
    return out


def from_files(directory, prefix, schema):
    """(stream, key, value) of every record in the file sink's directories (no keys or
    tombstones there: the key is taken from the row)."""
    records = []
    for stream in (*TABLES, "transaction"):
        name = f"{prefix}.transaction" if stream == "transaction" else f"{prefix}.public.{stream}"
        for path in sorted((directory / name).glob("date=*/hour=*/*.avro")):
            with open(path, "rb") as f:
                for value in fastavro.reader(f):
                    if stream == "transaction":
                        key = {"id": value["id"]}
                    else:
                        row = value["after"] or value["before"]
                        key = {k: row[k] for k in KEYS[stream]}
                    records.append((stream, key, value))
    return records


def from_kafka(bootstrap, prefix, schema, registry=None, schema_ids=None):
    from kafka import KafkaConsumer, TopicPartition

    cache = {}

    def decode(data, own, ids):
        """A datum: plain, or (with a registry) framed as magic byte 0, schema id, datum."""
        if registry is None:
            return fastavro.schemaless_reader(io.BytesIO(data), own)
        if data[:1] != b"\x00":
            raise SystemExit(f"a message without the Confluent magic byte: {data[:8]!r}")
        schema_id = int.from_bytes(data[1:5], "big")
        ids.add(schema_id)
        if schema_id not in cache:
            with urllib.request.urlopen(f"{registry}/schemas/ids/{schema_id}") as answer:
                cache[schema_id] = fastavro.parse_schema(json.loads(json.load(answer)["schema"]))
        return fastavro.schemaless_reader(io.BytesIO(data[5:]), cache[schema_id], own)

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000,
                             request_timeout_ms=30000, receive_message_max_bytes=1 << 28)
    records = []
    for stream in (*TABLES, "transaction"):
        topic = f"{prefix}.transaction" if stream == "transaction" else f"{prefix}.public.{stream}"
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            raise SystemExit(f"topic {topic} does not exist")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        key_schema, value_schema = schema[stream]
        ids = (schema_ids if schema_ids is not None else {}).setdefault(topic, {"key": set(), "value": set()})
        for message in consumer:
            key = decode(message.key, key_schema, ids["key"])
            value = None if message.value is None else decode(message.value, value_schema, ids["value"])
            records.append((stream, key, value, message.partition, message.offset))
    consumer.close()
    return records


def replay(records, problems, kafka):
    """The tables after every change, in log order; checks the numbering and the images."""
    changes = [(v["source"]["lsn"], s, k, v) for s, k, v, *_ in records if s != "transaction" and v is not None]
    changes.sort(key=lambda c: c[0])
    lsns = [c[0] for c in changes]
    if len(set(lsns)) != len(lsns):
        problems.append("log sequence numbers repeat")
    tables = {t: {} for t in TABLES}
    transactions = collections.OrderedDict()
    ops = collections.Counter()
    for lsn, stream, key, value in changes:
        k = tuple(key[c] for c in KEYS[stream])
        before, after, op = value["before"], value["after"], value["op"]
        ops[op] += 1
        if before != tables[stream].get(k):
            problems.append(f"{stream} {k} lsn {lsn}: before is not the previous after")
        if (op in ("c", "r")) != (before is None) or (op == "d") != (after is None):
            problems.append(f"{stream} {k} lsn {lsn}: op {op} with before/after {before is not None}/{after is not None}")
        if after is None:
            tables[stream].pop(k, None)
        else:
            tables[stream][k] = after
        block = value["transaction"]
        if op == "r":
            if block is not None or value["source"]["snapshot"] not in ("true", "last"):
                problems.append(f"{stream} {k}: a snapshot read in a transaction")
            continue
        tx = transactions.setdefault(block["id"], {"changes": [], "txId": value["source"]["txId"]})
        tx["changes"].append((stream, block["total_order"], block["data_collection_order"]))
        if value["source"]["txId"] != tx["txId"] or not block["id"].startswith(f"{tx['txId']}:"):
            problems.append(f"transaction {block['id']}: changes of another txId")
    for id, tx in transactions.items():
        orders = [c[1] for c in tx["changes"]]
        if orders != list(range(1, len(orders) + 1)):
            problems.append(f"transaction {id}: total_order {orders}")
        per_table = collections.defaultdict(list)
        for stream, _, order in tx["changes"]:
            per_table[stream].append(order)
        if any(o != list(range(1, len(o) + 1)) for o in per_table.values()):
            problems.append(f"transaction {id}: data_collection_order {dict(per_table)}")
        tx["counts"] = {f"public.{s}": len(o) for s, o in per_table.items()}
    # The metadata: BEGIN then END around each transaction, END with its counts.
    markers = collections.defaultdict(list)
    for stream, key, value, *_ in records:
        if stream == "transaction":
            markers[value["id"]].append(value)
    if set(markers) != set(transactions):
        problems.append(f"{len(set(transactions) ^ set(markers))} transactions without their BEGIN and END, or the reverse")
    for id, (begin, end, *rest) in ((i, m) for i, m in markers.items() if len(m) >= 2):
        counts = {c["data_collection"]: c["event_count"] for c in end["data_collections"] or []}
        if begin["status"] != "BEGIN" or end["status"] != "END" or rest:
            problems.append(f"transaction {id}: markers {[m['status'] for m in (begin, end, *rest)]}")
        elif id in transactions and counts != transactions[id]["counts"]:
            problems.append(f"transaction {id}: END counts {counts}, changes {transactions[id]['counts']}")
        elif end["event_count"] != sum(counts.values()):
            problems.append(f"transaction {id}: event_count {end['event_count']}")
    if kafka:
        # A tombstone follows each delete in its partition.
        by_partition = collections.defaultdict(list)
        for stream, key, value, partition, offset in records:
            by_partition[(stream, partition)].append((offset, key, value))
        deletes = tombstones = 0
        for messages in by_partition.values():
            messages.sort(key=lambda m: m[0])
            for (_, key, value), following in zip(messages, messages[1:] + [(None, None, "end")]):
                if value is not None and value.get("op") == "d":
                    deletes += 1
                    if following[2] is not None or following[1] != key:
                        problems.append(f"delete of {key} without its tombstone")
                tombstones += value is None
        if tombstones != deletes:
            problems.append(f"{tombstones} tombstones for {deletes} deletes")
    return tables, ops, len(transactions)


def ms(t):
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def expected_tables(events_dir):
    """The shop's tables as the business events of the run imply them."""
    events = {t: [] for t in ("products", "customers", "orders", "payments")}
    for topic in events:
        for path in sorted((events_dir / topic).glob("date=*/hour=*/*.avro")):
            with open(path, "rb") as f:
                events[topic].extend(fastavro.reader(f))
    tables = {t: {} for t in TABLES}
    order = lambda e: e["event_time"]
    for c in sorted(events["customers"], key=order):
        k = (c["customer_id"],)
        if c["event_type"] == "customer_deleted":
            tables["customers"].pop(k, None)
            continue
        tables["customers"][k] = {"customer_id": c["customer_id"], **{f: c[f] for f in PERSONAL},
                                  "signup_channel": c["signup_channel"], "created_at": c["signup_time"],
                                  "updated_at": c["event_time"]}
    created = {}
    for p in sorted(events["products"], key=order):
        k = (p["product_id"],)
        created.setdefault(k, p["event_time"])
        gone = p["event_type"] == "product_discontinued"
        tables["products"][k] = {"product_id": p["product_id"], "sku": p["sku"], "name": p["name"],
                                 "category_id": p["category_id"], "category": p["category"],
                                 "unit_price": p["unit_price"], "currency": p["currency"], "created_at": created[k],
                                 "discontinued_at": p["event_time"] if gone else None,
                                 "replaced_by": p["replaced_by"] if gone else None}
    for o in sorted(events["orders"], key=order):
        k = (o["order_id"],)
        row = tables["orders"].get(k)
        if o["event_type"] == "order_placed":
            row = {"order_id": o["order_id"], "customer_id": o["customer_id"], "created_at": o["event_time"]}
            for line in o["items"]:
                tables["order_lines"][(o["order_id"], line["line_number"])] = {
                    "order_id": o["order_id"], **{f: line[f] for f in ("line_number", "product_id", "quantity",
                                                                       "unit_price", "line_total")}}
        row.update({f: o[f] for f in ("status", "subtotal", "discount", "tax", "shipping", "total", "currency",
                                      "channel")}, updated_at=o["event_time"])
        tables["orders"][k] = row
    for p in sorted(events["payments"], key=order):
        k = (p["payment_id"],)
        row = tables["payments"].setdefault(k, {"created_at": p["event_time"]})
        row.update({f: p[f] for f in ("payment_id", "order_id", "customer_id", "amount", "currency", "method",
                                      "status", "attempt", "failure_reason")}, updated_at=p["event_time"])
    return tables


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--schemas", required=True, type=pathlib.Path)
    parser.add_argument("--events", required=True, type=pathlib.Path)
    parser.add_argument("--files", type=pathlib.Path)
    parser.add_argument("--bootstrap")
    parser.add_argument("--registry")
    parser.add_argument("--prefix", default="shop")
    args = parser.parse_args()
    schema = schemas(args.schemas)
    kafka = args.bootstrap is not None
    schema_ids = {}
    records = (from_kafka(args.bootstrap, args.prefix, schema, args.registry, schema_ids) if kafka
               else from_files(args.files, args.prefix, schema))
    problems = []
    tables, ops, transactions = replay(records, problems, kafka)
    expected = expected_tables(args.events)
    for table in TABLES:
        got, want = tables[table], expected[table]
        column_order = lambda row: {c: row[c] for c in sorted(row)}
        missing, extra = set(want) - set(got), set(got) - set(want)
        if missing or extra:
            problems.append(f"{table}: {len(missing)} rows missing, {len(extra)} rows extra "
                            f"(e.g. {sorted(missing)[:2]} {sorted(extra)[:2]})")
        differ = [k for k in set(want) & set(got) if column_order(got[k]) != column_order(want[k])]
        for k in differ[:3]:
            problems.append(f"{table} {k}: replayed {column_order(got[k])} != events {column_order(want[k])}")
        if len(differ) > 3:
            problems.append(f"{table}: {len(differ)} rows differ in all")
    summary = {"records": len(records), "ops": dict(ops), "transactions": transactions,
               "rows": {t: len(tables[t]) for t in TABLES},
               "schema_ids": {t: {k: sorted(v) for k, v in ids.items()} for t, ids in schema_ids.items()}}
    print(json.dumps(summary))
    if problems:
        print("\n".join(problems[:50]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
