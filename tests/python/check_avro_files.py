"""Independent check of the simulator's Avro files, with fastavro.

Usage: check_avro_files.py OUTPUT_DIR SCHEMA_DIR

Reads every complete file under OUTPUT_DIR/<topic>/date=YYYY-MM-DD/hour=HH/, validates every
record against SCHEMA_DIR/<topic>.avsc, checks the partitioning, the money invariants and the
referential integrity across topics (by event time), then prints a JSON summary on stdout.
Exits 1 with the list of violations if any.
"""

import collections
import json
import pathlib
import sys

import fastavro
from fastavro.validation import validate

TOPICS = ("products", "customers", "orders", "payments")


def main(root: pathlib.Path, schema_dir: pathlib.Path) -> int:
    problems = []
    schemas = {
        t: fastavro.parse_schema(json.loads((schema_dir / f"{t}.avsc").read_text()))
        for t in TOPICS
    }
    unfinished = [str(p) for p in root.rglob("*.inprogress")]
    if unfinished:
        problems.append(f"unfinished files left behind: {unfinished[:5]}")

    records = {t: [] for t in TOPICS}
    files = 0
    for topic in TOPICS:
        for path in sorted((root / topic).glob("date=*/hour=*/*.avro")):
            files += 1
            with path.open("rb") as handle:
                reader = fastavro.reader(handle)
                if reader.writer_schema.get("name") != schemas[topic]["name"].split(".")[-1] and \
                        reader.writer_schema.get("name") != schemas[topic]["name"]:
                    problems.append(f"{path}: written with schema {reader.writer_schema.get('name')}")
                for record in reader:
                    validate(record, schemas[topic], raise_errors=True)
                    hour = record["event_time"].strftime("date=%Y-%m-%d/hour=%H")
                    if hour != f"{path.parent.parent.name}/{path.parent.name}":
                        problems.append(f"{path}: event at {record['event_time']} is in the wrong partition")
                    records[topic].append(record)

    ids = collections.Counter(str(r["event_id"]) for t in TOPICS for r in records[t])
    duplicated = [i for i, n in ids.items() if n > 1]
    if duplicated:
        problems.append(f"{len(duplicated)} event ids appear more than once")

    products = {p["product_id"]: p for p in records["products"]}
    customers = {c["customer_id"]: c for c in records["customers"]}
    orders = {}
    for o in records["orders"]:
        if o["customer_id"] not in customers or customers[o["customer_id"]]["event_time"] > o["event_time"]:
            problems.append(f"order {o['order_id']} names customer {o['customer_id']} not signed up before it")
        subtotal = sum(line["line_total"] for line in o["items"])
        for line in o["items"]:
            product = products.get(line["product_id"])
            if product is None or product["event_time"] > o["event_time"]:
                problems.append(f"order {o['order_id']} names unpublished product {line['product_id']}")
            elif line["unit_price"] != product["unit_price"]:
                problems.append(f"order {o['order_id']} line price differs from the catalogue")
            if line["line_total"] != line["unit_price"] * line["quantity"]:
                problems.append(f"order {o['order_id']} line {line['line_number']} total is wrong")
        if o["subtotal"] != subtotal:
            problems.append(f"order {o['order_id']}: subtotal {o['subtotal']} != sum of lines {subtotal}")
        if o["total"] != o["subtotal"] - o["discount"] + o["tax"] + o["shipping"]:
            problems.append(f"order {o['order_id']}: total does not add up")
        orders[o["order_id"]] = o
    for p in records["payments"]:
        order = orders.get(p["order_id"])
        if order is None or order["event_time"] > p["event_time"]:
            problems.append(f"payment {p['payment_id']} names order {p['order_id']} not placed before it")
        elif p["status"] == "captured" and p["amount"] != order["total"]:
            problems.append(f"payment {p['payment_id']} captured {p['amount']} of an order of {order['total']}")
        if (p["failure_reason"] is None) == (p["status"] == "declined"):
            problems.append(f"payment {p['payment_id']}: failure_reason does not match status {p['status']}")

    if problems:
        print(f"{len(problems)} problems:", *problems[:50], sep="\n  ", file=sys.stderr)
        return 1
    summary = {
        "files": files,
        "records": {t: len(records[t]) for t in TOPICS},
        "event_types": dict(collections.Counter(r["event_type"] for t in TOPICS for r in records[t])),
        "revenue_captured": str(sum(p["amount"] for p in records["payments"] if p["status"] == "captured")),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])))
