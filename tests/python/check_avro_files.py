"""Independent check of the simulator's Avro files, with fastavro.

Usage: check_avro_files.py OUTPUT_DIR SCHEMA_DIR [LEDGER_DIR [--faults]]

Reads every complete file under OUTPUT_DIR/<topic>/date=YYYY-MM-DD/hour=HH/, validates every
record against SCHEMA_DIR/<topic>.avsc, checks the partitioning, the money invariants and the
referential integrity across topics (by event time), and, given LEDGER_DIR, that the
simulator's ground-truth ledger equals the sums recomputed here from the records, hour by hour.
With --faults, injected faults are expected: records are deduplicated on event_id first, and
the duplicates, and the events out of order within their key, are counted against the ledger.
Prints a JSON summary on stdout. Exits 1 with the list of violations if any.
"""

import collections
import decimal
import json
import pathlib
import sys

import fastavro
from fastavro.validation import validate

from retail_checks import TOPICS, check_records, summary


def recompute(records):
    """The ledger's numbers, per event-time hour, from the records themselves."""
    hours = collections.defaultdict(lambda: {
        "events": collections.Counter(), "orders_placed": 0, "payments": collections.Counter(),
        "order_value": collections.Counter(), "captured": collections.Counter(), "refunded": collections.Counter(),
    })
    for topic in TOPICS:
        for r in records[topic]:
            hour = hours[r["event_time"].strftime("%Y-%m-%dT%H:00:00.000Z")]
            hour["events"][r["event_type"]] += 1
            if r["event_type"] == "order_placed":
                hour["orders_placed"] += 1
                hour["order_value"][r["currency"]] += r["total"]
            if topic == "payments":
                hour["payments"][r["status"]] += 1
                if r["status"] in ("captured", "refunded"):
                    hour[r["status"]][r["currency"]] += r["amount"]
    return hours


def count_faults(records):
    """Duplicated records (same event_id again), and records that follow a later event of
    their key in the file order (out of order)."""
    key = {"products": "product_id", "customers": "customer_id", "orders": "order_id", "payments": "order_id"}
    duplicates, inversions = 0, 0
    for topic in TOPICS:
        seen, latest = set(), {}
        for r in records[topic]:
            if str(r["event_id"]) in seen:
                duplicates += 1
                continue
            seen.add(str(r["event_id"]))
            k = r[key[topic]]
            if k in latest and latest[k] > r["event_time"]:
                inversions += 1
            latest[k] = max(latest.get(k, r["event_time"]), r["event_time"])
    return {"duplicates": duplicates, "inversions": inversions}


def check_ledger(records, ledger_dir: pathlib.Path, problems, faults=None) -> int:
    expected = recompute(records)
    found = {}
    for path in sorted(ledger_dir.glob("date=*/hour=*.json")):
        ledger = json.loads(path.read_text())
        found[ledger["hour_start"]] = ledger
        if path.parent.name != "date=" + ledger["hour_start"][:10] or path.name != f"hour={ledger['hour_start'][11:13]}.json":
            problems.append(f"{path}: holds the hour {ledger['hour_start']}")
    if set(found) != set(expected):
        problems.append(f"ledger hours {sorted(set(found) ^ set(expected))[:5]} differ from the records' hours")
    money = lambda counter: {k: str(v) for k, v in counter.items() if v}  # noqa: E731
    for hour, want in expected.items():
        got = found.get(hour)
        if got is None:
            continue
        for key in ("events", "payments"):
            if got[key] != dict(want[key]):
                problems.append(f"ledger {hour} {key}: {got[key]} != {dict(want[key])}")
        if got["orders_placed"] != want["orders_placed"]:
            problems.append(f"ledger {hour} orders_placed: {got['orders_placed']} != {want['orders_placed']}")
        if got["events_total"] != sum(want["events"].values()):
            problems.append(f"ledger {hour} events_total is wrong")
        for key in ("order_value", "captured", "refunded"):
            mine = {k: decimal.Decimal(v) for k, v in got[key].items()}
            if mine != {k: v for k, v in want[key].items() if v}:
                problems.append(f"ledger {hour} {key}: {got[key]} != {money(want[key])}")
        if faults is None and any(got["faults"].values()):
            problems.append(f"ledger {hour}: faults recorded, none were configured")
    if faults is not None:
        totals = collections.Counter()
        for ledger in found.values():
            totals.update(ledger["faults"])
        faults["ledger"] = dict(totals)
        if totals["duplicates"] != faults["duplicates"]:
            problems.append(f"{faults['duplicates']} duplicated records, the ledger says {totals['duplicates']}")
    return len(found)


def main(root: pathlib.Path, schema_dir: pathlib.Path, ledger_dir: pathlib.Path | None = None,
         with_faults: bool = False) -> int:
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

    faults = None
    if with_faults:
        faults = count_faults(records)
        records = {t: list({str(r["event_id"]): r for r in records[t]}.values()) for t in TOPICS}
    problems += check_records(records)
    ledger_hours = check_ledger(records, ledger_dir, problems, faults) if ledger_dir else None

    if problems:
        print(f"{len(problems)} problems:", *problems[:50], sep="\n  ", file=sys.stderr)
        return 1
    print(json.dumps(summary(records, files=files, ledger_hours=ledger_hours, faults=faults)))
    return 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]),
                  pathlib.Path(sys.argv[3]) if len(sys.argv) > 3 else None,
                  "--faults" in sys.argv[4:]))
