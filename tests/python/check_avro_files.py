"""Independent check of the simulator's Avro files, with fastavro.

Usage: check_avro_files.py OUTPUT_DIR SCHEMA_DIR

Reads every complete file under OUTPUT_DIR/<topic>/date=YYYY-MM-DD/hour=HH/, validates every
record against SCHEMA_DIR/<topic>.avsc, checks the partitioning, the money invariants and the
referential integrity across topics (by event time), then prints a JSON summary on stdout.
Exits 1 with the list of violations if any.
"""

import json
import pathlib
import sys

import fastavro
from fastavro.validation import validate

from retail_checks import TOPICS, check_records, summary


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

    problems += check_records(records)

    if problems:
        print(f"{len(problems)} problems:", *problems[:50], sep="\n  ", file=sys.stderr)
        return 1
    print(json.dumps(summary(records, files=files)))
    return 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])))
