"""Writes the Synapse SQL files of `deploy/synapse/` from the table definitions:
`python -m retail_loader.render deploy/synapse` (a test fails when they are out of date)."""

from __future__ import annotations

import pathlib
import sys

from .tables import ENTITIES, synapse_ddl, synapse_upgrade
from .warehouse import synapse_batch_script

EXAMPLE_RANGES = [
    {"topic": "orders", "partition": 0, "start_offset": 1200, "end_offset": 1850},
    {"topic": "orders", "partition": 1, "start_offset": 1100, "end_offset": 1790},
    {"topic": "payments", "partition": 0, "start_offset": 2400, "end_offset": 3710},
]


def example_batch() -> str:
    header = (
        "-- The statements the loader runs in Synapse for one micro-batch: batch 42, which read\n"
        "-- offsets 1200-1850 and 1100-1790 of orders partitions 0 and 1 and 2400-3710 of payments\n"
        "-- partition 0. COPY INTO names the files the batch's write committed. The loader runs\n"
        "-- each statement alone and the swap with autocommit off, committing after its last\n"
        "-- statement. Rendered by `python -m retail_loader.render`; a test keeps it current.\n"
    )
    location = "abfss://loader@retailstaging.dfs.core.windows.net/staging/prod/batch=42"
    staged = {
        table: [f"{location}/{table}/part-{part:05d}-7d0c1f1e-5b8a-4a47-9d3e-2c6f0a9b8e41-c000.snappy.parquet"
                for part in range(parts)]
        for table, parts in (("orders", 2), ("order_items", 2), ("payments", 1), ("load_log", 1))
    }
    return header + synapse_batch_script(staged, EXAMPLE_RANGES, {e: e for e in ENTITIES})


FILES = {
    "raw_tables.sql": synapse_ddl,
    "upgrade_raw_tables.sql": synapse_upgrade,
    "load_batch.example.sql": example_batch,
}


def main() -> None:
    target = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/synapse")
    for name, render in FILES.items():
        (target / name).write_text(render())
        print(f"wrote {target / name}")


if __name__ == "__main__":
    main()
