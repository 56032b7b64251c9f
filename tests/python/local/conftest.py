"""The local pipeline end to end: the simulator's files → deploy/local/pipeline → the DuckDB
warehouse, the page (in Chromium) and the Tableau workbooks. The simulator's binary comes from
the Rust test that runs this suite (tests/local_pipeline.rs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[3]
PIPELINE = ROOT / "deploy" / "local" / "pipeline"
sys.path[:0] = [str(ROOT / "deploy" / "local"), str(ROOT / "deploy" / "databricks" / "src")]

START = "2026-03-02T00:00:00Z"
# A second currency, and customers who move and ask to be erased often enough that a day holds
# dozens of each (the history and erasure tests).
CURRENCIES = ('[customers]\nmove_rate = 10\nerasure_rate = 5\n'
              '[[shop.currencies]]\ncode = "EUR"\nrate = 0.92\nshare = 0.25\n')


def simulator() -> str:
    path = os.environ.get("PIPELINE_SIMULATOR")
    if not path:
        pytest.fail("PIPELINE_SIMULATOR (the simulator's binary) is not set: run this suite through "
                    "`cargo test --release --test local_pipeline`")
    return path


def simulate(data: Path, shard: str, workdir: Path, duration: str = "1d", speed: str = "max") -> None:
    config = workdir / "currencies.toml"
    config.write_text(CURRENCIES)
    result = subprocess.run(
        [simulator(), "--config", str(config), "--output-dir", str(data), "--start", START, "--duration", duration,
         "--speed", speed, "--seed", "5", "--shard", shard, "--metrics-addr", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def pipeline(*args: str, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(PIPELINE), *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def succeeds(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    return result


def query(database: Path, sql: str, parameters=None):
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def ledger(data: Path) -> dict:
    """The simulator's ground truth over every hour of every replica."""
    truth = {"orders_placed": 0, "captured": {}, "refunded": {}}
    hours = sorted((data / "_ledger").glob("**/date=*/hour=*.json"))
    for path in hours:
        hour = json.loads(path.read_text())
        truth["orders_placed"] += hour["orders_placed"]
        for kind in ("captured", "refunded"):
            for currency, amount in hour[kind].items():
                truth[kind][currency] = truth[kind].get(currency, Decimal(0)) + Decimal(amount)
    truth["hours"] = len(hours)
    return truth


class Run:
    """One data directory, warehouse and dashboard, and what the pipeline printed each time."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.data = workdir / "data"
        self.warehouse = workdir / "warehouse" / "retail.duckdb"
        self.dashboard = workdir / "dashboard"
        self.outputs: list[str] = []

    def pipeline(self, *extra: str) -> str:
        result = succeeds(pipeline("--data", str(self.data), "--warehouse", str(self.warehouse),
                                   "--dashboard", str(self.dashboard), *extra))
        self.outputs.append(result.stdout)
        return result.stdout


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("local-pipeline")


@pytest.fixture(scope="session")
def first_replica(workdir) -> Run:
    """The first replica's day, through the pipeline once."""
    run = Run(workdir / "shared")
    run.workdir.mkdir()
    simulate(run.data, "0/2", run.workdir)
    run.pipeline()
    return run


@pytest.fixture(scope="session")
def both_replicas(first_replica) -> Run:
    """Then the second replica's day into the same directory, and the pipeline again."""
    run = first_replica
    run.loaded_before = query(run.warehouse, "SELECT path, sha256 FROM pipeline.loaded_files ORDER BY path")
    simulate(run.data, "1/2", run.workdir)
    run.pipeline()
    return run
