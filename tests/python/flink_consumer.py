"""A real Debezium consumer reads the simulator's change stream: Apache Flink (PyFlink, from
PyPI, offline), whose `debezium-json` format turns each table's envelopes into a changelog
(+I, -U/+U, -D), materialised here by key.

Usage: flink_consumer.py --stream STREAM.jsonl --events EVENTS_DIR --work DIR

STREAM.jsonl is what `simulator --envelope debezium --sink stdout` wrote (one JSON record per
line: topic, key, value); EVENTS_DIR the file output of the same run with `--envelope events`.
Each table's values go to a directory Flink reads with the filesystem connector and
`'format' = 'debezium-json'`; the tables Flink ends with must equal the ones the business
events imply (check_change_stream.expected_tables). Prints a JSON summary; exits 1 otherwise.
"""

import argparse
import collections
import datetime as dt
import decimal
import json
import pathlib
import sys
import time

from pyflink.common import RowKind
from pyflink.table import EnvironmentSettings, TableEnvironment

from check_change_stream import KEYS, TABLES, expected_tables

# Flink's column types for each table's columns, in the rows' order.
COLUMNS = {
    "customers": [("customer_id", "BIGINT"), ("first_name", "STRING"), ("last_name", "STRING"),
                  ("email", "STRING"), ("phone", "STRING"), ("street_address", "STRING"), ("city", "STRING"),
                  ("region", "STRING"), ("postal_code", "STRING"), ("country", "STRING"),
                  ("marketing_consent", "BOOLEAN"), ("signup_channel", "STRING"), ("created_at", "STRING"),
                  ("updated_at", "STRING")],
    "products": [("product_id", "BIGINT"), ("sku", "STRING"), ("name", "STRING"), ("category_id", "INT"),
                 ("category", "STRING"), ("unit_price", "STRING"), ("currency", "STRING"), ("created_at", "STRING"),
                 ("discontinued_at", "STRING"), ("replaced_by", "BIGINT")],
    "orders": [("order_id", "BIGINT"), ("customer_id", "BIGINT"), ("status", "STRING"), ("subtotal", "STRING"),
               ("discount", "STRING"), ("tax", "STRING"), ("shipping", "STRING"), ("total", "STRING"),
               ("currency", "STRING"), ("channel", "STRING"), ("created_at", "STRING"), ("updated_at", "STRING")],
    "order_lines": [("order_id", "BIGINT"), ("line_number", "INT"), ("product_id", "BIGINT"), ("quantity", "INT"),
                    ("unit_price", "STRING"), ("line_total", "STRING")],
    "payments": [("payment_id", "BIGINT"), ("order_id", "BIGINT"), ("customer_id", "BIGINT"), ("amount", "STRING"),
                 ("currency", "STRING"), ("method", "STRING"), ("status", "STRING"), ("attempt", "INT"),
                 ("failure_reason", "STRING"), ("created_at", "STRING"), ("updated_at", "STRING")],
}


MONEY = {"unit_price", "subtotal", "discount", "tax", "shipping", "total", "line_total", "amount"}
TIMES = {"created_at", "updated_at", "discontinued_at"}


def comparable(column, value):
    """A value as both sides can agree on it: instants as UTC datetimes, amounts as Decimal
    (Flink reads them as the JSON's text; fastavro as datetime and Decimal)."""
    if value is None:
        return None
    if column in TIMES:
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value.astimezone(dt.timezone.utc)
    if column in MONEY:
        return decimal.Decimal(str(value))
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", required=True, type=pathlib.Path)
    parser.add_argument("--events", required=True, type=pathlib.Path)
    parser.add_argument("--work", required=True, type=pathlib.Path)
    args = parser.parse_args()

    values = collections.defaultdict(list)
    for line in args.stream.read_text().splitlines():
        record = json.loads(line)
        table = record["topic"].rsplit(".", 1)[-1]
        if record["value"] is not None and table in TABLES:
            values[table].append(json.dumps(record["value"]))
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("parallelism.default", "1")
    got, changelog, seconds = {}, collections.Counter(), {}
    for table in TABLES:
        directory = args.work / table
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "part-0.json").write_text("\n".join(values[table]) + "\n")
        columns = ", ".join(f"`{name}` {kind}" for name, kind in COLUMNS[table])
        key = ", ".join(f"`{name}`" for name in KEYS[table])
        env.execute_sql(f"CREATE TABLE {table} ({columns}, PRIMARY KEY ({key}) NOT ENFORCED) WITH "
                        f"('connector' = 'filesystem', 'path' = '{directory}', 'format' = 'debezium-json')")
        names = [name for name, _ in COLUMNS[table]]
        rows = {}
        started = time.monotonic()
        with env.execute_sql(f"SELECT * FROM {table}").collect() as results:
            for row in results:
                kind = row.get_row_kind()
                changelog[kind.name] += 1
                k = tuple(row[names.index(c)] for c in KEYS[table])
                if kind in (RowKind.INSERT, RowKind.UPDATE_AFTER):
                    rows[k] = {name: row[i] for i, name in enumerate(names)}
                elif kind == RowKind.DELETE:
                    rows.pop(k, None)
        got[table] = rows
        seconds[table] = round(time.monotonic() - started, 1)

    problems = []
    expected = expected_tables(args.events)
    for table in TABLES:
        want = {k: {c: comparable(c, v) for c, v in row.items()} for k, row in expected[table].items()}
        have = {k: {c: comparable(c, v) for c, v in row.items()} for k, row in got[table].items()}
        if set(want) != set(have):
            problems.append(f"{table}: {len(set(want) - set(have))} rows missing, {len(set(have) - set(want))} extra")
        differ = [k for k in set(want) & set(have) if want[k] != have[k]]
        for k in differ[:3]:
            problems.append(f"{table} {k}: Flink {have[k]} != events {want[k]}")
    print(json.dumps({"changelog": dict(changelog), "rows": {t: len(got[t]) for t in TABLES},
                      "seconds": seconds}))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
